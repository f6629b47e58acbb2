#include "lockstep/data/movielens.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "lockstep/config.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/core/error.h"
#include "lockstep/core/philox.h"
#include "lockstep/data/text_format.h"

namespace lockstep::data {

namespace {

constexpr const char* kSplitNames[3] = {"train", "valid", "test"};
// Records formatted and written per step.
constexpr int64_t kChunk = 16384;
// Tokens quoted in error messages are cut to this many characters.
constexpr size_t kMaxQuoted = 48;

// Control and non-ASCII bytes become \xHH, so that a mis-encoded line reads safely in a log.
std::string quote(std::string_view text) {
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < kMaxQuoted; ++i) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b >= 0x20 && b < 0x7f && text[i] != '\\')
      out += text[i];
    else
      out += fmt::format("\\x{:02x}", b);
  }
  out += text.size() > kMaxQuoted ? fmt::format("...' ({} characters)", text.size()) : "'";
  return out;
}

// ---- CSV files -------------------------------------------------------------------------------

/// A CSV file read line by line, with its header mapped to the columns a reader needs.
class CsvFile {
 public:
  /// Opens `path` and reads its header, which must name every column of `required`.
  CsvFile(std::string path, const std::vector<std::string>& required) : path_(std::move(path)) {
    in_.open(path_, std::ios::binary);
    LOCKSTEP_CHECK(in_.good(), "cannot open '{}' for reading: {}", path_, std::strerror(errno));
    std::string header;
    LOCKSTEP_CHECK(read_line(header), "{}: the file is empty: expected a header line '{}'", path_,
                   fmt::join(required, ","));
    if (header.rfind("\xEF\xBB\xBF", 0) == 0) header.erase(0, 3);  // a UTF-8 byte order mark
    try {
      split_csv_record(header, fields_);
    } catch (const Error& e) {
      throw Error(fmt::format("{}:1: header: {}", path_, e.what()));
    }
    width_ = fields_.size();
    for (size_t k = 0; k < width_; ++k)
      for (size_t j = 0; j < k; ++j)
        LOCKSTEP_CHECK(fields_[j] != fields_[k], "{}:1: the header names column {} twice", path_,
                       quote(fields_[k]));
    for (const auto& name : required) {
      const auto it = std::find(fields_.begin(), fields_.end(), name);
      LOCKSTEP_CHECK(it != fields_.end(),
                     "{}:1: the header {} has no column '{}': expected a header line '{}'", path_,
                     quote(header), name, fmt::join(required, ","));
      index_.push_back(static_cast<size_t>(it - fields_.begin()));
    }
  }

  /// Reads the next non-empty record into fields(); false at the end of the file.
  bool next() {
    std::string line;
    while (read_line(line)) {
      if (line.empty()) continue;
      try {
        split_csv_record(line, fields_);
      } catch (const Error& e) {
        throw Error(fmt::format("{}:{}: {}", path_, line_, e.what()));
      }
      LOCKSTEP_CHECK(fields_.size() == width_,
                     "{}:{}: expected {} comma-separated fields (one per header column), found {}",
                     path_, line_, width_, fields_.size());
      return true;
    }
    LOCKSTEP_CHECK(!in_.bad(), "{}: read error after line {}", path_, line_);
    return false;
  }

  /// The field of the k-th required column in the current record.
  const std::string& field(size_t k) const { return fields_[index_[k]]; }
  const std::string& path() const { return path_; }
  int64_t line() const { return line_; }

  /// Error "<path>:<line>: field '<name>' = '<text>' <what>".
  [[noreturn]] void fail(std::string_view name, std::string_view text,
                         std::string_view what) const {
    throw Error(fmt::format("{}:{}: field '{}' = {} {}", path_, line_, name, quote(text), what));
  }

 private:
  bool read_line(std::string& line) {
    if (!std::getline(in_, line)) return false;
    ++line_;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  }

  std::string path_;
  std::ifstream in_;
  int64_t line_ = 0;
  size_t width_ = 0;
  std::vector<std::string> fields_;
  std::vector<size_t> index_;  // per required column, its position in a record
};

