#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "data/cache_format.h"
#include "data_test_util.h"
#include "lockstep/core/error.h"
#include "lockstep/data/cache.h"
#include "lockstep/data/synthetic.h"

using namespace lockstep;
using namespace lockstep::data;
using Catch::Matchers::Contains;

namespace {

// label, dense(3), user (sparse), hist (sequence, max_len 4), note (ignore), tags (sparse)
Schema mixed_schema() {
  return Schema({Column::label("click"), Column::dense("dense", 3), Column::sparse("user"),
                 Column::sequence("hist", 4), Column::ignore("note"), Column::sparse("tags")});
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  REQUIRE(out.good());
}

uint64_t get_u64(const std::string& bytes, size_t at) {
  uint64_t v;
  std::memcpy(&v, bytes.data() + at, 8);
  return v;
}
void set_u64(std::string& bytes, size_t at, uint64_t v) { std::memcpy(bytes.data() + at, &v, 8); }

/// Where the parts of a cache file's header are (computed from the documented layout, not by the
/// code under test).
struct Layout {
  size_t header = 0;   // header offset
  size_t stats = 0;    // first column statistics
  size_t entries = 0;  // first block entry
  size_t entry_bytes = 0;
};
Layout layout_of(const std::string& bytes, size_t num_sparse) {
  Layout l;
  l.header = get_u64(bytes, bytes.size() - 32);
  size_t pos = l.header + 40;
  pos += 8 + get_u64(bytes, pos);  // schema
  pos += 8 + get_u64(bytes, pos);  // source
  l.stats = pos;
  l.entries = pos + 72 * num_sparse;
  l.entry_bytes = 32 + 8 * num_sparse;
  return l;
}

/// Every record of the cache, block after block.
Batch read_all(const CacheReader& reader) {
  Batch all = make_empty_batch(reader.schema()), part;
  for (int64_t b = 0; b < reader.num_blocks(); ++b) {
    reader.read_block(b, part);
    REQUIRE_NOTHROW(check_batch(reader.schema(), part, "block"));
    REQUIRE(part.size == reader.block_records(b));
    test::append_batch(all, part);
  }
  return all;
}

/// Writes `batch` in pieces of the given sizes (cycled) and returns the writer's info.
CacheInfo write_in_pieces(const std::string& path, const Schema& schema, const Batch& batch,
                          const std::vector<int64_t>& pieces, CacheWriterOptions options) {
  CacheWriter writer(path, schema, options);
  int64_t at = 0;
  for (size_t i = 0; at < batch.size; ++i) {
    const int64_t n = std::min(pieces[i % pieces.size()], batch.size - at);
    Batch piece = make_empty_batch(schema);
    piece.size = n;
    const int64_t d = schema.num_dense();
    piece.labels.assign(batch.labels.begin() + at, batch.labels.begin() + at + n);
    piece.sample_ids.assign(batch.sample_ids.begin() + at, batch.sample_ids.begin() + at + n);
    piece.dense.assign(batch.dense.begin() + at * d, batch.dense.begin() + (at + n) * d);
    for (size_t s = 0; s < batch.sparse.size(); ++s) {
      const auto& src = batch.sparse[s];
      piece.sparse[s].keys.assign(src.keys.begin() + src.offsets[at],
                                  src.keys.begin() + src.offsets[at + n]);
      for (int64_t r = 1; r <= n; ++r)
        piece.sparse[s].offsets.push_back(src.offsets[at + r] - src.offsets[at]);
    }
    writer.append(piece);
    at += n;
  }
  CHECK(writer.records() == batch.size);
  return writer.finish();
}

/// The statistics of each sparse slot of `batch`, computed here independently.
void require_stats(const CacheInfo& info, const Batch& batch) {
  REQUIRE(info.sparse_stats.size() == batch.sparse.size());
  for (size_t s = 0; s < batch.sparse.size(); ++s) {
    INFO("slot " << s);
    const auto& col = batch.sparse[s];
    const std::set<uint64_t> distinct(col.keys.begin(), col.keys.end());
    int64_t longest = 0;
    for (int64_t b = 0; b < batch.size; ++b)
      longest = std::max(longest, col.offsets[b + 1] - col.offsets[b]);
    const CacheColumnStats& st = info.sparse_stats[s];
    CHECK(st.ids == static_cast<int64_t>(col.keys.size()));
    CHECK(st.distinct == static_cast<int64_t>(distinct.size()));
    CHECK(st.distinct_exact);
    CHECK(st.min_id == (distinct.empty() ? 0 : *distinct.begin()));
    CHECK(st.max_id == (distinct.empty() ? 0 : *distinct.rbegin()));
    CHECK(st.max_length == longest);
  }
}

void require_same_info(const CacheInfo& a, const CacheInfo& b) {
  CHECK(a.version == b.version);
  CHECK(a.schema == b.schema);
  CHECK(a.records == b.records);
  CHECK(a.max_block_records == b.max_block_records);
  CHECK(a.block_records == b.block_records);
  CHECK(a.sparse_stats == b.sparse_stats);
  CHECK(a.source == b.source);
  CHECK(a.file_bytes == b.file_bytes);
  CHECK(a.decoded_bytes == b.decoded_bytes);
}

/// A batch of mixed_schema with awkward contents: empty fields, full-range and repeated keys,
/// soft labels, NaN and -0 dense values, non-consecutive sample ids.
Batch awkward_batch(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Batch b = make_empty_batch(mixed_schema());
  b.size = n;
  for (int64_t i = 0; i < n; ++i) {
    b.labels.push_back(i % 7 == 0 ? 0.25f : static_cast<float>(rng() % 2));
    b.sample_ids.push_back(i % 5 == 0 ? rng() : 1000000 + 3 * static_cast<uint64_t>(i));
    b.dense.push_back(i % 11 == 0 ? std::numeric_limits<float>::quiet_NaN() : -0.0f);
    b.dense.push_back(static_cast<float>(rng() % 1000) / 7.0f);
    b.dense.push_back(std::numeric_limits<float>::denorm_min());
    auto& user = b.sparse[0];
    if (i % 3 != 0) user.keys.push_back(i % 13 == 0 ? UINT64_MAX : rng() % 50);
    user.offsets.push_back(static_cast<int64_t>(user.keys.size()));
    auto& hist = b.sparse[1];
    for (uint64_t k = 0, len = rng() % 5; k < len; ++k) hist.keys.push_back(rng() % 300 + 7);
    hist.offsets.push_back(static_cast<int64_t>(hist.keys.size()));
    auto& tags = b.sparse[2];  // empty in most records
    if (i % 17 == 4) {
      tags.keys.push_back(42);
      tags.keys.push_back(42);
    }
    tags.offsets.push_back(static_cast<int64_t>(tags.keys.size()));
  }
  return b;
}

}  // namespace

