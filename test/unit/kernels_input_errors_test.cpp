// The messages of invalid kernel input (kernels/input_errors.h): the CPU references throw them,
// and a CUDA kernel's device error record is reported through the same functions. Here, on the
// CPU, a record filled as the CUDA kernels fill it (kernels/cuda/embedding.cu, optimizer.cu) must
// read exactly as the CPU's exception for the same input: the GPU tests (test/gpu/
// device_errors_test.cpp) then compare the two end to end on a device.

#include <catch2/catch.hpp>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/embedding.h"
#include "kernels/input_errors.h"
#include "kernels/optimizer.h"
#include "lockstep/core/device_error.h"
#include "lockstep/core/error.h"
#include "test_util.h"

using namespace lockstep;
using kernels::InputError;
using kernels::Pooling;

namespace {

// A record as a CUDA kernel writes it, reported as the host reports it.
std::string device_report(InputError check, const char* op, int64_t position,
                          std::vector<int64_t> args) {
  DeviceErrorRecord record;
  std::memset(&record, 0, sizeof(record));
  record.code = static_cast<int32_t>(check);
  record.launch = 1;
  record.order = kernels::input_error_order(check, position);
  for (size_t i = 0; i < args.size(); ++i) record.args[i] = args[i];
  std::strncpy(record.op, op, sizeof(record.op) - 1);
  return detail::device_error_message(record);
}

}  // namespace

TEST_CASE("A device error record reads as the CPU reference's exception for the same input",
          "[kernels][errors]") {
  Context ctx;
  const int64_t rows = 5, dim = 2;
  const std::vector<float> table(rows * dim, 1.0f);
  std::vector<float> out(4 * dim), dout(4 * dim, 1.0f), grad(8 * dim);
  std::vector<uint64_t> unique(8);
  int64_t count = 0;
  const auto forward = [&](const std::vector<int64_t>& offsets, const std::vector<uint64_t>& ids) {
    return test::error_of([&] {
      kernels::pooled_lookup_forward<float>(
          ctx, Pooling::Sum, static_cast<int64_t>(offsets.size()) - 1, dim, table.data(), rows,
          offsets.data(), ids.data(), out.data(), dim);
    });
  };
  const auto backward = [&](const std::vector<int64_t>& offsets, int64_t nnz) {
    const std::vector<uint64_t> ids(8, 0);
    return test::error_of([&] {
      kernels::pooled_lookup_backward<float>(
          ctx, Pooling::Sum, static_cast<int64_t>(offsets.size()) - 1, dim, offsets.data(),
          ids.data(), nnz, dout.data(), dim, unique.data(), grad.data(), &count);
    });
  };

  // pooled_lookup_forward_kernel
  const uint64_t huge = ~uint64_t{0};
  CHECK(forward({0, 2, 3}, {1, 4, 7}) ==
        device_report(InputError::IdOutOfRange, "pooled_lookup_forward", 2, {2, 7, 1, rows}));
  CHECK(forward({0, 1}, {huge}) == device_report(InputError::IdOutOfRange, "pooled_lookup_forward",
                                                 0, {0, static_cast<int64_t>(huge), 0, rows}));
  CHECK(forward({-2, 1}, {0}) ==
        device_report(InputError::OffsetsStart, "pooled_lookup_forward", 0, {-2, 1}));
  CHECK(forward({0, 3, 1, 4}, {0, 0, 0, 0}) ==
        device_report(InputError::OffsetsDecreasing, "pooled_lookup_forward", 1, {1, 3, 1}));
  // position_bag_kernel (pooled_lookup_backward)
  CHECK(backward({1, 2, 4}, 4) ==
        device_report(InputError::OffsetsStart, "pooled_lookup_backward", 0, {1, 0}));
  CHECK(backward({0, 3, 1, 4}, 4) ==
        device_report(InputError::OffsetsDecreasing, "pooled_lookup_backward", 1, {1, 3, 1}));
  CHECK(backward({0, 1, 3}, 4) ==
        device_report(InputError::OffsetsEnd, "pooled_lookup_backward", 0, {2, 3, 4}));
  // sparse_adagrad_kernel, sparse_adam_kernel
  std::vector<float> state(rows * dim, 0.0f), t(rows * dim, 0.0f), g(4 * dim, 1.0f);
  const std::vector<uint64_t> ids = {0, 2, 5, 1};
  const int64_t too_many = 5, four = 4;
  CHECK(test::error_of([&] {
          kernels::sparse_adagrad_update<float>(ctx, {}, 1.0f, dim, &too_many, 4, ids.data(),
                                                g.data(), t.data(), rows, state.data());
        }) == device_report(InputError::CountOutOfRange, "sparse_adagrad_update", 0, {5, 4}));
  CHECK(test::error_of([&] {
          kernels::sparse_adam_update<float>(ctx, {}, 1, 1.0f, dim, &four, 4, ids.data(), g.data(),
                                             t.data(), rows, state.data(), state.data());
        }) == device_report(InputError::UniqueIdOutOfRange, "sparse_adam_update", 2, {2, 5, rows}));
}

TEST_CASE("Input errors sort in the order the CPU references check them", "[kernels][errors]") {
  using kernels::input_error_order;
  // Offsets before ids (forward), offsets[0] before a decreasing pair before the end (backward),
  // the count before the ids (sparse updates); then by position.
  CHECK(input_error_order(InputError::OffsetsStart, 0) <
        input_error_order(InputError::OffsetsDecreasing, 0));
  CHECK(input_error_order(InputError::OffsetsDecreasing, int64_t{1} << 40) <
        input_error_order(InputError::OffsetsEnd, 0));
  CHECK(input_error_order(InputError::OffsetsDecreasing, 7) <
        input_error_order(InputError::IdOutOfRange, 0));
  CHECK(input_error_order(InputError::IdOutOfRange, 3) <
        input_error_order(InputError::IdOutOfRange, 4));
  CHECK(input_error_order(InputError::CountOutOfRange, 0) <
        input_error_order(InputError::UniqueIdOutOfRange, 0));
}

TEST_CASE("A device error record with an unknown code is reported as a lockstep bug",
          "[kernels][errors]") {
  DeviceErrorRecord record;
  std::memset(&record, 0, sizeof(record));
  record.code = 99;
  std::memcpy(record.op, "some_kernel_with_a_name_of_32_ch", 32);  // no NUL inside the record
  const std::string message = detail::device_error_message(record);
  CHECK(message.find("some_kernel_with_a_name_of_32_ch") != std::string::npos);
  CHECK(message.find("unknown input error 99") != std::string::npos);
  CHECK(message.find("lockstep bug") != std::string::npos);
}

TEST_CASE("A CPU context has no device error record and nothing to report", "[core][errors]") {
  Context ctx;
  CHECK(ctx.device_error() == nullptr);
  CHECK_NOTHROW(ctx.check_device_errors());
  const uint64_t first = ctx.next_launch_id();
  CHECK(first != 0);
  CHECK(ctx.next_launch_id() != first);
}
