#pragma once
// DeviceErrorRecord: where CUDA kernels report invalid input (an id past the table, CSR offsets
// that go backwards, a row count past its bound) without a host synchronisation.
//
// A CPU kernel reads its input on the host and throws lockstep::Error at once. A CUDA kernel
// cannot throw, and the data it would check is on the device, so each CUDA Context owns one
// record in device memory (Context::device_error()). A kernel that finds a bad element skips it
// (it never reads or writes out of bounds) and records the error; the host learns of it at its
// next read of device memory: to_host() copies the record with its data and throws, and
// Context::check_device_errors() does the same without data. The report carries the message the
// CPU reference throws for the same input, made by the same function (kernels/input_errors.h),
// and resets the record.
//
// Which error is reported when there are several: the first launch (in stream order) that found
// one owns the record until it is reported; within that launch the error that the CPU reference
// checks first (the smallest `order`) wins, so the message does not depend on thread scheduling
// and equals the CPU's even when a batch holds several bad elements.

#include <cstdint>
#include <string>

namespace lockstep {

/// The record's layout, shared by host and device code (plain data, zero = no error).
struct DeviceErrorRecord {
  int32_t code;     // 0: no error; otherwise a kernels::InputError naming the check that failed
  uint32_t lock;    // device-side spin lock held while a kernel writes the fields below
  uint64_t launch;  // Context::next_launch_id() of the launch that recorded the error
  uint64_t order;   // the error's place in the CPU reference's check order (smallest wins)
  int64_t args[4];  // the values the message names (ids are stored as their uint64 bits)
  char op[32];      // the op that found it, NUL-terminated ("pooled_lookup_forward")
};
static_assert(sizeof(DeviceErrorRecord) == 88, "DeviceErrorRecord is shared with device code");

namespace detail {
/// The message of a recorded error: the text the CPU reference throws for the same input.
/// Defined with the kernels (kernels/cpu/input_errors.cpp), which own the text of every input
/// error, so that core reports it without including kernel headers.
std::string device_error_message(const DeviceErrorRecord& record);
}  // namespace detail

}  // namespace lockstep
