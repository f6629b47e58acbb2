// Every error in a model configuration or a data schema names the file, the line and the key.
//
// A corpus of bad files, each made by one mutation of a good one: the example configurations in
// their explicit form (test/data/configs/{demo,din,bst,dual}.toml: [[model.tables]] and
// [[model.fields]] for the synthetic schema; examples/configs/ holds the shorthand forms) and
// the synthetic data's schema (what lockstep-datagen writes to DIR/schema.toml). Mutations cover missing required keys, wrong
// types, values out of range, unknown keys, duplicates, references to tables, fields or columns
// that do not exist, sizes that do not fit together, wrong enum strings and TOML syntax errors,
// including errors raised only when the model is built for the data (models::load_model).
//
// The expected line is found in the mutated text (where the mutation was made, or the first line
// holding a given text), never taken from the code under test.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>

#include "data_test_util.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/models/factory.h"

using namespace lockstep;

namespace {

enum class Base { Demo, Din, Bst, Dual, Schema };

/// Load: the error must come from reading the file (load_<kind>_config, Schema::load) and again
/// from models::load_model. Build: it needs the data or the embedding layout, so it may come only
/// from models::load_model (with the synthetic data's columns).
enum class Stage { Load, Build };

struct Edit {
  std::string from, to, after;  // replace the first `from` at or after the first `after`
};

struct Case {
  std::string what;
  Base base = Base::Demo;
  std::string text;  // replaces the base text when not empty
  std::vector<Edit> edits;
  std::function<std::string(std::string)> transform;
  bool has_line = true;      // false: the error concerns the file as a whole
  std::string at, at_after;  // the expected line: the first line holding `at` after `at_after`
  std::vector<std::string> keys;
  Stage stage = Stage::Load;
  std::string loader;  // the kind whose load_<kind>_config reads the file (default: the base's)

  Case& edit(std::string from, std::string to, std::string after = "") {
    edits.push_back({std::move(from), std::move(to), std::move(after)});
    return *this;
  }
  Case& replace_text(std::string t) {
    text = std::move(t);
    return *this;
  }
  Case& apply(std::function<std::string(std::string)> f) {
    transform = std::move(f);
    return *this;
  }
  Case& line(std::string needle, std::string after = "") {
    at = std::move(needle);
    at_after = std::move(after);
    return *this;
  }
  Case& no_line() {
    has_line = false;
    return *this;
  }
  Case& key(std::string k) {
    keys.push_back(std::move(k));
    return *this;
  }
  Case& build() {
    stage = Stage::Build;
    return *this;
  }
  Case& read_as(std::string kind) {
    loader = std::move(kind);
    return *this;
  }
};

Case on(Base base, std::string what) {
  Case c;
  c.base = base;
  c.what = std::move(what);
  return c;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), {}};
}

const data::SyntheticGenerator& synthetic() {
  static const data::SyntheticGenerator gen(data::SyntheticConfig::demo());
  return gen;
}

std::string base_text(Base b) {
  // The explicit forms ([[model.tables]], [[model.fields]]) of the example configurations.
  const std::string dir = std::string(LOCKSTEP_SOURCE_DIR) + "/test/data/configs/";
  switch (b) {
    case Base::Demo:
      return read_text(dir + "demo.toml");
    case Base::Din:
      return read_text(dir + "din.toml");
    case Base::Bst:
      return read_text(dir + "bst.toml");
    case Base::Dual:
      return read_text(dir + "dual.toml");
    case Base::Schema:
      return synthetic().schema().to_toml();
  }
  return "";
}

const char* base_name(Base b) {
  switch (b) {
    case Base::Demo:
      return "demo";
    case Base::Din:
      return "din";
    case Base::Bst:
      return "bst";
    case Base::Dual:
      return "dual";
    case Base::Schema:
      return "schema";
  }
  return "?";
}

std::string base_kind(Base b) {
  switch (b) {
    case Base::Demo:
      return "embedding_mlp";
    case Base::Din:
      return "din";
    case Base::Bst:
      return "bst";
    case Base::Dual:
      return "dual";
    case Base::Schema:
      return "";
  }
  return "";
}

size_t find_after(const std::string& text, const std::string& needle, const std::string& after) {
  size_t from = 0;
  if (!after.empty()) {
    from = text.find(after);
    if (from == std::string::npos) return from;
  }
  return text.find(needle, from);
}

int64_t line_at(const std::string& text, size_t pos) {
  return 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(pos), '\n');
}

/// Removes every block that starts with a line `header` (up to the next blank line).
std::function<std::string(std::string)> without_blocks(std::string header) {
  return [header](std::string text) {
    for (size_t p; (p = text.find(header + "\n")) != std::string::npos;) {
      size_t end = text.find("\n\n", p);
      end = end == std::string::npos ? text.size() : end + 2;
      text.erase(p, end - p);
    }
    return text;
  };
}

/// `key` appears in `message` as a whole name: not inside a longer identifier or dotted path.
bool names_key(const std::string& message, const std::string& key) {
  const auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (size_t p = message.find(key); p != std::string::npos; p = message.find(key, p + 1)) {
    const bool left = p == 0 || (!ident(message[p - 1]) && message[p - 1] != '.');
    const size_t e = p + key.size();
    const bool right = e == message.size() || !ident(message[e]);
    if (left && right) return true;
  }
  return false;
}

/// The synthetic data the Build cases are built for.
std::vector<std::string> sparse_columns() {
  const auto& s = synthetic().schema();
  std::vector<std::string> names;
  for (int64_t c : s.sparse_columns()) names.push_back(s.columns()[c].name);
  return names;
}

void load_config(const std::string& kind, const std::string& path) {
  if (kind == "embedding_mlp")
    models::load_embedding_mlp_config(path);
  else if (kind == "din")
    models::load_din_config(path);
  else if (kind == "bst")
    models::load_bst_config(path);
  else if (kind == "dual")
    models::load_dual_config(path);
  else
    FAIL("no loader for kind " << kind);
}

