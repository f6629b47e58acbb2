// What lockstep reads back: the checkpoint and student-bundle manifests (checksum, strict fields,
// older versions), the strict JSON reader under them, and the clean-up of temporary directories
// that a crashed write leaves behind.
#include <unistd.h>
#include <xxhash.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "data_test_util.h"
#include "io/directory_writer.h"
#include "io/json_fields.h"
#include "io/manifest.h"
#include "lockstep/comm/communicator.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/core/logging.h"
#include "lockstep/serving/student_model.h"
#include "lockstep/train/local_trainer.h"
#include "lockstep/train/trainer.h"
#include "log_capture.h"
#include "model_fixture.h"
#include "serving/student_bundle.h"
#include "train/checkpoint_manifest.h"

using namespace lockstep;
using Catch::Matchers::Contains;
using test::LogCapture;
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {
std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

/// The seal as docs/lockstep.md describes it, computed here independently of io/manifest.cpp:
/// the 16 hex digits after the last "manifest_xxh64": " are the XXH64 of every byte before them.
std::string reseal(std::string text) {
  const std::string key = "\"manifest_xxh64\": \"";
  const size_t at = text.rfind(key);
  if (at == std::string::npos) return text;  // nothing to seal
  const size_t digits = at + key.size();
  text.replace(digits, 16, fmt::format("{:016x}", XXH64(text.data(), digits, 0)));
  return text;
}

/// `text` (a sealed manifest) with its JSON body changed by `edit`, sealed again.
template <class Edit>
std::string edited(const std::string& text, Edit edit) {
  ojson body = ojson::parse(text);
  body.erase("manifest_xxh64");
  edit(body);
  return io::seal_manifest(body);
}

/// Every change of one byte of `text` — each of its 8 bits flipped, or replaced by a character
/// that means something in JSON — must be refused by `parse`, with an Error naming `path`;
/// outside the seal's key, as a checksum mismatch.
template <class Parse>
void require_every_byte_change_refused(const std::string& text, const std::string& path,
                                       Parse parse) {
  const size_t key = text.rfind("\"manifest_xxh64\": \""), digits = key + 19;
  REQUIRE(key != std::string::npos);
  const std::string meaningful = " \t\n\r0123456789abcdefABCDEF\",:{}[]-+.eEnulltrue";
  int64_t loaded = 0, other_error = 0, unnamed = 0, not_checksum = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    std::string changes = meaningful;
    for (int bit = 0; bit < 8; ++bit) changes += static_cast<char>(text[i] ^ (1 << bit));
    for (char c : changes) {
      if (c == text[i]) continue;
      std::string bad = text;
      bad[i] = c;
      try {
        parse(bad, path);
        ++loaded;
        UNSCOPED_INFO("loaded with byte " << i << " changed to " << int(bad[i]));
      } catch (const Error& e) {
        const std::string what = e.what();
        if (what.find(path) == std::string::npos) ++unnamed;
        // A changed key reads as no seal at all; everything else as a mismatch.
        if ((i < key || i >= digits) && what.find("checksum mismatch") == std::string::npos)
          ++not_checksum;
      } catch (...) {
        ++other_error;
      }
    }
  }
  INFO(text.size() << " bytes");
  CHECK(loaded == 0);
  CHECK(other_error == 0);
  CHECK(unnamed == 0);
  CHECK(not_checksum == 0);
}

/// Random edits of a sealed manifest (bytes replaced, inserted, removed, cut), sealed again so
/// that the parser behind the seal sees them: each either parses or throws lockstep::Error.
template <class Parse>
void require_only_lockstep_errors(const std::string& text, Parse parse) {
  std::mt19937_64 rng(7);
  const std::string alphabet = "{}[]\":,-+.eE0123456789 \n\tnulltruefalse\\u00\x01\xff\xc3";
  int64_t other_error = 0, parsed = 0;
  for (int round = 0; round < 3000; ++round) {
    const size_t digits = text.rfind("\"manifest_xxh64\": \"");
    std::string body = text.substr(0, digits), seal = text.substr(digits);
    for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k) {
      const size_t at = body.empty() ? 0 : rng() % body.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 4) {
        case 0:
          if (!body.empty()) body[at] = c;
          break;
        case 1:
          body.insert(body.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        case 2:
          if (!body.empty()) body.erase(at, 1);
          break;
        default:
          body.resize(at);
          break;
      }
    }
    try {
      parse(reseal(body + seal), "fuzzed/manifest.json");
      ++parsed;
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Contains("fuzzed/manifest.json"));
    } catch (...) {
      ++other_error;
    }
  }
  CHECK(other_error == 0);
  CHECK(parsed < 3000);  // the edits do reach the parser
}

