// The feasign store on the CPU (issue 13, docs/feasign_store.md): KeyIndex find / insert / erase
// throughput (keys/s on one thread, thread CPU time, so other processes sharing the cores do not
// inflate it) beside std::unordered_map on the same keys, the bytes a dynamic table spends per
// feasign, and DynamicTable::apply (a step's merged records: find, insert, counts, lr and embedx
// updates) in records/s.
//
// With a CUDA device: DynamicTable::apply on the device (records/s of device time), and the
// device key index kernels (kernels/key_index.h) — insert, find of held and of absent keys — in
// keys/s of device time (published HierarchicalKV figure for scale:
// about 2.5e9 finds/s on an A100, dim 8).
//
//   lockstep-bench-feasign [--capacity N] [--dim D] [--records N] [--reps N]

#include <CLI/CLI.hpp>

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <unordered_map>
#include <vector>

#include "bench/bench_util.h"
#include "kernels/key_index.h"
#include "lockstep/core/device.h"
#include "lockstep/embedding/dynamic_table.h"
#include "lockstep/embedding/key_index.h"

using namespace lockstep;

namespace {
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

/// Median over `reps` runs of the keys/s of fn(), which handles `n` keys per run; `reset` runs
/// (untimed) before each.
template <class Reset, class Fn>
double rate(int reps, int64_t n, Reset&& reset, Fn&& fn) {
  std::vector<double> r;
  for (int i = 0; i < reps; ++i) {
    reset();
    const double t0 = thread_cpu_seconds();
    fn();
    r.push_back(static_cast<double>(n) / std::max(thread_cpu_seconds() - t0, 1e-9));
  }
  std::sort(r.begin(), r.end());
  return r[r.size() / 2];
}

volatile int64_t g_sink = 0;  // keeps lookups from being optimised away
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockstep feasign store: key index and dynamic table throughput, bytes per feasign"};
  int64_t capacity = 1 << 22, dim = 16, records = 1 << 16;
  int reps = 3;
  app.add_option("--capacity", capacity, "feasigns the index / table holds")
      ->check(CLI::Range(int64_t{1024}, int64_t{1} << 30));
  app.add_option("--dim", dim, "embedx dimension")->check(CLI::Range(int64_t{1}, int64_t{1024}));
  app.add_option("--records", records, "records of one DynamicTable::apply")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  app.add_option("--reps", reps, "repetitions (median)")->check(CLI::Range(1, 100));
  CLI11_PARSE(app, argc, argv);

  std::mt19937_64 rng(1);
  std::vector<uint64_t> keys(static_cast<size_t>(capacity)), misses(keys.size()), order(keys);
  for (auto& k : keys) k = rng();
  for (auto& k : misses) k = rng();
  order = keys;
  std::shuffle(order.begin(), order.end(), rng);
  const int64_t n = capacity;

  std::printf("key index, %lld keys (random 64-bit), one thread, keys/s (median of %d)\n",
              static_cast<long long>(n), reps);
  std::printf("%-28s %14s %16s\n", "operation", "KeyIndex", "unordered_map");
  embedding::KeyIndex index(capacity);
  std::unordered_map<uint64_t, int64_t> map;
  const double ins = rate(reps, n, [&] { index.clear(); }, [&] {
    for (uint64_t k : keys) index.insert(k);
  });
  const double ins_map = rate(reps, n, [&] { map = {}; map.reserve(keys.size()); }, [&] {
    int64_t s = 0;
    for (uint64_t k : keys) map.emplace(k, s++);
  });
  std::printf("%-28s %14.3g %16.3g\n", "insert (to full)", ins, ins_map);
  const double hit = rate(reps, n, [] {}, [&] {
    int64_t s = 0;
    for (uint64_t k : order) s += index.find(k);
    g_sink = s;
  });
  const double hit_map = rate(reps, n, [] {}, [&] {
    int64_t s = 0;
    for (uint64_t k : order) s += map.find(k)->second;
    g_sink = s;
  });
  std::printf("%-28s %14.3g %16.3g\n", "find, held keys", hit, hit_map);
  const double miss = rate(reps, n, [] {}, [&] {
    int64_t s = 0;
    for (uint64_t k : misses) s += index.find(k);
    g_sink = s;
  });
  const double miss_map = rate(reps, n, [] {}, [&] {
    int64_t s = 0;
    for (uint64_t k : misses) s += map.count(k) ? 1 : 0;
    g_sink = s;
  });
  std::printf("%-28s %14.3g %16.3g\n", "find, absent keys", miss, miss_map);
  // Churn on the full index: erase one held key, insert an absent one (2 operations).
  const int64_t churn = std::min<int64_t>(n, 1 << 20);
  const double chr = rate(reps, 2 * churn, [] {}, [&] {
    for (int64_t i = 0; i < churn; ++i) {
      index.erase(order[static_cast<size_t>(i)]);
      index.insert(misses[static_cast<size_t>(i)]);
    }
    for (int64_t i = 0; i < churn; ++i) {  // back, so every repetition starts alike
      index.erase(misses[static_cast<size_t>(i)]);
      index.insert(order[static_cast<size_t>(i)]);
    }
  });
  std::printf("%-28s %14.3g %16s\n", "erase + insert, full index", 2 * chr, "");

