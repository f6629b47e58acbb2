#pragma once
// Helpers for CUDA-vs-CPU parity tests.

#include "test_util.h"

#include "lockstep/core/context.h"
#include "lockstep/core/tensor.h"

namespace lockstep::test {

/// The CPU reference context and a CUDA context on device 0.
struct ParityContexts {
  Context cpu{Device::cpu()};
  Context gpu{Device::cuda(0)};
};

/// A device copy of a host vector.
template <class T>
Tensor<T> to_gpu(const Context& gpu, const std::vector<T>& host) {
  return make_tensor(gpu, host);
}

}  // namespace lockstep::test
