// Fuzz target: the MovieLens converter's CSV readers (lockstep/data/movielens.h) and the whole
// conversion. The input is split at its first NUL byte: before it ratings.csv, after it
// movies.csv (without a NUL, the input is ratings.csv and movies.csv is a fixed small file).
//
// Checks, besides "only lockstep::Error": when both files read, convert_movielens either fails
// with lockstep::Error or writes data whose three splits read back (schema.toml, the .tsv files)
// with as many records as there were ratings.

#include <filesystem>
#include <string>

#include "fuzz/fuzz_target.h"
#include "lockstep/data/movielens.h"
#include "lockstep/data/text_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep;
  static fuzz::ScratchFile ratings_file("ratings.csv"), movies_file("movies.csv");
  static const std::string out_dir = ratings_file.path() + ".out";
  const std::string_view text = fuzz::as_text(data, size);
  const size_t nul = text.find('\0');
  const std::string_view ratings = text.substr(0, nul);
  const std::string_view movies =
      nul == std::string_view::npos
          ? std::string_view("movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n"
                             "2,\"Heat, the film\",Action\n3,Nothing,(no genres listed)\n")
          : text.substr(nul + 1);
  const std::string& rpath = ratings_file.write(ratings);
  const std::string& mpath = movies_file.write(movies);
  int64_t count = -1;
  fuzz::accept_only_lockstep_errors([&] {
    count = static_cast<int64_t>(data::read_movielens_ratings(rpath).size());
    data::read_movielens_movies(mpath);
  });
  if (count < 0 || count > 2000) return 0;  // unreadable, or too big to convert per input
  try {
    data::MovieLensOptions o;
    o.max_len = 3;
    const auto summary = data::convert_movielens(rpath, mpath, out_dir, o);
    const data::Schema schema = data::Schema::load(out_dir + "/schema.toml");
    int64_t records = 0;
    for (const char* split : {"train", "valid", "test"})
      records += data::read_text(out_dir + "/" + split + ".tsv", schema).size;
    fuzz::require(records == summary.ratings && summary.ratings == count,
                  "the converted splits do not hold every rating once");
  } catch (const Error&) {
  }
  std::error_code ec;
  std::filesystem::remove_all(out_dir, ec);
  return 0;
}
