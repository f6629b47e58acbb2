#include "lockstep/models/dual_dnn.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "kernels/activation.h"
#include "kernels/copy.h"
#include "kernels/gemm.h"
#include "kernels/interaction.h"  // squared_error
#include "kernels/reduce.h"
#include "models/teacher_components.h"
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
std::string student_residual_table(const std::string& table) { return table + "@student"; }

namespace {
/// The embedding layer of a dual model: its tables and fields, and with student residual tables
/// one more table per table a pooled field reads, and a pooled field per pooled field reading it
/// (after every other field, so that they come last in the pooled output).
EmbeddingSpec dual_embedding_spec(const DualConfig& c) {
  EmbeddingSpec spec = validated_embedding_spec(c);
  if (!c.student_residual) return spec;
  std::vector<embedding::FieldConfig> extra;
  for (const auto& f : c.fields) {
    if (f.max_len > 0) continue;
    const std::string name = student_residual_table(f.table);
    const bool have = std::any_of(spec.tables.begin(), spec.tables.end(),
                                  [&](const embedding::TableConfig& t) { return t.name == name; });
    if (!have) {
      embedding::TableConfig t = *std::find_if(
          spec.tables.begin(), spec.tables.end(),
          [&](const embedding::TableConfig& t) { return t.name == f.table; });
      t.residual_of = t.name;
      t.name = name;
      t.init_scale = 0.0f;  // the student starts from the shared embeddings
      spec.tables.push_back(t);
    }
    embedding::FieldConfig r = f;
    r.table = name;
    extra.push_back(r);
  }
  spec.fields.insert(spec.fields.end(), extra.begin(), extra.end());
  return spec;
}
}  // namespace

const char* student_embedding_losses_name(StudentEmbeddingLosses l) {
  return l == StudentEmbeddingLosses::Label ? "label" : "all";
}
StudentEmbeddingLosses parse_student_embedding_losses(std::string_view name,
                                                      std::string_view field) {
  if (name == "label") return StudentEmbeddingLosses::Label;
  if (name == "all") return StudentEmbeddingLosses::All;
  throw Error(fmt::format("{} = '{}' is not a choice of student losses: use label or all", field,
                          name));
}

void DualConfig::validate() const {
  validate_embedding_layout(tables, fields);
  for (size_t i = 0; i < tables.size(); ++i)
    LOCKSTEP_CHECK_KEY(!student_residual || !tables[i].dynamic(),
                       "model.distillation.student_residual_embeddings",
                       "model.distillation.student_residual_embeddings = true, and "
                       "model.tables[{}] ('{}') is dynamic: student residual tables are built for "
                       "hashed tables only; set it to false (the default with dynamic tables)",
                       i, tables[i].name);
  LOCKSTEP_CHECK_KEY(!components.empty(), "model.teacher.components",
                     "model.teacher.components is empty: give one or more of fm, cross, din, bst");
  for (size_t i = 0; i < components.size(); ++i) {
    const auto& c = components[i];
    const std::string key = fmt::format("model.teacher.components[{}]", i);
    LOCKSTEP_CHECK_KEY(c == "fm" || c == "cross" || c == "din" || c == "bst", key,
                       "{} = '{}' is not a component: use fm, cross, din or bst", key, c);
    for (size_t j = 0; j < i; ++j)
      LOCKSTEP_CHECK_KEY(components[j] != c, key,
                         "{} = '{}' is listed already (model.teacher.components[{}]): give each "
                         "component once",
                         key, c, j);
  }
  check_range("model.teacher.cross.layers", cross_layers, int64_t{1}, int64_t{64});
  din_attention.validate("model.teacher.din.attention");
  validate_logit_mlp(teacher_mlp, "model.teacher.mlp");
  validate_logit_mlp(student_mlp, "model.student.mlp");
  check_range("model.distillation.teacher_weight", teacher_weight, 0.0, 1e3);
  check_range("model.distillation.student_weight", student_weight, 0.0, 1e3);
  check_range("model.distillation.kd_weight", kd_weight, 0.0, 1e3);
  check_range("model.distillation.hint_weight", hint_weight, 0.0, 1e3);
  check_range("model.distillation.temperature", temperature, 1e-3, 1e3);
  check_range("model.distillation.kd_warmup_steps", kd_warmup_steps, int64_t{0}, int64_t{1} << 40);
  check_range("model.distillation.student_embedding_scale", student_embedding_scale, 0.0, 1.0);
  LOCKSTEP_CHECK_KEY(
      hint_weight == 0.0f || (teacher_mlp.widths.size() >= 2 && student_mlp.widths.size() >= 2),
      "model.distillation.hint_weight",
      "model.distillation.hint_weight = {} needs a hidden layer in both MLPs "
      "(model.teacher.mlp.widths has {} layers, model.student.mlp.widths {}): add "
      "one or set hint_weight = 0",
      hint_weight, teacher_mlp.widths.size(), student_mlp.widths.size());
  validate_optimizers(dense_optimizer, sparse_optimizer);
}

