// The shorthand [model.tables_per_column] (one table per column of the data, with per-column
// settings), the built-in models as configuration texts, and --set overrides
// (models::preset_config_text, apply_overrides, build_model; docs/configuration.md).
#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>

#include "data_test_util.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/models/factory.h"
#include "train/consistency.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {

const data::Schema& synthetic_schema() {
  static const data::SyntheticGenerator gen(data::SyntheticConfig::demo());
  return gen.schema();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), {}};
}

std::string source_path(const std::string& rel) {
  return std::string(LOCKSTEP_SOURCE_DIR) + "/" + rel;
}

/// examples/data/ads.schema.toml: sparse user, ad, category, hour; dense price; a sequence
/// history (of its own table, so not a history of a target unless a config says so).
data::Schema ads_schema() { return data::Schema::load(source_path("examples/data/ads.schema.toml")); }

/// The ads schema without its sequence column.
data::Schema ads_schema_without_sequences() {
  std::string text = read_text(source_path("examples/data/ads.schema.toml"));
  const size_t at = text.find("[[column]]\nname = \"history\"");
  REQUIRE(at != std::string::npos);
  return data::Schema::parse(text.substr(0, at), "ads-no-history.schema.toml");
}

/// The line (1-based) of the first occurrence of `needle` in `text`.
int64_t line_of(const std::string& text, const std::string& needle) {
  const size_t p = text.find(needle);
  REQUIRE(p != std::string::npos);
  return 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(p), '\n');
}

std::vector<std::string> table_names(models::Model<float>& m) {
  std::vector<std::string> out;
  for (auto* t : m.tables()) out.push_back(t->config().name);
  return out;
}

const std::vector<embedding::FieldConfig>& fields_of(models::Model<float>& m) {
  auto* e = dynamic_cast<models::EmbeddingModel<float>*>(&m);
  REQUIRE(e != nullptr);
  return e->embeddings().fields();
}

std::unique_ptr<models::Model<float>> build(const std::string& text, const data::Schema& schema,
                                            const std::string& source = "cfg.toml") {
  Context ctx;
  return models::build_model<float>(text, source, schema, ctx);
}

constexpr const char* kHead = "[model]\nkind = \"embedding_mlp\"\n\n";

}  // namespace

TEST_CASE("The built-in models' configuration texts build the preset models", "[config][shorthand]") {
  Context ctx;
  const auto& schema = synthetic_schema();
  std::vector<std::string> columns;
  for (int64_t c : schema.sparse_columns()) columns.push_back(schema.columns()[c].name);
  const int64_t rows = 512;
  for (const std::string kind : {"embedding_mlp", "din", "bst", "dual"}) {
    INFO(kind);
    const std::string text = models::preset_config_text(kind, rows);
    auto from_text = models::build_model<float>(text, "preset", schema, ctx);
    std::unique_ptr<models::Model<float>> from_struct;
    if (kind == "embedding_mlp")
      from_struct = std::make_unique<models::EmbeddingMlp<float>>(
          models::preset_embedding_mlp_config(schema, rows), columns, schema.num_dense(), ctx);
    else if (kind == "din")
      from_struct = std::make_unique<models::Din<float>>(models::preset_din_config(schema, rows),
                                                          columns, schema.num_dense(), ctx);
    else if (kind == "bst")
      from_struct = std::make_unique<models::Bst<float>>(models::preset_bst_config(schema, rows),
                                                          columns, schema.num_dense(), ctx);
    else
      from_struct = std::make_unique<models::DualDnn<float>>(
          models::preset_dual_config(schema, rows), columns, schema.num_dense(), ctx);
    CHECK(from_text->name() == from_struct->name());
    CHECK(table_names(*from_text) == table_names(*from_struct));
    const auto& ft = fields_of(*from_text);
    const auto& fs = fields_of(*from_struct);
    REQUIRE(ft.size() == fs.size());
    for (size_t i = 0; i < ft.size(); ++i) {
      CHECK(ft[i].column == fs[i].column);
      CHECK(ft[i].table == fs[i].table);
      CHECK(ft[i].max_len == fs[i].max_len);
    }
    const auto& et = from_text->dense_params().entries();
    const auto& es = from_struct->dense_params().entries();
    REQUIRE(et.size() == es.size());
    for (size_t i = 0; i < et.size(); ++i) CHECK(et[i].name == es[i].name);
    for (size_t i = 0; i < table_names(*from_text).size(); ++i) {
      const auto& a = from_text->tables()[i]->config();
      const auto& b = from_struct->tables()[i]->config();
      CHECK(a.rows == b.rows);
      CHECK(a.dim == b.dim);
      CHECK(a.pooling == b.pooling);
      CHECK(a.init_scale == b.init_scale);
      CHECK(a.identity == b.identity);
    }
    // Parameters, optimizer state and tables, bit for bit.
    CHECK(train::model_state_hash(ctx, *from_text) == train::model_state_hash(ctx, *from_struct));
    // make_preset_model builds from the text.
    auto preset = models::make_preset_model<float>(kind, schema, rows, ctx);
    CHECK(train::model_state_hash(ctx, *preset) == train::model_state_hash(ctx, *from_struct));
  }
  CHECK_THROWS_WITH(models::preset_config_text("wide", 10), Contains("'wide' is not a built-in"));
}