/// A pid that no process has: above every kernel's pid_max (2^22).
constexpr long kDeadPid = 999999999;

std::string make_leftover(const fs::path& dir, const std::string& name) {
  fs::create_directories(dir / name);
  write_text((dir / name / "dense.safetensors").string(), "partial");
  return (dir / name).string();
}

struct Checkpoint {
  test::TempDir dir;
  Context ctx;
  std::unique_ptr<models::EmbeddingMlp<float>> model = test::fixture_model(ctx);
  std::string path, manifest, text;
  Checkpoint() {
    train::LocalTrainer<float> trainer(*model, ctx);
    trainer.step(test::fixture_batch(0, 16));
    train::CheckpointMeta meta;
    meta.model = model->name();
    meta.step = 1;
    meta.updates = 1;
    meta.config_hash = 0x0123456789abcdefull;
    path = train::write_checkpoint(dir.file("ckpt"), meta, *model, ctx);
    manifest = path + "/manifest.json";
    text = read_text(manifest);
  }
  /// read_checkpoint into a fresh model after manifest.json was replaced by `text`.
  void read_with(const std::string& manifest_text) {
    write_text(manifest, manifest_text);
    auto fresh = test::fixture_model(ctx);
    train::read_checkpoint(path, *fresh, ctx, 0);
  }
};
}  // namespace

TEST_CASE("Strict JSON: syntax, repeated keys, nesting and odd bytes are Errors naming the file",
          "[io][manifest][errors]") {
  const std::string f = "dir/file.json";
  CHECK_THROWS_WITH(io::parse_json("{\"a\": 1,}", f), Contains(f) && Contains("not valid JSON"));
  CHECK_THROWS_WITH(io::parse_json("{\"a\": 1, \"a\": 2}", f),
                    Contains(f) && Contains("key \"a\" appears twice"));
  CHECK_THROWS_WITH(io::parse_json(std::string(100, '[') + std::string(100, ']'), f),
                    Contains(f) && Contains("nested deeper than 64"));
  CHECK_THROWS_WITH(io::parse_json(std::string(1 << 20, '['), f), Contains("nested deeper"));
  CHECK_THROWS_WITH(io::parse_json("{\"a\": \"\xc3\x28\"}", f), Contains("not valid JSON"));
  CHECK_THROWS_WITH(io::parse_json(std::string("{\"a\": 1}\0", 9), f), Contains("not valid JSON"));
  CHECK_THROWS_WITH(io::parse_json("{\"a\": 1e999}", f), Contains("not valid JSON"));
  CHECK_THROWS_WITH(io::parse_json("", f), Contains("not valid JSON"));
  CHECK_NOTHROW(io::parse_json(std::string(60, '[') + std::string(60, ']'), f));

  const auto doc = io::parse_json(
      R"({"s": "x", "n": -3, "big": 18446744073709551615, "huge": 18446744073709551616,
          "f": 1.5, "vast": 1e39, "zz": 0, "b": true, "h": "0123456789ABCDEF", "arr": [1, "2"], "o": {"k": null}})",
      f);
  io::JsonFields fields(doc, f);
  CHECK(fields.string("s") == "x");
  CHECK_THROWS_WITH(fields.string("n"), Contains(f + ": field 'n' must be a string, got -3"));
  CHECK_THROWS_WITH(fields.integer("n", 0, 10), Contains("field 'n' = -3 is out of range"));
  CHECK(fields.integer("n", -5, 5) == -3);
  CHECK_THROWS_WITH(fields.unsigned_integer("n"), Contains("field 'n' = -3 is out of range"));
  CHECK(fields.unsigned_integer("big") == ~uint64_t{0});
  CHECK_THROWS_WITH(fields.integer("big", 0, INT64_MAX), Contains("'big' = 18446744073709551615"));
  CHECK_THROWS_WITH(fields.unsigned_integer("huge"), Contains("'huge' must be an integer"));
  CHECK_THROWS_WITH(fields.integer("f", 0, 9), Contains("'f' must be an integer, got 1.5"));
  CHECK_THROWS_WITH(fields.real("f", 0, 1), Contains("'f' = 1.5 is out of range"));
  CHECK(fields.real("big", 0, 1e30) == Approx(1.8446744e19));
  CHECK_THROWS_WITH(fields.real("vast", -1e300, 1e300), Contains("'vast' = 1e+39 is out of range"));
  CHECK(fields.boolean("b"));
  CHECK(fields.hex64("h") == 0x0123456789abcdefull);
  CHECK_THROWS_WITH(fields.integers("arr", 0, 9), Contains("field 'arr[1]' must be an integer"));
  CHECK_THROWS_WITH(fields.object("o").string("k"),
                    Contains("field 'o.k' must be a string, got null"));
  CHECK_THROWS_WITH(fields.object("arr"), Contains("field 'arr' must be an object, got an array"));
  CHECK_THROWS_WITH(fields.string("missing"), Contains(f + ": field 'missing' is missing"));
  CHECK_THROWS_WITH(fields.reject_unknown(), Contains(f + ": field 'zz' is not known"));

  uint64_t v = 0;
  CHECK(io::parse_hex64("ffffffffffffffff", &v));
  CHECK(v == ~uint64_t{0});
  for (const char* bad : {"", "123", "0123456789abcdef0", "0x23456789abcdef", "0123456789abcdeg",
                          " 123456789abcdef", "-123456789abcdef"})
    CHECK_FALSE(io::parse_hex64(bad, &v));
  CHECK(io::quote_text(std::string("a\"\n\xff", 4)) == "\"a\\x22\\x0a\\xff\"");
  CHECK(io::quote_text(std::string(50, 'x'), 4) == "\"xxxx\"...");
}