/// The teacher: interaction components, each writing its slice of the MLP input after the
/// shared input, then the MLP.
template <class T>
struct DualDnn<T>::Teacher {
  struct Slot {
    std::unique_ptr<TeacherComponent<T>> component;
    int64_t col;  // first column of its output in the teacher input
  };
  std::vector<Slot> components;
  int64_t width = 0;  // teacher input: [shared input | component outputs]
  std::unique_ptr<nn::Mlp<T>> mlp;
  Tensor<T> input, dinput;
};

template <class T>
DualDnn<T>::DualDnn(DualConfig config, const std::vector<std::string>& sparse_columns,
                    int64_t num_dense, const Context& ctx)
    : EmbeddingModel<T>(dual_embedding_spec(config), sparse_columns, num_dense),
      config_(std::move(config)), teacher_(std::make_unique<Teacher>()) {
  const auto& emb = *this->embeddings_;
  auto& params = this->params_;
  pooled_width_ = config_.student_residual ? emb.output_width() / 2 : emb.output_width();
  shared_width_ = pooled_width_ + this->num_dense_;
  Teacher& t = *teacher_;
  t.width = shared_width_;
  for (size_t i = 0; i < config_.components.size(); ++i) {
    auto c = make_teacher_component<T>(config_.components[i],
                                       fmt::format("model.teacher.components[{}]", i), config_, emb,
                                       params, shared_width_);
    const int64_t w = c->output_width();
    t.components.push_back({std::move(c), t.width});
    t.width += w;
  }
  t.mlp = std::make_unique<nn::Mlp<T>>(params, "teacher.mlp", t.width, config_.teacher_mlp);
  // Student parameters come last: [student_begin_, trainable size) is the student's region.
  student_ = std::make_unique<nn::Mlp<T>>(params, "student", shared_width_, config_.student_mlp);
  const int64_t hs = student_->last_hidden_width(), ht = t.mlp->last_hidden_width();
  if (config_.hint_weight > 0.0f && hs != ht)
    projection_ = std::make_unique<nn::Linear<T>>(params, "student.hint_projection", hs, ht,
                                                  /*bias=*/false);
  this->allocate(ctx, config_.seed, config_.dense_optimizer);
  student_begin_ = params.entry(params.find("student.0.weight")).offset;
  // loss = parts · weights; the bce distillation part carries T² (its gradient carries T).
  const double kd_scale =
      config_.kd == KdLoss::Bce ? double(config_.temperature) * config_.temperature : 1.0;
  part_weights_ = make_tensor(ctx, std::vector<T>{T(config_.teacher_weight), T(config_.student_weight),
                                                  T(config_.kd_weight * kd_scale),
                                                  T(config_.hint_weight)});
  parts_.resize(ctx, {4});
  zero_bytes(ctx, parts_.data(), parts_.bytes());
  parts_total_.resize(ctx, {4});
  zero_bytes(ctx, parts_total_.data(), parts_total_.bytes());
}

template <class T>
DualDnn<T>::~DualDnn() = default;