TEST_CASE("[model.tables_per_column] makes one table per column, with per-column settings",
          "[config][shorthand]") {
  const std::string text = std::string(kHead) +
                           "[model.tables_per_column]\n"
                           "rows = 100\n"
                           "dim = 8\n"
                           "pooling = \"sum\"\n"
                           "share = { hist_cats = \"item_cat\", nope = \"item\" }\n"
                           "\n"
                           "[model.columns.user]\n"
                           "rows = 1000\n"
                           "ids = \"identity\"\n"
                           "dim = 4\n"
                           "\n"
                           "[model.columns.hist_items]\n"
                           "table = \"item\"\n"
                           "\n"
                           "[model.columns.ctx_3]\n"
                           "skip = true\n";
  auto m = build(text, synthetic_schema());
  CHECK(table_names(*m) ==
        std::vector<std::string>{"user", "item", "item_cat", "ctx_0", "ctx_1", "ctx_2"});
  const auto& user = m->tables()[0]->config();
  CHECK(user.rows == 1000);
  CHECK(user.identity);
  CHECK(user.dim == 4);
  const auto& item = m->tables()[1]->config();
  CHECK(item.rows == 100);
  CHECK(item.dim == 8);
  CHECK(item.pooling == embedding::Pooling::Sum);
  CHECK_FALSE(item.identity);
  const auto& f = fields_of(*m);
  std::vector<std::string> cols, tables;
  for (const auto& x : f) {
    cols.push_back(x.column);
    tables.push_back(x.table);
    CHECK(x.max_len == 0);  // embedding_mlp pools every column
  }
  CHECK(cols == std::vector<std::string>{"user", "item", "item_cat", "hist_items", "hist_cats",
                                         "ctx_0", "ctx_1", "ctx_2"});
  CHECK(tables == std::vector<std::string>{"user", "item", "item_cat", "item", "item_cat", "ctx_0",
                                           "ctx_1", "ctx_2"});
}

TEST_CASE("The shorthand derives DIN's and BST's query and keys from the histories",
          "[config][shorthand]") {
  const std::string tpc = "[model.tables_per_column]\nrows = 64\n"
                          "share = { hist_items = \"item\", hist_cats = \"item_cat\" }\n";
  auto din = build("[model]\nkind = \"din\"\n" + tpc, synthetic_schema());
  const auto& dc = dynamic_cast<models::Din<float>&>(*din).config();
  CHECK(dc.query == std::vector<std::string>{"item", "item_cat"});
  CHECK(dc.keys == std::vector<std::string>{"hist_items", "hist_cats"});
  for (const auto& f : dc.fields)
    CHECK(f.max_len == (f.column.rfind("hist_", 0) == 0 ? 20 : 0));
  auto bst = build("[model]\nkind = \"bst\"\n" + tpc, synthetic_schema());
  const auto& bc = dynamic_cast<models::Bst<float>&>(*bst).config();
  CHECK(bc.target == std::vector<std::string>{"item", "item_cat"});
  CHECK(bc.sequence == std::vector<std::string>{"hist_items", "hist_cats"});
  // A history given by a per-column table; max_len overridden.
  auto ads = build("[model]\nkind = \"din\"\n[model.tables_per_column]\nrows = 64\n"
                   "[model.columns.history]\ntable = \"ad\"\nmax_len = 3\n",
                   ads_schema());
  const auto& ac = dynamic_cast<models::Din<float>&>(*ads).config();
  CHECK(ac.query == std::vector<std::string>{"ad"});
  CHECK(ac.keys == std::vector<std::string>{"history"});
  bool found = false;
  for (const auto& f : ac.fields)
    if (f.column == "history") found = f.max_len == 3 && f.table == "ad";
  CHECK(found);
}