TEST_CASE("Checkpoint manifest: the text round trip, and its seal as documented",
          "[train][checkpoint][manifest]") {
  train::CheckpointManifest m;
  m.meta.model = "din";
  m.meta.step = ~uint64_t{0};
  m.meta.updates = 7;
  m.meta.epoch = 3;
  m.meta.step_in_epoch = 11;
  m.meta.random_offset = uint64_t{1} << 63;
  m.meta.ranks = 4;
  m.meta.config_hash = 0xfedcba9876543210ull;
  m.optimizer_steps = 5;
  for (const auto& f : train::checkpoint_files()) m.files[f] = {123, 0xabcull};
  const std::string text = train::checkpoint_manifest_text(m);
  CHECK(text == reseal(text));  // the seal is what the documentation says
  CHECK(text.substr(text.size() - 4) == "\"\n}\n");
  const auto back = train::parse_checkpoint_manifest(text, "m.json");
  CHECK(back.format_version == 2);
  CHECK(back.meta.model == "din");
  CHECK(back.meta.step == m.meta.step);
  CHECK(back.meta.random_offset == m.meta.random_offset);
  CHECK(back.meta.config_hash == m.meta.config_hash);
  CHECK(back.meta.epoch == 3);
  CHECK(back.meta.step_in_epoch == 11);
  CHECK(back.meta.ranks == 4);
  CHECK(back.optimizer_steps == 5);
  CHECK(back.files == m.files);
}

TEST_CASE("Checkpoint manifest: any changed byte is a checksum mismatch, never a load",
          "[train][checkpoint][manifest][errors]") {
  Checkpoint c;
  require_every_byte_change_refused(c.text, c.manifest, train::parse_checkpoint_manifest);
  // On disk, through read_checkpoint: a few positions.
  for (size_t i : {size_t{0}, c.text.size() / 3, c.text.find("\"step\": 1") + 8, c.text.size() / 2})
    for (int delta : {1, 0x20}) {
      std::string bad = c.text;
      bad[i] = static_cast<char>(bad[i] ^ delta);
      CHECK_THROWS_WITH(c.read_with(bad), Contains(c.manifest) && Contains("checksum mismatch"));
    }
  CHECK_NOTHROW(c.read_with(c.text));
}