/// The same configuration from text (what lockstep-train does with --config and --set).
void parse_config(const std::string& kind, const std::string& text, const std::string& source) {
  if (kind == "embedding_mlp")
    models::parse_embedding_mlp_config(text, source);
  else if (kind == "din")
    models::parse_din_config(text, source);
  else if (kind == "bst")
    models::parse_bst_config(text, source);
  else if (kind == "dual")
    models::parse_dual_config(text, source);
  else
    FAIL("no parser for kind " << kind);
}

void build_model(const std::string& path) {
  Context ctx;
  models::load_model<float>(path, sparse_columns(), synthetic().schema().num_dense(), ctx);
}

/// What is wrong with the error `f` raises ("" when it names file, line and every key).
std::string check_error(const std::function<void()>& f, const std::string& path,
                        const std::string& where, const std::vector<std::string>& keys) {
  std::string message;
  try {
    f();
    return "no error";
  } catch (const Error& e) {
    message = e.what();
  } catch (const std::exception& e) {
    return std::string("not a lockstep::Error: ") + e.what();
  }
  std::string problem;
  if (message.find(path) == std::string::npos)
    problem += "no file; ";
  else if (message.find(where) == std::string::npos)
    problem += "no line (want '" + where + "'); ";
  for (const auto& k : keys)
    if (!names_key(message, k)) problem += "no key '" + k + "'; ";
  return problem.empty() ? "" : problem + "message: " + message;
}

std::vector<Case> corpus();

}  // namespace

TEST_CASE("The example configurations and the schema load and build", "[config][errors]") {
  test::TempDir dir;
  for (Base b : {Base::Demo, Base::Din, Base::Bst, Base::Dual}) {
    INFO(base_name(b));
    const std::string path = dir.write(std::string(base_name(b)) + ".toml", base_text(b));
    CHECK(models::model_kind(path) == base_kind(b));
    CHECK_NOTHROW(load_config(base_kind(b), path));
    CHECK_NOTHROW(build_model(path));
  }
  const std::string schema = dir.write("schema.toml", base_text(Base::Schema));
  CHECK(data::Schema::load(schema) == synthetic().schema());
}

TEST_CASE("Student-only training from a configuration file needs kind = dual", "[config][errors]") {
  test::TempDir dir;
  Context ctx;
  const std::string text = base_text(Base::Din);
  const std::string din = dir.write("din.toml", text);
  const std::string where =
      din + ":" + std::to_string(line_at(text, text.find("kind = \"din\""))) + ":";
  CHECK_THROWS_WITH(
      models::load_model<float>(din, sparse_columns(), synthetic().schema().num_dense(), ctx, true),
      Catch::Matchers::Contains(where + " model.kind = 'din': student-only training needs the dual "
                                        "model"));
  const std::string dual = dir.write("dual.toml", base_text(Base::Dual));
  const auto model = models::load_model<float>(dual, sparse_columns(),
                                               synthetic().schema().num_dense(), ctx, true);
  const auto* dnn = dynamic_cast<const models::DualDnn<float>*>(model.get());
  REQUIRE(dnn != nullptr);
  CHECK(dnn->config().mode == models::DualMode::StudentOnly);
}

TEST_CASE("Every configuration error names the file, the line and the key", "[config][errors]") {
  test::TempDir dir;
  int failures = 0;
  const auto cases = corpus();
  for (const Case& c : cases) {
    INFO(base_name(c.base) << ": " << c.what);
    std::string text = c.text.empty() ? base_text(c.base) : c.text;
    size_t edit_pos = std::string::npos;
    for (const Edit& e : c.edits) {
      const size_t p = find_after(text, e.from, e.after);
      REQUIRE(p != std::string::npos);  // the mutation applies
      text.replace(p, e.from.size(), e.to);
      edit_pos = p;
    }
    if (c.transform) text = c.transform(text);
    REQUIRE(!c.keys.empty());
    std::string where;
    const std::string path = dir.write(std::string(base_name(c.base)) + ".toml", text);
    if (c.has_line) {
      size_t p = std::string::npos;
      if (!c.at.empty()) {
        p = find_after(text, c.at, c.at_after);
      } else {
        REQUIRE(c.edits.size() == 1);  // several edits: say where the error is
        REQUIRE(!c.edits[0].to.empty());
        p = edit_pos + c.edits[0].to.find_first_not_of('\n');
      }
      REQUIRE(p != std::string::npos);
      where = path + ":" + std::to_string(line_at(text, p)) + ":";
    } else {
      where = path + ": ";
    }
    std::string problem;
    if (c.base == Base::Schema) {
      problem = check_error([&] { data::Schema::load(path); }, path, where, c.keys);
    } else {
      if (c.stage == Stage::Load) {
        const std::string kind = c.loader.empty() ? base_kind(c.base) : c.loader;
        problem = check_error([&] { load_config(kind, path); }, path, where, c.keys);
        if (problem.empty())
          problem = check_error([&] { parse_config(kind, text, path); }, path, where, c.keys);
      }
      if (problem.empty() && c.loader.empty())
        problem = check_error([&] { build_model(path); }, path, where, c.keys);
    }
    if (!problem.empty()) ++failures;
    CHECK(problem == "");
  }
  INFO(failures << " of " << cases.size() << " cases do not name file, line and key");
  CHECK(failures == 0);
}

