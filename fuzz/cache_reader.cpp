// Fuzz target: data caches (lockstep/data/cache.h), opened with CacheReader::from_memory and
// read completely: every block and every stored vocabulary. Random bytes almost never carry
// valid XXH64s, so each input runs twice: as it is (the checksum checks themselves), and with
// every checksum recomputed (cache_format::reseal, lib/src/data/cache_format.h), which takes the
// mutations on to the header checks and the block decoder behind them.
//
// Checks, besides "only lockstep::Error": the index is consistent (blocks' records add up to the
// file's, first records are their prefix sums); every block read satisfies check_batch against
// the file's schema with block_records(b) records; every vocabulary read is strictly increasing,
// holds `distinct` ids and spans [min_id, max_id]. Blocks that would decode to more than 64 MiB
// and vocabularies of more than 2^22 ids are skipped (the header, which is checked, can promise
// that much from a few bytes: RLE-coded streams and widths of 0), to stay within -rss_limit_mb.

#include <string>
#include <vector>

#include "data/cache_format.h"
#include "fuzz/fuzz_target.h"
#include "lockstep/data/cache.h"

namespace {

void read_everything(const std::string& bytes) {
  using namespace lockstep;
  using namespace lockstep::data;
  const CacheReader reader = CacheReader::from_memory(bytes, "input.cache");
  const CacheInfo& info = reader.info();
  int64_t records = 0;
  for (int64_t b = 0; b < reader.num_blocks(); ++b) {
    fuzz::require(reader.block_first_record(b) == records,
                  "block_first_record is not a prefix sum");
    records += reader.block_records(b);
  }
  fuzz::require(records == info.records, "blocks' records do not add up to the file's");
  fuzz::require(info.sparse_stats.size() == static_cast<size_t>(info.schema.num_sparse()),
                "stats per sparse slot");

  Batch batch;
  for (int64_t b = 0; b < reader.num_blocks(); ++b) {
    if (reader.block_decoded_bytes(b) > (int64_t{64} << 20)) continue;
    try {
      reader.read_block(b, batch);
    } catch (const Error&) {
      continue;  // a corrupted block; the next may be fine
    }
    fuzz::require(batch.size == reader.block_records(b), "a block holds other than its records");
    try {
      check_batch(info.schema, batch, "block");
    } catch (const Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      fuzz::require(false, "a block read does not satisfy check_batch");
    }
  }
  for (int64_t s = 0; s < info.schema.num_sparse(); ++s) {
    const CacheColumnStats& st = info.sparse_stats[s];
    if (!st.vocabulary_stored || st.distinct > (int64_t{1} << 22)) continue;
    std::vector<uint64_t> ids;
    try {
      ids = reader.vocabulary(s);
    } catch (const Error&) {
      continue;
    }
    fuzz::require(static_cast<int64_t>(ids.size()) == st.distinct, "vocabulary size != distinct");
    for (size_t i = 1; i < ids.size(); ++i)
      fuzz::require(ids[i - 1] < ids[i], "vocabulary not strictly increasing");
    fuzz::require(ids.empty() || (ids.front() == st.min_id && ids.back() == st.max_id),
                  "vocabulary does not span [min_id, max_id]");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep;
  const std::string bytes(fuzz::as_text(data, size));
  fuzz::accept_only_lockstep_errors([&] { read_everything(bytes); });
  const std::string sealed = data::cache_format::reseal(bytes);
  if (sealed != bytes) fuzz::accept_only_lockstep_errors([&] { read_everything(sealed); });
  return 0;
}
