#include "lockstep/models/embedding_mlp.h"

#include <algorithm>

#include "kernels/copy.h"
#include "kernels/gemm.h"
#include "kernels/init.h"
#include "models/field_layout.h"

namespace lockstep::models {

namespace {
bool is_linear(const FmTermsConfig& fm, const std::string& table) {
  return std::find(fm.linear_tables.begin(), fm.linear_tables.end(), table) !=
         fm.linear_tables.end();
}
}  // namespace

void EmbeddingMlpConfig::validate() const {
  validate_embedding_layout(tables, fields);
  for (size_t i = 0; i < fields.size(); ++i)
    LOCKSTEP_CHECK_KEY(fields[i].max_len == 0, fmt::format("model.fields[{}].max_len", i),
                       "model.fields[{}].max_len = {} (column '{}'): the embedding_mlp model "
                       "pools every field; use kind = \"din\" or \"bst\" for sequence fields",
                       i, fields[i].max_len, fields[i].column);
  if (mlp.widths.empty()) {
    LOCKSTEP_CHECK_KEY(fm.any(), "model.mlp.widths",
                       "model.mlp.widths is empty (no deep part) and [model.fm] adds no term, so "
                       "the model has no logit: set model.fm.first_order and/or second_order, or "
                       "give the MLP widths ending in 1");
    LOCKSTEP_CHECK_KEY(!use_dense, "model.use_dense",
                       "model.use_dense = true but model.mlp.widths is empty: without an MLP the "
                       "dense features have no input to feed; set use_dense = false (LR and FM "
                       "read the sparse columns only)");
  } else {
    validate_logit_mlp(mlp, "model.mlp");
  }
  // First-order tables: listed iff first_order, each a table of dim 1 and sum pooling, read by
  // the first fields only.
  LOCKSTEP_CHECK_KEY(fm.first_order || fm.linear_tables.empty(), "model.fm.linear_tables",
                     "model.fm.linear_tables is given but model.fm.first_order is false: set "
                     "first_order = true or drop linear_tables");
  LOCKSTEP_CHECK_KEY(!fm.first_order || !fm.linear_tables.empty(), "model.fm.first_order",
                     "model.fm.first_order = true needs the first-order tables: list them in "
                     "model.fm.linear_tables (dim = 1, pooling = \"sum\"), or use "
                     "[model.tables_per_column], which makes one per table");
  for (size_t i = 0; i < fm.linear_tables.size(); ++i) {
    const std::string key = fmt::format("model.fm.linear_tables[{}]", i);
    const auto t = std::find_if(tables.begin(), tables.end(),
                                [&](const auto& tc) { return tc.name == fm.linear_tables[i]; });
    LOCKSTEP_CHECK_KEY(t != tables.end(), key, "{} = '{}' is not a table of model.tables", key,
                       fm.linear_tables[i]);
    LOCKSTEP_CHECK_KEY(t->dim == 1 && t->pooling == embedding::Pooling::Sum, key,
                       "{} = '{}' has dim {} and {} pooling: a first-order table needs dim = 1 "
                       "and pooling = \"sum\" (one weight per id, summed)",
                       key, t->name, t->dim,
                       t->pooling == embedding::Pooling::Sum ? "sum" : "mean");
  }
  bool others = false;
  for (size_t i = 0; i < fields.size(); ++i) {
    const bool linear = is_linear(fm, fields[i].table);
    LOCKSTEP_CHECK_KEY(!linear || !others, fmt::format("model.fields[{}].table", i),
                       "model.fields[{}] reads the first-order table '{}' after a field of "
                       "another table: list the first-order fields first",
                       i, fields[i].table);
    others = others || !linear;
  }
  const bool reads_embeddings = !mlp.widths.empty() || fm.second_order;
  LOCKSTEP_CHECK_KEY(others || !reads_embeddings, "model.fields",
                     "model.fields holds only first-order fields: the MLP and the second-order "
                     "term need embedding fields");
  LOCKSTEP_CHECK_KEY(!others || reads_embeddings, "model.fields",
                     "model.fields has embedding fields (not first-order) and nothing reads them: "
                     "no MLP (model.mlp.widths = []) and no second-order term; drop them (LR "
                     "needs only the first-order fields) or set model.fm.second_order = true");
  validate_optimizers(dense_optimizer, sparse_optimizer);
}

template <class T>
EmbeddingMlp<T>::EmbeddingMlp(EmbeddingMlpConfig config,
                              const std::vector<std::string>& sparse_columns, int64_t num_dense,
                              const Context& ctx)
    : EmbeddingModel<T>(validated_embedding_spec(config), sparse_columns, num_dense),
      config_(std::move(config)) {
  const auto& emb = *this->embeddings_;
  const FmTermsConfig& fm = config_.fm;
  for (const auto& f : emb.fields()) k_ += is_linear(fm, f.table) ? 1 : 0;
  has_first_ = fm.first_order;
  ld_all_ = emb.output_width() + this->num_dense_;
  if (!config_.mlp.widths.empty()) {
    input_width_ = ld_all_ - k_;
    mlp_ = std::make_unique<nn::Mlp<T>>(this->params_, "mlp", input_width_, config_.mlp);
  } else {
    bias_ = this->params_.add("fm.bias", {1}, nn::Init::zeros());
  }
  if (fm.second_order) {
    // The second-order fields: the listed columns (their non-first-order pooled field), or every
    // pooled field that is not first-order; consecutive and of one width.
    const bool listed = !fm.fields.empty();
    std::vector<size_t> idx;
    if (listed) {
      for (size_t i = 0; i < fm.fields.size(); ++i) {
        const std::string key = fmt::format("model.fm.fields[{}]", i);
        size_t found = emb.fields().size();
        for (size_t f = 0; f < emb.fields().size(); ++f)
          if (emb.fields()[f].column == fm.fields[i] && !is_linear(fm, emb.fields()[f].table))
            found = f;
        LOCKSTEP_CHECK_KEY(found < emb.fields().size(), key,
                           "{} = '{}' is not an embedding field: name the column of a "
                           "[[model.fields]] entry that does not read a first-order table",
                           key, fm.fields[i]);
        idx.push_back(found);
      }
    } else {
      for (size_t f = 0; f < emb.fields().size(); ++f)
        if (!is_linear(fm, emb.fields()[f].table)) idx.push_back(f);
    }
    const int64_t dim = field_width(emb, idx[0]);
    fm_offset_ = emb.field_offset(idx[0]);
    for (size_t i = 0; i < idx.size(); ++i) {
      const std::string key =
          listed ? fmt::format("model.fm.fields[{}]", i) : std::string("model.fm.fields");
      const std::string& column = emb.fields()[idx[i]].column;
      LOCKSTEP_CHECK_KEY(field_width(emb, idx[i]) == dim, key,
                         "{}: field '{}' is {} wide but '{}' is {}: the FM second-order term "
                         "needs fields of one width (give their tables one dim)",
                         key, column, field_width(emb, idx[i]), emb.fields()[idx[0]].column, dim);
      LOCKSTEP_CHECK_KEY(emb.field_offset(idx[i]) == fm_offset_ + static_cast<int64_t>(i) * dim,
                         key,
                         "{}: field '{}' does not follow '{}' in model.fields: the second-order "
                         "fields must be consecutive, in this order",
                         key, column, emb.fields()[idx[i > 0 ? i - 1 : 0]].column);
    }
    fm_ = std::make_unique<nn::FmInteraction<T>>(static_cast<int64_t>(idx.size()), dim);
  }
  this->allocate(ctx, config_.seed, config_.dense_optimizer);
}

template <class T>
EmbeddingMlp<T>::~EmbeddingMlp() = default;

template <class T>
const T* EmbeddingMlp<T>::forward(const Context& ctx, const DeviceBatch<T>& batch, bool training) {
  if (config_.fm.any()) return forward_fm(ctx, batch, training);
  // input = [pooled fields | dense]
  input_.resize(ctx, {batch.size(), input_width_});
  this->embed(ctx, batch, input_.data(), input_width_, 0);
  return this->logits_ =
             this->with_wide(ctx, mlp_->forward(ctx, this->rows_, input_.data(), training));
}

template <class T>
void EmbeddingMlp<T>::backward(const Context& ctx, const T* dlogits) {
  this->set_wide_grad(dlogits);
  if (config_.fm.any()) return backward_fm(ctx, dlogits);
  const int64_t rows = this->rows_;
  dinput_.resize(ctx, {rows, input_width_});
  mlp_->backward(ctx, rows, input_.data(), dlogits, dinput_.data());
  this->embed_backward(ctx, dinput_.data(), input_width_, 0);
}

// With [model.fm] the pooled output holds the first-order fields first:
//   all_ = [first-order weights (k) | embedding fields | dense]  (rows, ld_all_),
// the MLP reads a copy of the columns after the first k, and each term is summed into logit_
// by a GEMM with a vector of ones (no kernel of its own: rows·(k + D) multiply-adds).
template <class T>
const T* EmbeddingMlp<T>::forward_fm(const Context& ctx, const DeviceBatch<T>& batch,
                                     bool training) {
  using kernels::Trans;
  const int64_t B = batch.size();
  const int64_t D = fm_ ? fm_->dim() : 0;
  const int64_t n_ones = std::max<int64_t>({B, k_, D, 1});
  if (ones_.numel() < n_ones) {
    ones_.resize(ctx, {n_ones});
    kernels::fill_constant<T>(ctx, n_ones, T(1), ones_.data());
  }
  all_.resize(ctx, {B, ld_all_});
  this->embed(ctx, batch, all_.data(), ld_all_, 0);
  logit_.resize(ctx, {B});
  mlp_out_ = nullptr;
  if (mlp_) {
    const T* x = all_.data();
    if (k_ > 0) {
      input_.resize(ctx, {B, input_width_});
      kernels::copy_2d<T>(ctx, B, input_width_, all_.data() + k_, ld_all_, input_.data(),
                          input_width_);
      x = input_.data();
    }
    mlp_out_ = mlp_->forward(ctx, B, x, training);
    kernels::copy_2d<T>(ctx, B, 1, mlp_out_, 1, logit_.data(), 1);
  } else {
    // logit = bias: ones (B, 1) · bias (1, 1)
    kernels::gemm<T>(ctx, Trans::N, Trans::N, B, 1, 1, T(1), ones_.data(), 1,
                     this->params_.value(bias_), 1, T(0), logit_.data(), 1);
  }
  if (has_first_) {
    // first (B) = all_[:, :k] · ones (k)
    first_.resize(ctx, {B});
    kernels::gemm<T>(ctx, Trans::N, Trans::N, B, 1, k_, T(1), all_.data(), ld_all_, ones_.data(), 1,
                     T(0), first_.data(), 1);
    kernels::copy_2d<T>(ctx, B, 1, first_.data(), 1, logit_.data(), 1, /*accumulate=*/true);
  }
  if (fm_) {
    // second (B) = Σ_d FmInteraction(v)_d = Σ_{f<g} <v_f, v_g>
    fm_out_.resize(ctx, {B, D});
    second_.resize(ctx, {B});
    fm_->forward(ctx, B, all_.data() + fm_offset_, ld_all_, fm_out_.data(), D);
    kernels::gemm<T>(ctx, Trans::N, Trans::N, B, 1, D, T(1), fm_out_.data(), D, ones_.data(), 1,
                     T(0), second_.data(), 1);
    kernels::copy_2d<T>(ctx, B, 1, second_.data(), 1, logit_.data(), 1, /*accumulate=*/true);
  }
  if (this->embeddings_->has_wide())
    kernels::copy_2d<T>(ctx, B, 1, this->embeddings_->wide(), 1, logit_.data(), 1,
                        /*accumulate=*/true);
  return this->logits_ = logit_.data();
}

template <class T>
void EmbeddingMlp<T>::backward_fm(const Context& ctx, const T* dlogits) {
  using kernels::Trans;
  const int64_t B = this->rows_;
  dall_.resize(ctx, {B, ld_all_});
  zero_bytes(ctx, dall_.data(), dall_.bytes());
  if (mlp_) {
    const T* x = k_ > 0 ? input_.data() : all_.data();
    if (k_ > 0) {
      dinput_.resize(ctx, {B, input_width_});
      mlp_->backward(ctx, B, x, dlogits, dinput_.data());
      kernels::copy_2d<T>(ctx, B, input_width_, dinput_.data(), input_width_, dall_.data() + k_,
                          ld_all_, /*accumulate=*/true);
    } else {
      mlp_->backward(ctx, B, x, dlogits, dall_.data());  // overwrites: before the FM terms
    }
  } else {
    // dbias += Σ_b dlogit[b]: dlogits (1, B) · ones (B, 1)
    kernels::gemm<T>(ctx, Trans::N, Trans::N, 1, 1, B, T(1), dlogits, std::max<int64_t>(B, 1),
                     ones_.data(), 1, T(1), this->params_.grad(bias_), 1);
    this->params_.grad_written(ctx, bias_);
  }
  if (has_first_)  // d all_[:, :k] = dlogits (B, 1) · ones (1, k)
    kernels::gemm<T>(ctx, Trans::N, Trans::N, B, k_, 1, T(1), dlogits, 1, ones_.data(), k_, T(1),
                     dall_.data(), ld_all_);
  if (fm_) {
    const int64_t D = fm_->dim();
    dfm_out_.resize(ctx, {B, D});
    kernels::gemm<T>(ctx, Trans::N, Trans::N, B, D, 1, T(1), dlogits, 1, ones_.data(), D, T(0),
                     dfm_out_.data(), D);
    fm_->backward(ctx, dfm_out_.data(), D, dall_.data() + fm_offset_, ld_all_);
  }
  this->embed_backward(ctx, dall_.data(), ld_all_, 0);
}

template class EmbeddingMlp<float>;
template class EmbeddingMlp<double>;

}  // namespace lockstep::models
