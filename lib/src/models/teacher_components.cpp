#include "models/teacher_components.h"

#include "lockstep/nn/bst_encoder.h"
#include "lockstep/nn/cross_network.h"
#include "lockstep/nn/din_attention.h"
#include "lockstep/nn/fm.h"
#include "models/field_layout.h"

namespace lockstep::models {

namespace {

/// FM bi-interaction over pooled fields of one width (consecutive in the shared input).
template <class T>
class FmComponent final : public TeacherComponent<T> {
 public:
  FmComponent(FieldSpan span, int64_t dim) : span_(span), fm_(span.width / dim, dim) {}
  int64_t output_width() const override { return fm_.output_width(); }
  void forward(const Context& ctx, const TeacherInput<T>& in, T* out, int64_t ldo,
               bool) override {
    ld0_ = in.ld0;
    fm_.forward(ctx, in.B, in.x0 + span_.offset, in.ld0, out, ldo);
  }
  void backward(const Context& ctx, const T* dout, int64_t lddo,
                const TeacherInputGrad<T>& grad) override {
    fm_.backward(ctx, dout, lddo, grad.dx0 + span_.offset, ld0_);
  }

 private:
  FieldSpan span_;
  nn::FmInteraction<T> fm_;
  int64_t ld0_ = 0;
};

/// The DCN cross network over the whole shared input.
template <class T>
class CrossComponent final : public TeacherComponent<T> {
 public:
  CrossComponent(nn::ParamSet<T>& params, int64_t width, int64_t layers)
      : cross_(params, "teacher.cross", width, layers) {}
  int64_t output_width() const override { return cross_.output_width(); }
  void forward(const Context& ctx, const TeacherInput<T>& in, T* out, int64_t ldo,
               bool) override {
    cross_.forward(ctx, in.B, in.x0, out, ldo);
  }
  void backward(const Context& ctx, const T* dout, int64_t lddo,
                const TeacherInputGrad<T>& grad) override {
    cross_.backward(ctx, dout, lddo, grad.dx0);
  }

 private:
  nn::CrossNetwork<T> cross_;
};

/// DIN attention of the target (query fields) over the history (key fields).
template <class T>
class DinComponent final : public TeacherComponent<T> {
 public:
  DinComponent(nn::ParamSet<T>& params, FieldSpan q, FieldSpan k, int64_t history_length,
               const nn::DinAttentionConfig& config)
      : q_(q), k_(k), Tn_(history_length), din_(params, "teacher.din", q.width, config) {}
  int64_t output_width() const override { return q_.width; }
  void forward(const Context& ctx, const TeacherInput<T>& in, T* out, int64_t ldo,
               bool training) override {
    ld0_ = in.ld0;
    ws_ = in.ws;
    din_.forward(ctx, in.B, Tn_, in.x0 + q_.offset, in.ld0, in.seq + k_.offset, in.ws,
                 in.batch->lengths(), out, ldo, training);
  }
  void backward(const Context& ctx, const T* dout, int64_t lddo,
                const TeacherInputGrad<T>& grad) override {
    din_.backward(ctx, dout, lddo, grad.dx0 + q_.offset, ld0_, grad.dseq + k_.offset, ws_);
  }

 private:
  FieldSpan q_, k_;
  int64_t Tn_;
  nn::DinAttention<T> din_;
  int64_t ld0_ = 0, ws_ = 0;
};

/// BST encoder over the target token and the history.
template <class T>
class BstComponent final : public TeacherComponent<T> {
 public:
  BstComponent(nn::ParamSet<T>& params, FieldSpan target, FieldSpan seq, int64_t history_length,
               const nn::BstEncoderConfig& config)
      : t_(target), s_(seq), bst_(params, "teacher.bst", target.width, history_length, config) {}
  int64_t output_width() const override { return bst_.output_width(); }
  void forward(const Context& ctx, const TeacherInput<T>& in, T* out, int64_t ldo,
               bool training) override {
    ld0_ = in.ld0;
    ws_ = in.ws;
    bst_.forward(ctx, in.B, in.x0 + t_.offset, in.ld0, in.seq + s_.offset, nullptr, in.ws,
                 in.batch->token_lengths(), out, ldo, training);
  }
  void backward(const Context& ctx, const T* dout, int64_t lddo,
                const TeacherInputGrad<T>& grad) override {
    bst_.backward(ctx, dout, lddo, grad.dx0 + t_.offset, ld0_, grad.dseq + s_.offset, nullptr, ws_);
  }

