#pragma once
// The dual DNN (docs/dual_dnn.md): a complex teacher and a plain student trained together
// over one shared embedding layer, with online knowledge distillation. Only the
// student is served (export_student).

#include <memory>
#include <string>
#include <vector>

#include "lockstep/models/embedding_model.h"
#include "lockstep/nn/bst_encoder.h"
#include "lockstep/nn/din_attention.h"
#include "lockstep/nn/linear.h"
#include "lockstep/nn/loss.h"
#include "lockstep/nn/mlp.h"
#include "lockstep/nn/optimizer.h"

namespace lockstep::models {

enum class KdLoss { Mse, Bce };
enum class DualMode { Joint, StudentOnly };
/// Which of the student's loss terms reach the shared embeddings (student_embedding_scale > 0).
enum class StudentEmbeddingLosses { Label, All };

struct DualConfig {
  std::vector<embedding::TableConfig> tables;
  /// Pooled fields (shared by both towers) and sequence fields (the teacher's attention). A
  /// column may feed one pooled and one sequence field (history mean-pooled for the student and
  /// attended by the teacher).
  std::vector<embedding::FieldConfig> fields;
  bool use_dense = true;

  // ---- teacher: interaction components, then its own MLP.
  /// Any of "fm", "cross", "din", "bst", in the order their outputs are concatenated after the
  /// shared input [pooled fields ⊕ dense].
  std::vector<std::string> components = {"din", "cross"};
  std::vector<std::string> fm_fields;  // pooled fields of one width, consecutive; empty = all pooled
  int64_t cross_layers = 3;
  std::vector<std::string> din_query = {"item", "item_cat"};
  std::vector<std::string> din_keys = {"hist_items", "hist_cats"};
  nn::DinAttentionConfig din_attention;
  std::vector<std::string> bst_target = {"item", "item_cat"};
  std::vector<std::string> bst_sequence = {"hist_items", "hist_cats"};
  nn::BstEncoderConfig bst;
  nn::MlpConfig teacher_mlp{{512, 256, 128, 1}, {nn::ActivationKind::PReLU}, false};

  // ---- student: a plain MLP over the shared input.
  nn::MlpConfig student_mlp{{128, 64, 1}, {nn::ActivationKind::PReLU}, false};

  // ---- loss = teacher_weight·BCE(teacher) + student_weight·BCE(student) + kd_weight·KD
  //            + hint_weight·hint
  float teacher_weight = 1.0f;
  float student_weight = 1.0f;
  float kd_weight = 1.0f;
  /// KD: Mse = 0.5·Σ(z_s − z_t)² on logits; Bce = T²·Σ BCE(z_s / T, σ(z_t / T)).
  KdLoss kd = KdLoss::Mse;
  float temperature = 1.0f;
  /// hint = 0.5·Σ‖P·h_s − h_t‖² on the last hidden layers (P learned when the widths differ).
  float hint_weight = 0.0f;
  /// KD warm-up: the distillation weight ramps linearly over the first N optimizer steps
  /// (kd_weight·(k+1)/N at step k), so an untrained teacher does not steer the student.
  int64_t kd_warmup_steps = 100;
  /// The student's gradient into the shared embeddings, scaled: 0 = copy-and-freeze (the student
  /// reads embeddings trained by the teacher only, seed 002), 1 = Rocket Launching (both towers
  /// train them equally). Never reaches a teacher parameter.
  float student_embedding_scale = 0.0f;
  /// Label: only the student's BCE on the labels reaches the embeddings (KD and hint train the
  /// student's MLP only); All: every student term does.
  StudentEmbeddingLosses student_embedding_losses = StudentEmbeddingLosses::Label;
  /// Student residual tables: the student reads shared + its own residual (a table "<t>@student"
  /// beside every table <t> its pooled fields read: the same rows and keys, starting at zero),
  /// trained by every student term, never read by the teacher. The exported student carries the
  /// sum, so serving is unchanged; training holds those tables twice.
  bool student_residual = true;
  /// StudentOnly: teacher and embeddings frozen (the teacher still runs, in inference mode, to
  /// supply KD and hint targets); only student parameters change — online learning.
  DualMode mode = DualMode::Joint;

  nn::OptimizerConfig dense_optimizer{nn::OptimizerKind::Adam, 1e-3f};
  nn::OptimizerConfig sparse_optimizer{nn::OptimizerKind::Adagrad, 0.5f};
  uint64_t seed = 1;
  void validate() const;
};

const char* kd_loss_name(KdLoss k);
KdLoss parse_kd_loss(std::string_view name, std::string_view field);
const char* dual_mode_name(DualMode m);
DualMode parse_dual_mode(std::string_view name, std::string_view field);
const char* student_embedding_losses_name(StudentEmbeddingLosses l);
/// The name of the student residual table of table `table` ("<table>@student").
std::string student_residual_table(const std::string& table);
StudentEmbeddingLosses parse_student_embedding_losses(std::string_view name,
                                                      std::string_view field);

/// Parts of the last training loss (sums over the batch, before weighting; kd includes the T²
/// of the bce distillation).
struct DualLosses {
  double teacher = 0, student = 0, kd = 0, hint = 0;
};

template <class T>
class DualDnn final : public EmbeddingModel<T> {
 public:
  using Model<T>::forward;
  enum class Output { Student, Teacher };