template <class T>
T parse_integer(const CsvFile& f, std::string_view name, const std::string& text,
                const char* type) {
  T value{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec == std::errc::result_out_of_range)
    f.fail(name, text, fmt::format("is out of range for {}", type));
  if (ec != std::errc() || ptr != end || text.empty() || text[0] == '+')
    f.fail(name, text, fmt::format("is not a decimal {}", type));
  return value;
}

uint64_t parse_id(const CsvFile& f, std::string_view name, const std::string& text) {
  LOCKSTEP_CHECK(text.empty() || text[0] != '-',
                 "{}:{}: field '{}' = {} is not a decimal uint64 id", f.path(), f.line(), name,
                 quote(text));
  return parse_integer<uint64_t>(f, name, text, "uint64 id");
}

// ---- records ---------------------------------------------------------------------------------

/// A movie as the records need it: its category and genre ids.
struct MovieInfo {
  uint64_t category = 0;
  std::vector<uint64_t> genres;
};

/// One output record. Its history is history[hist_end - hist_len, hist_end) of the array the
/// converter builds (movie indices, each user's part in time order).
struct Record {
  int64_t timestamp = 0;
  uint64_t user = 0;
  uint64_t movie = 0;
  uint32_t movie_index = 0;  // into the MovieInfo array
  float label = 0;
  int64_t hist_end = 0;
  int64_t hist_len = 0;
  int64_t line = 0;  // in ratings.csv: orders duplicate ratings
};

/// Time order of records and ratings: (timestamp, user, movie), then the line for duplicates.
bool earlier(const MovieLensRating& a, const MovieLensRating& b) {
  return std::tie(a.timestamp, a.user, a.movie, a.line) <
         std::tie(b.timestamp, b.user, b.movie, b.line);
}

/// Fisher–Yates with Philox draws: the same permutation on every machine and standard library.
template <class T>
void shuffle(std::vector<T>& v, uint64_t seed) {
  constexpr uint64_t kStream = 0x4d4c53687566666cULL;  // "MLShuffl"
  for (size_t i = v.size(); i > 1; --i) {
    const uint64_t r = (static_cast<uint64_t>(philox_u32(seed, kStream, 2 * i)) << 32) |
                       philox_u32(seed, kStream, 2 * i + 1);
    const auto j = static_cast<size_t>((static_cast<unsigned __int128>(r) * i) >> 64);
    std::swap(v[i - 1], v[j]);
  }
}

/// Appends the ids of `ids` as one CSR row.
void push_row(SparseColumn& col, const uint64_t* ids, size_t n) {
  col.keys.insert(col.keys.end(), ids, ids + n);
  col.offsets.push_back(static_cast<int64_t>(col.keys.size()));
}

/// Formats `records` in chunks into `writer`.
void write_records(AtomicFileWriter& writer, const Schema& schema,
                   const std::vector<Record>& records, const std::vector<MovieInfo>& movies,
                   const std::vector<uint32_t>& history, const std::vector<uint64_t>& movie_ids) {
  Batch batch;
  std::string text;
  std::vector<uint64_t> hist_items, hist_cats;
  for (size_t at = 0; at < records.size(); at += kChunk) {
    const size_t n = std::min<size_t>(kChunk, records.size() - at);
    batch = make_empty_batch(schema);
    batch.size = static_cast<int64_t>(n);
    for (size_t r = at; r < at + n; ++r) {
      const Record& rec = records[r];
      const MovieInfo& m = movies[rec.movie_index];
      batch.labels.push_back(rec.label);
      batch.sample_ids.push_back(r);
      push_row(batch.sparse[0], &rec.user, 1);
      push_row(batch.sparse[1], &rec.movie, 1);
      push_row(batch.sparse[2], &m.category, 1);
      push_row(batch.sparse[3], m.genres.data(), m.genres.size());
      hist_items.clear();
      hist_cats.clear();
      for (int64_t k = rec.hist_end - rec.hist_len; k < rec.hist_end; ++k) {
        hist_items.push_back(movie_ids[history[k]]);
        hist_cats.push_back(movies[history[k]].category);
      }
      push_row(batch.sparse[4], hist_items.data(), hist_items.size());
      push_row(batch.sparse[5], hist_cats.data(), hist_cats.size());
    }
    text.clear();
    append_text(text, schema, batch);
    writer.write(text);
  }
}

}  // namespace

