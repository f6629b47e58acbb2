// Fuzz target: tab-separated text records (lockstep/data/text_format.h) under a fixed schema
// with every column kind.
//
// Checks, besides "only lockstep::Error": parse_text() and a TextReader streaming the same bytes
// from a file in batches of 3 agree record for record, or fail with the same message; and an
// accepted input written back with append_text() reads back to the identical batch.

#include <string>

#include "fuzz/batch_compare.h"
#include "fuzz/fuzz_target.h"
#include "lockstep/data/text_format.h"

namespace {

using lockstep::data::Batch;
using lockstep::data::Column;
using lockstep::data::Schema;

// label, dense (dim 3), sparse, sequence (max_len 3), ignore, sparse: every kind, and a sparse
// column after an ignore column.
Schema make_schema(bool hash) {
  return Schema({Column::label("click"), Column::dense("price", 3), Column::sparse("tags", hash),
                 Column::sequence("hist", 3, hash), Column::ignore("note"),
                 Column::sparse("item")});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep;
  static const Schema plain = make_schema(false);
  static const Schema hashed = make_schema(true);
  static fuzz::ScratchFile file("records.tsv");
  const std::string_view text = fuzz::as_text(data, size);
  const int64_t num_dense = plain.num_dense();

  // The whole text at once; errors name the scratch file so they match the streamed reader's.
  const std::string& path = file.write(text);
  Batch whole;
  std::string parse_error;
  try {
    whole = data::parse_text(text, plain, path);
    data::check_batch(plain, whole, "parse_text result");
  } catch (const Error& e) {
    parse_error = e.what();
  }

  // The same bytes streamed from the file, 3 records at a time.
  std::string stream_error;
  try {
    data::TextReader reader(path, plain);
    Batch part;
    int64_t done = 0;
    while (reader.next(part, 3)) {
      data::check_batch(plain, part, "TextReader batch");
      if (parse_error.empty()) {
        fuzz::require(done + part.size <= whole.size, "TextReader returned extra records");
        for (int64_t i = 0; i < part.size; ++i)
          fuzz::require(fuzz::same_record(part, i, whole, done + i, num_dense, true),
                        "TextReader and parse_text disagree on a record");
      }
      done += part.size;
    }
    if (parse_error.empty())
      fuzz::require(done == whole.size, "TextReader returned fewer records than parse_text");
  } catch (const Error& e) {
    stream_error = e.what();
  }
  if (stream_error != parse_error) {
    std::fprintf(stderr, "parse_text: %s\nTextReader: %s\n", parse_error.c_str(),
                 stream_error.c_str());
    fuzz::require(false, "parse_text and TextReader fail differently");
  }

  // Written back and read again: the identical batch.
  if (parse_error.empty()) {
    std::string written;
    Batch again;
    try {
      data::append_text(written, plain, whole);
      again = data::parse_text(written, plain, "written");
    } catch (const Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      fuzz::require(false, "an accepted batch does not write and read back");
    }
    fuzz::require(again.size == whole.size, "the written batch reads back with another size");
    for (int64_t i = 0; i < whole.size; ++i)
      fuzz::require(fuzz::same_record(whole, i, again, i, num_dense, true),
                    "the written batch reads back different");
  }

  // Hashed ids: any token is an id, so fewer rejections and other paths.
  return fuzz::accept_only_lockstep_errors([&] { data::parse_text(text, hashed, "hashed"); });
}