  DualDnn(DualConfig config, const std::vector<std::string>& sparse_columns, int64_t num_dense,
          const Context& ctx);
  ~DualDnn() override;

  std::string name() const override { return "dual"; }
  /// Runs both towers; returns the logits of output() (the student by default: it is served).
  const T* forward(const Context& ctx, const DeviceBatch<T>& batch, bool training) override;
  /// dlogits: the gradient at output()'s logits only; it reaches that tower (and the shared
  /// embeddings as the configuration allows: a frozen teacher or embeddings stay frozen).
  void backward(const Context& ctx, const T* dlogits) override;
  /// The dual loss (teacher and student BCE, distillation, hint) summed over the batch into
  /// loss_sum on the device, and its backward pass. Its parts stay on the device:
  /// last_losses(ctx) reads them.
  void loss_and_backward(const Context& ctx, const DeviceBatch<T>& batch, T* loss_sum) override;
  /// Student-only mode updates only the student's region of the dense parameters.
  /// Student-only mode: nothing (the shared tables, dynamic ones included, are frozen).
  void end_epoch(const Context& ctx) override;
  void apply_gradients(const Context& ctx, T grad_scale) override;

  /// {"student", "teacher"}: the served output first. With single-tower inference only the
  /// tower that runs (output()): the other one's logits would be stale.
  std::vector<std::string> output_names() const override {
    if (single_tower_) return {output_ == Output::Student ? "student" : "teacher"};
    return {"student", "teacher"};
  }
  const T* output_logits(size_t i) const override;
  /// {"teacher", "student", "kd", "hint"}: the parts of last_losses(), accumulated.
  std::vector<std::string> loss_term_names() const override;
  std::vector<double> take_loss_terms(const Context& ctx) override;

  void set_output(Output o) { output_ = o; }
  Output output() const { return output_; }
  /// Serving-style inference: forward(…, training = false) runs only output()'s tower (what
  /// serving that tower costs); output_names() then names only that one (an evaluation reports
  /// it alone). Off by default (an evaluation reports both).
  void set_single_tower_inference(bool on) { single_tower_ = on; }
  const T* teacher_logits() const { return teacher_logits_; }
  const T* student_logits() const { return student_logits_; }
  /// The parts of the last loss_and_backward()'s loss: reads them from the device (waits).
  DualLosses last_losses(const Context& ctx) const;
  const DualConfig& config() const { return config_; }
  /// Dense parameters [student_begin(), trainable_size) belong to the student (and hint
  /// projection); everything before to the teacher.
  int64_t student_begin() const { return student_begin_; }

  /// Writes the serving bundle of the student (docs/dual_dnn.md): manifest.json,
  /// student.safetensors (its MLP) and embeddings.safetensors (the tables of the pooled fields),
  /// atomically into `dir`. No teacher parameter is written. Dynamic tables: their admitted
  /// feasigns by key, or, with `sparse_export` (a directory train::write_sparse_model writes),
  /// a reference to it instead: the serving side then reads the newest base and its deltas there.
  /// `sparse_columns` must be the model's own (its constructor's, in order): anything else
  /// throws Error.
  void export_student(const Context& ctx, const std::string& dir,
                      const std::vector<std::string>& sparse_columns,
                      const std::string& sparse_export = "") const;

 private:
  struct Teacher;
  /// The backward of both towers from the gradients at their logits (nullptr: that tower gets
  /// none). The student's gradient comes in two parts: dz_label (its BCE) and dz_distill / dh_s
  /// (KD at the logit, hint at the last hidden layer; nullptr when absent); which of them reach
  /// the embeddings, and scaled by how much, is the configuration's.
  void backward_towers(const Context& ctx, const T* dz_t, const T* dz_label, const T* dz_distill,
                       const T* dh_s);

  DualConfig config_;
  std::unique_ptr<Teacher> teacher_;
  std::unique_ptr<nn::Mlp<T>> student_;
  std::unique_ptr<nn::Linear<T>> projection_;  // hint: student hidden -> teacher hidden
  int64_t shared_width_ = 0, student_begin_ = 0;
  Output output_ = Output::Student;
  bool single_tower_ = false;
  const T *teacher_logits_ = nullptr, *student_logits_ = nullptr;
  nn::BceWithLogits<T> bce_t_, bce_s_, bce_kd_;
  Tensor<T> x0_, dx0_, dx0_student_, dz_sum_;
  /// With student residual tables: the embedding output [shared pooled | residual pooled |
  /// dense] (xe_), the student's input x0 + residual (xs_), the distillation terms' input
  /// gradient (dx_distill_) and the embedding gradient (dxe_).
  Tensor<T> xe_, xs_, dx_distill_, dxe_;
  const T* student_input_ = nullptr;  // x0_ or xs_: what the student read in the last forward
  int64_t pooled_width_ = 0;  // W0 without the dense features
  Tensor<T> dz_t_, dz_s_, dkd_, per_sample_, scaled_t_, scaled_s_, probs_t_, proj_, dproj_, dh_s_;
  /// The loss parts (teacher, student, kd, hint) and their weights, on the device.
  Tensor<T> parts_, part_weights_;
  /// parts_ summed over the loss_and_backward() calls since the last take_loss_terms().
  Tensor<T> parts_total_;
};

extern template class DualDnn<float>;
extern template class DualDnn<double>;

}  // namespace lockstep::models