// ---- options ---------------------------------------------------------------------------------

std::string_view to_string(MovieLensHistory history) {
  return history == MovieLensHistory::kAll ? "all" : "liked";
}

std::string_view to_string(MovieLensSplit split) {
  switch (split) {
    case MovieLensSplit::kPerUser:
      return "user";
    case MovieLensSplit::kGlobal:
      return "global";
    case MovieLensSplit::kNewUsers:
      return "new-users";
  }
  return "?";
}

MovieLensHistory parse_movielens_history(std::string_view text) {
  if (text == "all") return MovieLensHistory::kAll;
  if (text == "liked") return MovieLensHistory::kLiked;
  throw ConfigError("history",
                    fmt::format("history = {} is not a history: use all or liked", quote(text)));
}

MovieLensSplit parse_movielens_split(std::string_view text) {
  if (text == "user") return MovieLensSplit::kPerUser;
  if (text == "global") return MovieLensSplit::kGlobal;
  if (text == "new-users") return MovieLensSplit::kNewUsers;
  throw ConfigError("split", fmt::format("split = {} is not a split: use user, global or new-users",
                                         quote(text)));
}

void MovieLensOptions::validate() const {
  check_range("click_threshold", click_threshold, -1e9, 1e9);
  check_range("max_len", max_len, int64_t{1}, kMaxSequenceLength);
  check_range("valid_fraction", valid_fraction, 0.0, 0.5);
  check_range("test_fraction", test_fraction, 0.0, 0.5);
}

// ---- CSV -------------------------------------------------------------------------------------

