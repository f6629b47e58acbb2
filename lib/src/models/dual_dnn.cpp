#include "lockstep/models/dual_dnn.h"

#include <algorithm>

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

void DualConfig::validate() const {
  validate_embedding_layout(tables, fields);
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
    : EmbeddingModel<T>(validated_embedding_spec(config), sparse_columns, num_dense),
      config_(std::move(config)), teacher_(std::make_unique<Teacher>()) {
  const auto& emb = *this->embeddings_;
  auto& params = this->params_;
  shared_width_ = emb.output_width() + this->num_dense_;
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
  this->embed(ctx, batch, x0_.data(), W0, 0);
  const auto& emb = *this->embeddings_;
  const TeacherInput<T> in{B, x0_.data(), W0,
                           emb.sequence_length() > 0 ? this->seq_.data() : nullptr,
                           emb.sequence_width(), &batch};

  // Teacher: in student-only mode it is frozen and runs in inference mode (no statistics move).
  const bool teacher_training = training && config_.mode == DualMode::Joint;
  t.input.resize(ctx, {B, t.width});
  kernels::copy_2d<T>(ctx, B, W0, x0_.data(), W0, t.input.data(), t.width);
  for (auto& slot : t.components)
    slot.component->forward(ctx, in, t.input.data() + slot.col, t.width, teacher_training);
  teacher_logits_ = t.mlp->forward(ctx, B, t.input.data(), teacher_training);
  student_logits_ = student_->forward(ctx, B, x0_.data(), training);
  return this->logits_ = output_ == Output::Student ? student_logits_ : teacher_logits_;
}

template <class T>
void DualDnn<T>::backward(const Context& ctx, const T* dlogits) {
  if (output_ == Output::Student)
    backward_towers(ctx, nullptr, dlogits, nullptr);
  else
    backward_towers(ctx, dlogits, nullptr, nullptr);
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
  if (c.kd_weight > 0.0f) {
    if (c.kd == KdLoss::Mse) {
      // KD target: the teacher's logit, a constant (stop_grad) for the student.
      kernels::squared_error<T>(ctx, B, 1, student_logits_, 1, teacher_logits_, 1, T(c.kd_weight),
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
                               T(c.kd_weight * c.temperature), dkd_.data(), parts + 2);
    }
    kernels::copy_2d<T>(ctx, B, 1, dkd_.data(), 1, dz_s_.data(), 1, /*accumulate=*/true);
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
  // student (and the embeddings only with student_updates_embeddings). KD and hint targets are
  // constants: nothing flows from the student into the teacher.
  backward_towers(ctx, c.teacher_weight > 0.0f ? dz_t_.data() : nullptr, dz_s_.data(), dh_s);
}

template <class T>
void DualDnn<T>::backward_towers(const Context& ctx, const T* dz_t, const T* dz_s,
                                 const T* dh_s) {
  const int64_t B = this->rows_, W0 = shared_width_;
  Teacher& t = *teacher_;
  const auto& c = config_;
  const bool joint = c.mode == DualMode::Joint;
  dx0_.resize(ctx, {B, W0});
  zero_bytes(ctx, dx0_.data(), dx0_.bytes());
  const TeacherInputGrad<T> grad{dx0_.data(), this->zeroed_sequence_grad(ctx)};
  const bool teacher_learns = joint && dz_t != nullptr;
  if (teacher_learns) {
    t.dinput.resize(ctx, {B, t.width});
    t.mlp->backward(ctx, B, t.input.data(), dz_t, t.dinput.data());
    kernels::copy_2d<T>(ctx, B, W0, t.dinput.data(), t.width, dx0_.data(), W0, /*accumulate=*/true);
    for (auto& slot : t.components)
      slot.component->backward(ctx, t.dinput.data() + slot.col, t.width, grad);
  }
  const bool student_learns = dz_s != nullptr;
  if (student_learns) {
    dx0_student_.resize(ctx, {B, W0});
    student_->backward(ctx, B, x0_.data(), dz_s, dx0_student_.data(), dh_s);
    if (c.student_updates_embeddings)
      kernels::copy_2d<T>(ctx, B, W0, dx0_student_.data(), W0, dx0_.data(), W0,
                          /*accumulate=*/true);
  }
  if (joint && (teacher_learns || (student_learns && c.student_updates_embeddings)))
    this->embed_backward(ctx, dx0_.data(), W0, 0);
  else
    for (auto& table : this->embeddings_->tables()) table.grad().clear();
}

template <class T>
const T* DualDnn<T>::output_logits(size_t i) const {
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
  } else {
    optimizer.step(ctx, params.values(), params.grads(), grad_scale);
  }
  this->embeddings_->apply_gradients(ctx, grad_scale, optimizer.step_count());
}

template <class T>
void DualDnn<T>::export_student(const Context& ctx, const std::string& dir,
                                const std::vector<std::string>& sparse_columns) const {
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
  for (const auto& table : this->embeddings_->tables())
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
