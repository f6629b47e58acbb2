#pragma once
// Errors in the data a kernel is given (not its sizes, which the dispatchers check): CSR offsets
// that do not describe bags, ids past their table, row counts past their bound.
//
// Each check has ONE message function below. The CPU references throw lockstep::Error with it;
// the CUDA kernels record the check and its values in the context's device error record
// (lockstep/core/device_error.h, kernels/cuda/input_errors.cuh), and the host turns the record
// into the same message with input_error_message(). The CPU and CUDA texts are therefore equal
// by construction, and a test can require equality.

#include <cstdint>
#include <string>

namespace lockstep::kernels {

/// The checks, in the order every CPU reference runs them: a kernel that finds several bad
/// elements reports the one with the smallest (check, position), as the CPU does. The comments
/// list the record's args of each.
enum class InputError : int32_t {
  None = 0,
  OffsetsStart = 1,        // offsets[0] (must be 0, or >= 0 for a window), window (0 or 1)
  OffsetsDecreasing = 2,   // b, offsets[b], offsets[b + 1] (offsets[b + 1] < offsets[b])
  OffsetsEnd = 3,          // batch, offsets[batch], nnz (offsets[batch] != nnz)
  IdOutOfRange = 4,        // j, ids[j], the sample (bag) of position j, rows
  CountOutOfRange = 5,     // num_unique, max_unique (num_unique outside [0, max_unique])
  UniqueIdOutOfRange = 6,  // u, unique_ids[u], rows
  RowOutOfRange = 7,       // i, array[i], rows, the array (RowArray)
  IndexFull = 8,           // i, keys[i] (no free bucket left on the key's probe)
};

/// The index arrays a RowOutOfRange names.
enum class RowArray : int64_t { Index = 0, Slots = 1, Order = 2 };

/// Where an error sorts among the errors of one launch: by check, then by position (the
/// element the message names first). Positions are array indices, < 2^56.
constexpr uint64_t input_error_order(InputError check, int64_t position) {
  return (static_cast<uint64_t>(check) << 56) | static_cast<uint64_t>(position);
}

/// "<op>: offsets[0] = 3 but must be 0 (CSR offsets start at 0)"; `window`: offsets[0] may be
/// > 0 (the bags are a window of a larger CSR) and must be ">= 0".
std::string offsets_start_message(const char* op, int64_t first, bool window);
/// offsets[b + 1] = `end` < offsets[b] = `begin`: sample b has a negative number of ids.
std::string offsets_decreasing_message(const char* op, int64_t b, int64_t begin, int64_t end);
/// offsets[batch] = `last` differs from the nnz the caller passed.
std::string offsets_end_message(const char* op, int64_t batch, int64_t last, int64_t nnz);
/// ids[j] = id of sample b is not a row of a table of `rows` rows.
std::string id_out_of_range_message(const char* op, int64_t j, uint64_t id, int64_t b,
                                    int64_t rows);
/// num_unique = count is outside [0, max_unique].
std::string count_out_of_range_message(const char* op, int64_t count, int64_t max_unique);
/// unique_ids[u] = id is not a row of a table of `rows` rows.
std::string unique_id_out_of_range_message(const char* op, int64_t u, uint64_t id, int64_t rows);

/// <array>[i] = row is not a row of [0, rows) (the row kernels of kernels/feasign.h; a key run's
/// position in keyed_lookup_backward).
std::string row_out_of_range_message(const char* op, RowArray array, int64_t i, int64_t row,
                                     int64_t rows);

/// keys[i] = key found no free bucket: the key index is full (its owner keeps the load <= 1/2,
/// so this is a caller's bug). Which key is named may differ between the CPU, which inserts in
/// order, and CUDA, whose inserts race.
std::string index_full_message(const char* op, int64_t i, uint64_t key);
/// The message of `check` with the args listed at InputError: one of the functions above.
std::string input_error_message(InputError check, const char* op, const int64_t* args);

}  // namespace lockstep::kernels