 private:
  FieldSpan t_, s_;
  nn::BstEncoder<T> bst_;
  int64_t ld0_ = 0, ws_ = 0;
};

}  // namespace

template <class T>
std::unique_ptr<TeacherComponent<T>> make_teacher_component(
    const std::string& kind, const std::string& key, const DualConfig& c,
    const embedding::EmbeddingBagCollection<T>& emb, nn::ParamSet<T>& params,
    int64_t shared_width) {
  const auto needs_history = [&] {
    LOCKSTEP_CHECK_KEY(emb.sequence_length() > 0, key,
                       "{} = '{}' needs history fields, and no field is a sequence: give the "
                       "history's [[model.fields]] a max_len > 0",
                       key, kind);
  };
  if (kind == "fm") {
    // Default: every pooled field (then the key is the list's, not one of its elements).
    const bool listed = !c.fm_fields.empty();
    std::vector<std::string> fields = c.fm_fields;
    // (The fields of the student's residual tables are not the teacher's.)
    const auto residual = [&](const embedding::FieldConfig& f) {
      for (const auto& t : emb.tables())
        if (t.config().name == f.table) return !t.config().residual_of.empty();
      return false;
    };
    if (!listed)
      for (const auto& f : emb.fields())
        if (f.max_len == 0 && !residual(f)) fields.push_back(f.column);
    const FieldSpan span =
        consecutive_fields(emb, fields, false, "model.teacher.fm.fields", /*list=*/listed);
    const int64_t dim = field_width(emb, emb.field_index(fields[0], false));
    for (size_t i = 0; i < fields.size(); ++i) {
      const int64_t w = field_width(emb, emb.field_index(fields[i], false));
      const std::string element = listed ? fmt::format("model.teacher.fm.fields[{}]", i)
                                         : std::string("model.teacher.fm.fields");
      LOCKSTEP_CHECK_KEY(w == dim, element,
                         "{}: field '{}' is {} wide but '{}' is {}: FM needs fields of one width",
                         element, fields[i], w, fields[0], dim);
    }
    return std::make_unique<FmComponent<T>>(span, dim);
  }
  if (kind == "cross") return std::make_unique<CrossComponent<T>>(params, shared_width, c.cross_layers);
  if (kind == "din") {
    needs_history();
    const FieldSpan q = consecutive_fields(emb, c.din_query, false, "model.teacher.din.query");
    const FieldSpan k = consecutive_fields(emb, c.din_keys, true, "model.teacher.din.keys");
    check_paired_widths(emb, c.din_query, "model.teacher.din.query", c.din_keys,
                        "model.teacher.din.keys");
    return std::make_unique<DinComponent<T>>(params, q, k, emb.sequence_length(),
                                             c.din_attention);
  }
  if (kind == "bst") {
    needs_history();
    const FieldSpan t = consecutive_fields(emb, c.bst_target, false, "model.teacher.bst.target");
    const FieldSpan s = consecutive_fields(emb, c.bst_sequence, true, "model.teacher.bst.sequence");
    check_paired_widths(emb, c.bst_target, "model.teacher.bst.target", c.bst_sequence,
                        "model.teacher.bst.sequence");
    // Here rather than in the encoder, so that the error names the key of the file.
    c.bst.transformer.validate("model.teacher.bst.transformer", t.width);
    return std::make_unique<BstComponent<T>>(params, t, s, emb.sequence_length(), c.bst);
  }
  throw ConfigError(
      key, fmt::format("{} = '{}' is not a component: use fm, cross, din or bst", key, kind));
}

template std::unique_ptr<TeacherComponent<float>> make_teacher_component<float>(
    const std::string&, const std::string&, const DualConfig&,
    const embedding::EmbeddingBagCollection<float>&, nn::ParamSet<float>&, int64_t);
template std::unique_ptr<TeacherComponent<double>> make_teacher_component<double>(
    const std::string&, const std::string&, const DualConfig&,
    const embedding::EmbeddingBagCollection<double>&, nn::ParamSet<double>&, int64_t);

}  // namespace lockstep::models
