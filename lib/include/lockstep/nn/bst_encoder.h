#pragma once
// The sequence part of BST, reusable by any model: builds tokens from a target (pooled columns)
// and a history (sequence columns), runs transformer blocks over them and reads out a vector.

#include <memory>
#include <string>
#include <vector>

#include "lockstep/nn/transformer.h"

namespace lockstep::nn {

enum class BstReadout { Target, Mean, Concat };
/// "target", "mean", "concat"; parse throws Error naming `field` otherwise.
const char* bst_readout_name(BstReadout o);
BstReadout parse_bst_readout(std::string_view name, std::string_view field);

struct BstEncoderConfig {
  int64_t blocks = 1;
  TransformerConfig transformer;
  BstReadout readout = BstReadout::Target;
};

/// Tokens (B, L = T + 1, W): position 0 = the target, 1..len = the history newest first, the
/// rest padding; a learned position embedding "<name>.position" (L, W) is added, and optionally
/// a time-gap embedding to the history tokens. The blocks attend over the len + 1 valid tokens.
/// Read-out: the target token (W), the mean of the valid tokens (W), or every token with padding
/// zeroed (L·W).
template <class T>
class BstEncoder {
 public:
  BstEncoder(ParamSet<T>& params, const std::string& name, int64_t token_width,
             int64_t history_length, BstEncoderConfig config);
  ~BstEncoder();

  int64_t output_width() const;

  /// target: (B, W) row stride ldt; history: (B, T, ·) with position row stride ldh, the
  /// W history columns at `history` (and the W time-gap columns at `gap`, or nullptr);
  /// token_lengths: (B) on ctx's device, valid tokens per sample = history length + 1 (the
  /// staged batch's DeviceBatch::token_lengths(); kept until backward); out: (B,
  /// output_width()) row stride ldo (overwritten).
  void forward(const Context& ctx, int64_t B, const T* target, int64_t ldt, const T* history,
               const T* gap, int64_t ldh, const int64_t* token_lengths, T* out, int64_t ldo,
               bool training);
  /// dout: (B, output_width()) row stride lddo. ACCUMULATES the target gradient (+=, stride
  /// lddt) and the history (and time-gap) gradients (+=, stride lddh), and the parameters'.
  void backward(const Context& ctx, const T* dout, int64_t lddo, T* dtarget, int64_t lddt,
                T* dhistory, T* dgap, int64_t lddh);

 private:
  ParamSet<T>* params_;
  int64_t W_, Tn_;
  BstEncoderConfig config_;
  typename ParamSet<T>::Handle position_;
  std::vector<std::unique_ptr<TransformerBlock<T>>> blocks_;
  int64_t B_ = 0;
  const int64_t* tok_lengths_ = nullptr;  // (B) on the device, of the last forward
  Tensor<T> mean_weights_, dweights_, masked_, dtok_a_, dtok_b_;
  std::vector<Tensor<T>> tokens_;  // blocks + 1 activations, (B, L, W) each
};

extern template class BstEncoder<float>;
extern template class BstEncoder<double>;

}  // namespace lockstep::nn