TEST_CASE("cache round trip: demo data in any batch sizes across block boundaries",
          "[data][cache]") {
  test::TempDir dir;
  SyntheticConfig config = SyntheticConfig::demo();
  config.seed = 5;
  const SyntheticGenerator gen(config);
  const Batch original = gen.generate(0, 1500);
  const std::string path = dir.file("train.cache");
  CacheWriterOptions options;
  options.block_records = 97;
  options.source = "synthetic demo, seed 5";
  const CacheInfo written =
      write_in_pieces(path, gen.schema(), original, {1, 5, 130, 97, 333}, options);
  CHECK(dir.entries() == std::vector<std::string>{"train.cache"});
  CHECK(written.records == 1500);
  std::vector<int64_t> blocks(15, 97);
  blocks.push_back(1500 - 15 * 97);
  CHECK(written.block_records == blocks);
  CHECK(written.file_bytes == static_cast<int64_t>(std::filesystem::file_size(path)));
  require_stats(written, original);

  const CacheReader reader(path);
  require_same_info(reader.info(), written);
  CHECK(reader.info().source == "synthetic demo, seed 5");
  CHECK(reader.schema() == gen.schema());
  REQUIRE(reader.num_blocks() == 16);
  for (int64_t b = 0; b < reader.num_blocks(); ++b) {
    CHECK(reader.block_first_record(b) == 97 * b);
    CHECK(reader.block_records(b) == blocks[b]);
  }
  test::require_same_batch(read_all(reader), original, "demo read back");

  // Vocabularies: the sorted distinct ids of each column.
  for (int64_t s = 0; s < gen.schema().num_sparse(); ++s) {
    const auto& keys = original.sparse[s].keys;
    const std::set<uint64_t> distinct(keys.begin(), keys.end());
    CHECK(reader.info().sparse_stats[s].vocabulary_stored);
    CHECK(reader.vocabulary(s) == std::vector<uint64_t>(distinct.begin(), distinct.end()));
  }
}