TEST_CASE("Checkpoint manifest: missing, mistyped, out-of-range and unknown fields are named",
          "[train][checkpoint][manifest][errors]") {
  Checkpoint c;
  const std::string& p = c.manifest;
  const auto refused = [&](auto edit, const std::string& message) {
    INFO(message);
    CHECK_THROWS_WITH(c.read_with(edited(c.text, edit)), Contains(p + ": ") && Contains(message));
  };
  refused([](ojson& m) { m.erase("step"); }, "field 'step' is missing");
  refused([](ojson& m) { m.erase("files"); }, "field 'files' is missing");
  refused([](ojson& m) { m["files"].erase("tables.safetensors"); },
          "field 'files.tables.safetensors' is missing");
  refused([](ojson& m) { m["files"]["dense.safetensors"].erase("xxh64"); },
          "field 'files.dense.safetensors.xxh64' is missing");
  refused([](ojson& m) { m["step"] = "1"; }, "field 'step' must be an integer, got \"1\"");
  refused([](ojson& m) { m["step"] = 1.5; }, "field 'step' must be an integer, got 1.5");
  refused([](ojson& m) { m["step"] = {1}; }, "field 'step' must be an integer, got an array");
  refused([](ojson& m) { m["model"] = 3; }, "field 'model' must be a string, got 3");
  refused([](ojson& m) { m["model"] = ""; }, "field 'model' is empty");
  refused([](ojson& m) { m["files"] = ojson::array(); }, "field 'files' must be an object");
  refused([](ojson& m) { m["epoch"] = -1; }, "field 'epoch' = -1 is out of range");
  refused([](ojson& m) { m["step_in_epoch"] = -2; }, "field 'step_in_epoch' = -2 is out of range");
  refused([](ojson& m) { m["updates"] = -1; }, "field 'updates' = -1 is out of range");
  refused([](ojson& m) { m["ranks"] = 0; }, "field 'ranks' = 0 is out of range");
  refused([](ojson& m) { m["ranks"] = int64_t{1} << 31; },
          "field 'ranks' = 2147483648 is out of range");
  refused([](ojson& m) { m["optimizer_steps"] = uint64_t{1} << 63; },
          "field 'optimizer_steps' = 9223372036854775808 is out of range");
  refused([](ojson& m) { m["files"]["tables.safetensors"]["bytes"] = -5; },
          "field 'files.tables.safetensors.bytes' = -5 is out of range");
  refused([](ojson& m) { m["config_hash"] = "0123456789abcdef0"; },
          "field 'config_hash' must be 16 hex digits, got \"0123456789abcdef0\"");
  refused([](ojson& m) { m["config_hash"] = "0x23456789abcdef"; },
          "field 'config_hash' must be 16 hex digits");
  refused([](ojson& m) { m["config_hash"] = std::string(1000, 'a'); },
          "field 'config_hash' must be 16 hex digits, got \"aaaa");
  refused([](ojson& m) { m["files"]["optimizer.safetensors"]["xxh64"] = "12345678zzzzzzzz"; },
          "field 'files.optimizer.safetensors.xxh64' must be 16 hex digits");
  refused([](ojson& m) { m["extra"] = 1; }, "field 'extra' is not known");
  refused([](ojson& m) { m["files"]["other.safetensors"] = ojson::object(); },
          "field 'files.other.safetensors' is not known");
  refused([](ojson& m) { m["files"]["dense.safetensors"]["mode"] = 1; },
          "field 'files.dense.safetensors.mode' is not known");
  refused([](ojson& m) { m["format_version"] = 3; }, "format_version 3 is not supported");
  refused([](ojson& m) { m["format_version"] = "2"; }, "field 'format_version' must be an integer");
  // A well-formed manifest that lists another checksum: the file, not the manifest, is named.
  CHECK_THROWS_WITH(
      c.read_with(
          edited(c.text,
                 [](ojson& m) { m["files"]["tables.safetensors"]["xxh64"] = "0000000000000000"; })),
      Contains("tables.safetensors: checksum") && Contains("(corrupted)"));
  // Upper-case hex digits are hex digits.
  CHECK_NOTHROW(c.read_with(edited(c.text, [](ojson& m) {
    std::string h = m["files"]["dense.safetensors"]["xxh64"];
    for (char& ch : h) ch = static_cast<char>(std::toupper(ch));
    m["files"]["dense.safetensors"]["xxh64"] = h;
  })));
}

