#pragma once
// Internal: argument checks shared by the CPU and CUDA implementations of kernels/attention.h,
// so that both reject the same calls with the same messages. Each message names the operation
// and the argument. Host-only; `lengths` checks need host memory (the CPU path).

#include <cstdint>

#include "lockstep/core/error.h"

namespace lockstep::kernels::detail {

/// Throws unless size >= 0: "<op>: <name> = <size> is negative".
inline void check_size(const char* op, const char* name, int64_t size) {
  LOCKSTEP_CHECK(size >= 0, "{}: {} = {} is negative (sizes must be >= 0)", op, name, size);
}

/// Throws unless a row stride covers its row: ld >= width.
inline void check_ld(const char* op, const char* ld_name, int64_t ld, const char* width_name,
                     int64_t width) {
  LOCKSTEP_CHECK(ld >= width, "{}: {} = {} is smaller than the row width {} = {}", op, ld_name, ld,
                 width_name, width);
}

/// Throws unless every lengths[i], i < count, is in [0, max]; names the first bad sample.
inline void check_lengths(const char* op, int64_t count, const int64_t* lengths, int64_t max,
                          const char* max_name) {
  if (count <= 0) return;
  LOCKSTEP_CHECK(lengths != nullptr, "{}: lengths is null", op);
  for (int64_t i = 0; i < count; ++i) {
    LOCKSTEP_CHECK(lengths[i] >= 0 && lengths[i] <= max,
                   "{}: lengths[{}] = {} is outside [0, {} = {}]", op, i, lengths[i], max_name,
                   max);
  }
}

/// Throws unless p is a dropout probability in [0, 1).
inline void check_dropout_p(const char* op, float p) {
  LOCKSTEP_CHECK(p >= 0.0f && p < 1.0f, "{}: p = {} is outside [0, 1)", op, p);
}

/// The size and stride checks of din_unit_forward / din_unit_backward.
inline void check_din_unit_args(const char* op, int64_t B, int64_t Tn, int64_t D, int64_t H,
                                int64_t ldq, int64_t ldk) {
  check_size(op, "B", B);
  check_size(op, "T", Tn);
  check_size(op, "D", D);
  check_size(op, "H", H);
  check_ld(op, "ldq", ldq, "D", D);
  check_ld(op, "ldk", ldk, "D", D);
}

/// Samples of a masked softmax over `rows` rows, `group` consecutive rows per sample.
inline int64_t softmax_samples(int64_t rows, int64_t group) {
  return rows <= 0 ? 0 : (rows + group - 1) / group;
}

}  // namespace lockstep::kernels::detail