template <class T>
const T* DualDnn<T>::forward(const Context& ctx, const DeviceBatch<T>& batch, bool training) {
  const int64_t B = batch.size(), W0 = shared_width_;
  Teacher& t = *teacher_;
  x0_.resize(ctx, {B, W0});
  const auto& emb = *this->embeddings_;
  student_input_ = x0_.data();
  if (config_.student_residual) {
    // [shared | residual | dense] -> x0 = [shared | dense] (both towers), xs = x0 + residual.
    const int64_t Ws = pooled_width_, D = this->num_dense_, Wall = 2 * Ws + D;
    xe_.resize(ctx, {B, Wall});
    this->embed(ctx, batch, xe_.data(), Wall, 0);
    kernels::copy_2d<T>(ctx, B, Ws, xe_.data(), Wall, x0_.data(), W0);
    if (D > 0) kernels::copy_2d<T>(ctx, B, D, xe_.data() + 2 * Ws, Wall, x0_.data() + Ws, W0);
    xs_.resize(ctx, {B, W0});
    kernels::copy_2d<T>(ctx, B, W0, x0_.data(), W0, xs_.data(), W0);
    kernels::copy_2d<T>(ctx, B, Ws, xe_.data() + Ws, Wall, xs_.data(), W0, /*accumulate=*/true);
    student_input_ = xs_.data();
  } else {
    this->embed(ctx, batch, x0_.data(), W0, 0);
  }
  const TeacherInput<T> in{B, x0_.data(), W0,
                           emb.sequence_length() > 0 ? this->seq_.data() : nullptr,
                           emb.sequence_width(), &batch};

  const bool single = single_tower_ && !training;
  if (!single || output_ == Output::Teacher) {
    // Teacher: in student-only mode it is frozen and runs in inference mode (no statistics
    // move).
    const bool teacher_training = training && config_.mode == DualMode::Joint;
    t.input.resize(ctx, {B, t.width});
    kernels::copy_2d<T>(ctx, B, W0, x0_.data(), W0, t.input.data(), t.width);
    for (auto& slot : t.components)
      slot.component->forward(ctx, in, t.input.data() + slot.col, t.width, teacher_training);
    // Dynamic tables: the wide lr term is the teacher's (the student reads embedx only, so
    // that it serves from its pooled fields alone).
    teacher_logits_ =
        this->with_wide(ctx, t.mlp->forward(ctx, B, t.input.data(), teacher_training));
  }
  if (!single || output_ == Output::Student)
    student_logits_ = student_->forward(ctx, B, student_input_, training);
  return this->logits_ = output_ == Output::Student ? student_logits_ : teacher_logits_;
}

template <class T>
void DualDnn<T>::backward(const Context& ctx, const T* dlogits) {
  if (output_ == Output::Student)
    backward_towers(ctx, nullptr, dlogits, nullptr, nullptr);
  else
    backward_towers(ctx, dlogits, nullptr, nullptr, nullptr);
}

template <class T>
void DualDnn<T>::loss_and_backward(const Context& ctx, const DeviceBatch<T>& batch, T* loss_sum) {
  LOCKSTEP_CHECK(batch.labels() != nullptr, "batch has {} labels for {} samples",
                 batch.num_labels(), batch.size());
  const int64_t B = this->rows_;
  const T* labels = batch.labels();
  const auto& c = config_;
  T* parts = parts_.data();  // teacher, student, kd, hint: sums over the batch, on the device
  zero_bytes(ctx, parts, parts_.bytes());

  // ---- losses and their gradients at the logits (and at the student's last hidden layer).
  dz_t_.resize(ctx, {B});
  dz_s_.resize(ctx, {B});
  dkd_.resize(ctx, {B});
  per_sample_.resize(ctx, {B});
  bce_t_.forward_backward(ctx, B, teacher_logits_, labels, T(c.teacher_weight), dz_t_.data(),
                          parts);
  bce_s_.forward_backward(ctx, B, student_logits_, labels, T(c.student_weight), dz_s_.data(),
                          parts + 1);
  const T* dz_distill = nullptr;
  if (c.kd_weight > 0.0f) {
    // KD warm-up: the weight ramps linearly over the first kd_warmup_steps optimizer steps.
    const int64_t k = this->optimizer_->step_count();
    const double ramp = c.kd_warmup_steps > k ? double(k + 1) / double(c.kd_warmup_steps) : 1.0;
    const T kd_weight = T(c.kd_weight * ramp);
    if (c.kd == KdLoss::Mse) {
      // KD target: the teacher's logit, a constant (stop_grad) for the student.
      kernels::squared_error<T>(ctx, B, 1, student_logits_, 1, teacher_logits_, 1, kd_weight,
                                per_sample_.data(), dkd_.data(), 1);
      kernels::sum<T>(ctx, B, per_sample_.data(), parts + 2);
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
                               kd_weight * T(c.temperature), dkd_.data(), parts + 2);
    }
    // The kd part is reported as weighted by the ramp (loss = kd_weight · parts[2]).
    if (ramp < 1.0) kernels::scale<T>(ctx, 1, T(ramp), parts + 2, parts + 2);
    dz_distill = dkd_.data();
  }
  const T* dh_s = nullptr;
  if (c.hint_weight > 0.0f && B > 0) {
    const int64_t hs = student_->last_hidden_width(), ht = teacher_->mlp->last_hidden_width();
    const T* p = student_->last_hidden();
    if (projection_) {
      proj_.resize(ctx, {B, ht});
      projection_->forward(ctx, B, p, proj_.data());
      p = proj_.data();
    }
    dproj_.resize(ctx, {B, ht});
    per_sample_.resize(ctx, {B});
    kernels::squared_error<T>(ctx, B, ht, p, ht, teacher_->mlp->last_hidden(), ht,
                              T(c.hint_weight), per_sample_.data(), dproj_.data(), ht);
    kernels::sum<T>(ctx, B, per_sample_.data(), parts + 3);
    if (projection_) {
      dh_s_.resize(ctx, {B, hs});
      projection_->backward(ctx, B, student_->last_hidden(), dproj_.data(), dh_s_.data());
      dh_s = dh_s_.data();
    } else {
      dh_s = dproj_.data();
    }
  }
  // loss_sum = weights · parts (on the device).
  kernels::gemm<T>(ctx, kernels::Trans::N, kernels::Trans::N, 1, 1, 4, T(1), part_weights_.data(),
                   4, parts, 1, T(0), loss_sum, 1);
  kernels::copy_2d<T>(ctx, 1, 4, parts, 4, parts_total_.data(), 4, /*accumulate=*/true);

  // ---- backward. Teacher losses reach the teacher and the embeddings; student losses reach the
  // student (and the embeddings as student_embedding_scale/_losses say). KD and hint targets are
  // constants: nothing flows from the student into the teacher.
  backward_towers(ctx, c.teacher_weight > 0.0f ? dz_t_.data() : nullptr, dz_s_.data(), dz_distill,
                  dh_s);
}