void split_csv_record(std::string_view line, std::vector<std::string>& fields) {
  fields.clear();
  size_t i = 0;
  while (true) {
    std::string field;
    if (i < line.size() && line[i] == '"') {
      const size_t open = i++;
      while (true) {
        LOCKSTEP_CHECK(i < line.size(),
                       "field {}: the quoted field opened at column {} has no closing quote",
                       fields.size() + 1, open + 1);
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {  // "" is a quote
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        field += line[i++];
      }
      LOCKSTEP_CHECK(i == line.size() || line[i] == ',',
                     "field {}: text after the closing quote at column {} (a quote inside a "
                     "quoted field is written \"\")",
                     fields.size() + 1, i);
    } else {
      const size_t end = std::min(line.find(',', i), line.size());
      const std::string_view raw = line.substr(i, end - i);
      LOCKSTEP_CHECK(raw.find('"') == std::string_view::npos,
                     "field {}: {} has a quote but does not start with one (quote the whole "
                     "field and write a quote as \"\")",
                     fields.size() + 1, quote(raw));
      field.assign(raw);
      i = end;
    }
    fields.push_back(std::move(field));
    if (i == line.size()) return;
    ++i;  // the comma
  }
}

std::vector<MovieLensRating> read_movielens_ratings(const std::string& path) {
  CsvFile f(path, {"userId", "movieId", "rating", "timestamp"});
  std::vector<MovieLensRating> out;
  while (f.next()) {
    MovieLensRating r;
    r.line = f.line();
    r.user = parse_id(f, "userId", f.field(0));
    r.movie = parse_id(f, "movieId", f.field(1));
    const std::string& rating = f.field(2);
    double value = 0;
    const char* end = rating.data() + rating.size();
    const auto [ptr, ec] = std::from_chars(rating.data(), end, value);
    if (ec != std::errc() || ptr != end || rating.empty())
      f.fail("rating", rating, "is not a number");
    if (!std::isfinite(value) || value < 0)
      f.fail("rating", rating, "is out of range: a rating is a finite number >= 0");
    r.rating = static_cast<float>(value);
    r.timestamp = parse_integer<int64_t>(f, "timestamp", f.field(3), "int64 timestamp");
    out.push_back(r);
  }
  return out;
}

std::vector<MovieLensMovie> read_movielens_movies(const std::string& path) {
  CsvFile f(path, {"movieId", "title", "genres"});
  std::vector<MovieLensMovie> out;
  std::unordered_map<uint64_t, int64_t> line_of;
  while (f.next()) {
    MovieLensMovie m;
    m.line = f.line();
    m.id = parse_id(f, "movieId", f.field(0));
    const auto [it, inserted] = line_of.emplace(m.id, m.line);
    LOCKSTEP_CHECK(inserted, "{}:{}: movieId {} is listed again (first at line {})", path, m.line,
                   m.id, it->second);
    m.title = f.field(1);
    const std::string& genres = f.field(2);
    size_t start = 0;
    while (true) {
      const size_t bar = std::min(genres.find('|', start), genres.size());
      if (bar == start)
        f.fail("genres", genres,
               "has an empty genre: genres are separated by single '|'; a movie without any is "
               "written '(no genres listed)'");
      m.genres.push_back(genres.substr(start, bar - start));
      if (bar == genres.size()) break;
      start = bar + 1;
    }
    out.push_back(std::move(m));
  }
  return out;
}

// ---- conversion ------------------------------------------------------------------------------

Schema movielens_schema(int64_t max_len) {
  return Schema({Column::label("label"), Column::sparse("user"), Column::sparse("item"),
                 Column::sparse("item_cat"), Column::sparse("item_genres"),
                 Column::sequence("hist_items", max_len), Column::sequence("hist_cats", max_len)});
}

MovieLensSummary convert_movielens(const std::string& ratings_csv, const std::string& movies_csv,
                                   const std::string& out_dir, const MovieLensOptions& options) {
  options.validate();
  const std::vector<MovieLensMovie> movie_list = read_movielens_movies(movies_csv);
  std::vector<MovieLensRating> ratings = read_movielens_ratings(ratings_csv);

  // Genre ids 1..G in the order of the names (std::map), so that they do not depend on the
  // order of movies.csv.
  std::map<std::string, uint64_t> genre_ids;
  for (const auto& m : movie_list)
    for (const auto& g : m.genres) genre_ids.emplace(g, 0);
  uint64_t next_id = 1;
  for (auto& [name, id] : genre_ids) id = next_id++;
  std::vector<MovieInfo> movies(movie_list.size());
  std::vector<uint64_t> movie_ids(movie_list.size());
  std::unordered_map<uint64_t, uint32_t> movie_index;
  for (size_t k = 0; k < movie_list.size(); ++k) {
    for (const auto& g : movie_list[k].genres) movies[k].genres.push_back(genre_ids.at(g));
    movies[k].category = movies[k].genres.front();  // the first genre as listed
    movie_ids[k] = movie_list[k].id;
    movie_index.emplace(movie_list[k].id, static_cast<uint32_t>(k));
  }
  for (const auto& r : ratings)
    LOCKSTEP_CHECK(movie_index.count(r.movie), "{}:{}: field 'movieId' = {} is not listed in {}",
                   ratings_csv, r.line, r.movie, movies_csv);

  // Each user's ratings in time order; ties in time by movieId (then line) for a fixed order.
  std::sort(ratings.begin(), ratings.end(), [](const MovieLensRating& a, const MovieLensRating& b) {
    return std::tie(a.user, a.timestamp, a.movie, a.line) <
           std::tie(b.user, b.timestamp, b.movie, b.line);
  });
  const int64_t n = static_cast<int64_t>(ratings.size());
  // The split of each rating (0 train, 1 valid, 2 test).
  std::vector<uint8_t> split(ratings.size(), 0);
  const auto count = [](int64_t total, double fraction) {
    return static_cast<int64_t>(std::floor(static_cast<double>(total) * fraction + 1e-9));
  };
  MovieLensSummary s;
  if (options.split == MovieLensSplit::kGlobal) {
    std::vector<int64_t> order(ratings.size());
    std::iota(order.begin(), order.end(), int64_t{0});
    std::sort(order.begin(), order.end(),
              [&](int64_t a, int64_t b) { return earlier(ratings[a], ratings[b]); });
    const int64_t n_test = count(n, options.test_fraction);
    const int64_t n_valid = count(n, options.valid_fraction);
    for (int64_t k = n - n_test - n_valid; k < n; ++k) split[order[k]] = k < n - n_test ? 1 : 2;
  }
  if (options.split == MovieLensSplit::kNewUsers) {
    // Users ordered by a seeded Philox draw of their id: which users are held out depends on
    // the seed and the ids only, not on the order of the file or the other users' data.
    constexpr uint64_t kStream = 0x4d4c557365727321ULL;  // "MLUsers!"
    std::vector<std::pair<uint64_t, uint64_t>> users;    // (draw, userId)
    for (int64_t i = 0; i < n; ++i)
      if (i == 0 || ratings[i].user != ratings[i - 1].user) {
        const uint64_t u = ratings[i].user;
        const uint64_t draw =
            (static_cast<uint64_t>(philox_u32(options.seed, kStream, 2 * u)) << 32) |
            philox_u32(options.seed, kStream, 2 * u + 1);
        users.emplace_back(draw, u);
      }
    std::sort(users.begin(), users.end());
    const int64_t num_users = static_cast<int64_t>(users.size());
    const int64_t n_test = count(num_users, options.test_fraction);
    const int64_t n_valid = count(num_users, options.valid_fraction);
    std::unordered_map<uint64_t, uint8_t> split_of;
    for (int64_t k = 0; k < n_test + n_valid; ++k) split_of[users[k].second] = k < n_test ? 2 : 1;
    for (int64_t i = 0; i < n; ++i) {
      const auto it = split_of.find(ratings[i].user);
      if (it != split_of.end()) split[i] = it->second;
    }
  }

  // Histories: per user, the movies (all, or the liked ones) in time order, appended once their
  // whole tie group (same timestamp) has been given its records.
  std::vector<uint32_t> history;
  history.reserve(ratings.size());
  std::vector<Record> records[3];
  for (int64_t u0 = 0; u0 < n;) {
    int64_t u1 = u0;
    while (u1 < n && ratings[u1].user == ratings[u0].user) ++u1;
    ++s.users;
    if (options.split == MovieLensSplit::kPerUser) {
      const int64_t m = u1 - u0;
      const int64_t n_test = count(m, options.test_fraction);
      const int64_t n_valid = count(m, options.valid_fraction);
      for (int64_t k = m - n_test - n_valid; k < m; ++k) split[u0 + k] = k < m - n_test ? 1 : 2;
    }
    const int64_t user_begin = static_cast<int64_t>(history.size());
    for (int64_t g0 = u0; g0 < u1;) {
      int64_t g1 = g0;
      while (g1 < u1 && ratings[g1].timestamp == ratings[g0].timestamp) ++g1;
      const int64_t end = static_cast<int64_t>(history.size());
      for (int64_t i = g0; i < g1; ++i) {
        const MovieLensRating& r = ratings[i];
        Record rec;
        rec.timestamp = r.timestamp;
        rec.user = r.user;
        rec.movie = r.movie;
        rec.movie_index = movie_index.at(r.movie);
        rec.label = r.rating >= options.click_threshold ? 1.0f : 0.0f;
        rec.hist_end = end;
        rec.hist_len = std::min(end - user_begin, options.max_len);
        rec.line = r.line;
        records[split[i]].push_back(rec);
      }
      for (int64_t i = g0; i < g1; ++i)
        if (options.history == MovieLensHistory::kAll ||
            ratings[i].rating >= options.click_threshold)
          history.push_back(movie_index.at(ratings[i].movie));
      g0 = g1;
    }
    u0 = u1;
  }

  for (int k = 0; k < 3; ++k) {
    std::sort(records[k].begin(), records[k].end(), [](const Record& a, const Record& b) {
      return std::tie(a.timestamp, a.user, a.movie, a.line) <
             std::tie(b.timestamp, b.user, b.movie, b.line);
    });
    if (k == 0 && options.shuffle_train) shuffle(records[0], options.seed);
    s.records[k] = static_cast<int64_t>(records[k].size());
    int64_t hist_total = 0;
    for (const Record& r : records[k]) {
      s.clicks[k] += r.label > 0.5f;
      hist_total += r.hist_len;
    }
    s.mean_history[k] = s.records[k] > 0 ? static_cast<double>(hist_total) / s.records[k] : 0.0;
  }
  s.movies = static_cast<int64_t>(movie_list.size());
  s.genres = static_cast<int64_t>(genre_ids.size());
  s.ratings = n;
  {
    std::vector<uint64_t> rated;
    rated.reserve(ratings.size());
    for (const auto& r : ratings) rated.push_back(r.movie);
    std::sort(rated.begin(), rated.end());
    s.rated_movies = std::unique(rated.begin(), rated.end()) - rated.begin();
  }

  // Write everything under temporary names; rename into place at the end, movielens.json last.
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  LOCKSTEP_CHECK(!ec, "'{}': cannot create the output directory: {}", out_dir, ec.message());
  LOCKSTEP_CHECK(std::filesystem::is_directory(out_dir), "'{}' exists and is not a directory",
                 out_dir);
  const auto path = [&](const char* name) {
    return (std::filesystem::path(out_dir) / name).string();
  };
  const Schema schema = movielens_schema(options.max_len);
  std::vector<AtomicFileWriter> writers;
  writers.reserve(5);
  writers.emplace_back(path("schema.toml"));
  writers.back().write(schema.to_toml());
  nlohmann::json splits;
  for (int k = 0; k < 3; ++k) {
    const std::string file = std::string(kSplitNames[k]) + ".tsv";
    writers.emplace_back(path(file.c_str()));
    write_records(writers.back(), schema, records[k], movies, history, movie_ids);
    writers.back().close();
    nlohmann::json j = {{"file", file},
                        {"records", s.records[k]},
                        {"clicks", s.clicks[k]},
                        {"click_rate", s.click_rate(k)},
                        {"mean_history", s.mean_history[k]}};
    if (!records[k].empty()) {
      const auto [lo, hi] = std::minmax_element(
          records[k].begin(), records[k].end(),
          [](const Record& a, const Record& b) { return a.timestamp < b.timestamp; });
      j["first_timestamp"] = lo->timestamp;
      j["last_timestamp"] = hi->timestamp;
    }
    splits[kSplitNames[k]] = j;
  }
  nlohmann::json genres = nlohmann::json::object();
  for (const auto& [name, id] : genre_ids) genres[name] = id;
  const nlohmann::json meta = {{"format", "lockstep-movielens"},
                               {"lockstep_version", LOCKSTEP_VERSION_STRING},
                               {"sources", {{"ratings", ratings_csv}, {"movies", movies_csv}}},
                               {"options",
                                {{"click_threshold", options.click_threshold},
                                 {"max_len", options.max_len},
                                 {"history", to_string(options.history)},
                                 {"split", to_string(options.split)},
                                 {"valid_fraction", options.valid_fraction},
                                 {"test_fraction", options.test_fraction},
                                 {"shuffle_train", options.shuffle_train},
                                 {"seed", options.seed}}},
                               {"ratings", s.ratings},
                               {"users", s.users},
                               {"movies", s.movies},
                               {"rated_movies", s.rated_movies},
                               {"genre_ids", genres},
                               {"category", "the id of the movie's first listed genre"},
                               {"schema", "schema.toml"},
                               {"splits", splits}};
  writers.emplace_back(path("movielens.json"));
  // (genre names and paths are bytes from the input: invalid UTF-8 is written as U+FFFD)
  writers.back().write(meta.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  size_t committed = 0;
  try {
    for (; committed < writers.size(); ++committed) writers[committed].commit();
  } catch (...) {
    for (size_t k = 0; k < committed; ++k) std::remove(writers[k].path().c_str());
    throw;
  }
  return s;
}

}  // namespace lockstep::data
