#pragma once
// Internal: the dense gradients all-reduced in buckets that start while the backward runs
// (docs/lockstep.md, "Buckets").

#include <cstdint>
#include <vector>

#include "lockstep/comm/communicator.h"
#include "lockstep/nn/param_set.h"

namespace lockstep::train {

/// The trainable region of the gradient buffer, [0, trainable_size()), cut at parameter
/// boundaries into buckets of about `bucket_bytes`, from its end: the last layers' gradients,
/// which the backward finishes first, are bucket 0. Every rank makes the same cut (it depends on
/// the parameter layout only) and starts the buckets in index order, so the collectives match.
///
/// A bucket starts (Communicator::all_reduce_sum_start) during the backward once every
/// parameter in it has received as many gradient writes (ParamSet::grad_written) as in the
/// first backward this object saw; a parameter the first backward never wrote holds its bucket
/// until flush(). A write into a bucket already started throws Error (the backward differs from
/// the first one: the step fails on every rank instead of summing a stale gradient). Since the
/// communicators sum every element in rank order wherever it lies in a call, the sums are the
/// bits one all-reduce of the whole buffer gives.
class GradientBuckets final : public nn::GradListener {
 public:
  struct Bucket {
    int64_t begin = 0, end = 0;  // elements of the gradient buffer
    std::vector<int> handles;
  };

  /// `params` (allocated) and `comm` must outlive this object. bucket_bytes <= 0: no buckets.
  GradientBuckets(nn::ParamSet<float>& params, comm::Communicator& comm, int64_t bucket_bytes);
  ~GradientBuckets() override;
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  const std::vector<Bucket>& buckets() const { return buckets_; }
  /// Elements [0, covered()) are summed by the buckets (0 without buckets).
  int64_t covered() const { return buckets_.empty() ? 0 : buckets_.front().end; }

  /// Before the forward: listens to the step's gradient writes.
  void begin_step();
  void grad_written(const Context& ctx, int handle) override;
  /// After the backward, or instead of it: starts every bucket not started yet, in order, and
  /// stops listening. `backward_completed`: this step ran a whole backward (the first such one
  /// sets the write counts later steps start buckets by).
  void flush(const Context& ctx, bool backward_completed);
  /// Completes the started sums (Communicator::all_reduce_wait).
  void wait(const Context& ctx);
  /// Zeroes the gradients outside the started buckets (a step whose backward failed part-way:
  /// what has started must not change until wait()).
  void zero_unstarted(const Context& ctx);
  /// Buckets that started during the last step's backward, before flush().
  int started_early() const { return started_early_; }

 private:
  void start_ready(const Context& ctx);
  void start(const Context& ctx);

  nn::ParamSet<float>& params_;
  comm::Communicator& comm_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucket_of_;  // handle -> bucket (-1: not trainable)
  std::vector<int> writes_;     // handle -> writes this step
  std::vector<int> expected_;   // handle -> writes of the first backward
  std::vector<int> waiting_;    // bucket -> its handles below their expected writes
  bool learned_ = false, listening_ = false;
  size_t next_ = 0;  // buckets [0, next_) started this step
  int started_early_ = 0;
};

}  // namespace lockstep::train