namespace {

std::vector<Case> corpus() {
  const auto D = Base::Demo, N = Base::Din, B = Base::Bst, U = Base::Dual, S = Base::Schema;
  std::vector<Case> c;
  // ---- demo.toml (embedding_mlp): TOML syntax
  c.push_back(on(D, "trailing garbage")
                  .edit("rows = 131072", "rows = 131072 7")
                  .key("model.tables[0].rows"));
  c.push_back(on(D, "unterminated string")
                  .edit("activation = \"prelu\"", "activation = \"prelu")
                  .key("model.mlp.activation"));
  c.push_back(on(D, "unterminated array")
                  .edit("widths = [200, 80, 1]", "widths = [200, 80, 1")
                  .key("model.mlp.widths"));
  c.push_back(
      on(D, "unterminated table header").edit("[model.mlp]", "[model.mlp").key("model.mlp"));
  c.push_back(on(D, "integer beyond 64 bits")
                  .edit("rows = 131072", "rows = 99999999999999999999")
                  .key("model.tables[0].rows"));
  c.push_back(on(D, "key written twice")
                  .edit("dim = 16", "dim = 16\ndim = 32")
                  .line("dim = 32")
                  .key("model.tables[0].dim"));
  c.push_back(on(D, "table written twice")
                  .edit("[sparse_optimizer]", "[optimizer]\nlr = 0.1\n\n[sparse_optimizer]")
                  .line("[optimizer]", "lr = 0.001")
                  .key("optimizer"));
  // wrong types
  c.push_back(on(D, "string for int")
                  .edit("rows = 131072", "rows = \"131072\"")
                  .key("model.tables[0].rows"));
  c.push_back(on(D, "float for int").edit("dim = 16", "dim = 16.0").key("model.tables[0].dim"));
  c.push_back(on(D, "float seed").edit("seed = 1", "seed = 1.5").key("seed"));
  c.push_back(on(D, "array for float").edit("lr = 0.001", "lr = [0.001]").key("optimizer.lr"));
  c.push_back(on(D, "table for float")
                  .edit("init_scale = 0.05", "init_scale = { value = 0.05 }")
                  .key("model.tables[0].init_scale"));
  c.push_back(
      on(D, "int for array").edit("widths = [200, 80, 1]", "widths = 200").key("model.mlp.widths"));
  c.push_back(on(D, "string in int array")
                  .edit("widths = [200, 80, 1]", "widths = [200, \"80\", 1]")
                  .key("model.mlp.widths[1]"));
  c.push_back(on(D, "string for bool")
                  .edit("use_dense = true", "use_dense = \"yes\"")
                  .key("model.use_dense"));
  c.push_back(on(D, "int for string")
                  .edit("pooling = \"mean\"", "pooling = 1")
                  .key("model.tables[0].pooling"));
  c.push_back(
      on(D, "int table name").edit("name = \"user\"", "name = 7").key("model.tables[0].name"));
  c.push_back(on(D, "array for table")
                  .edit("[model.mlp]\nwidths = [200, 80, 1]\nactivation = \"prelu\"\n", "")
                  .edit("use_dense = true", "use_dense = true\nmlp = [200, 80, 1]")
                  .line("mlp = ")
                  .key("model.mlp"));
  c.push_back(on(D, "string for table")
                  .edit("[optimizer]\nkind = \"adam\"\nlr = 0.001\n", "")
                  .edit("seed = 1", "seed = 1\noptimizer = \"adam\"")
                  .line("optimizer = ")
                  .key("optimizer"));
  // out of range
  c.push_back(on(D, "zero width")
                  .edit("widths = [200, 80, 1]", "widths = [200, 0, 1]")
                  .key("model.mlp.widths[1]"));
  c.push_back(on(D, "negative width")
                  .edit("widths = [200, 80, 1]", "widths = [200, -80, 1]")
                  .key("model.mlp.widths[1]"));
  c.push_back(on(D, "huge width")
                  .edit("widths = [200, 80, 1]", "widths = [200, 2000000, 1]")
                  .key("model.mlp.widths[1]"));
  c.push_back(on(D, "zero rows").edit("rows = 131072", "rows = 0").key("model.tables[0].rows"));
  c.push_back(
      on(D, "negative rows").edit("rows = 131072", "rows = -1").key("model.tables[0].rows"));
  c.push_back(
      on(D, "huge rows").edit("rows = 131072", "rows = 2199023255552").key("model.tables[0].rows"));
  c.push_back(on(D, "zero dim").edit("dim = 16", "dim = 0").key("model.tables[0].dim"));
  c.push_back(on(D, "huge dim").edit("dim = 16", "dim = 5000").key("model.tables[0].dim"));
  c.push_back(on(D, "negative init_scale")
                  .edit("init_scale = 0.05", "init_scale = -0.05")
                  .key("model.tables[0].init_scale"));
  c.push_back(on(D, "zero lr").edit("lr = 0.001", "lr = 0").key("optimizer.lr"));
  c.push_back(on(D, "huge lr").edit("lr = 0.001", "lr = 1e9").key("optimizer.lr"));
  c.push_back(on(D, "negative seed").edit("seed = 1", "seed = -1").key("seed"));
  c.push_back(on(D, "negative sparse lr").edit("lr = 0.5", "lr = -0.5").key("sparse_optimizer.lr"));
  c.push_back(on(D, "beta1 = 1")
                  .edit("lr = 0.001", "lr = 0.001\nbeta1 = 1.0")
                  .line("beta1")
                  .key("optimizer.beta1"));
  c.push_back(on(D, "leaky_slope > 1")
                  .edit("activation = \"prelu\"", "activation = \"prelu\"\nleaky_slope = 2.0")
                  .line("leaky_slope")
                  .key("model.mlp.leaky_slope"));
  c.push_back(on(D, "negative max_len")
                  .edit("table = \"user\"", "table = \"user\"\nmax_len = -3")
                  .line("max_len")
                  .key("model.fields[0].max_len"));
  c.push_back(on(D, "huge max_len")
                  .edit("table = \"user\"", "table = \"user\"\nmax_len = 200000")
                  .line("max_len")
                  .key("model.fields[0].max_len"));
  c.push_back(on(D, "nesterov without momentum")
                  .edit("kind = \"adam\"", "kind = \"sgd\"\nnesterov = true")
                  .line("nesterov")
                  .key("optimizer.nesterov"));
  // unknown keys
  c.push_back(on(D, "typo in [model.mlp]").edit("widths", "wdiths").key("model.mlp.wdiths"));
  c.push_back(on(D, "typo in a table").edit("pooling", "pooing").key("model.tables[0].pooing"));
  c.push_back(on(D, "typo in [optimizer]")
                  .edit("lr = 0.001", "learning_rate = 0.001")
                  .key("optimizer.learning_rate"));
  c.push_back(on(D, "typo at the top").edit("seed = 1", "sed = 1").key("sed"));
  c.push_back(on(D, "typo in [model]").edit("use_dense", "use_dence").key("model.use_dence"));
  c.push_back(on(D, "typo in a field")
                  .edit("column = \"user\"", "colum = \"user\"")
                  .key("model.fields[0].colum"));
  c.push_back(on(D, "typo in [sparse_optimizer]")
                  .edit("kind = \"adagrad\"", "knd = \"adagrad\"")
                  .key("sparse_optimizer.knd"));
  c.push_back(on(D, "[model.din] in an embedding_mlp")
                  .edit("[model.mlp]", "[model.din]\nquery = [\"item\"]\n\n[model.mlp]")
                  .key("model.din"));
  // dynamic tables (the feasign store)
  c.push_back(on(D, "unknown table kind")
                  .edit("rows = 131072", "kind = \"dynamc\"\nrows = 131072")
                  .line("kind = \"dynamc\"")
                  .key("model.tables[0].kind"));
  c.push_back(on(D, "dynamic table with rows and capacity")
                  .edit("rows = 131072", "kind = \"dynamic\"\nrows = 131072\ncapacity = 5")
                  .line("rows = 131072")
                  .key("model.tables[0].capacity"));
  c.push_back(on(D, "dynamic table without capacity")
                  .edit("rows = 131072", "kind = \"dynamic\"")
                  .line("[[model.tables]]")
                  .key("model.tables[0].capacity"));
  c.push_back(on(D, "capacity of a hashed table")
                  .edit("rows = 131072", "rows = 131072\ncapacity = 100")
                  .line("capacity = 100")
                  .key("model.tables[0].capacity"));
  c.push_back(on(D, "zero capacity")
                  .edit("rows = 131072", "kind = \"dynamic\"\ncapacity = 0")
                  .line("capacity = 0")
                  .key("model.tables[0].capacity"));
  c.push_back(on(D, "accessor key misspelt")
                  .edit("rows = 131072",
                        "kind = \"dynamic\"\ncapacity = 100\naccessor = { embedx_treshold = 3 }")
                  .line("accessor =")
                  .key("model.tables[0].accessor.embedx_treshold"));
  c.push_back(on(D, "accessor decay rate 0")
                  .edit("rows = 131072",
                        "kind = \"dynamic\"\ncapacity = 100\naccessor = { show_click_decay_rate = 0.0 }")
                  .line("accessor =")
                  .key("model.tables[0].accessor.show_click_decay_rate"));
  c.push_back(on(D, "accessor negative threshold")
                  .edit("rows = 131072",
                        "kind = \"dynamic\"\ncapacity = 100\naccessor = { base_threshold = -1.0 }")
                  .line("accessor =")
                  .key("model.tables[0].accessor.base_threshold"));
  c.push_back(on(D, "accessor lr_learning_rate 0")
                  .edit("rows = 131072",
                        "kind = \"dynamic\"\ncapacity = 100\naccessor = { lr_learning_rate = 0.0 }")
                  .line("accessor =")
                  .key("model.tables[0].accessor.lr_learning_rate"));
  c.push_back(on(D, "accessor of a hashed table")
                  .edit("rows = 131072", "rows = 131072\naccessor = { click_coeff = 2.0 }")
                  .line("accessor =")
                  .key("model.tables[0].accessor"));
  c.push_back(on(D, "dynamic table with identity ids")
                  .edit("rows = 131072", "kind = \"dynamic\"\ncapacity = 100\nids = \"identity\"")
                  .line("ids = \"identity\"")
                  .key("model.tables[0].ids"));
  c.push_back(on(U, "student residual tables with a dynamic table")
                  .edit("rows = 131072", "kind = \"dynamic\"\ncapacity = 100")
                  .line("student_residual_embeddings = true")
                  .key("model.distillation.student_residual_embeddings"));
  // missing keys
  c.push_back(on(D, "no [model]")
                  .replace_text("seed = 1\n\n[optimizer]\nlr = 0.001\n")
                  .no_line()
                  .key("[model]"));
  c.push_back(on(D, "table without rows")
                  .edit("name = \"user\"\nrows = 131072\n", "name = \"user\"\n")
                  .line("[[model.tables]]")
                  .key("model.tables[0].rows"));
  c.push_back(
      on(D, "table without name")
          .edit("name = \"item\"        # read by the target item and the history items\n", "")
          .line("[[model.tables]]", "name = \"user\"")
          .key("model.tables[1].name"));
  c.push_back(
      on(D, "empty table name").edit("name = \"user\"", "name = \"\"").key("model.tables[0].name"));
  c.push_back(on(D, "field without table")
                  .edit("column = \"user\"\ntable = \"user\"\n", "column = \"user\"\n")
                  .line("[[model.fields]]")
                  .key("model.fields[0].table"));
  c.push_back(on(D, "field without column")
                  .edit("column = \"item\"\n", "")
                  .line("[[model.fields]]", "column = \"user\"")
                  .key("model.fields[1].column"));
  c.push_back(on(D, "empty field table")
                  .edit("table = \"user\"", "table = \"\"")
                  .key("model.fields[0].table"));
  c.push_back(on(D, "no tables")
                  .apply(without_blocks("[[model.tables]]"))
                  .line("[model]")
                  .key("model.tables"));
  c.push_back(on(D, "no fields")
                  .apply(without_blocks("[[model.fields]]"))
                  .line("[model]")
                  .key("model.fields"));
  c.push_back(
      on(D, "no widths").edit("widths = [200, 80, 1]", "widths = []").key("model.mlp.widths"));
  // wrong enum strings
  c.push_back(
      on(D, "unknown activation").edit("\"prelu\"", "\"swish\"").key("model.mlp.activation"));
  c.push_back(on(D, "unknown pooling")
                  .edit("pooling = \"mean\"", "pooling = \"max\"")
                  .key("model.tables[0].pooling"));
  c.push_back(on(D, "unknown optimizer")
                  .edit("kind = \"adam\"", "kind = \"rmsprop\"")
                  .key("optimizer.kind"));
  c.push_back(on(D, "sgd for the tables")
                  .edit("kind = \"adagrad\"", "kind = \"sgd\"")
                  .key("sparse_optimizer.kind"));
  c.push_back(on(D, "unknown model kind")
                  .edit("use_dense = true", "kind = \"dien\"\nuse_dense = true")
                  .key("model.kind"));
  c.push_back(on(D, "int model kind")
                  .edit("use_dense = true", "kind = 3\nuse_dense = true")
                  .key("model.kind"));
  c.push_back(on(D, "read as din (no kind)").read_as("din").line("[model]").key("model.kind"));
  // sizes, duplicates and references
  c.push_back(on(D, "last width not 1")
                  .edit("widths = [200, 80, 1]", "widths = [200, 80, 2]")
                  .key("model.mlp.widths"));
  c.push_back(
      on(D, "sequence field in embedding_mlp")
          .edit("table = \"item\"\n", "table = \"item\"\nmax_len = 20\n", "column = \"hist_items\"")
          .line("max_len")
          .key("model.fields[3].max_len"));
  c.push_back(on(D, "two tables of one name")
                  .edit("name = \"item\"", "name = \"user\"")
                  .key("model.tables[1].name"));
  c.push_back(on(D, "field reads an undefined table")
                  .edit("table = \"user\"", "table = \"usr\"")
                  .key("model.fields[0].table"));
  // (Pooled fields of different tables may share a column: the first-order tables of FM.)
  c.push_back(
      on(D, "two pooled fields read one column and one table")
          .edit("column = \"item\"\ntable = \"item\"", "column = \"user\"\ntable = \"user\"")
          .key("model.fields[1].column"));
  c.push_back(on(D, "table no field reads")
                  .edit("[[model.fields]]\ncolumn = \"user\"",
                        "[[model.tables]]\nname = \"unused\"\nrows = "
                        "10\n\n[[model.fields]]\ncolumn = \"user\"")
                  .line("[[model.tables]]", "name = \"ctx_3\"")
                  .key("model.tables[7]"));
  c.push_back(on(D, "column not in the data")
                  .edit("column = \"user\"", "column = \"usr\"")
                  .build()
                  .key("model.fields[0].column"));

  // [model.fm] (LR, FM, DeepFM: docs/configuration.md "LR, FM and DeepFM exactly")
  const std::string tables = "[[model.tables]]";
  c.push_back(on(D, "unknown key in [model.fm]")
                  .edit(tables, "[model.fm]\nfirst_ordr = true\n\n" + tables)
                  .line("first_ordr")
                  .key("model.fm.first_ordr"));
  c.push_back(on(D, "string for bool in [model.fm]")
                  .edit(tables, "[model.fm]\nsecond_order = \"yes\"\n\n" + tables)
                  .line("second_order")
                  .key("model.fm.second_order"));
  c.push_back(on(D, "first_order without its tables")
                  .edit(tables, "[model.fm]\nfirst_order = true\n\n" + tables)
                  .line("first_order")
                  .key("model.fm.first_order"));
  c.push_back(on(D, "first-order table that does not exist")
                  .edit(tables, "[model.fm]\nfirst_order = true\nlinear_tables = [\"nope\"]\n\n" +
                                    tables)
                  .line("linear_tables")
                  .key("model.fm.linear_tables[0]"));
  c.push_back(on(D, "first-order table of dim 16")
                  .edit(tables, "[model.fm]\nfirst_order = true\nlinear_tables = [\"user\"]\n\n" +
                                    tables)
                  .line("linear_tables")
                  .key("model.fm.linear_tables[0]"));
  c.push_back(on(D, "no MLP and no FM term")
                  .edit("widths = [200, 80, 1]", "widths = []")
                  .key("model.mlp.widths"));
  c.push_back(on(D, "second-order field that is not a column")
                  .edit(tables, "[model.fm]\nsecond_order = true\nfields = [\"user\", "
                                "\"nope\"]\n\n" +
                                    tables)
                  .line("fields = [")
                  .key("model.fm.fields[1]")
                  .build());
  // ---- din.toml
  c.push_back(on(N, "empty query")
                  .edit("query = [\"item\", \"item_cat\"]", "query = []")
                  .key("model.din.query"));
  c.push_back(on(N, "fewer keys than query")
                  .edit("keys = [\"hist_items\", \"hist_cats\"]", "keys = [\"hist_items\"]")
                  .key("model.din.keys"));
  c.push_back(on(N, "string for array")
                  .edit("query = [\"item\", \"item_cat\"]", "query = \"item\"")
                  .key("model.din.query"));
  c.push_back(on(N, "ints in query")
                  .edit("query = [\"item\", \"item_cat\"]", "query = [1, 2]")
                  .key("model.din.query[0]"));
  c.push_back(on(N, "empty hidden")
                  .edit("hidden = [80, 40]", "hidden = []")
                  .key("model.din.attention.hidden"));
  c.push_back(on(N, "zero hidden")
                  .edit("hidden = [80, 40]", "hidden = [80, 0]")
                  .key("model.din.attention.hidden[1]"));
  c.push_back(on(N, "huge hidden")
                  .edit("hidden = [80, 40]", "hidden = [80, 100000]")
                  .key("model.din.attention.hidden[1]"));
  c.push_back(on(N, "unknown attention activation")
                  .edit("activation = \"prelu\"                  #",
                        "activation = \"swish\"                  #")
                  .key("model.din.attention.activation"));
  c.push_back(on(N, "string for bool")
                  .edit("softmax = false", "softmax = \"no\"")
                  .key("model.din.attention.softmax"));
  c.push_back(
      on(N, "typo in attention").edit("softmax", "sofmax").key("model.din.attention.sofmax"));
  c.push_back(on(N, "typo in [model.din]").edit("keys = [", "kyes = [").key("model.din.kyes"));
  c.push_back(on(N, "typo in a table header")
                  .edit("[model.din.attention]", "[model.din.atention]")
                  .key("model.din.atention"));
  c.push_back(on(N, "read as bst").read_as("bst").line("kind = \"din\"").key("model.kind"));
  c.push_back(on(N, "max_len beyond the limit")
                  .edit("max_len = 20 ", "max_len = 100001 ")
                  .key("model.fields[3].max_len"));
  c.push_back(on(N, "dice_momentum > 1")
                  .edit("softmax = false", "softmax = false\ndice_momentum = 1.5")
                  .line("dice_momentum")
                  .key("model.din.attention.dice_momentum"));
  c.push_back(on(N, "sequence lengths differ")
                  .edit("max_len = 20\n", "max_len = 10\n")
                  .key("model.fields[4].max_len"));
  c.push_back(on(N, "keys are pooled fields")
                  .build()
                  .edit("keys = [\"hist_items\", \"hist_cats\"]", "keys = [\"item\", \"item_cat\"]")
                  .key("model.din.keys[0]"));
  c.push_back(on(N, "query not consecutive")
                  .build()
                  .edit("query = [\"item\", \"item_cat\"]", "query = [\"user\", \"item_cat\"]")
                  .key("model.din.query[1]"));
  c.push_back(on(N, "query names no field")
                  .build()
                  .edit("query = [\"item\", \"item_cat\"]", "query = [\"item\", \"ctx_9\"]")
                  .key("model.din.query[1]"));
  c.push_back(on(N, "query names a sequence field")
                  .build()
                  .edit("query = [\"item\", \"item_cat\"]", "query = [\"item\", \"hist_cats\"]")
                  .key("model.din.query[1]"));
  c.push_back(on(N, "history narrower than the target")
                  .build()
                  .edit("column = \"hist_items\"\ntable = \"item\"",
                        "column = \"hist_items\"\ntable = \"hist_item\"")
                  .edit("[[model.fields]]\ncolumn = \"user\"",
                        "[[model.tables]]\nname = \"hist_item\"\nrows = 1000\ndim = "
                        "8\n\n[[model.fields]]\ncolumn = \"user\"")
                  .line("keys = ")
                  .key("model.din.keys[0]"));
  c.push_back(on(N, "no history")
                  .build()
                  .edit("max_len = 20                          # the demo preset's longest "
                        "history; din-bench: 50\n",
                        "")
                  .edit("max_len = 20\n", "")
                  .line("keys = ")
                  .key("model.din.keys"));
  c.push_back(on(N, "history column not in the data")
                  .build()
                  .edit("column = \"hist_items\"", "column = \"hist_item\"")
                  .key("model.fields[3].column"));

  // ---- bst.toml
  c.push_back(on(B, "zero blocks").edit("blocks = 1", "blocks = 0").key("model.bst.blocks"));
  c.push_back(on(B, "too many blocks").edit("blocks = 1", "blocks = 65").key("model.bst.blocks"));
  c.push_back(on(B, "unknown read-out")
                  .edit("output = \"target\"", "output = \"last\"")
                  .key("model.bst.output"));
  c.push_back(
      on(B, "zero heads").edit("heads = 8", "heads = 0").key("model.bst.transformer.heads"));
  c.push_back(on(B, "dropout > 0.95")
                  .edit("dropout = 0.0", "dropout = 1.5")
                  .key("model.bst.transformer.dropout"));
  c.push_back(on(B, "negative ffn_width")
                  .edit("ffn_width = 32", "ffn_width = -1")
                  .key("model.bst.transformer.ffn_width"));
  c.push_back(on(B, "zero layer_norm_eps")
                  .edit("ffn_width = 32", "ffn_width = 32\nlayer_norm_eps = 0.0")
                  .line("layer_norm_eps")
                  .key("model.bst.transformer.layer_norm_eps"));
  c.push_back(
      on(B, "typo in transformer").edit("heads = 8", "head = 8").key("model.bst.transformer.head"));
  c.push_back(on(B, "fewer history fields than target")
                  .edit("sequence = [\"hist_items\", \"hist_cats\"]", "sequence = [\"hist_items\"]")
                  .key("model.bst.sequence"));
  c.push_back(on(B, "int time_gap")
                  .edit("blocks = 1", "time_gap = 3\nblocks = 1")
                  .key("model.bst.time_gap"));
  c.push_back(on(B, "string leaky_slope")
                  .edit("leaky_slope = 0.01", "leaky_slope = \"x\"")
                  .key("model.bst.transformer.leaky_slope"));
  c.push_back(on(B, "empty target")
                  .edit("target = [\"item\", \"item_cat\"]", "target = []")
                  .key("model.bst.target"));
  c.push_back(on(B, "unknown mlp activation")
                  .edit("activation = \"leaky_relu\"", "activation = \"gelu\"")
                  .key("model.mlp.activation"));
  c.push_back(on(B, "heads do not divide the token width")
                  .build()
                  .edit("heads = 8", "heads = 5")
                  .key("model.bst.transformer.heads"));
  c.push_back(on(B, "more heads than token width")
                  .build()
                  .edit("heads = 8", "heads = 64")
                  .key("model.bst.transformer.heads"));
  c.push_back(on(B, "pooled time_gap")
                  .build()
                  .edit("blocks = 1", "time_gap = \"ctx_0\"\nblocks = 1")
                  .key("model.bst.time_gap"));
  c.push_back(on(B, "pooled field in the sequence")
                  .build()
                  .edit("sequence = [\"hist_items\", \"hist_cats\"]",
                        "sequence = [\"hist_items\", \"user\"]")
                  .key("model.bst.sequence[1]"));
  c.push_back(on(B, "sequence field in the target")
                  .build()
                  .edit("target = [\"item\", \"item_cat\"]", "target = [\"item\", \"hist_cats\"]")
                  .key("model.bst.target[1]"));
  c.push_back(on(B, "no history")
                  .build()
                  .edit("max_len = 20                          # the demo preset's longest "
                        "history; din-bench: 50\n",
                        "")
                  .edit("max_len = 20\n", "")
                  .line("sequence = ")
                  .key("model.bst.sequence"));

  // ---- dual.toml
  c.push_back(on(U, "no components")
                  .edit("components = [\"din\", \"cross\"]", "components = []")
                  .key("model.teacher.components"));
  c.push_back(on(U, "unknown component")
                  .edit("components = [\"din\", \"cross\"]", "components = [\"din\", \"gru\"]")
                  .key("model.teacher.components[1]"));
  c.push_back(on(U, "component twice")
                  .edit("components = [\"din\", \"cross\"]", "components = [\"din\", \"din\"]")
                  .key("model.teacher.components[1]"));
  c.push_back(on(U, "string for array")
                  .edit("components = [\"din\", \"cross\"]", "components = \"din\"")
                  .key("model.teacher.components"));
  c.push_back(on(U, "teacher MLP not ending in 1")
                  .edit("widths = [512, 256, 128, 1]", "widths = [512, 256, 128, 2]")
                  .key("model.teacher.mlp.widths"));
  c.push_back(on(U, "student MLP not ending in 1")
                  .edit("widths = [128, 64, 1]", "widths = [128, 64, 3]")
                  .key("model.student.mlp.widths"));
  c.push_back(on(U, "hint without a student hidden layer")
                  .edit("widths = [128, 64, 1]", "widths = [1]")
                  .edit("hint_weight = 0.0", "hint_weight = 0.1")
                  .line("hint_weight")
                  .key("model.distillation.hint_weight"));
  c.push_back(on(U, "unknown kd").edit("kd = \"mse\"", "kd = \"kl\"").key("model.distillation.kd"));
  c.push_back(on(U, "unknown mode")
                  .edit("mode = \"joint\"", "mode = \"online\"")
                  .key("model.distillation.mode"));
  c.push_back(
      on(U, "int mode").edit("mode = \"joint\"", "mode = 1").key("model.distillation.mode"));
  c.push_back(on(U, "zero temperature")
                  .edit("temperature = 1.0", "temperature = 0.0")
                  .key("model.distillation.temperature"));
  c.push_back(on(U, "negative kd_weight")
                  .edit("kd_weight = 1.0", "kd_weight = -1.0")
                  .key("model.distillation.kd_weight"));
  c.push_back(on(U, "zero cross layers")
                  .edit("layers = 3", "layers = 0")
                  .key("model.teacher.cross.layers"));
  c.push_back(on(U, "typo in distillation")
                  .edit("hint_weight", "hint_wieght")
                  .key("model.distillation.hint_wieght"));
  c.push_back(on(U, "string for bool")
                  .edit("student_embedding_scale = 0.0", "student_updates_embeddings = \"no\"")
                  .key("model.distillation.student_updates_embeddings"));
  c.push_back(on(U, "student_updates_embeddings beside student_embedding_scale")
                  .edit("student_embedding_losses = \"label\"", "student_updates_embeddings = true")
                  .line("student_updates_embeddings")
                  .key("model.distillation.student_updates_embeddings"));
  c.push_back(on(U, "student_embedding_scale above 1")
                  .edit("student_embedding_scale = 0.0", "student_embedding_scale = 1.5")
                  .key("model.distillation.student_embedding_scale"));
  c.push_back(on(U, "unknown student_embedding_losses")
                  .edit("student_embedding_losses = \"label\"", "student_embedding_losses = \"kd\"")
                  .key("model.distillation.student_embedding_losses"));
  c.push_back(on(U, "number for student_residual_embeddings")
                  .edit("student_residual_embeddings = true", "student_residual_embeddings = 1")
                  .key("model.distillation.student_residual_embeddings"));
  c.push_back(on(U, "negative kd_warmup_steps")
                  .edit("kd_warmup_steps = 100", "kd_warmup_steps = -5")
                  .key("model.distillation.kd_warmup_steps"));
  c.push_back(on(U, "empty teacher attention")
                  .edit("hidden = [80, 40]", "hidden = []")
                  .key("model.teacher.din.attention.hidden"));
  c.push_back(
      on(U, "unknown key in [model.student]")
          .edit("[model.student.mlp]", "[model.student]\ndropout = 0.1\n\n[model.student.mlp]")
          .line("dropout")
          .key("model.student.dropout"));
  c.push_back(on(U, "string for fm fields")
                  .edit("[model.teacher.cross]",
                        "[model.teacher.fm]\nfields = \"user\"\n\n[model.teacher.cross]")
                  .line("fields = ")
                  .key("model.teacher.fm.fields"));
  c.push_back(on(U, "unknown teacher bst read-out")
                  .edit("[model.teacher.cross]",
                        "[model.teacher.bst]\noutput = \"last\"\n\n[model.teacher.cross]")
                  .line("output = ")
                  .key("model.teacher.bst.output"));
  c.push_back(on(U, "read as din").read_as("din").line("kind = \"dual\"").key("model.kind"));
  c.push_back(on(U, "unknown teacher activation")
                  .edit("activation = \"prelu\"", "activation = \"tanh\"")
                  .key("model.teacher.mlp.activation"));
  c.push_back(on(U, "zero student width")
                  .edit("widths = [128, 64, 1]", "widths = [128, 0, 1]")
                  .key("model.student.mlp.widths[1]"));
  c.push_back(on(U, "typo in [model.teacher]")
                  .edit("components =", "componets =")
                  .key("model.teacher.componets"));
  c.push_back(on(U, "sequence lengths differ")
                  .edit("max_len = 20\n\n[optimizer]", "max_len = 30\n\n[optimizer]")
                  .key("model.fields[10].max_len"));
  c.push_back(
      on(U, "din without history")
          .build()
          .edit("[[model.fields]]\ncolumn = \"hist_items\"\ntable = \"item\"\nmax_len = 20\n", "")
          .edit("[[model.fields]]\ncolumn = \"hist_cats\"\ntable = \"item_cat\"\nmax_len = 20\n",
                "")
          .line("components = ")
          .key("model.teacher.components[0]"));
  c.push_back(
      on(U, "teacher keys name a pooled field")
          .build()
          .edit("keys = [\"hist_items\", \"hist_cats\"]", "keys = [\"user\", \"hist_cats\"]")
          .key("model.teacher.din.keys[0]"));
  c.push_back(
      on(U, "fm fields not consecutive")
          .build()
          .edit("components = [\"din\", \"cross\"]", "components = [\"fm\"]")
          .edit("[model.teacher.cross]",
                "[model.teacher.fm]\nfields = [\"user\", \"ctx_0\"]\n\n[model.teacher.cross]")
          .line("fields = ")
          .key("model.teacher.fm.fields[1]"));
  c.push_back(
      on(U, "fm fields of two widths")
          .build()
          .edit("components = [\"din\", \"cross\"]", "components = [\"fm\"]")
          .edit("[model.teacher.cross]",
                "[model.teacher.fm]\nfields = [\"hist_cats\", \"ctx_0\"]\n\n[model.teacher.cross]")
          .edit("name = \"ctx_0\"", "name = \"ctx_0\"\ndim = 8")
          .line("fields = ")
          .key("model.teacher.fm.fields[1]"));
  c.push_back(on(U, "teacher bst heads do not divide")
                  .build()
                  .edit("components = [\"din\", \"cross\"]", "components = [\"bst\"]")
                  .edit("[model.teacher.cross]",
                        "[model.teacher.bst.transformer]\nheads = 5\n\n[model.teacher.cross]")
                  .line("heads = 5")
                  .key("model.teacher.bst.transformer.heads"));
  c.push_back(on(U, "teacher bst sequence names a pooled-only field")
                  .build()
                  .edit("components = [\"din\", \"cross\"]", "components = [\"bst\"]")
                  .edit("[model.teacher.cross]",
                        "[model.teacher.bst]\nsequence = [\"hist_items\", "
                        "\"ctx_0\"]\n\n[model.teacher.cross]")
                  .line("sequence = ")
                  .key("model.teacher.bst.sequence[1]"));
  c.push_back(on(U, "sequence column not in the data")
                  .build()
                  .edit("column = \"hist_cats\"", "column = \"hist_catz\"", "The history again")
                  .key("model.fields[10].column"));

  // ---- the data schema (keys: "column '<name>'" and the field)
  c.push_back(on(S, "unknown kind")
                  .edit("kind = \"sequence\"", "kind = \"seq\"")
                  .key("column 'hist_items'")
                  .key("'kind'"));
  c.push_back(on(S, "zero max_len")
                  .edit("max_len = 20", "max_len = 0")
                  .key("column 'hist_items'")
                  .key("'max_len'"));
  c.push_back(on(S, "negative max_len")
                  .edit("max_len = 20", "max_len = -1")
                  .key("column 'hist_items'")
                  .key("'max_len'"));
  c.push_back(on(S, "huge max_len")
                  .edit("max_len = 20", "max_len = 100001")
                  .key("column 'hist_items'")
                  .key("'max_len'"));
  c.push_back(on(S, "string max_len")
                  .edit("max_len = 20", "max_len = \"20\"")
                  .key("column 'hist_items'")
                  .key("'max_len'"));
  c.push_back(on(S, "zero dim").edit("dim = 8", "dim = 0").key("column 'dense'").key("'dim'"));
  c.push_back(on(S, "float dim").edit("dim = 8", "dim = 8.5").key("column 'dense'").key("'dim'"));
  c.push_back(on(S, "dim on a sparse column")
                  .edit("kind = \"sparse\"", "kind = \"sparse\"\ndim = 4")
                  .line("dim = 4")
                  .key("column 'user'")
                  .key("'dim'"));
  c.push_back(on(S, "typo in a column")
                  .edit("max_len = 20", "maxlen = 20")
                  .key("column 'hist_items'")
                  .key("'maxlen'"));
  c.push_back(
      on(S, "column name twice").edit("name = \"item\"", "name = \"user\"").key("column 'user'"));
  c.push_back(on(S, "column without name")
                  .edit("name = \"item\"\n", "")
                  .line("[[column]]", "name = \"user\"")
                  .key("column 4")
                  .key("'name'"));
  c.push_back(on(S, "column without kind")
                  .edit("name = \"user\"\nkind = \"sparse\"\n", "name = \"user\"\n")
                  .line("[[column]]", "dim = 8")
                  .key("column 'user'")
                  .key("'kind'"));
  c.push_back(on(S, "sequence without max_len")
                  .edit("max_len = 20\n", "")
                  .line("[[column]]", "name = \"item_cat\"")
                  .key("column 'hist_items'")
                  .key("'max_len'"));
  c.push_back(on(S, "two labels")
                  .edit("kind = \"sparse\"", "kind = \"label\"")
                  .key("column 'user'")
                  .key("'kind'"));
  c.push_back(
      on(S, "no label").edit("kind = \"label\"", "kind = \"ignore\"").no_line().key("kind"));
  c.push_back(on(S, "hash on a dense column")
                  .edit("dim = 8", "dim = 8\nhash = true")
                  .line("hash")
                  .key("column 'dense'")
                  .key("'hash'"));
  c.push_back(on(S, "string hash")
                  .edit("kind = \"sparse\"", "kind = \"sparse\"\nhash = \"yes\"")
                  .line("hash")
                  .key("column 'user'")
                  .key("'hash'"));
  c.push_back(on(S, "bad column name")
                  .edit("name = \"item\"", "name = \"it em\"")
                  .key("column 4")
                  .key("'name'"));
  c.push_back(
      on(S, "int column name").edit("name = \"user\"", "name = 5").key("column 3").key("'name'"));
  c.push_back(
      on(S, "int kind").edit("kind = \"sparse\"", "kind = 5").key("column 'user'").key("'kind'"));
  c.push_back(
      on(S, "unknown top-level key")
          .edit("[[column]]\nname = \"label\"", "version = 2\n\n[[column]]\nname = \"label\"")
          .line("version")
          .key("'version'"));
  c.push_back(on(S, "column not an array of tables")
                  .replace_text("column = 3\n")
                  .line("column")
                  .key("'column'"));
  c.push_back(on(S, "a single [column]")
                  .replace_text("[column]\nname = \"y\"\nkind = \"label\"\n")
                  .line("[column]")
                  .key("'column'"));
  c.push_back(on(S, "no columns").replace_text("# nothing\n").no_line().key("[[column]]"));
  c.push_back(on(S, "trailing garbage")
                  .edit("max_len = 20", "max_len = 20 20")
                  .key("column 6")
                  .key("'max_len'"));
  c.push_back(on(S, "key written twice")
                  .edit("kind = \"sparse\"", "kind = \"sparse\"\nkind = \"dense\"")
                  .line("kind = \"dense\"", "name = \"user\"")
                  .key("column 3")
                  .key("'kind'"));
  return c;
}

}  // namespace
