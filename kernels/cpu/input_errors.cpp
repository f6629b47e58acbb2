// The messages of kernels/input_errors.h, and the report of a CUDA kernel's device error record
// (lockstep/core/device_error.h) through them.

#include "kernels/input_errors.h"

#include <fmt/format.h>

#include <cstring>

#include "lockstep/core/device_error.h"

namespace lockstep::kernels {

std::string offsets_start_message(const char* op, int64_t first, bool window) {
  return fmt::format("{}: offsets[0] = {} but must be {} (CSR offsets start at 0)", op, first,
                     window ? ">= 0" : "0");
}

std::string offsets_decreasing_message(const char* op, int64_t b, int64_t begin, int64_t end) {
  return fmt::format(
      "{}: offsets[{}] = {} < offsets[{}] = {}: sample {} has a negative number of ids (offsets "
      "must be non-decreasing)",
      op, b + 1, end, b, begin, b);
}

std::string offsets_end_message(const char* op, int64_t batch, int64_t last, int64_t nnz) {
  return fmt::format("{}: nnz={} but offsets[{}] = {}", op, nnz, batch, last);
}

std::string id_out_of_range_message(const char* op, int64_t j, uint64_t id, int64_t b,
                                    int64_t rows) {
  return fmt::format("{}: ids[{}] = {} (sample {}) is out of range for a table of {} rows", op, j,
                     id, b, rows);
}

std::string count_out_of_range_message(const char* op, int64_t count, int64_t max_unique) {
  return fmt::format("{}: num_unique = {} is outside [0, max_unique = {}]", op, count, max_unique);
}

std::string unique_id_out_of_range_message(const char* op, int64_t u, uint64_t id, int64_t rows) {
  return fmt::format("{}: unique_ids[{}] = {} is out of range for a table of {} rows", op, u, id,
                     rows);
}

std::string row_out_of_range_message(const char* op, RowArray array, int64_t i, int64_t row,
                                     int64_t rows) {
  return fmt::format("{}: {}[{}] = {} is outside [0, {})", op,
                     array == RowArray::Slots   ? "slots"
                     : array == RowArray::Order ? "order"
                                                : "index",
                     i, row, rows);
}

std::string index_full_message(const char* op, int64_t i, uint64_t key) {
  return fmt::format("{}: no free bucket for keys[{}] = {}: the key index is full", op, i, key);
}

std::string input_error_message(InputError check, const char* op, const int64_t* a) {
  switch (check) {
    case InputError::None:
      break;
    case InputError::OffsetsStart:
      return offsets_start_message(op, a[0], a[1] != 0);
    case InputError::OffsetsDecreasing:
      return offsets_decreasing_message(op, a[0], a[1], a[2]);
    case InputError::OffsetsEnd:
      return offsets_end_message(op, a[0], a[1], a[2]);
    case InputError::IdOutOfRange:
      return id_out_of_range_message(op, a[0], static_cast<uint64_t>(a[1]), a[2], a[3]);
    case InputError::CountOutOfRange:
      return count_out_of_range_message(op, a[0], a[1]);
    case InputError::UniqueIdOutOfRange:
      return unique_id_out_of_range_message(op, a[0], static_cast<uint64_t>(a[1]), a[2]);
    case InputError::RowOutOfRange:
      return row_out_of_range_message(op, static_cast<RowArray>(a[3]), a[0], a[1], a[2]);
    case InputError::IndexFull:
      return index_full_message(op, a[0], static_cast<uint64_t>(a[1]));
  }
  return fmt::format(
      "internal error: {} recorded unknown input error {} on the device (please report this as "
      "a lockstep bug)",
      op, static_cast<int32_t>(check));
}

}  // namespace lockstep::kernels

namespace lockstep::detail {

std::string device_error_message(const DeviceErrorRecord& record) {
  char op[sizeof(record.op) + 1] = {};
  std::memcpy(op, record.op, sizeof(record.op));  // NUL-terminated even if the record is not
  return kernels::input_error_message(static_cast<kernels::InputError>(record.code), op,
                                      record.args);
}

}  // namespace lockstep::detail
