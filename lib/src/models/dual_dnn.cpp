#include "lockstep/models/dual_dnn.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "kernels/activation.h"
#include "kernels/copy.h"
#include "kernels/interaction.h"
#include "kernels/reduce.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/io/safetensors.h"
#include "models/dense_input.h"
#include "models/field_layout.h"
#include "serving/student_bundle.h"

namespace lockstep::models {

const char* kd_loss_name(KdLoss k) { return k == KdLoss::Mse ? "mse" : "bce"; }
KdLoss parse_kd_loss(std::string_view name, std::string_view field) {
  if (name == "mse") return KdLoss::Mse;
  if (name == "bce") return KdLoss::Bce;
  throw Error(fmt::format("{} = '{}' is not a distillation loss: use mse or bce", field, name));
}
const char* dual_mode_name(DualMode m) { return m == DualMode::Joint ? "joint" : "student_only"; }
DualMode parse_dual_mode(std::string_view name, std::string_view field) {
  if (name == "joint") return DualMode::Joint;
  if (name == "student_only") return DualMode::StudentOnly;
  throw Error(fmt::format("{} = '{}' is not a mode: use joint or student_only", field, name));
}

void DualConfig::validate() const {
  LOCKSTEP_CHECK(!tables.empty(), "model.tables is empty: define at least one embedding table");
  for (size_t i = 0; i < tables.size(); ++i) tables[i].validate(fmt::format("model.tables[{}]", i));
  LOCKSTEP_CHECK(!components.empty(),
                 "model.teacher.components is empty: give one or more of fm, cross, din, bst");
  for (size_t i = 0; i < components.size(); ++i) {
    const auto& c = components[i];
    LOCKSTEP_CHECK(c == "fm" || c == "cross" || c == "din" || c == "bst",
                   "model.teacher.components[{}] = '{}' is not a component: use fm, cross, din "
                   "or bst",
                   i, c);
    for (size_t j = 0; j < i; ++j)
      LOCKSTEP_CHECK(components[j] != c, "model.teacher.components lists '{}' twice", c);
  }
  check_range("model.teacher.cross.layers", cross_layers, int64_t{1}, int64_t{64});
  din_attention.validate("model.teacher.din.attention");
  teacher_mlp.validate("model.teacher.mlp");
  student_mlp.validate("model.student.mlp");
  LOCKSTEP_CHECK(teacher_mlp.widths.back() == 1 && student_mlp.widths.back() == 1,
                 "model.teacher.mlp.widths and model.student.mlp.widths must end in 1 (the logit)");
  check_range("model.distillation.teacher_weight", teacher_weight, 0.0, 1e3);
  check_range("model.distillation.student_weight", student_weight, 0.0, 1e3);
  check_range("model.distillation.kd_weight", kd_weight, 0.0, 1e3);
  check_range("model.distillation.hint_weight", hint_weight, 0.0, 1e3);
  check_range("model.distillation.temperature", temperature, 1e-3, 1e3);
  LOCKSTEP_CHECK(hint_weight == 0.0f ||
                     (teacher_mlp.widths.size() >= 2 && student_mlp.widths.size() >= 2),
                 "model.distillation.hint_weight > 0 needs a hidden layer in both MLPs");
  dense_optimizer.validate("optimizer");
  sparse_optimizer.validate("sparse_optimizer");
}

template <class T>
struct DualDnn<T>::Teacher {
  enum class Kind { Fm, Cross, Din, Bst };
  struct Component {
    Kind kind;
    int64_t col;    // first column of its output in the teacher input
    int64_t width;  // output width
  };
  using Handle = typename nn::ParamSet<T>::Handle;
  std::vector<Component> components;
  int64_t width = 0;  // teacher input: [shared input | component outputs]
  FieldSpan fm, din_q, din_k, bst_t, bst_s;
  int64_t fm_dim = 0;
  std::vector<Handle> cross_w, cross_b;
  std::vector<Tensor<T>> cross_x, cross_s;  // x_1..x_N and s_0..s_{N-1}
  Tensor<T> cross_g, cross_g_prev;
  std::unique_ptr<nn::DinAttention<T>> din;
  std::unique_ptr<nn::BstEncoder<T>> bst;
  std::unique_ptr<nn::Mlp<T>> mlp;
  Tensor<T> input, dinput;
};

template <class T>
DualDnn<T>::DualDnn(DualConfig config, const std::vector<std::string>& sparse_columns,
                    int64_t num_dense, const Context& ctx)
    : config_(std::move(config)), num_dense_(config_.use_dense ? num_dense : 0),
      teacher_(std::make_unique<Teacher>()) {
  config_.validate();
  embeddings_ = std::make_unique<embedding::EmbeddingBagCollection<T>>(
      config_.tables, config_.fields, sparse_columns, config_.sparse_optimizer);
  shared_width_ = embeddings_->output_width() + num_dense_;
  Teacher& t = *teacher_;
  t.width = shared_width_;
  const auto needs_history = [&](const char* what) {
    LOCKSTEP_CHECK(embeddings_->sequence_length() > 0,
                   "model.teacher.components has '{}', which needs history fields with max_len > 0",
                   what);
  };
  for (const auto& name : config_.components) {
    if (name == "fm") {
      std::vector<std::string> fields = config_.fm_fields;
      if (fields.empty())
        for (const auto& f : embeddings_->fields())
          if (f.max_len == 0) fields.push_back(f.column);
      t.fm = consecutive_fields(*embeddings_, fields, false, "model.teacher.fm.fields");
      t.fm_dim = field_width(*embeddings_, embeddings_->field_index(fields[0], false));
      for (const auto& f : fields)
        LOCKSTEP_CHECK(field_width(*embeddings_, embeddings_->field_index(f, false)) == t.fm_dim,
                       "model.teacher.fm.fields: field '{}' is {} wide but '{}' is {}: FM needs "
                       "fields of one width",
                       f, field_width(*embeddings_, embeddings_->field_index(f, false)), fields[0],
                       t.fm_dim);
      t.components.push_back({Teacher::Kind::Fm, t.width, t.fm_dim});
    } else if (name == "cross") {
      for (int64_t l = 0; l < config_.cross_layers; ++l) {
        const float s = 1.0f / std::sqrt(static_cast<float>(shared_width_));
        t.cross_w.push_back(params_.add(fmt::format("teacher.cross.{}.weight", l), {shared_width_},
                                        nn::Init::uniform(-s, s)));
        t.cross_b.push_back(
            params_.add(fmt::format("teacher.cross.{}.bias", l), {shared_width_}, nn::Init::zeros()));
      }
      t.cross_x.resize(config_.cross_layers);
      t.cross_s.resize(config_.cross_layers);
      t.components.push_back({Teacher::Kind::Cross, t.width, shared_width_});
    } else if (name == "din") {
      needs_history("din");
      t.din_q = consecutive_fields(*embeddings_, config_.din_query, false, "model.teacher.din.query");
      t.din_k = consecutive_fields(*embeddings_, config_.din_keys, true, "model.teacher.din.keys");
      check_paired_widths(*embeddings_, config_.din_query, config_.din_keys, "model.teacher.din");
      t.din = std::make_unique<nn::DinAttention<T>>(params_, "teacher.din", t.din_q.width,
                                                    config_.din_attention);
      t.components.push_back({Teacher::Kind::Din, t.width, t.din_q.width});
    } else {
      needs_history("bst");
      t.bst_t = consecutive_fields(*embeddings_, config_.bst_target, false, "model.teacher.bst.target");
      t.bst_s = consecutive_fields(*embeddings_, config_.bst_sequence, true, "model.teacher.bst.sequence");
      check_paired_widths(*embeddings_, config_.bst_target, config_.bst_sequence, "model.teacher.bst");
      t.bst = std::make_unique<nn::BstEncoder<T>>(params_, "teacher.bst", t.bst_t.width,
                                                  embeddings_->sequence_length(), config_.bst);
      t.components.push_back({Teacher::Kind::Bst, t.width, t.bst->output_width()});
    }
    t.width += t.components.back().width;
  }
  t.mlp = std::make_unique<nn::Mlp<T>>(params_, "teacher.mlp", t.width, config_.teacher_mlp);
  // Student parameters come last: [student_begin_, trainable size) is the student's region.
  student_ = std::make_unique<nn::Mlp<T>>(params_, "student", shared_width_, config_.student_mlp);
  const int64_t hs = student_->last_hidden_width(), ht = t.mlp->last_hidden_width();
  if (config_.hint_weight > 0.0f && hs != ht)
    projection_ = std::make_unique<nn::Linear<T>>(params_, "student.hint_projection", hs, ht,
                                                  /*bias=*/false);
  params_.allocate(ctx, config_.seed);
  student_begin_ = params_.entry(params_.find("student.0.weight")).offset;
  embeddings_->allocate(ctx, config_.seed);
  optimizer_ = std::make_unique<nn::DenseOptimizer<T>>(config_.dense_optimizer, ctx,
                                                       params_.trainable_size());
}

template <class T>
DualDnn<T>::~DualDnn() = default;

template <class T>
const T* DualDnn<T>::forward(const Context& ctx, const data::Batch& batch, bool training) {
  rows_ = batch.size;
  const int64_t B = rows_, Tn = embeddings_->sequence_length(), ws = embeddings_->sequence_width();
  const int64_t W0 = shared_width_;
  Teacher& t = *teacher_;
  embeddings_->set_batch(ctx, batch);
  x0_.resize(ctx, {B, W0});
  seq_.resize(ctx, {std::max<int64_t>(B * Tn, 1), std::max<int64_t>(ws, 1)});
  embeddings_->forward(ctx, x0_.data(), W0, Tn > 0 ? seq_.data() : nullptr, ws);
  place_dense_features(ctx, batch, num_dense_, dense_, x0_.data() + embeddings_->output_width(), W0);

  // Teacher: in student-only mode it is frozen and runs in inference mode (no statistics move).
  const bool teacher_training = training && config_.mode == DualMode::Joint;
  t.input.resize(ctx, {B, t.width});
  kernels::copy_2d<T>(ctx, B, W0, x0_.data(), W0, t.input.data(), t.width);
  for (const auto& c : t.components) {
    T* out = t.input.data() + c.col;
    switch (c.kind) {
      case Teacher::Kind::Fm:
        kernels::fm_forward<T>(ctx, B, t.fm.width / t.fm_dim, t.fm_dim,
                               x0_.data() + t.fm.offset, W0, out, t.width);
        break;
      case Teacher::Kind::Cross: {
        const T* xl = x0_.data();
        for (size_t l = 0; l < t.cross_x.size(); ++l) {
          t.cross_x[l].resize(ctx, {B, W0});
          t.cross_s[l].resize(ctx, {std::max<int64_t>(B, 1)});
          kernels::cross_forward<T>(ctx, B, W0, x0_.data(), xl, params_.value(t.cross_w[l]),
                                    params_.value(t.cross_b[l]), t.cross_x[l].data(),
                                    t.cross_s[l].data());
          xl = t.cross_x[l].data();
        }
        kernels::copy_2d<T>(ctx, B, W0, xl, W0, out, t.width);
        break;
      }
      case Teacher::Kind::Din:
        t.din->forward(ctx, B, Tn, x0_.data() + t.din_q.offset, W0, seq_.data() + t.din_k.offset, ws,
                       embeddings_->device_lengths(), out, t.width, teacher_training);
        break;
      case Teacher::Kind::Bst:
        t.bst->forward(ctx, B, x0_.data() + t.bst_t.offset, W0, seq_.data() + t.bst_s.offset,
                       nullptr, ws, embeddings_->lengths(), out, t.width, teacher_training);
        break;
    }
  }
  teacher_logits_ = t.mlp->forward(ctx, B, t.input.data(), teacher_training);
  student_logits_ = student_->forward(ctx, B, x0_.data(), training);
  return output_ == Output::Student ? student_logits_ : teacher_logits_;
}

template <class T>
void DualDnn<T>::backward(const Context&, const T*) {
  throw Error("the dual model trains with its own loss: call loss_and_backward()");
}

template <class T>
double DualDnn<T>::loss_and_backward(const Context& ctx, const T* labels) {
  const int64_t B = rows_, Tn = embeddings_->sequence_length(), ws = embeddings_->sequence_width();
  const int64_t W0 = shared_width_;
  Teacher& t = *teacher_;
  const auto& c = config_;
  const bool joint = c.mode == DualMode::Joint;
  scalars_.resize(ctx, {4});
  const auto read = [&](int i) { return static_cast<double>(to_host(ctx, scalars_.data() + i, 1)[0]); };

  // ---- losses and their gradients at the logits (and at the student's last hidden layer).
  dz_t_.resize(ctx, {B});
  dz_s_.resize(ctx, {B});
  dkd_.resize(ctx, {B});
  per_sample_.resize(ctx, {B});
  bce_t_.forward_backward(ctx, B, teacher_logits_, labels, T(c.teacher_weight), dz_t_.data(),
                          scalars_.data());
  bce_s_.forward_backward(ctx, B, student_logits_, labels, T(c.student_weight), dz_s_.data(),
                          scalars_.data() + 1);
  losses_.teacher = read(0);
  losses_.student = read(1);
  losses_.kd = 0;
  if (c.kd_weight > 0.0f) {
    if (c.kd == KdLoss::Mse) {
      // KD target: the teacher's logit, a constant (stop_grad) for the student.
      kernels::squared_error<T>(ctx, B, 1, student_logits_, 1, teacher_logits_, 1, T(c.kd_weight),
                                per_sample_.data(), dkd_.data(), 1);
      kernels::sum<T>(ctx, B, per_sample_.data(), scalars_.data() + 2);
      losses_.kd = read(2);
    } else {
      const T inv_t = T(1) / T(c.temperature);
      scaled_t_.resize(ctx, {B});
      scaled_s_.resize(ctx, {B});
      probs_t_.resize(ctx, {B});
      kernels::scale<T>(ctx, B, inv_t, teacher_logits_, scaled_t_.data());
      kernels::sigmoid_forward<T>(ctx, B, scaled_t_.data(), probs_t_.data());
      kernels::scale<T>(ctx, B, inv_t, student_logits_, scaled_s_.data());
      // d/dz_s of kd_weight·T²·BCE(z_s/T, p_t) = kd_weight·T·(σ(z_s/T) − p_t).
      bce_kd_.forward_backward(ctx, B, scaled_s_.data(), probs_t_.data(),
                               T(c.kd_weight * c.temperature), dkd_.data(), scalars_.data() + 2);
      losses_.kd = read(2) * c.temperature * c.temperature;
    }
    kernels::copy_2d<T>(ctx, B, 1, dkd_.data(), 1, dz_s_.data(), 1, /*accumulate=*/true);
  }
  losses_.hint = 0;
  const T* dh_s = nullptr;
  if (c.hint_weight > 0.0f && B > 0) {
    const int64_t hs = student_->last_hidden_width(), ht = t.mlp->last_hidden_width();
    const T* p = student_->last_hidden();
    if (projection_) {
      proj_.resize(ctx, {B, ht});
      projection_->forward(ctx, B, p, proj_.data());
      p = proj_.data();
    }
    dproj_.resize(ctx, {B, ht});
    per_sample_.resize(ctx, {B});
    kernels::squared_error<T>(ctx, B, ht, p, ht, t.mlp->last_hidden(), ht, T(c.hint_weight),
                              per_sample_.data(), dproj_.data(), ht);
    kernels::sum<T>(ctx, B, per_sample_.data(), scalars_.data() + 3);
    losses_.hint = read(3);
    if (projection_) {
      dh_s_.resize(ctx, {B, hs});
      projection_->backward(ctx, B, student_->last_hidden(), dproj_.data(), dh_s_.data());
      dh_s = dh_s_.data();
    } else {
      dh_s = dproj_.data();
    }
  }

  // ---- backward. Teacher losses reach the teacher and the embeddings; student losses reach the
  // student (and the embeddings only with student_updates_embeddings). KD and hint targets are
  // constants: nothing flows from the student into the teacher.
  dx0_.resize(ctx, {B, W0});
  zero_bytes(ctx, dx0_.data(), dx0_.bytes());
  dseq_.resize(ctx, {std::max<int64_t>(B * Tn, 1), std::max<int64_t>(ws, 1)});
  if (Tn > 0) zero_bytes(ctx, dseq_.data(), dseq_.bytes());
  const bool teacher_learns = joint && c.teacher_weight > 0.0f;
  if (teacher_learns) {
    t.dinput.resize(ctx, {B, t.width});
    t.mlp->backward(ctx, B, t.input.data(), dz_t_.data(), t.dinput.data());
    kernels::copy_2d<T>(ctx, B, W0, t.dinput.data(), t.width, dx0_.data(), W0, /*accumulate=*/true);
    for (const auto& comp : t.components) {
      const T* dout = t.dinput.data() + comp.col;
      switch (comp.kind) {
        case Teacher::Kind::Fm:
          kernels::fm_backward<T>(ctx, B, t.fm.width / t.fm_dim, t.fm_dim, x0_.data() + t.fm.offset,
                                  W0, dout, t.width, dx0_.data() + t.fm.offset, W0);
          break;
        case Teacher::Kind::Cross: {
          const int64_t n = static_cast<int64_t>(t.cross_x.size());
          t.cross_g.resize(ctx, {B, W0});
          t.cross_g_prev.resize(ctx, {B, W0});
          kernels::copy_2d<T>(ctx, B, W0, dout, t.width, t.cross_g.data(), W0);
          for (int64_t l = n - 1; l >= 0; --l) {
            const T* xl = l == 0 ? x0_.data() : t.cross_x[l - 1].data();
            kernels::cross_backward<T>(ctx, B, W0, x0_.data(), xl, params_.value(t.cross_w[l]),
                                       t.cross_s[l].data(), t.cross_g.data(), dx0_.data(),
                                       t.cross_g_prev.data(), params_.grad(t.cross_w[l]),
                                       params_.grad(t.cross_b[l]));
            std::swap(t.cross_g, t.cross_g_prev);
          }
          // x_0 is the shared input too: its gradient through the x_l path of layer 0.
          kernels::copy_2d<T>(ctx, B, W0, t.cross_g.data(), W0, dx0_.data(), W0, /*accumulate=*/true);
          break;
        }
        case Teacher::Kind::Din:
          t.din->backward(ctx, dout, t.width, dx0_.data() + t.din_q.offset, W0,
                          dseq_.data() + t.din_k.offset, ws);
          break;
        case Teacher::Kind::Bst:
          t.bst->backward(ctx, dout, t.width, dx0_.data() + t.bst_t.offset, W0,
                          dseq_.data() + t.bst_s.offset, nullptr, ws);
          break;
      }
    }
  }
  dx0_student_.resize(ctx, {B, W0});
  student_->backward(ctx, B, x0_.data(), dz_s_.data(), dx0_student_.data(), dh_s);
  if (c.student_updates_embeddings)
    kernels::copy_2d<T>(ctx, B, W0, dx0_student_.data(), W0, dx0_.data(), W0, /*accumulate=*/true);
  trained_embeddings_ = joint && (teacher_learns || c.student_updates_embeddings);
  if (trained_embeddings_)
    embeddings_->backward(ctx, dx0_.data(), W0, Tn > 0 ? dseq_.data() : nullptr, ws);
  else
    for (auto& table : embeddings_->tables()) table.grad().clear();
  return c.teacher_weight * losses_.teacher + c.student_weight * losses_.student +
         c.kd_weight * losses_.kd + c.hint_weight * losses_.hint;
}

template <class T>
void DualDnn<T>::apply_gradients(const Context& ctx, T grad_scale) {
  if (config_.mode == DualMode::StudentOnly) {
    optimizer_->step(ctx, params_.values(), params_.grads(), grad_scale, student_begin_,
                     params_.trainable_size());
  } else {
    optimizer_->step(ctx, params_.values(), params_.grads(), grad_scale);
  }
  embeddings_->apply_gradients(ctx, grad_scale, optimizer_->step_count());
}

template <class T>
void DualDnn<T>::export_student(const Context& ctx, const std::string& dir,
                                const std::vector<std::string>& sparse_columns) const {
  serving::StudentBundle bundle;
  bundle.columns = sparse_columns;
  bundle.num_dense = num_dense_;
  bundle.mlp = config_.student_mlp;
  for (const auto& f : config_.fields)
    if (f.max_len == 0) bundle.fields.push_back(f);
  for (const auto& table : embeddings_->tables()) {
    const bool used = std::any_of(bundle.fields.begin(), bundle.fields.end(),
                                  [&](const auto& f) { return f.table == table.config().name; });
    if (used) bundle.tables.push_back(table.config());
  }
  // The student's parameters, under the names the serving MLP ("student") gives them.
  std::map<std::string, serving::NamedTensor> student, rows;
  const auto values = to_host(ctx, params_.values(), params_.size());
  for (const auto& e : params_.entries())
    if (e.name.rfind("student.", 0) == 0 && e.name.rfind("student.hint_projection", 0) != 0)
      student[e.name] = {e.shape, std::vector<float>(values.begin() + e.offset,
                                                     values.begin() + e.offset + e.numel())};
  for (const auto& table : embeddings_->tables())
    for (const auto& tc : bundle.tables)
      if (tc.name == table.config().name) {
        const auto w = to_host(ctx, table.weights(), table.rows() * table.dim());
        rows[tc.name + ".weight"] = {{table.rows(), table.dim()}, std::vector<float>(w.begin(), w.end())};
      }
  serving::write_student_bundle(dir, bundle, student, rows);
}

template class DualDnn<float>;
template class DualDnn<double>;

}  // namespace lockstep::models