  // Bytes per feasign of a dynamic table with adagrad (row-wise accumulator) and with adam.
  const auto buckets = static_cast<size_t>(kernels::key_index_buckets(capacity));
  // The store (kernels/feasign_store.h): buckets (key, slot), per slot its key and a free-slot
  // entry; statistics: show, click, delta score, unseen days and a flags byte.
  const double index_bytes =
      static_cast<double>(buckets * (8 + 8) + static_cast<size_t>(capacity) * (8 + 8)) /
      static_cast<double>(capacity);
  const double stats = 4 * 4 + 1;
  const double adagrad = 4.0 * (1 + 1 + dim + 1), adam = 4.0 * (3 + 3 * dim);
  std::printf("\nbytes per feasign slot (capacity %lld, dim %lld): key index %.1f, statistics "
              "%.0f, weights + optimizer state: adagrad %.0f, adam %.0f; total adagrad %.1f, "
              "adam %.1f (a hashed table row: adagrad %.0f, adam %.0f)\n",
              static_cast<long long>(capacity), static_cast<long long>(dim), index_bytes, stats,
              adagrad, adam, index_bytes + stats + adagrad, index_bytes + stats + adam,
              4.0 * (dim + 1), 4.0 * 3 * dim);

  // DynamicTable::apply: a step's merged records, half held keys, half new, on a table filled
  // to half its capacity (no eviction).
  nn::OptimizerConfig opt;
  opt.kind = nn::OptimizerKind::Adagrad;
  opt.lr = 0.1f;
  embedding::AccessorConfig accessor;
  accessor.embedx_threshold = 0;  // every record updates embedx too
  Context ctx;
  const int64_t width = dim + embedding::kDynamicRecordExtra;
  const auto grad_of = [&](const std::vector<uint64_t>& k) {
    embedding::SparseGrad<float> g;
    g.reserve(ctx, static_cast<int64_t>(k.size()), width);
    for (size_t i = 0; i < k.size(); ++i) {
      g.ids()[i] = k[i];
      for (int64_t j = 0; j < width; ++j) g.rows()[static_cast<int64_t>(i) * width + j] = 0.01f;
    }
    *g.count() = static_cast<int64_t>(k.size());
    g.mark_ready();
    return g;
  };
  std::vector<uint64_t> fill(keys.begin(), keys.begin() + capacity / 2);
  std::sort(fill.begin(), fill.end());
  const auto fill_grad = grad_of(fill);
  std::vector<uint64_t> step_keys;
  for (int64_t i = 0; i < records; ++i)
    step_keys.push_back(i % 2 ? fill[static_cast<size_t>(i) * 7 % fill.size()]
                              : misses[static_cast<size_t>(i)]);
  std::sort(step_keys.begin(), step_keys.end());
  step_keys.erase(std::unique(step_keys.begin(), step_keys.end()), step_keys.end());
  const auto step_grad = grad_of(step_keys);
  std::unique_ptr<embedding::DynamicTable<float>> table;
  int64_t step = 1;
  const double apply = rate(
      reps, static_cast<int64_t>(step_keys.size()),
      [&] {
        table = std::make_unique<embedding::DynamicTable<float>>(ctx, capacity, dim, 0.05f,
                                                                 accessor, 0, opt, 1, 2);
        table->apply(ctx, fill_grad, 1.0f, step++);
      },
      [&] { table->apply(ctx, step_grad, 1.0f, step++); });
  std::printf("\nDynamicTable::apply, %zu records (half held, half new), dim %lld, adagrad: "
              "%.3g records/s on one thread\n",
              step_keys.size(), static_cast<long long>(dim), apply);