template <class T>
void DualDnn<T>::backward_towers(const Context& ctx, const T* dz_t, const T* dz_label,
                                 const T* dz_distill, const T* dh_s) {
  const int64_t B = this->rows_, W0 = shared_width_;
  Teacher& t = *teacher_;
  const auto& c = config_;
  const bool joint = c.mode == DualMode::Joint;
  dx0_.resize(ctx, {B, W0});
  zero_bytes(ctx, dx0_.data(), dx0_.bytes());
  const TeacherInputGrad<T> grad{dx0_.data(), this->zeroed_sequence_grad(ctx)};
  const bool teacher_learns = joint && dz_t != nullptr;
  this->set_wide_grad(teacher_learns ? dz_t : nullptr);  // the wide term is the teacher's
  if (teacher_learns) {
    t.dinput.resize(ctx, {B, t.width});
    t.mlp->backward(ctx, B, t.input.data(), dz_t, t.dinput.data());
    kernels::copy_2d<T>(ctx, B, W0, t.dinput.data(), t.width, dx0_.data(), W0, /*accumulate=*/true);
    for (auto& slot : t.components)
      slot.component->backward(ctx, t.dinput.data() + slot.col, t.width, grad);
  }
  // The student: its parameters (and residual tables) get every term; the shared embeddings get
  // scale · (the label term, or every term). When only the label term may reach the shared
  // embeddings, the student's backward runs twice (the MLP's parameter gradients accumulate):
  // the label term, then the distillation terms.
  const bool residual = c.student_residual && dz_label != nullptr;
  const bool to_shared = joint && dz_label != nullptr && c.student_embedding_scale > 0;
  // With residual tables the embedding gradient is [shared | residual | dense] (dxe_).
  const int64_t Ws = pooled_width_, Wall = 2 * Ws + this->num_dense_;
  const bool residual_layout = c.student_residual && (teacher_learns || to_shared || residual);
  if (residual_layout) {
    dxe_.resize(ctx, {B, Wall});
    zero_bytes(ctx, dxe_.data(), dxe_.bytes());
  }
  if (dz_label != nullptr) {
    const T* x = student_input_;
    const T* dz = dz_label;
    const bool split = to_shared && c.student_embedding_losses == StudentEmbeddingLosses::Label &&
                       (dz_distill != nullptr || dh_s != nullptr);
    if (dz_distill != nullptr && !split) {  // one pass: label + distillation at the logit
      dz_sum_.resize(ctx, {B});
      kernels::copy_2d<T>(ctx, B, 1, dz_label, 1, dz_sum_.data(), 1);
      kernels::copy_2d<T>(ctx, B, 1, dz_distill, 1, dz_sum_.data(), 1, /*accumulate=*/true);
      dz = dz_sum_.data();
    }
    T* dx = nullptr;
    if (to_shared || residual) {
      dx0_student_.resize(ctx, {B, W0});
      dx = dx0_student_.data();
    }
    student_->backward(ctx, B, x, dz, dx, split ? nullptr : dh_s);
    T* dx_distill = nullptr;
    if (split) {
      const T* dz2 = dz_distill;
      if (dz2 == nullptr) {  // hint only: no gradient at the logit
        dz_sum_.resize(ctx, {B});
        zero_bytes(ctx, dz_sum_.data(), dz_sum_.bytes());
        dz2 = dz_sum_.data();
      }
      if (residual) {
        dx_distill_.resize(ctx, {B, W0});
        dx_distill = dx_distill_.data();
      }
      student_->backward(ctx, B, x, dz2, dx_distill, dh_s);
    }
    if (residual) {  // the residual tables: every student term, unscaled
      kernels::copy_2d<T>(ctx, B, Ws, dx, W0, dxe_.data() + Ws, Wall);
      if (dx_distill != nullptr)
        kernels::copy_2d<T>(ctx, B, Ws, dx_distill, W0, dxe_.data() + Ws, Wall,
                            /*accumulate=*/true);
    }
    if (to_shared) {
      if (c.student_embedding_scale != 1.0f)
        kernels::scale<T>(ctx, B * W0, T(c.student_embedding_scale), dx, dx);
      kernels::copy_2d<T>(ctx, B, W0, dx, W0, dx0_.data(), W0, /*accumulate=*/true);
    }
  }
  if (residual_layout) {
    kernels::copy_2d<T>(ctx, B, Ws, dx0_.data(), W0, dxe_.data(), Wall);
    this->embed_backward(ctx, dxe_.data(), Wall, 0);
    if (!joint)  // student-only: the shared tables stay as they are
      for (auto& table : this->embeddings_->tables())
        if (table.config().residual_of.empty()) table.grad().clear();
  } else if (teacher_learns || to_shared) {
    this->embed_backward(ctx, dx0_.data(), W0, 0);
  } else {
    for (auto& table : this->embeddings_->tables()) table.grad().clear();
  }
}