TEST_CASE("cache round trip: din-bench data, compressed", "[data][cache]") {
  test::TempDir dir;
  const SyntheticGenerator gen(SyntheticConfig::din_bench());
  const Batch original = gen.generate(1000, 3000);  // sample ids 1000 ..
  const std::string path = dir.file("din.cache");
  CacheWriterOptions options;
  options.block_records = 1024;
  const CacheInfo written = write_in_pieces(path, gen.schema(), original, {4096}, options);
  require_stats(written, original);
  const CacheReader reader(path);
  test::require_same_batch(read_all(reader), original, "din-bench read back");
  for (int64_t s = 0; s < gen.schema().num_sparse(); ++s) {  // (blocks of ~26k ids: radix sort)
    const auto& keys = original.sparse[s].keys;
    const std::set<uint64_t> distinct(keys.begin(), keys.end());
    CHECK(reader.vocabulary(s) == std::vector<uint64_t>(distinct.begin(), distinct.end()));
  }
  // The file is smaller than the records it decodes to.
  CHECK(reader.info().file_bytes < reader.info().decoded_bytes / 2);
  // block_decoded_bytes is what a Batch of the block holds, counted here from the batch.
  int64_t decoded = 0;
  Batch block;
  for (int64_t b = 0; b < reader.num_blocks(); ++b) {
    reader.read_block(b, block);
    int64_t held = 4 * block.size + 8 * block.size + 4 * static_cast<int64_t>(block.dense.size());
    for (const auto& col : block.sparse)
      held += 8 * static_cast<int64_t>(col.offsets.size() + col.keys.size());
    CHECK(reader.block_decoded_bytes(b) == held);
    decoded += held;
  }
  CHECK(decoded == reader.info().decoded_bytes);
}

TEST_CASE("cache round trip: empty fields, extreme keys and ids, NaN dense bits", "[data][cache]") {
  test::TempDir dir;
  const Batch original = awkward_batch(700, 3);
  for (const int64_t block : {1, 2, 64, 699, 700, 5000}) {
    INFO("block_records " << block);
    CacheWriterOptions options;
    options.block_records = block;
    const std::string path = dir.file("awkward.cache");
    const CacheInfo written = write_in_pieces(path, mixed_schema(), original, {3, 200}, options);
    require_stats(written, original);
    const CacheReader reader(path);
    CHECK(reader.num_blocks() == (700 + block - 1) / block);
    test::require_same_batch(read_all(reader), original, "awkward read back");
  }
}

TEST_CASE("cache round trip: schemas without dense or sparse columns, and zero records",
          "[data][cache]") {
  test::TempDir dir;
  SECTION("label only") {
    const Schema schema({Column::label("y")});
    Batch b = make_empty_batch(schema);
    b.size = 5;
    b.labels = {0, 1, 1, 0, 0.5f};
    b.sample_ids = {9, 8, 7, 100, 0};  // decreasing and wrapping deltas
    CacheWriterOptions options;
    options.block_records = 2;
    write_in_pieces(dir.file("y.cache"), schema, b, {5}, options);
    const CacheReader reader(dir.file("y.cache"));
    CHECK(reader.info().sparse_stats.empty());
    test::require_same_batch(read_all(reader), b, "label only");
  }
  SECTION("sparse only, one record per block") {
    const Schema schema({Column::sequence("s", 3), Column::label("y")});
    Batch b = make_empty_batch(schema);
    b.size = 3;
    b.labels = {1, 0, 1};
    b.sample_ids = {0, 1, 2};
    b.sparse[0].offsets = {0, 0, 3, 3};
    b.sparse[0].keys = {5, 5, 5};
    CacheWriterOptions options;
    options.block_records = 1;
    write_in_pieces(dir.file("s.cache"), schema, b, {2}, options);
    const CacheReader reader(dir.file("s.cache"));
    CHECK(reader.num_blocks() == 3);
    test::require_same_batch(read_all(reader), b, "sparse only");
    CHECK(reader.vocabulary(0) == std::vector<uint64_t>{5});
  }
  SECTION("zero records") {
    const std::string path = dir.file("empty.cache");
    CacheWriter writer(path, mixed_schema());
    writer.append(make_empty_batch(mixed_schema()));  // an empty batch is fine
    const CacheInfo written = writer.finish();
    CHECK(written.records == 0);
    CHECK(written.block_records.empty());
    const CacheReader reader(path);
    require_same_info(reader.info(), written);
    CHECK(reader.num_blocks() == 0);
    for (int64_t s = 0; s < 3; ++s) {
      CHECK(reader.info().sparse_stats[s] == CacheColumnStats{0, 0, 0, 0, 0, true, true});
      CHECK(reader.vocabulary(s).empty());
    }
    Batch out;
    CHECK_THROWS_WITH(reader.read_block(0, out), Contains("block 0 does not exist"));
  }
}