  if (cuda_device_count() == 0) {
    std::printf(
        "\ndevice key index and DynamicTable::apply on a device: skipped (no CUDA device)\n");
    return 0;
  }
  Context gpu(Device::cuda(0));
  {  // DynamicTable::apply on the device, the same records again and again (held after the
     // first: the steady state of a table with room), no host round trip
    const auto to_device = [&](const embedding::SparseGrad<float>& h) {
      embedding::SparseGrad<float> g;
      g.reserve(gpu, h.capacity(), width);
      copy_bytes(gpu, g.ids(), gpu.device(), h.ids(), Device::cpu(), h.capacity() * 8);
      copy_bytes(gpu, g.rows(), gpu.device(), h.rows(), Device::cpu(),
                 static_cast<size_t>(h.capacity() * width) * sizeof(float));
      copy_bytes(gpu, g.count(), gpu.device(), h.count(), Device::cpu(), sizeof(int64_t));
      g.mark_ready();
      return g;
    };
    const auto fill_dev = to_device(fill_grad), step_dev = to_device(step_grad);
    embedding::DynamicTable<float> dev_table(gpu, capacity, dim, 0.05f, accessor, 0, opt, 1, 2);
    dev_table.apply(gpu, fill_dev, 1.0f, step++);
    const double ms = bench::median_ms(
        gpu, [&] { dev_table.apply(gpu, step_dev, 1.0f, step++); }, 2, reps);
    std::printf(
        "\nDynamicTable::apply on %s, %zu held records: %.3g records/s of device time "
        "(%.3f ms per apply)\n",
        gpu.device().str().c_str(), step_keys.size(),
        static_cast<double>(step_keys.size()) / (ms * 1e-3), ms);
  }
  const int64_t gb = static_cast<int64_t>(buckets), mask = gb - 1;
  Tensor<uint64_t> bk(gpu, {gb});
  Tensor<int64_t> bs(gpu, {gb});
  std::vector<int64_t> slot_ids(keys.size());
  for (size_t i = 0; i < slot_ids.size(); ++i) slot_ids[i] = static_cast<int64_t>(i);
  auto dk = make_tensor(gpu, keys), dm = make_tensor(gpu, misses), dorder = make_tensor(gpu, order);
  auto ds = make_tensor(gpu, slot_ids);
  Tensor<int64_t> out(gpu, {n});
  const std::vector<int64_t> empty_slots(static_cast<size_t>(gb), kernels::kEmptyBucket);
  const auto reset = [&] {
    copy_bytes(gpu, bs.data(), gpu.device(), empty_slots.data(), Device::cpu(), bs.bytes());
  };
  std::vector<double> ins_ms;
  for (int i = 0; i < reps; ++i) {
    reset();
    ins_ms.push_back(bench::median_ms(gpu, [&] {
      kernels::key_index_insert(gpu, bk.data(), bs.data(), mask, n, dk.data(), ds.data());
    }, 0, 1));
  }
  std::sort(ins_ms.begin(), ins_ms.end());
  const double find_hit_ms = bench::median_ms(gpu, [&] {
    kernels::key_index_find(gpu, bk.data(), bs.data(), mask, n, dorder.data(), out.data());
  }, 2, reps);
  const double find_miss_ms = bench::median_ms(gpu, [&] {
    kernels::key_index_find(gpu, bk.data(), bs.data(), mask, n, dm.data(), out.data());
  }, 2, reps);
  const auto per_s = [&](double ms) { return static_cast<double>(n) / (ms * 1e-3); };
  std::printf("\ndevice key index (%s), %lld keys, load 1/2, keys/s of device time: insert %.3g, "
              "find held %.3g, find absent %.3g\n",
              gpu.device().str().c_str(), static_cast<long long>(n),
              per_s(ins_ms[ins_ms.size() / 2]), per_s(find_hit_ms), per_s(find_miss_ms));
  return 0;
}