template <class T>
const T* DualDnn<T>::output_logits(size_t i) const {
  if (single_tower_) {
    LOCKSTEP_CHECK(i < 1, "dual with single-tower inference: output {} of 1", i);
    return output_ == Output::Student ? student_logits_ : teacher_logits_;
  }
  LOCKSTEP_CHECK(i < 2, "dual: output {} of 2", i);
  return i == 0 ? student_logits_ : teacher_logits_;
}

template <class T>
std::vector<std::string> DualDnn<T>::loss_term_names() const {
  return {"teacher", "student", "kd", "hint"};
}

template <class T>
std::vector<double> DualDnn<T>::take_loss_terms(const Context& ctx) {
  const auto p = to_host(ctx, parts_total_);
  zero_bytes(ctx, parts_total_.data(), parts_total_.bytes());
  const double kd_scale =
      config_.kd == KdLoss::Bce ? double(config_.temperature) * config_.temperature : 1.0;
  return {double(p[0]), double(p[1]), double(p[2]) * kd_scale, double(p[3])};
}

template <class T>
DualLosses DualDnn<T>::last_losses(const Context& ctx) const {
  const auto p = to_host(ctx, parts_);
  const double kd_scale =
      config_.kd == KdLoss::Bce ? double(config_.temperature) * config_.temperature : 1.0;
  return {double(p[0]), double(p[1]), double(p[2]) * kd_scale, double(p[3])};
}

template <class T>
void DualDnn<T>::apply_gradients(const Context& ctx, T grad_scale) {
  auto& params = this->params_;
  auto& optimizer = *this->optimizer_;
  if (config_.mode == DualMode::StudentOnly) {
    optimizer.step(ctx, params.values(), params.grads(), grad_scale, student_begin_,
                   params.trainable_size());
    // The shared tables are frozen: dynamic ones neither count, admit nor shrink (the residual
    // tables, hashed, learn).
    for (auto& table : this->embeddings_->tables())
      if (!table.dynamic()) table.apply_gradients(ctx, grad_scale, optimizer.step_count());
    return;
  }
  optimizer.step(ctx, params.values(), params.grads(), grad_scale);
  this->embeddings_->apply_gradients(ctx, grad_scale, optimizer.step_count());
}

template <class T>
void DualDnn<T>::end_epoch(const Context& ctx) {
  if (config_.mode == DualMode::StudentOnly) return;  // the shared tables are frozen
  EmbeddingModel<T>::end_epoch(ctx);
}