TEST_CASE("cache from_memory reads the bytes of a file exactly as the file", "[data][cache]") {
  test::TempDir dir;
  const Batch original = awkward_batch(300, 8);
  CacheWriterOptions options;
  options.block_records = 128;
  write_in_pieces(dir.file("a.cache"), mixed_schema(), original, {300}, options);
  const CacheReader file(dir.file("a.cache"));
  CacheReader memory = CacheReader::from_memory(read_bytes(dir.file("a.cache")), "mem");
  require_same_info(memory.info(), file.info());
  test::require_same_batch(read_all(memory), original, "from memory");
  CHECK(memory.path() == "mem");
  // Move-only: a moved reader keeps working.
  CacheReader moved = std::move(memory);
  CHECK(moved.num_blocks() == 3);
}

TEST_CASE("cache read_block reuses the batch's capacity and is safe from several threads",
          "[data][cache]") {
  test::TempDir dir;
  const SyntheticGenerator gen(SyntheticConfig::demo());
  const Batch original = gen.generate(0, 4000);
  CacheWriterOptions options;
  options.block_records = 250;
  write_in_pieces(dir.file("t.cache"), gen.schema(), original, {4000}, options);
  const CacheReader reader(dir.file("t.cache"));

  Batch out;
  reader.read_block(0, out);
  const float* labels = out.labels.data();
  const size_t capacity = out.sparse[3].keys.capacity();
  out.sparse[3].keys.reserve(capacity * 2);
  const uint64_t* keys = out.sparse[3].keys.data();
  reader.read_block(1, out);
  CHECK(out.labels.data() == labels);
  CHECK(out.sparse[3].keys.data() == keys);

  // Each of 4 threads decodes every block (in a different order) and compares.
  std::vector<Batch> expected(reader.num_blocks());
  for (int64_t b = 0; b < reader.num_blocks(); ++b) reader.read_block(b, expected[b]);
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Batch mine;
      for (int round = 0; round < 3; ++round) {
        for (int64_t i = 0; i < reader.num_blocks(); ++i) {
          const int64_t b = (i * (t + 1) + round) % reader.num_blocks();
          reader.read_block(b, mine);
          const Batch& e = expected[b];
          bool same =
              mine.size == e.size && mine.labels == e.labels && mine.sample_ids == e.sample_ids;
          for (size_t s = 0; s < e.sparse.size(); ++s)
            same = same && mine.sparse[s].keys == e.sparse[s].keys &&
                   mine.sparse[s].offsets == e.sparse[s].offsets;
          mismatches[t] += !same;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(mismatches == std::vector<int>{0, 0, 0, 0});
}

TEST_CASE("cache writer is atomic: nothing at the path before finish(), no temporary after",
          "[data][cache]") {
  test::TempDir dir;
  const std::string path = dir.file("x.cache");
  const Batch batch = awkward_batch(50, 1);
  {
    CacheWriterOptions options;
    options.block_records = 16;
    CacheWriter writer(path, mixed_schema(), options);
    writer.append(batch);  // three full blocks are on disk, in the temporary file
    CHECK_FALSE(std::filesystem::exists(path));
    REQUIRE(dir.entries().size() == 1);
    CHECK(dir.entries()[0].rfind(".x.cache.tmp-", 0) == 0);
  }  // destroyed without finish()
  CHECK(dir.entries().empty());

  CacheWriter writer(path, mixed_schema());
  writer.append(batch);
  writer.finish();
  CHECK(dir.entries() == std::vector<std::string>{"x.cache"});
  CHECK_THROWS_WITH(writer.append(batch), Contains("append() after finish()"));
  CHECK_THROWS_WITH(writer.finish(), Contains("finish() called twice"));

  // A cache replaces a cache; anything else at the path (a user's data) is refused, untouched.
  CacheWriter again(path, mixed_schema());
  again.append(awkward_batch(7, 3));
  CHECK(again.finish().records == 7);
  { std::ofstream(dir.file("data.csv")) << "1,2,3\n"; }
  std::filesystem::create_directories(dir.file("folder"));
  for (const std::string name : {"data.csv", "folder"})
    CHECK_THROWS_WITH(CacheWriter(dir.file(name), mixed_schema()),
                      Contains(dir.file(name) + ": exists and is not a data cache"));
  std::ifstream in(dir.file("data.csv"));
  CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == "1,2,3\n");
}

TEST_CASE("cache writer refuses bad batches and options, naming the cache", "[data][cache]") {
  test::TempDir dir;
  const std::string path = dir.file("w.cache");
  CacheWriterOptions bad;
  bad.block_records = 0;
  CHECK_THROWS_WITH(CacheWriter(path, mixed_schema(), bad),
                    Contains("cache.block_records = 0 is out of range"));
  bad = {};
  bad.zstd_level = 25;
  CHECK_THROWS_WITH(CacheWriter(path, mixed_schema(), bad), Contains("cache.zstd_level"));
  CHECK_THROWS_WITH(CacheWriter(dir.file("no/such/dir.cache"), mixed_schema()),
                    Contains("no/such/dir.cache"));

  CacheWriter writer(path, mixed_schema());
  Batch b = awkward_batch(10, 2);
  b.labels[3] = 2.0f;
  CHECK_THROWS_WITH(writer.append(b),
                    Contains("batch appended to cache " + path) && Contains("outside [0, 1]"));
  b = awkward_batch(10, 2);
  b.sparse[1].keys.insert(b.sparse[1].keys.begin(), {1, 2, 3, 4, 5});
  for (size_t i = 1; i < b.sparse[1].offsets.size(); ++i) b.sparse[1].offsets[i] += 5;
  CHECK_THROWS_WITH(writer.append(b), Contains("sample 0 has") &&
                                          Contains("sequence column 'hist'") &&
                                          Contains("max_len = 4"));
  // A refused batch changes nothing: the writer goes on.
  writer.append(awkward_batch(10, 2));
  CHECK(writer.finish().records == 10);
}

TEST_CASE("cache vocabulary: exact up to max_vocabulary, then an estimated distinct count",
          "[data][cache]") {
  test::TempDir dir;
  const Schema schema({Column::label("y"), Column::sparse("big"), Column::sparse("small"),
                       Column::sparse("hashed")});
  Batch b = make_empty_batch(schema);
  const int64_t n = 60000;
  b.size = n;
  std::mt19937_64 rng(4);
  std::set<uint64_t> big, hashed;
  std::vector<uint64_t> pool;  // full-range and small ids, for the radix sort's every byte
  for (int i = 0; i < 5000; ++i) pool.push_back(rng() >> (i % 2 == 0 ? 0 : 40));
  for (int64_t i = 0; i < n; ++i) {
    b.labels.push_back(0);
    b.sample_ids.push_back(i);
    for (int k = 0; k < 3; ++k) {  // about 118k distinct: the exact count gives up midway
      const uint64_t id = rng() % 200000;
      big.insert(id);
      b.sparse[0].keys.push_back(id);
    }
    b.sparse[0].offsets.push_back(3 * i + 3);
    b.sparse[1].keys.push_back(i % 10);
    b.sparse[1].offsets.push_back(i + 1);
    const uint64_t h = pool[rng() % pool.size()];
    b.sparse[2].keys.push_back(h);
    b.sparse[2].keys.push_back(h);
    hashed.insert(h);
    b.sparse[2].offsets.push_back(2 * i + 2);
  }
  CacheWriterOptions options;
  options.block_records = 7000;
  options.max_vocabulary = 30000;
  const std::string path = dir.file("v.cache");
  write_in_pieces(path, schema, b, {n}, options);
  const CacheReader reader(path);
  const CacheColumnStats& st = reader.info().sparse_stats[0];
  CHECK_FALSE(st.vocabulary_stored);
  CHECK_FALSE(st.distinct_exact);
  const double exact = static_cast<double>(big.size());
  CHECK(std::abs(static_cast<double>(st.distinct) - exact) < 0.04 * exact);  // ~5 sigma
  CHECK(st.min_id == *big.begin());
  CHECK(st.max_id == *big.rbegin());
  CHECK_THROWS_WITH(reader.vocabulary(0),
                    Contains(path + ": column 'big' has no stored vocabulary") &&
                        Contains("more distinct ids than the writer's max_vocabulary"));
  CHECK(reader.info().sparse_stats[1].distinct == 10);
  CHECK(reader.info().sparse_stats[1].distinct_exact);
  CHECK(reader.vocabulary(1) == std::vector<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(reader.info().sparse_stats[2].distinct == static_cast<int64_t>(hashed.size()));
  CHECK(reader.vocabulary(2) == std::vector<uint64_t>(hashed.begin(), hashed.end()));

  options.max_vocabulary = int64_t{1} << 20;
  options.store_vocabulary = false;
  write_in_pieces(path, schema, b, {n}, options);
  const CacheReader no_vocab(path);
  CHECK(no_vocab.info().sparse_stats[0].distinct == static_cast<int64_t>(big.size()));
  CHECK(no_vocab.info().sparse_stats[0].distinct_exact);
  CHECK_THROWS_WITH(no_vocab.vocabulary(0), Contains("it was written without"));
  CHECK_THROWS_WITH(no_vocab.vocabulary(3), Contains("sparse slot 3 does not exist"));
}

TEST_CASE("cache_format::reseal leaves a valid cache unchanged", "[data][cache]") {
  // (The fuzz target and the tests below rely on it: only what they edited differs.)
  test::TempDir dir;
  for (const bool vocabulary : {true, false}) {
    CacheWriterOptions options;
    options.block_records = 50;
    options.store_vocabulary = vocabulary;
    write_in_pieces(dir.file("r.cache"), mixed_schema(), awkward_batch(120, 9), {120}, options);
    const std::string bytes = read_bytes(dir.file("r.cache"));
    CHECK(cache_format::reseal(bytes) == bytes);
  }
  CHECK(cache_format::reseal("short") == "short");
}

TEST_CASE("cache reader errors name the file and what is wrong", "[data][cache]") {
  test::TempDir dir;
  const Batch original = awkward_batch(400, 6);
  CacheWriterOptions options;
  options.block_records = 100;
  const std::string good_path = dir.file("good.cache");
  write_in_pieces(good_path, mixed_schema(), original, {400}, options);
  const std::string good = read_bytes(good_path);
  const Layout l = layout_of(good, 3);
  const std::string path = dir.file("bad.cache");
  auto open_error = [&](const std::string& bytes) {
    write_bytes(path, bytes);
    return test::error_of([&] { CacheReader reader(path); });
  };

  SECTION("missing file") {
    CHECK_THAT(
        test::error_of([&] { CacheReader r(dir.file("none.cache")); }),
        Contains("cannot open '" + dir.file("none.cache") + "'") && Contains("No such file"));
  }
  SECTION("truncated") {
    for (const size_t keep : {size_t{0}, size_t{20}, good.size() / 2, good.size() - 1}) {
      INFO("kept " << keep << " bytes");
      CHECK_THAT(open_error(good.substr(0, keep)), Contains(path + ": truncated"));
    }
  }
  SECTION("wrong magic") {
    std::string bytes = good;
    bytes[0] = 'X';
    CHECK_THAT(open_error(bytes), Contains(path + ": not a lockstep data cache"));
    CHECK_THAT(open_error("some text file, not a cache at all, long enough to be one"),
               Contains("not a lockstep data cache"));
  }
  SECTION("unsupported version") {
    std::string bytes = good;
    bytes[8] = 2;
    CHECK_THAT(open_error(bytes), Contains(path + ": cache format version 2 is not supported") &&
                                      Contains("reads versions 1 to 1"));
  }
  SECTION("flipped byte in the header") {
    for (const size_t at : {l.header + 1, l.header + 45, l.stats + 3, l.entries + 9}) {
      std::string bytes = good;
      bytes[at] ^= 0x10;
      CHECK_THAT(open_error(bytes), Contains(path + ": header checksum mismatch"));
    }
  }
  SECTION("block index outside the file") {
    std::string bytes = good;
    set_u64(bytes, l.entries + l.entry_bytes, uint64_t{1} << 40);  // block 1's offset
    CHECK_THAT(open_error(cache_format::reseal(bytes)),
               Contains(path + ": block 1 at byte 1099511627776") &&
                   Contains("lies outside the data section"));
    bytes = good;
    set_u64(bytes, l.entries + 8, UINT64_MAX - 8);  // block 0's size: offset + size overflows
    CHECK_THAT(open_error(cache_format::reseal(bytes)),
               Contains(path + ": block 0 at byte 16") && Contains("lies outside"));
    bytes = good;
    set_u64(bytes, l.entries + 8, get_u64(good, l.entries + 8) - 1);  // a gap before block 1
    CHECK_THAT(open_error(cache_format::reseal(bytes)),
               Contains(path + ": block 1 starts at byte") && Contains("block index is corrupted"));
  }
  SECTION("header counts that disagree") {
    std::string bytes = good;
    set_u64(bytes, l.header + 16, 401);  // records
    CHECK_THAT(open_error(cache_format::reseal(bytes)),
               Contains("the blocks hold 400 records but the header says 401"));
    bytes = good;
    set_u64(bytes, l.entries + 32, get_u64(good, l.entries + 32) + 1);  // block 0's user ids
    CHECK_THAT(open_error(cache_format::reseal(bytes)),
               Contains("ids of column 'user'") || Contains("in column 'user'"));
  }
  SECTION("flipped byte in a block") {
    const size_t block1 = get_u64(good, l.entries + l.entry_bytes);
    std::string bytes = good;
    bytes[block1 + 200] ^= 0x01;
    write_bytes(path, bytes);
    const CacheReader reader(path);  // the header is fine
    Batch out;
    reader.read_block(0, out);
    CHECK_THAT(test::error_of([&] { reader.read_block(1, out); }),
               Contains(path + ": block 1 (records 100 to 199): checksum mismatch") &&
                   Contains("the block is corrupted"));
    reader.read_block(2, out);  // the others still read
  }
  SECTION("corrupted contents behind valid checksums") {
    const size_t block0 = get_u64(good, l.entries);
    std::string bytes = good;
    bytes[block0 + 21] = 7;  // labels' coding
    write_bytes(path, cache_format::reseal(bytes));
    Batch out;
    CHECK_THAT(test::error_of([&] { CacheReader(path).read_block(0, out); }),
               Contains(path + ": block 0 (records 0 to 99): the labels have an unknown coding"));
    bytes = good;
    set_u64(bytes, block0 + 24 * 5, 3);  // the base of hist's lengths
    write_bytes(path, cache_format::reseal(bytes));
    CHECK_THAT(test::error_of([&] { CacheReader(path).read_block(0, out); }),
               Contains(path + ": block 0 (records 0 to 99): the lengths of column 'hist'"));
  }
  SECTION("corrupted vocabulary") {
    const size_t vocab = get_u64(good, l.stats + 48);  // user's vocabulary offset
    std::string bytes = good;
    bytes[vocab + 5] ^= 0x40;
    write_bytes(path, bytes);
    const CacheReader reader(path);
    CHECK_THAT(test::error_of([&] { reader.vocabulary(0); }),
               Contains(path + ": the vocabulary of column 'user': checksum mismatch"));
    write_bytes(path, cache_format::reseal(bytes));
    const CacheReader resealed(path);
    CHECK_THAT(test::error_of([&] { resealed.vocabulary(0); }),
               Contains(path + ": the vocabulary of column 'user'") && Contains("corrupted"));
  }
}