TEST_CASE("Checkpoint manifest: truncated, deleted, unsealed or hostile texts are refused",
          "[train][checkpoint][manifest][errors]") {
  Checkpoint c;
  const std::string& p = c.manifest;
  for (size_t n : {size_t{0}, size_t{1}, c.text.size() / 2, c.text.size() - 1})
    CHECK_THROWS_WITH(c.read_with(c.text.substr(0, n)), Contains(p + ": "));
  const std::string body = c.text.substr(0, c.text.rfind("\"manifest_xxh64\""));
  CHECK_THROWS_WITH(c.read_with(body), Contains(p + ": "));
  // Sealed again after the edit: the parser behind the seal refuses them.
  const std::string seal = c.text.substr(body.size());
  const auto resealed = [&](const std::string& edit) { return reseal(edit + seal); };
  const size_t step = body.find("\"step\": 1,");
  CHECK_THROWS_WITH(
      c.read_with(resealed(body.substr(0, step) + "\"step\": 2, " + body.substr(step))),
      Contains(p + ": not valid JSON") && Contains("\"step\" appears twice"));
  CHECK_THROWS_WITH(
      c.read_with(resealed(body.substr(0, step) + "\"step\": 1e999, " + body.substr(step + 10))),
      Contains(p + ": not valid JSON"));
  CHECK_THROWS_WITH(c.read_with(resealed(body.substr(0, step) + "\"step\": 18446744073709551616," +
                                         body.substr(step + 10))),
                    Contains(p + ": field 'step' must be an integer"));
  CHECK_THROWS_WITH(c.read_with(resealed(body.substr(0, step) + "\"x\": " + std::string(500, '[') +
                                         std::string(500, ']') + ", " + body.substr(step))),
                    Contains(p + ": not valid JSON: nested deeper"));
  CHECK_THROWS_WITH(
      c.read_with(resealed(body.substr(0, step) + "\"model\xff\": 1, " + body.substr(step))),
      Contains(p + ": not valid JSON"));
  CHECK_THROWS_WITH(
      c.read_with(resealed(body.substr(0, step) + std::string(1, '\0') + body.substr(step))),
      Contains(p + ": not valid JSON"));
  CHECK_THROWS_WITH(c.read_with(reseal("[1, \"manifest_xxh64\": \"0000000000000000\"\n}\n")),
                    Contains(p + ": not valid JSON"));
  CHECK_THROWS_WITH(c.read_with(reseal("[\"manifest_xxh64\": \"0000000000000000\"\n}\n")),
                    Contains(p + ": "));
  require_only_lockstep_errors(c.text, train::parse_checkpoint_manifest);

  fs::remove(p);
  auto fresh = test::fixture_model(c.ctx);
  CHECK_THROWS_WITH(train::read_checkpoint(c.path, *fresh, c.ctx, 0),
                    Contains(p + ": missing: not a complete checkpoint"));
  fs::create_directory(p);
  CHECK_THROWS_WITH(train::read_checkpoint(c.path, *fresh, c.ctx, 0),
                    Contains(p + ": cannot read"));
}

TEST_CASE("Checkpoint manifest: format_version 1 (no checksum) is still read, bitwise",
          "[train][checkpoint][manifest]") {
  Checkpoint c;
  ojson v1 = ojson::parse(c.text);
  v1.erase("manifest_xxh64");
  v1["format_version"] = 1;
  write_text(c.manifest, v1.dump(2) + "\n");
  auto fresh = test::fixture_model(c.ctx);
  const auto meta = train::read_checkpoint(c.path, *fresh, c.ctx, 0);
  CHECK(meta.step == 1);
  CHECK(meta.config_hash == 0x0123456789abcdefull);
  test::require_bitwise_equal(test::all_state(c.ctx, *fresh), test::all_state(c.ctx, *c.model),
                              "read from a format_version 1 manifest");
  // Still strict: a v1 manifest with a field of another type is refused, naming it.
  v1["ranks"] = "1";
  write_text(c.manifest, v1.dump(2) + "\n");
  CHECK_THROWS_WITH(train::read_checkpoint(c.path, *fresh, c.ctx, 0),
                    Contains(c.manifest + ": field 'ranks' must be an integer"));
  // A format_version 2 manifest without its seal is refused.
  v1["ranks"] = 1;
  v1["format_version"] = 2;
  write_text(c.manifest, v1.dump(2) + "\n");
  CHECK_THROWS_WITH(train::read_checkpoint(c.path, *fresh, c.ctx, 0),
                    Contains(c.manifest + ": checksum missing"));
}