TEST_CASE("The dual model's teacher without history is fm + cross", "[config][shorthand]") {
  const std::string text = "[model]\nkind = \"dual\"\n[model.tables_per_column]\nrows = 64\n";
  for (const auto& schema : {ads_schema(), ads_schema_without_sequences()}) {
    auto m = build(text, schema);
    const auto& c = dynamic_cast<models::DualDnn<float>&>(*m).config();
    CHECK(c.components == std::vector<std::string>{"fm", "cross"});
    for (const auto& f : c.fields) CHECK(f.max_len == 0);
  }
  // With history: din + cross, the history pooled and as a sequence.
  auto m = build(text + "share = { hist_items = \"item\", hist_cats = \"item_cat\" }\n",
                 synthetic_schema());
  const auto& c = dynamic_cast<models::DualDnn<float>&>(*m).config();
  CHECK(c.components == std::vector<std::string>{"din", "cross"});
  CHECK(c.fields.size() == 9 + 2);
}

TEST_CASE("The dual model's distillation keys; student_updates_embeddings is Rocket Launching",
          "[config][shorthand]") {
  const std::string base =
      "[model]\nkind = \"dual\"\n[model.tables_per_column]\nrows = 64\n[model.distillation]\n";
  const auto config = [&](const std::string& lines) {
    auto m = build(base + lines, ads_schema());
    return dynamic_cast<models::DualDnn<float>&>(*m).config();
  };
  auto c = config("kd_warmup_steps = 50\nstudent_embedding_scale = 0.25\n"
                  "student_embedding_losses = \"all\"\nstudent_residual_embeddings = true\n");
  CHECK(c.kd_warmup_steps == 50);
  CHECK(c.student_residual);
  CHECK(c.student_embedding_scale == 0.25f);
  CHECK(c.student_embedding_losses == models::StudentEmbeddingLosses::All);
  c = config("student_updates_embeddings = true\n");
  CHECK(c.student_embedding_scale == 1.0f);
  CHECK(c.student_embedding_losses == models::StudentEmbeddingLosses::All);
  c = config("student_updates_embeddings = false\n");
  CHECK(c.student_embedding_scale == 0.0f);
}

TEST_CASE("Shorthand errors name the file, the line and the key", "[config][shorthand][errors]") {
  struct Bad {
    std::string text, line_of, key;
    bool ads = false;  // build for the ads schema without sequences
  };
  const std::string tpc = "[model.tables_per_column]\nrows = 64\n";
  const std::vector<Bad> cases = {
      {std::string(kHead) + tpc + "rowz = 3\n", "rowz", "model.tables_per_column.rowz"},
      {std::string(kHead) + tpc + "dim = 0\n", "dim = 0", "model.tables_per_column.dim"},
      {std::string(kHead) + tpc + "[model.columns.usr]\nrows = 5\n", "[model.columns.usr]",
       "model.columns.usr"},
      {std::string(kHead) + tpc + "[model.columns.user]\nrowz = 5\n", "rowz",
       "model.columns.user.rowz"},
      {std::string(kHead) + tpc + "[model.columns.user]\nrows = 0\n", "rows = 0",
       "model.columns.user.rows"},
      {std::string(kHead) + tpc + "[model.columns.hist_items]\ntable = \"itm\"\n", "table = \"itm\"",
       "hist_items"},
      {std::string(kHead) + tpc + "[model.columns.hist_items]\ntable = \"item\"\nrows = 9\n",
       "rows = 9", "model.columns.hist_items.rows"},
      {std::string(kHead) + tpc + "[model.columns.user]\nmax_len = 4\n", "max_len", "model.columns.user.max_len"},
      {std::string(kHead) + tpc + "[model.columns.item]\nskip = true\n[model.columns.hist_items]\n"
                                  "table = \"item\"\n",
       "table = \"item\"", "hist_items"},
      {std::string(kHead) + tpc + "share = { hist_items = 3 }\n", "share", "model.tables_per_column.share.hist_items"},
      {std::string(kHead) + "[model.columns.user]\nrows = 5\n", "[model.columns.user]", "model.columns"},
      {std::string(kHead) + tpc + "[[model.tables]]\nname = \"user\"\nrows = 4\n", "[[model.tables]]",
       "model.tables"},
      {"[model]\nkind = \"din\"\n" + tpc, "kind", "model.kind", true},
      {"[model]\nkind = \"bst\"\n" + tpc, "kind", "model.kind", true},
      {"[model]\nkind = \"dual\"\n" + tpc + "[model.teacher]\ncomponents = [\"din\"]\n", "components",
       "model.teacher.components[0]", true},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    const std::string where = "cfg.toml:" + std::to_string(line_of(c.text, c.line_of)) + ":";
    try {
      build(c.text, c.ads ? ads_schema_without_sequences() : synthetic_schema());
      FAIL("no error");
    } catch (const Error& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK_THAT(msg, Contains(where));
      CHECK_THAT(msg, Contains(c.key));
    }
  }
  // DIN on data without history says so and suggests the models that fit.
  CHECK_THROWS_WITH(build("[model]\nkind = \"din\"\n" + tpc, ads_schema_without_sequences()),
                    Contains("no sequence column") && Contains("embedding_mlp") &&
                        Contains("dual"));
  // Reading a shorthand configuration without data names the table.
  CHECK_THROWS_WITH(models::parse_embedding_mlp_config(std::string(kHead) + tpc, "cfg.toml"),
                    Contains("cfg.toml:4:") && Contains("tables_per_column"));
}

