// The binary data cache (lockstep/data/cache.h) on din-bench records: writing time, file size and
// compression ratio, and the decoding speed that matters for training, records/s of
// CacheReader::read_block on one thread with the file in the page cache. The target is
// at least 1M din-bench records/s per core. For scale, the same records through the text format
// (write_text / TextReader) on a smaller sample.
//
//   lockstep-bench-data [--records N] [--block-records N] [--zstd-level N] [--reps N]
//                       [--threads N] [--text-records N] [--dir DIR] [--keep]
//   lockstep-bench-data --cache FILE [--reps N] [--threads N]    # time reading an existing cache
//
// Decoded MB/s counts the bytes a Batch holds (labels, dense, sample ids, CSR offsets and keys:
// CacheReader::block_decoded_bytes). Each repetition reads every block once into one reused
// Batch; the first pass (not timed) warms the page cache and the Batch's capacity.

#include <CLI/CLI.hpp>

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "lockstep/core/error.h"
#include "lockstep/data/cache.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/data/text_format.h"

using namespace lockstep;
using lockstep::bench::median;
using Clock = std::chrono::steady_clock;

namespace {
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// CPU seconds used by the calling thread: unlike wall time, not inflated when other processes
/// share the cores.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockstep data cache: write time, size and single-core decoding speed (din-bench)"};
  int64_t records = 1000000, block_records = 65536, text_records = 100000;
  int level = data::CacheWriterOptions{}.zstd_level, reps = 5, threads = 1;
  std::string dir_flag, existing;
  bool keep = false;
  app.add_option("--records", records, "din-bench records to write")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 32));
  app.add_option("--block-records", block_records, "CacheWriterOptions::block_records")
      ->check(CLI::Range(int64_t{1}, data::kMaxCacheBlockRecords));
  app.add_option("--zstd-level", level, "CacheWriterOptions::zstd_level")->check(CLI::Range(1, 19));
  app.add_option("--reps", reps, "timed passes over the file")->check(CLI::Range(1, 1000));
  app.add_option("--threads", threads, "also time this many threads decoding blocks at once")
      ->check(CLI::Range(1, 256));
  app.add_option("--text-records", text_records, "records for the text-format comparison (0: none)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--dir", dir_flag, "directory for the files (default: the temp directory)");
  app.add_flag("--keep", keep, "keep the files");
  app.add_option("--cache", existing, "time reading this cache instead of writing one")
      ->check(CLI::ExistingFile);
  CLI11_PARSE(app, argc, argv);
  try {
    namespace fs = std::filesystem;
    const fs::path dir = dir_flag.empty() ? fs::temp_directory_path() : fs::path(dir_flag);
    const std::string stem = "lockstep-bench-data-" + std::to_string(::getpid());
    const std::string cache_path = (dir / (stem + ".cache")).string();
    const std::string text_path = (dir / (stem + ".tsv")).string();

    std::optional<data::SyntheticGenerator> gen;  // (45 MB of tables: only when writing)
    const double mb = 1e-6;
    data::CacheInfo info;
    if (!existing.empty()) {
      info = data::CacheReader(existing).info();
      records = info.records;
      text_records = 0;
      keep = true;
      std::printf("%s: %lld records in %zu blocks, %.1f MB, decoded %.1f MB, ratio %.2fx\n",
                  existing.c_str(), static_cast<long long>(records), info.block_records.size(),
                  info.file_bytes * mb, info.decoded_bytes * mb,
                  static_cast<double>(info.decoded_bytes) / info.file_bytes);
    } else {
      gen.emplace(data::SyntheticConfig::din_bench());
      std::printf(
          "din-bench records: %lld, block_records %lld, zstd level %d, %u hardware threads\n",
          static_cast<long long>(records), static_cast<long long>(block_records), level,
          std::thread::hardware_concurrency());

      // Write: generation is timed apart from appending (the cache's own cost).
      data::CacheWriterOptions options;
      options.block_records = block_records;
      options.zstd_level = level;
      options.source = "lockstep-bench-data: synthetic din-bench";
      double gen_s = 0, append_s = 0;
      {
        data::CacheWriter writer(cache_path, gen->schema(), options);
        for (int64_t first = 0; first < records; first += 65536) {
          auto t0 = Clock::now();
          const data::Batch batch = gen->generate(first, std::min<int64_t>(65536, records - first));
          gen_s += seconds_since(t0);
          t0 = Clock::now();
          writer.append(batch);
          append_s += seconds_since(t0);
        }
        const auto t0 = Clock::now();
        info = writer.finish();
        append_s += seconds_since(t0);
      }
      std::printf("generate        %8.2f s  (%.0f records/s, not part of the cache)\n", gen_s,
                  records / gen_s);
      std::printf(
          "write cache     %8.2f s  %10.0f records/s  (append + finish: encode, zstd, "
          "distinct ids, vocabularies, fsync)\n",
          append_s, records / append_s);
      std::printf("file            %8.1f MB  decoded %.1f MB  ratio %.2fx  (%.1f bytes/record)\n",
                  info.file_bytes * mb, info.decoded_bytes * mb,
                  static_cast<double>(info.decoded_bytes) / info.file_bytes,
                  static_cast<double>(info.file_bytes) / records);
      for (int64_t s = 0; s < info.schema.num_sparse(); ++s) {
        const auto& st = info.sparse_stats[s];
        std::printf("  %-10s ids %11lld  distinct %9lld%s  max_length %lld\n",
                    gen->schema().columns()[gen->schema().sparse_columns()[s]].name.c_str(),
                    static_cast<long long>(st.ids), static_cast<long long>(st.distinct),
                    st.distinct_exact ? "" : " (est.)", static_cast<long long>(st.max_length));
      }
    }

    // Read: one thread, read_block over every block, reused Batch.
    const std::string read_path = existing.empty() ? cache_path : existing;
    const data::CacheReader reader(read_path);
    data::Batch batch;
    auto pass = [&] {
      int64_t n = 0;
      for (int64_t b = 0; b < reader.num_blocks(); ++b) {
        reader.read_block(b, batch);
        n += batch.size;
      }
      return n;
    };
    const int64_t read_back = pass();
    LOCKSTEP_CHECK(read_back == records, "read back {} records, wrote {}", read_back, records);
    std::vector<double> times, cpu_times;
    for (int r = 0; r < reps; ++r) {
      const double c0 = thread_cpu_seconds();
      const auto t0 = Clock::now();
      pass();
      times.push_back(seconds_since(t0));
      cpu_times.push_back(thread_cpu_seconds() - c0);
    }
    const double t = median(times), best = *std::min_element(times.begin(), times.end());
    const double cpu = median(cpu_times);
    std::printf(
        "read_block 1 thread: median %.3f s = %.2f M records/s, %.0f decoded MB/s "
        "(best %.2f M records/s; %d passes)\n",
        t, records / t * 1e-6, info.decoded_bytes * mb / t, records / best * 1e-6, reps);
    std::printf(
        "  per CPU second: %.2f M records/s, %.0f decoded MB/s (median thread CPU time "
        "%.3f s)\n",
        records / cpu * 1e-6, info.decoded_bytes * mb / cpu, cpu);
    {
      const auto t0 = Clock::now();
      int64_t vocab = 0;
      for (int64_t s = 0; s < info.schema.num_sparse(); ++s)
        if (info.sparse_stats[s].vocabulary_stored) vocab += reader.vocabulary(s).size();
      std::printf("vocabularies    %8.3f s  for %lld ids\n", seconds_since(t0),
                  static_cast<long long>(vocab));
    }

    if (threads > 1) {  // blocks shared out dynamically, one Batch per thread
      std::vector<double> mt;
      for (int r = 0; r < reps; ++r) {
        std::atomic<int64_t> next{0};
        const auto t0 = Clock::now();
        std::vector<std::thread> pool;
        for (int i = 0; i < threads; ++i)
          pool.emplace_back([&] {
            data::Batch mine;
            for (int64_t b; (b = next++) < reader.num_blocks();) reader.read_block(b, mine);
          });
        for (auto& th : pool) th.join();
        mt.push_back(seconds_since(t0));
      }
      const double tm = median(mt);
      std::printf("read_block %d threads: median %.3f s = %.2f M records/s\n", threads, tm,
                  records / tm * 1e-6);
    }

    if (text_records > 0) {
      const int64_t n = std::min(text_records, records);
      const data::Batch sample = gen->generate(0, n);
      data::write_text(text_path, gen->schema(), sample);
      data::Batch part;
      std::vector<double> tt;
      for (int r = 0; r < std::min(reps, 3); ++r) {
        const auto t0 = Clock::now();
        data::TextReader text(text_path, gen->schema());
        while (text.next(part, 65536)) {
        }
        tt.push_back(seconds_since(t0));
      }
      const double tm = median(tt);
      std::printf(
          "text, for scale: %lld records, %.1f MB of text, TextReader %.3f s = %.2f M "
          "records/s\n",
          static_cast<long long>(n), fs::file_size(text_path) * mb, tm, n / tm * 1e-6);
    }
    if (!keep && existing.empty()) {
      std::error_code ec;
      fs::remove(cache_path, ec);
      fs::remove(text_path, ec);
    } else if (existing.empty()) {
      std::printf("kept %s\n", cache_path.c_str());
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