TEST_CASE("LATEST must name a checkpoint directory", "[train][checkpoint][errors]") {
  test::TempDir dir;
  for (const char* bad :
       {"step-12", "step-000000000001/../x", "../step-000000000001", "", "step-00000000000a"}) {
    write_text(dir.file("LATEST"), std::string(bad) + "\n");
    CHECK_THROWS_WITH(train::latest_checkpoint(dir.path().string()), Contains("LATEST names"));
  }
  write_text(dir.file("LATEST"), "step-000000000012\n");
  CHECK(train::latest_checkpoint(dir.path().string()) == dir.file("step-000000000012"));
}

namespace {
struct Bundle {
  test::TempDir dir;
  Context ctx;
  std::string path, manifest, text;
  Bundle() {
    auto model = test::fixture_dual(ctx);
    path = dir.file("student");
    model->export_student(ctx, path, test::fixture_columns());
    manifest = path + "/manifest.json";
    text = read_text(manifest);
  }
  void load_with(const std::string& manifest_text) {
    write_text(manifest, manifest_text);
    serving::StudentModel student(path, ctx);
  }
};
}  // namespace

TEST_CASE("Student bundle manifest: changed bytes, fields, versions",
          "[serving][manifest][errors]") {
  Bundle b;
  CHECK_NOTHROW(b.load_with(b.text));
  const auto parsed = serving::parse_student_bundle_manifest(b.text, b.manifest);
  CHECK(parsed.version == 2);
  CHECK(parsed.bundle.columns == test::fixture_columns());
  CHECK(serving::student_bundle_manifest_text(parsed) == b.text);  // the text round trip
  CHECK(b.text == reseal(b.text));
  require_every_byte_change_refused(b.text, b.manifest, serving::parse_student_bundle_manifest);
  require_only_lockstep_errors(b.text, serving::parse_student_bundle_manifest);

  const std::string& p = b.manifest;
  const auto refused = [&](auto edit, const std::string& message) {
    INFO(message);
    CHECK_THROWS_WITH(b.load_with(edited(b.text, edit)), Contains(p + ": ") && Contains(message));
  };
  refused([](ojson& m) { m["mlp"].erase("widths"); }, "field 'mlp.widths' is missing");
  refused([](ojson& m) { m["mlp"]["widths"] = ojson::array(); }, "field 'mlp.widths' is empty");
  refused([](ojson& m) { m["mlp"]["widths"][0] = 0; }, "field 'mlp.widths[0]' = 0 is out of range");
  refused([](ojson& m) { m["mlp"]["widths"][1] = "4"; },
          "field 'mlp.widths[1]' must be an integer");
  refused([](ojson& m) { m["mlp"]["activate_last"] = 1; },
          "field 'mlp.activate_last' must be true or false, got 1");
  refused([](ojson& m) { m["mlp"]["activation"] = "gelu"; },
          "field 'mlp.activation' = 'gelu' is not an activation");
  refused([](ojson& m) { m["mlp"]["leaky_slope"] = 2; },
          "field 'mlp.leaky_slope' = 2 is out of range");
  refused([](ojson& m) { m["mlp"]["dice_eps"] = 1e300; },
          "field 'mlp.dice_eps' = 1e+300 is out of range");
  refused([](ojson& m) { m["mlp"]["prelu_init"] = "x"; },
          "field 'mlp.prelu_init' must be a number");
  refused([](ojson& m) { m["mlp"]["depth"] = 2; }, "field 'mlp.depth' is not known");
  refused([](ojson& m) { m["tables"][0]["rows"] = "11"; },
          "field 'tables[0].rows' must be an integer");
  refused([](ojson& m) { m["tables"][0]["rows"] = 0; },
          "field 'tables[0].rows' = 0 is out of range");
  refused([](ojson& m) { m["tables"][1]["rows"] = int64_t{1} << 41; },
          "field 'tables[1].rows' = 2199023255552 is out of range");
  refused([](ojson& m) { m["tables"][0]["dim"] = -4; },
          "field 'tables[0].dim' = -4 is out of range");
  refused([](ojson& m) { m["tables"][0]["pooling"] = "max"; },
          "field 'tables[0].pooling' = 'max' is not a pooling");
  refused([](ojson& m) { m["tables"][0]["init_scale"] = 0.1; },
          "field 'tables[0].init_scale' is not known");
  refused([](ojson& m) { m["tables"][0] = 5; }, "field 'tables[0]' must be an object, got 5");
  refused([](ojson& m) { m["tables"] = ojson::object(); },
          "field 'tables' must be an array of objects");
  refused([](ojson& m) { m["fields"][0].erase("table"); }, "field 'fields[0].table' is missing");
  refused([](ojson& m) { m["columns"][1] = nullptr; },
          "field 'columns[1]' must be a string, got null");
  refused([](ojson& m) { m["num_dense"] = -1; }, "field 'num_dense' = -1 is out of range");
  refused([](ojson& m) { m["files"]["student.safetensors"]["xxh64"] = "abc"; },
          "field 'files.student.safetensors.xxh64' must be 16 hex digits, got \"abc\"");
  refused([](ojson& m) { m["teacher"] = true; }, "field 'teacher' is not known");
  refused([](ojson& m) { m["format"] = "other"; },
          "format \"other\" is not lockstep-student-bundle");
  refused([](ojson& m) { m["version"] = 3; }, "version 3 is not supported");

  // Version 1 (before the seal) is still read; version 2 needs its seal.
  ojson v1 = ojson::parse(b.text);
  v1.erase("manifest_xxh64");
  v1["version"] = 1;
  CHECK_NOTHROW(b.load_with(v1.dump(2) + "\n"));
  v1["version"] = 2;
  CHECK_THROWS_WITH(b.load_with(v1.dump(2) + "\n"), Contains(p + ": checksum missing"));

  fs::remove(p);
  CHECK_THROWS_WITH(serving::StudentModel(b.path, b.ctx),
                    Contains(p + ": missing: not a student bundle"));
}

