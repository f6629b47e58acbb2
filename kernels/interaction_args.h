#pragma once
// Internal: argument checks shared by the CPU and CUDA implementations of kernels/interaction.h,
// so that both reject the same calls with the same messages (each names the operation and the
// argument). Host-only; sizes and strides only, never the data.

#include <cstdint>

#include "kernels/attention_args.h"  // check_size, check_ld

namespace lockstep::kernels::detail {

/// Sizes of fm_forward / fm_backward, and the stride of v: one sample's F·D field values.
inline void check_fm_args(const char* op, int64_t B, int64_t F, int64_t D, int64_t ldv) {
  check_size(op, "B", B);
  check_size(op, "F", F);
  check_size(op, "D", D);
  check_ld(op, "ldv", ldv, "F*D", F * D);
}

/// Sizes of cross_forward / cross_backward (all operands are contiguous).
inline void check_cross_args(const char* op, int64_t B, int64_t n) {
  check_size(op, "B", B);
  check_size(op, "n", n);
}

/// Sizes and strides of squared_error; ldda only matters when da is written.
inline void check_squared_error_args(const char* op, int64_t rows, int64_t n, int64_t lda,
                                     int64_t ldt, bool has_da, int64_t ldda) {
  check_size(op, "rows", rows);
  check_size(op, "n", n);
  check_ld(op, "lda", lda, "n", n);
  check_ld(op, "ldt", ldt, "n", n);
  if (has_da) check_ld(op, "ldda", ldda, "n", n);
}

}  // namespace lockstep::kernels::detail