TEST_CASE("Every example configuration builds where docs/configuration.md says it does",
          "[config][shorthand]") {
  const std::string dir = source_path("examples/configs/");
  const auto synthetic = synthetic_schema();
  const auto ads = ads_schema();
  const auto plain = ads_schema_without_sequences();
  Context ctx;
  // Any data with sparse columns.
  for (const std::string name : {"demo", "dual", "dual_fm"}) {
    INFO(name);
    for (const auto* schema : {&synthetic, &ads, &plain})
      CHECK_NOTHROW(models::load_model<float>(dir + name + ".toml", *schema, ctx));
  }
  // Data with a history (a sequence column reading the table of a target column).
  for (const std::string name : {"din", "bst"}) {
    INFO(name);
    CHECK_NOTHROW(models::load_model<float>(dir + name + ".toml", synthetic, ctx));
    for (const auto* schema : {&ads, &plain})
      CHECK_THROWS_WITH(models::load_model<float>(dir + name + ".toml", *schema, ctx),
                        Contains(name + ".toml:") && Contains("no sequence column") &&
                            Contains("embedding_mlp"));
    // ... which a per-column table makes.
    const std::string text = models::apply_overrides(read_text(dir + name + ".toml"),
                                                      {"model.columns.history.table=\"ad\""},
                                                      name + ".toml");
    CHECK_NOTHROW(models::build_model<float>(text, name + ".toml", ads, ctx));
  }
  // The dual model on data without history: fm + cross.
  auto dual = models::load_model<float>(dir + "dual.toml", plain, ctx);
  CHECK(dynamic_cast<models::DualDnn<float>&>(*dual).config().components ==
        std::vector<std::string>{"fm", "cross"});
}