TEST_CASE("Temporary directories of crashed writes are removed at the next write or start",
          "[io][checkpoint][temporaries]") {
  test::TempDir dir;
  const fs::path root = dir.file("ckpt");
  fs::create_directories(root);
  const std::string dead =
      make_leftover(root, io::temporary_directory_name("step-000000000007", kDeadPid));
  const std::string alive =
      make_leftover(root, io::temporary_directory_name("step-000000000008", 1));
  const std::string foreign = make_leftover(root, ".tmp-step-000000000009@another-host-77");
  const std::string older = make_leftover(root, ".tmp-step-000000000010-77");  // before the host
  const std::string other = make_leftover(root, io::temporary_directory_name("export", kDeadPid));
  Context ctx;
  auto model = test::fixture_model(ctx);
  train::CheckpointMeta meta;
  meta.model = model->name();
  meta.step = 3;
  {
    LogCapture log;
    train::write_checkpoint(root.string(), meta, *model, ctx);
    CHECK_THAT(log.text(), Contains("removed " + dead) && Contains("left by process 999999999"));
    CHECK_THAT(log.text(), Contains(alive + ": a temporary directory of process 1, which is still "
                                            "running; not removed"));
    CHECK_THAT(log.text(), Contains(foreign + ": looks like the temporary directory") &&
                               Contains(older + ": looks like"));
    CHECK_THAT(log.text(), !Contains(other));
  }
  CHECK_FALSE(fs::exists(dead));
  CHECK(fs::exists(alive));
  CHECK(fs::exists(foreign));
  CHECK(fs::exists(older));
  CHECK(fs::exists(other));  // not a checkpoint's
  CHECK(fs::exists(root / "step-000000000003" / "manifest.json"));
  CHECK(train::remove_stale_checkpoint_temporaries(root.string()).empty());  // nothing left of ours

  // The trainer removes them on start-up, before the first checkpoint.
  const std::string dead2 =
      make_leftover(root, io::temporary_directory_name("step-000000000011", kDeadPid));
  {
    LogCapture log;
    auto comm = comm::create_communicator("local", ctx.device());
    train::TrainerConfig cfg;
    cfg.log_every = 0;
    cfg.checkpoint_dir = root.string();
    train::Trainer trainer(*model, *comm, ctx, cfg);
    CHECK_FALSE(fs::exists(dead2));
    CHECK_THAT(log.text(), Contains("removed " + dead2));
  }

  // A bundle's write removes the leftovers of earlier writes of that bundle.
  const std::string bundle_dead =
      make_leftover(dir.path(), io::temporary_directory_name("student", kDeadPid));
  auto dual = test::fixture_dual(ctx);
  {
    LogCapture log;
    dual->export_student(ctx, dir.file("student"), test::fixture_columns());
    CHECK_THAT(log.text(), Contains("removed " + bundle_dead));
  }
  CHECK_FALSE(fs::exists(bundle_dead));
  CHECK(fs::exists(dir.file("student/manifest.json")));
}

