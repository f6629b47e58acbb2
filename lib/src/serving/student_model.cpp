#include "lockstep/serving/student_model.h"

#include <algorithm>
#include <cmath>

#include "lockstep/embedding/device_batch.h"
#include "lockstep/embedding/embedding_bag_collection.h"
#include "lockstep/io/safetensors.h"
#include "lockstep/nn/mlp.h"
#include "lockstep/train/sparse_model.h"
#include "serving/student_bundle.h"

namespace lockstep::serving {

struct StudentModel::Impl {
  const Context* ctx;
  StudentBundle bundle;
  std::unique_ptr<embedding::EmbeddingBagCollection<float>> embeddings;
  nn::ParamSet<float> params;
  std::unique_ptr<nn::Mlp<float>> mlp;
  int64_t width = 0;
  embedding::DeviceBatch<float> batch;  // the staged request batch
  Tensor<float> x;
};

StudentModel::StudentModel(const std::string& dir, const Context& ctx)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.ctx = &ctx;
  m.bundle = read_student_bundle(dir);
  // Dynamic tables read from a sparse export: each sized to its feasigns with an embedding.
  train::SparseModel sparse;
  if (!m.bundle.sparse.empty()) {
    try {
      sparse = train::load_sparse_model(m.bundle.sparse);
    } catch (const Error& e) {
      throw Error(fmt::format("{}: the bundle reads its dynamic tables from the sparse export {}, "
                              "which cannot be loaded: {}",
                              dir, m.bundle.sparse, e.what()));
    }
    for (auto& tc : m.bundle.tables) {
      if (!tc.dynamic()) continue;
      const auto it = sparse.tables.find(tc.name);
      LOCKSTEP_CHECK(it != sparse.tables.end() && it->second.dim == tc.dim,
                     "{}: the sparse export {} has no table '{}' of dim {}", dir, m.bundle.sparse,
                     tc.name, tc.dim);
      int64_t n = 0;
      for (uint8_t h : it->second.has_embedx) n += h;
      tc.rows = std::max<int64_t>(n, 1);
    }
  }
  // The optimizer is never used: serving only reads the tables.
  m.embeddings = std::make_unique<embedding::EmbeddingBagCollection<float>>(
      m.bundle.tables, m.bundle.fields, m.bundle.columns,
      nn::OptimizerConfig{nn::OptimizerKind::Adagrad, 0.1f});
  m.width = m.embeddings->output_width() + m.bundle.num_dense;
  m.mlp = std::make_unique<nn::Mlp<float>>(m.params, "student", m.width, m.bundle.mlp);
  m.params.allocate(ctx, 0);
  m.embeddings->allocate(ctx, 0);
  const io::SafetensorsFile student = io::read_safetensors(dir + "/student.safetensors");
  const io::SafetensorsFile rows = io::read_safetensors(dir + "/embeddings.safetensors");
  m.params.check_file(student);
  for (auto& table : m.embeddings->tables()) {
    if (table.dynamic() && !m.bundle.sparse.empty()) continue;
    const auto& t = rows.get(table.config().name + ".weight");
    if (table.dynamic()) {  // keys (U64) and their rows; rows() is at least 1
      const auto& k = rows.get(table.config().name + ".keys");
      LOCKSTEP_CHECK(k.dtype == io::DType::U64 && k.numel() <= table.rows() &&
                         t.numel() == k.numel() * table.dim(),
                     "{}: dynamic table '{}' has {} keys and {} values, the manifest says at most "
                     "{} keys x {}",
                     rows.path, table.config().name, k.numel(), t.numel(), table.rows(),
                     table.dim());
      continue;
    }
    LOCKSTEP_CHECK(t.numel() == table.rows() * table.dim(),
                   "{}: table '{}' has {} values, the manifest says {} x {}", rows.path,
                   table.config().name, t.numel(), table.rows(), table.dim());
  }
  m.params.assign_from(ctx, student);
  for (auto& table : m.embeddings->tables()) {
    if (table.dynamic() && !m.bundle.sparse.empty()) {
      const auto& st = sparse.tables.at(table.config().name);
      std::vector<uint64_t> keys;
      std::vector<float> values;
      const auto d = static_cast<size_t>(st.dim);
      for (size_t r = 0; r < st.keys.size(); ++r) {
        if (!st.has_embedx[r]) continue;  // no embedding: reads zeros, as when absent
        keys.push_back(st.keys[r]);
        values.insert(values.end(), st.embedx.begin() + r * d, st.embedx.begin() + (r + 1) * d);
      }
      table.dynamic_table()->load_serving(ctx, keys.data(), values.data(),
                                          static_cast<int64_t>(keys.size()));
      continue;
    }
    const auto values = rows.get(table.config().name + ".weight").as<float>();
    if (table.dynamic()) {
      const auto keys = rows.get(table.config().name + ".keys").as<uint64_t>();
      table.dynamic_table()->load_serving(ctx, keys.data(), values.data(),
                                          static_cast<int64_t>(keys.size()));
      continue;
    }
    copy_bytes(ctx, table.weights(), ctx.device(), values.data(), Device::cpu(),
               values.size() * sizeof(float));
  }
}

StudentModel::~StudentModel() = default;
StudentModel::StudentModel(StudentModel&&) noexcept = default;

std::vector<float> StudentModel::predict(const data::Batch& batch) {
  Impl& m = *impl_;
  const Context& ctx = *m.ctx;
  if (batch.size == 0) return {};
  m.embeddings->stage(ctx, batch, m.batch);
  m.x.resize(ctx, {batch.size, m.width});
  m.embeddings->forward(ctx, m.batch, m.x.data(), m.width);
  m.batch.copy_dense(ctx, m.bundle.num_dense, m.x.data() + m.embeddings->output_width(), m.width);
  const float* logits = m.mlp->forward(ctx, batch.size, m.x.data(), /*training=*/false);
  const auto z = to_host(ctx, logits, batch.size);
  std::vector<float> p(z.size());
  for (size_t i = 0; i < z.size(); ++i) p[i] = static_cast<float>(1.0 / (1.0 + std::exp(-double(z[i]))));
  return p;
}

const std::vector<std::string>& StudentModel::columns() const { return impl_->bundle.columns; }
int64_t StudentModel::num_dense() const { return impl_->bundle.num_dense; }

}  // namespace lockstep::serving