TEST_CASE("apply_overrides edits the text in place", "[config][overrides]") {
  const std::string text = "# a comment\n"
                           "seed = 1\n"
                           "\n"
                           "[model]\n"
                           "kind = \"embedding_mlp\"   # the kind\n"
                           "\n"
                           "[model.mlp]\n"
                           "widths = [\n"
                           "  200,\n"
                           "  80, 1]\n"
                           "activation = \"prelu\"\n"
                           "\n"
                           "[model.tables_per_column]\n"
                           "rows = 64\n"
                           "share = { hist_items = \"item\" }\n";
  const std::string out =
      models::apply_overrides(text,
                              {"model.mlp.widths=[64,1]", "seed=7", "optimizer.lr=0.01",
                               "model.tables_per_column.share.hist_cats=item_cat",
                               "model.columns.user.rows=1000", "model.use_dense=false"},
                              "cfg.toml");
  INFO(out);
  CHECK_THAT(out, Contains("# a comment") && Contains("# the kind") &&
                      Contains("# set by --set model.mlp.widths=[64,1]"));
  // The model it describes.
  auto m = build(out, synthetic_schema());
  const auto& c = dynamic_cast<models::EmbeddingMlp<float>&>(*m).config();
  CHECK(c.seed == 7);
  CHECK(c.dense_optimizer.lr == 0.01f);
  CHECK(c.mlp.widths == std::vector<int64_t>{64, 1});
  CHECK(c.mlp.activation.kind == nn::ActivationKind::PReLU);
  CHECK_FALSE(c.use_dense);
  CHECK(m->tables()[0]->config().name == "user");
  CHECK(m->tables()[0]->config().rows == 1000);
  for (const auto& f : c.fields) {
    if (f.column == "hist_items") CHECK(f.table == "item");
    if (f.column == "hist_cats") CHECK(f.table == "item_cat");
  }

  // Indexes into arrays of tables; a bare word is a string.
  const std::string explicit_text = read_text(source_path("test/data/configs/demo.toml"));
  const std::string e = models::apply_overrides(
      explicit_text, {"model.tables[1].rows=77", "model.tables[2].dim=8", "optimizer.kind=sgd"},
      "demo.toml");
  const auto ec = models::parse_embedding_mlp_config(e, "demo.toml");
  CHECK(ec.tables[1].rows == 77);
  CHECK(ec.tables[2].dim == 8);
  CHECK(ec.dense_optimizer.kind == nn::OptimizerKind::Sgd);
  // Lines keep their numbers: a value replaced over several lines leaves as many.
  CHECK(std::count(out.begin(), out.end(), '\n') >= std::count(text.begin(), text.end(), '\n'));

  // Windows line ends.
  const std::string crlf = "seed = 1\r\n[model]\r\nkind = \"embedding_mlp\"\r\n"
                           "[model.tables_per_column]\r\nrows = 64\r\n";
  const std::string edited =
      models::apply_overrides(crlf, {"seed=5", "model.use_dense=false", "model.mlp.widths=[4,1]"},
                              "crlf.toml");
  auto cm = build(edited, synthetic_schema(), "crlf.toml");
  CHECK(dynamic_cast<models::EmbeddingMlp<float>&>(*cm).config().seed == 5);
  CHECK(dynamic_cast<models::EmbeddingMlp<float>&>(*cm).config().mlp.widths ==
        std::vector<int64_t>{4, 1});

  // Errors name the override.
  CHECK_THROWS_WITH(models::apply_overrides(text, {"seed"}, "cfg.toml"),
                    Contains("--set seed: expected key=value"));
  CHECK_THROWS_WITH(models::apply_overrides(text, {"model.mlp.widths=[1,"}, "cfg.toml"),
                    Contains("--set model.mlp.widths=[1,: '[1,' is not a TOML value"));
  CHECK_THROWS_WITH(models::apply_overrides(explicit_text, {"model.tables[99].rows=1"}, "d.toml"),
                    Contains("--set model.tables[99].rows=1: model.tables has 7 entries"));
  CHECK_THROWS_WITH(models::apply_overrides(text, {"seed.x=1"}, "cfg.toml"),
                    Contains("--set seed.x=1: seed is not a table"));
  CHECK_THROWS_WITH(models::apply_overrides(text, {"model..x=1"}, "cfg.toml"),
                    Contains("--set model..x=1: 'model..x' is not a key"));
}

TEST_CASE("Errors in overridden keys name the --set argument, other errors the line as written",
          "[config][overrides][errors]") {
  const std::string text = models::preset_config_text("embedding_mlp", 64);
  const auto& schema = synthetic_schema();
  const auto fails = [&](const std::vector<std::string>& sets) -> std::string {
    try {
      build(models::apply_overrides(text, sets, "built-in"), schema, "built-in");
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  CHECK_THAT(fails({"model.mlp.wdiths=[64,1]"}),
             Contains("--set model.mlp.wdiths=[64,1]: unknown key model.mlp.wdiths (allowed "
                      "here: widths"));
  CHECK_THAT(fails({"optimizer.lr=-1"}),
             Contains("--set optimizer.lr=-1: optimizer.lr = -1") && Contains("out of range"));
  CHECK_THAT(fails({"model.kind=wide"}), Contains("--set model.kind=wide: model.kind = 'wide'"));
  CHECK_THAT(fails({"seeed=7"}), Contains("--set seeed=7: unknown key seeed"));
  CHECK_THAT(fails({"model.columns.usr.rows=5"}),
             Contains("--set model.columns.usr.rows=5: model.columns.usr"));
  CHECK_THAT(fails({"model.mlp.widths=[0,1]"}),
             Contains("--set model.mlp.widths=[0,1]: model.mlp.widths[0] = 0"));
  // An error on a line of the file after inserted lines names that line as written.
  const std::string file = std::string(kHead) + "[model.tables_per_column]\nrows = 64\ndim = 0\n";
  const std::string edited = models::apply_overrides(file, {"seed=3", "model.use_dense=false"},
                                                     "f.toml");
  CHECK_THROWS_WITH(build(edited, schema, "f.toml"),
                    Contains("f.toml:" + std::to_string(line_of(file, "dim = 0")) +
                             ": model.tables_per_column.dim"));
}