TEST_CASE("write_directory_atomically builds in the temporary directory it documents",
          "[io][temporaries]") {
  test::TempDir dir;
  std::string seen;
  io::write_directory_atomically(dir.file("out"), [&](const std::string& tmp) {
    seen = fs::path(tmp).filename().string();
    write_text(tmp + "/a", "x");
  });
  CHECK(seen == io::temporary_directory_name("out", ::getpid()));
  CHECK(read_text(dir.file("out/a")) == "x");
  CHECK(dir.entries() == std::vector<std::string>{"out"});
  CHECK_THROWS_WITH(io::write_directory_atomically(
                        dir.file("out2"), [](const std::string&) { throw Error("disk full"); }),
                    Contains("disk full"));
  CHECK(dir.entries() == std::vector<std::string>{"out"});  // the temporary is gone
}

TEST_CASE("write_directory_atomically replaces only a directory lockstep wrote, in one swap",
          "[io][temporaries][errors]") {
  test::TempDir dir;
  const auto write = [&](const std::string& target, const std::string& text) {
    io::write_directory_atomically(target, [&](const std::string& tmp) {
      write_text(tmp + "/model.bin", text);
      write_text(tmp + "/manifest.json", io::seal_manifest(ojson{{"format", "lockstep-test"}}));
    });
  };
  // A directory lockstep wrote is replaced; "out/" is "out".
  write(dir.file("out"), "old");
  write(dir.file("out") + "/", "new");
  CHECK(read_text(dir.file("out/model.bin")) == "new");
  CHECK(dir.entries() == std::vector<std::string>{"out"});  // no temporary, no old copy

  // Anything else is refused, before anything is written, and is left as it was.
  write_text(dir.file("data.csv"), "1,2\n");
  fs::create_directories(dir.file("mine"));
  write_text(dir.file("mine/notes.txt"), "keep");
  fs::create_directories(dir.file("ckpt/step-000000000001"));
  write_text(dir.file("ckpt/LATEST"), "step-000000000001\n");
  fs::create_directories(dir.file("fake"));
  write_text(dir.file("fake/manifest.json"), "{\"format\": \"theirs\"}");
  for (const std::string name : {"data.csv", "mine", "mine/", "ckpt", "fake"}) {
    INFO(name);
    bool filled = false;
    CHECK_THROWS_WITH(
        io::write_directory_atomically(dir.file(name), [&](const std::string&) { filled = true; }),
        Contains("lockstep replaces only directories it wrote itself"));
    CHECK_FALSE(filled);
    CHECK_THROWS_WITH(check_replaceable_directory(dir.file(name), "--save"),
                      Contains("--save '" + dir.file(name) + "'"));
  }
  CHECK(read_text(dir.file("data.csv")) == "1,2\n");
  CHECK(read_text(dir.file("mine/notes.txt")) == "keep");
  CHECK(fs::exists(dir.file("ckpt/step-000000000001")));
  CHECK(dir.entries() == std::vector<std::string>{"ckpt", "data.csv", "fake", "mine", "out"});

  // The current directory, however it is spelled, is never a target.
  const fs::path cwd = fs::current_path();
  fs::current_path(dir.file("out"));
  CHECK_THROWS_WITH(check_replaceable_directory(".", "--save"),
                    Contains("is the current directory"));
  CHECK_THROWS_WITH(check_replaceable_directory("../out/", "--save"),
                    Contains("is the current directory"));
  fs::current_path(cwd);
  CHECK(directory_target("a/b/") == "a/b");
  CHECK_NOTHROW(check_replaceable_directory(dir.file("absent"), "--save"));
}
