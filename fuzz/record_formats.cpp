// Fuzz target: every text record format (tsv, csv with a header and quotes, libsvm, libfm, dense
// missing/clip/log1p) through both readers: TextReader (parse_text) and the chunked,
// byte-range-sharded TextBatchSource.
//
// Input: byte 0 picks the schema (low 3 bits), the rank count (1-3) and the worker count; byte 1
// the chunk size (1-64 bytes, so that chunk and range boundaries fall everywhere); the rest is the
// file. Checks, besides "only lockstep::Error":
//  - when parse_text accepts the file, the ranks of TextBatchSource together return exactly its
//    records, in file order (rank 0's first), and fail-policy sources do not fail;
//  - when parse_text rejects it, a fail-policy source rejects it too, and with the skip policy the
//    records returned plus the records skipped are the file's records (a header error aside).

#include <string>

#include "fuzz/batch_compare.h"
#include "fuzz/fuzz_target.h"
#include "lockstep/data/text_format.h"
#include "lockstep/train/batch_source.h"

namespace {

using namespace lockstep;
using data::Batch;
using data::Column;
using data::FormatKind;
using data::Schema;
using data::TextFormat;

Schema make_schema(int which) {
  switch (which % 6) {
    case 0:
      return Schema({Column::label("y"), Column::dense("d", 2), Column::sparse("s"),
                     Column::sequence("q", 3), Column::ignore("note")});
    case 1: {
      TextFormat f = TextFormat::of(FormatKind::kCsv);
      f.id_separator = '|';
      Column price = Column::dense("price", 1);
      price.has_missing = true;
      price.missing = -1;
      price.clip_min = 0;
      price.clip_max = 100;
      price.transform = data::Transform::kLog1p;
      return Schema({Column::label("y"), price, Column::sparse("tags", true),
                     Column::sequence("hist", 2)},
                    f);
    }
    case 2:
      return Schema({Column::label("y"), Column::dense("x", 4)}, TextFormat::of(FormatKind::kLibsvm));
    case 3:
      return Schema({Column::label("y"), Column::sparse("ids", true)},
                    TextFormat::of(FormatKind::kLibsvm));
    case 4:
      return Schema({Column::label("y"), Column::sparse("a"), Column::dense("b", 2),
                     Column::sequence("c", 2), Column::ignore("z")},
                    TextFormat::of(FormatKind::kLibfm));
    default: {
      Column i1 = Column::dense("i1", 1);
      i1.has_missing = true;
      i1.clip_min = 0;
      i1.transform = data::Transform::kLog1p;
      return Schema({Column::label("y"), i1, Column::sparse("c1", true)});
    }
  }
}

struct Pass {
  std::vector<Batch> batches;
  int64_t records = 0, skipped = 0;
  std::string error;
};

Pass read_ranks(const std::string& path, const Schema& schema, int ranks, int workers,
                int64_t chunk, train::BadRecordPolicy policy) {
  Pass p;
  try {
    for (int r = 0; r < ranks; ++r) {
      train::FileSourceOptions o;
      o.batch_size = 3;
      o.rank = r;
      o.ranks = ranks;
      o.workers = workers;
      o.chunk_bytes = chunk;
      o.on_bad_record = policy;
      train::TextBatchSource source({path}, schema, o);
      source.start_epoch(0);
      Batch b;
      while (source.next(b)) {
        data::check_batch(schema, b, "TextBatchSource batch");
        p.records += b.size;
        p.batches.push_back(b);
      }
      p.skipped += source.bad_records().total;
    }
  } catch (const Error& e) {
    p.error = e.what();
  }
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static fuzz::ScratchFile file("records.txt");
  const Schema schema = make_schema(data[0] & 7);
  const int ranks = 1 + (data[0] >> 3) % 3;
  const int workers = (data[0] >> 5) % 3;
  const int64_t chunk = 1 + data[1] % 64;
  const std::string_view text = fuzz::as_text(data + 2, size - 2);
  const std::string& path = file.write(text);

  Batch whole;
  std::string whole_error;
  try {
    whole = data::parse_text(text, schema, path);
    data::check_batch(schema, whole, "parse_text result");
  } catch (const Error& e) {
    whole_error = e.what();
  }

  const Pass fail = read_ranks(path, schema, ranks, workers, chunk, train::BadRecordPolicy::kFail);
  if (whole_error.empty()) {
    fuzz::require(fail.error.empty(), "TextBatchSource fails on a file parse_text accepts");
    fuzz::require(fail.records == whole.size, "TextBatchSource returns another record count");
    int64_t at = 0;
    for (const Batch& b : fail.batches)
      for (int64_t i = 0; i < b.size; ++i, ++at)
        fuzz::require(fuzz::same_record(b, i, whole, at, schema.num_dense(), false),
                      "TextBatchSource and parse_text disagree");
    return 0;
  }
  fuzz::require(!fail.error.empty(), "TextBatchSource accepts a file parse_text rejects");

  const Pass skip = read_ranks(path, schema, ranks, workers, chunk, train::BadRecordPolicy::kSkip);
  if (skip.error.empty()) {
    int64_t lines = 0;
    for (const char c : text) lines += c == '\n';
    if (!text.empty() && text.back() != '\n') ++lines;
    if (schema.format().header && lines > 0) --lines;
    fuzz::require(skip.records + skip.skipped == lines,
                  "records returned + skipped differ from the file's records");
  }
  return 0;
}