template <class T>
void DualDnn<T>::export_student(const Context& ctx, const std::string& dir,
                                const std::vector<std::string>& sparse_columns,
                                const std::string& sparse_export) const {
  // The bundle reads its batches in this layout: another order would feed one column's ids to
  // another's table, silently.
  LOCKSTEP_CHECK(sparse_columns == this->embeddings_->batch_columns(),
                 "export_student: the sparse columns given ({}) are not the model's, in its order "
                 "({})",
                 fmt::join(sparse_columns, ", "),
                 fmt::join(this->embeddings_->batch_columns(), ", "));
  serving::StudentBundle bundle;
  bundle.columns = sparse_columns;
  bundle.num_dense = this->num_dense_;
  bundle.mlp = config_.student_mlp;
  for (const auto& f : config_.fields)
    if (f.max_len == 0) bundle.fields.push_back(f);
  for (const auto& table : this->embeddings_->tables()) {
    const bool used = std::any_of(bundle.fields.begin(), bundle.fields.end(),
                                  [&](const auto& f) { return f.table == table.config().name; });
    if (used) bundle.tables.push_back(table.config());
  }
  // The student's parameters, under the names the serving MLP ("student") gives them.
  std::map<std::string, serving::NamedTensor> student, rows;
  const auto& params = this->params_;
  const auto values = to_host(ctx, params.values(), params.size());
  for (const auto& e : params.entries())
    if (e.name.rfind("student.", 0) == 0 && e.name.rfind("student.hint_projection", 0) != 0)
      student[e.name] = {e.shape, std::vector<float>(values.begin() + e.offset,
                                                     values.begin() + e.offset + e.numel())};
  // With student residual tables the student reads shared + residual: the bundle holds the sum.
  const auto weights_of = [&](const std::string& name) {
    for (const auto& table : this->embeddings_->tables())
      if (table.config().name == name) return to_host(ctx, table.weights(), table.rows() * table.dim());
    return std::vector<T>{};
  };
  const bool any_dynamic = std::any_of(bundle.tables.begin(), bundle.tables.end(),
                                       [](const auto& t) { return t.dynamic(); });
  if (any_dynamic && !sparse_export.empty())
    bundle.sparse = std::filesystem::absolute(sparse_export).lexically_normal().string();
  for (auto& tc : bundle.tables) {
    if (tc.dynamic() && !bundle.sparse.empty()) {
      tc.rows = 1;  // sized by the serving side from the export
      continue;
    }
    if (tc.dynamic()) {  // the admitted feasigns: keys and embedx rows (others read zeros)
      const auto* d = std::find_if(this->embeddings_->tables().begin(),
                                   this->embeddings_->tables().end(),
                                   [&](const auto& t) { return t.config().name == tc.name; })
                          ->dynamic_table();
      d->sync_host(ctx);
      std::vector<std::pair<uint64_t, int64_t>> held;  // (key, slot), ascending keys
      for (int64_t s = 0; s < d->capacity(); ++s)
        if (d->index().occupied(s) && d->admitted(s)) held.emplace_back(d->index().key_of(s), s);
      std::sort(held.begin(), held.end());
      std::vector<int64_t> slots;
      std::vector<float> keys;
      for (const auto& [key, s] : held) {
        float bits[2];
        std::memcpy(bits, &key, 8);
        keys.insert(keys.end(), bits, bits + 2);
        slots.push_back(s);
      }
      const auto embedx = d->values(ctx, slots).second;
      std::vector<float> w(embedx.begin(), embedx.end());
      const auto n = static_cast<int64_t>(slots.size());
      tc.rows = std::max<int64_t>(n, 1);  // the serving table's capacity
      rows[tc.name + ".keys"] = {{n}, std::move(keys)};
      rows[tc.name + ".weight"] = {{n, tc.dim}, std::move(w)};
      continue;
    }
    auto w = weights_of(tc.name);
    if (config_.student_residual) {
      const auto r = weights_of(student_residual_table(tc.name));
      for (size_t i = 0; i < w.size(); ++i) w[i] += r[i];
    }
    rows[tc.name + ".weight"] = {{tc.rows, tc.dim}, std::vector<float>(w.begin(), w.end())};
  }
  serving::write_student_bundle(dir, bundle, student, rows);
}

template class DualDnn<float>;
template class DualDnn<double>;

}  // namespace lockstep::models
