#include "lockstep/train/sparse_model.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/directory_writer.h"
#include "io/json_fields.h"
#include "io/manifest.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/io/safetensors.h"

namespace lockstep::train {

namespace fs = std::filesystem;

namespace {
constexpr const char* kFormat = "lockstep-sparse";
constexpr int kVersion = 1;

struct Export {
  SparseSaveKind kind;
  int64_t sequence;
  std::string name;
};

/// The exports in `dir` ("base-<n>" and "delta-<n>" directories), by sequence.
std::vector<Export> list_exports(const std::string& dir) {
  std::vector<Export> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_directory()) continue;
    const std::string name = entry.path().filename().string();
    for (SparseSaveKind kind : {SparseSaveKind::Base, SparseSaveKind::Delta}) {
      const std::string prefix = std::string(sparse_save_kind_name(kind)) + "-";
      if (name.rfind(prefix, 0) != 0) continue;
      const std::string digits = name.substr(prefix.size());
      if (digits.empty() || digits.size() > 18 ||
          digits.find_first_not_of("0123456789") != std::string::npos)
        continue;
      out.push_back({kind, std::stoll(digits), name});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const Export& a, const Export& b) { return a.sequence < b.sequence; });
  return out;
}

/// A table name becomes a file name: refuse what a file name cannot hold.
std::string table_file(const std::string& table) {
  LOCKSTEP_CHECK(!table.empty() && table[0] != '.' &&
                     table.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                             "0123456789_.@-") == std::string::npos,
                 "table '{}': a sparse export names its file after the table, so the name may "
                 "hold only letters, digits and _ . @ - (and not start with .)",
                 table);
  return table + ".safetensors";
}

std::vector<embedding::EmbeddingTable<float>*> dynamic_tables(models::Model<float>& model) {
  std::vector<embedding::EmbeddingTable<float>*> out;
  for (auto* t : model.tables())
    if (t->dynamic_table()) out.push_back(t);
  return out;
}

struct Manifest {
  SparseSaveKind kind = SparseSaveKind::Base;
  int64_t sequence = 0, base = 0, step = 0;
  std::vector<std::pair<std::string, int64_t>> tables;  // name, dim
  std::map<std::string, io::FileDigest> files;
};

Manifest read_manifest(const std::string& dir) {
  const std::string path = dir + "/manifest.json";
  const std::string text =
      io::read_manifest_text(path, "not a sparse export (written by lockstep-train --export-sparse)");
  const bool sealed = io::check_manifest_seal(text, path);
  const nlohmann::json json = io::parse_json(text, path);
  io::JsonFields m(json, path);
  Manifest out;
  const std::string format = m.string("format");
  LOCKSTEP_CHECK(format == kFormat, "{}: format {} is not {}", path, io::quote_text(format),
                 kFormat);
  io::read_manifest_version(m, sealed, "version", kVersion, "sparse export");
  // Sealed from the first version on (read_manifest_version requires it from version 2).
  LOCKSTEP_CHECK(sealed, "{}: checksum missing: a sparse export's manifest ends with "
                         "\"manifest_xxh64\" (truncated or edited)",
                 path);
  m.hex64("manifest_xxh64");  // verified by check_manifest_seal
  const std::string kind = m.string("kind");
  LOCKSTEP_CHECK(kind == "base" || kind == "delta", "{}: kind {} is not base or delta", path,
                 io::quote_text(kind));
  out.kind = kind == "base" ? SparseSaveKind::Base : SparseSaveKind::Delta;
  out.sequence = m.integer("sequence", 1, int64_t{1} << 60);
  out.base = m.integer("base", 0, int64_t{1} << 60);
  out.step = m.integer("step", 0, int64_t{1} << 60);
  std::vector<std::string> names;
  for (auto& t : m.objects("tables")) {
    out.tables.emplace_back(t.name("name"), t.integer("dim", 1, 4096));
    t.integer("feasigns", 0, int64_t{1} << 40);
    t.reject_unknown();
    names.push_back(table_file(out.tables.back().first));
  }
  out.files = io::read_files(m, names);
  m.reject_unknown();
  return out;
}

/// Reads `file` of an export into `table`: new keys appended, held ones replaced.
void apply_file(const std::string& path, SparseServingTable& table) {
  const io::SafetensorsFile f = io::read_safetensors(path);
  const auto& keys = f.get("keys");
  LOCKSTEP_CHECK(keys.dtype == io::DType::U64 && keys.shape.size() == 1,
                 "{}: tensor 'keys' must be U64 of shape (N)", path);
  const int64_t n = keys.numel(), dim = table.dim;
  const auto check = [&](const char* name, io::DType dtype, std::vector<int64_t> shape) {
    const auto& t = f.get(name);
    LOCKSTEP_CHECK(t.dtype == dtype && t.shape == shape,
                   "{}: tensor '{}' must be {} of shape ({}) for {} keys of dim {}", path, name,
                   io::dtype_name(dtype), fmt::join(shape, ", "), n, dim);
  };
  check("lr", io::DType::F32, {n});
  check("embedx", io::DType::F32, {n, dim});
  check("has_embedx", io::DType::U8, {n});
  check("show", io::DType::F32, {n});
  check("click", io::DType::F32, {n});
  for (const auto& t : f.tensors)
    LOCKSTEP_CHECK(t.name == "keys" || t.name == "lr" || t.name == "embedx" ||
                       t.name == "has_embedx" || t.name == "show" || t.name == "click",
                   "{}: tensor '{}' is not part of a sparse export", path, t.name);
  const auto k = keys.as<uint64_t>();
  const auto lr = f.get("lr").as<float>(), embedx = f.get("embedx").as<float>();
  const auto has = f.get("has_embedx").as<uint8_t>();
  const auto show = f.get("show").as<float>(), click = f.get("click").as<float>();
  const auto d = static_cast<size_t>(dim);
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    auto [it, inserted] = table.rows.emplace(k[i], table.size());
    if (inserted) {
      table.keys.push_back(k[i]);
      table.lr.push_back(0);
      table.embedx.resize(table.embedx.size() + d);
      table.has_embedx.push_back(0);
      table.show.push_back(0);
      table.click.push_back(0);
    }
    const auto r = static_cast<size_t>(it->second);
    table.lr[r] = lr[i];
    std::copy(embedx.begin() + i * d, embedx.begin() + (i + 1) * d, table.embedx.begin() + r * d);
    table.has_embedx[r] = has[i] ? 1 : 0;
    table.show[r] = show[i];
    table.click[r] = click[i];
  }
}
}  // namespace

const char* sparse_save_kind_name(SparseSaveKind kind) {
  return kind == SparseSaveKind::Base ? "base" : "delta";
}

SparseSaveInfo write_sparse_model(const Context& ctx, const std::string& dir, SparseSaveKind kind,
                                  models::Model<float>& model, int64_t step) {
  const auto tables = dynamic_tables(model);
  LOCKSTEP_CHECK(!tables.empty(),
                 "{}: a sparse export writes dynamic tables, and the model has none (kind = "
                 "\"dynamic\" in [[model.tables]])",
                 dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  LOCKSTEP_CHECK(fs::is_directory(dir, ec), "{}: cannot create the directory: {}", dir,
                 ec.message());
  io::remove_stale_temporaries(dir, "");
  const auto existing = list_exports(dir);
  int64_t base = 0;
  for (const auto& e : existing)
    if (e.kind == SparseSaveKind::Base) base = e.sequence;
  SparseSaveInfo info;
  info.sequence = existing.empty() ? 1 : existing.back().sequence + 1;
  const std::string name = fmt::format("{}-{:06d}", sparse_save_kind_name(kind), info.sequence);
  info.path = (fs::path(dir) / name).string();
  const bool delta = kind == SparseSaveKind::Delta;
  io::write_directory_atomically(info.path, [&](const std::string& tmp) {
    nlohmann::ordered_json m;
    m["format"] = kFormat;
    m["version"] = kVersion;
    m["kind"] = sparse_save_kind_name(kind);
    m["sequence"] = info.sequence;
    m["base"] = delta ? base : info.sequence;
    m["step"] = step;
    m["tables"] = nlohmann::ordered_json::array();
    std::vector<std::string> files;
    for (auto* t : tables) {
      const auto& d = *t->dynamic_table();
      d.sync_host(ctx);
      const std::vector<int64_t> slots = d.export_slots(delta);
      const auto n = static_cast<int64_t>(slots.size());
      std::vector<uint64_t> keys(slots.size());
      auto [lr, embedx] = d.values(ctx, slots);
      std::vector<float> show(slots.size()), click(slots.size());
      std::vector<uint8_t> has(slots.size());
      for (size_t i = 0; i < slots.size(); ++i) {
        const int64_t s = slots[i];
        keys[i] = d.index().key_of(s);
        has[i] = d.admitted(s) ? 1 : 0;
        show[i] = d.stats(s).show;
        click[i] = d.stats(s).click;
      }
      const std::string file = table_file(t->config().name);
      io::write_safetensors(tmp + "/" + file,
                            {{"keys", io::DType::U64, {n}, keys.data()},
                             {"lr", io::DType::F32, {n}, lr.data()},
                             {"embedx", io::DType::F32, {n, d.dim()}, embedx.data()},
                             {"has_embedx", io::DType::U8, {n}, has.data()},
                             {"show", io::DType::F32, {n}, show.data()},
                             {"click", io::DType::F32, {n}, click.data()}});
      files.push_back(file);
      m["tables"].push_back({{"name", t->config().name}, {"dim", d.dim()}, {"feasigns", n}});
      info.feasigns[t->config().name] = n;
    }
    m["files"] = io::files_json(io::digest_files(tmp, files));
    write_file_atomically(tmp + "/manifest.json", io::seal_manifest(m));
  });
  return info;
}

void mark_sparse_saved(const Context& ctx, SparseSaveKind kind, models::Model<float>& model) {
  for (auto* t : dynamic_tables(model))
    t->dynamic_table()->mark_saved(ctx, kind == SparseSaveKind::Delta);
}

bool SparseServingTable::lookup(uint64_t key, float* embedx_out, float* lr_out) const {
  const auto it = rows.find(key);
  const auto d = static_cast<size_t>(dim);
  if (it == rows.end() || !has_embedx[static_cast<size_t>(it->second)]) {
    std::fill(embedx_out, embedx_out + d, 0.0f);
  } else {
    const auto r = static_cast<size_t>(it->second);
    std::copy(embedx.begin() + r * d, embedx.begin() + (r + 1) * d, embedx_out);
  }
  *lr_out = it == rows.end() ? 0.0f : lr[static_cast<size_t>(it->second)];
  return it != rows.end();
}

SparseModel load_sparse_model(const std::string& dir) {
  const auto exports = list_exports(dir);
  const auto base = std::find_if(exports.rbegin(), exports.rend(),
                                 [](const Export& e) { return e.kind == SparseSaveKind::Base; });
  LOCKSTEP_CHECK(base != exports.rend(),
                 "{}: no base-<n> directory: not a sparse export (lockstep-train --export-sparse)",
                 dir);
  SparseModel out;
  out.dir = dir;
  out.base = base->sequence;
  // Everything verified before anything is read into the tables.
  std::vector<std::pair<std::string, Manifest>> parts;
  int64_t expected = out.base;  // sequence numbers count up by one: a gap is a lost delta
  for (const auto& e : exports) {
    if (e.sequence < out.base) continue;
    LOCKSTEP_CHECK(e.sequence == expected,
                   "{}: {}-{:06d} is missing (the exports after base {} go on with {}): a delta "
                   "cannot be skipped; restore it, or serve an earlier base",
                   dir, expected == out.base ? "base" : "delta", expected, out.base, e.name);
    ++expected;
    const std::string path = (fs::path(dir) / e.name).string();
    Manifest m = read_manifest(path);
    LOCKSTEP_CHECK(m.sequence == e.sequence && m.kind == e.kind,
                   "{}: its manifest says {}-{}: a renamed export?", path,
                   sparse_save_kind_name(m.kind), m.sequence);
    LOCKSTEP_CHECK(m.kind == SparseSaveKind::Base || m.base == out.base,
                   "{}: a delta of base {}, but the newest base is {}", path, m.base, out.base);
    io::verify_files(path, m.files);
    if (!parts.empty())
      LOCKSTEP_CHECK(m.tables == parts.front().second.tables,
                     "{}: its tables (names and dims) differ from those of {}", path,
                     parts.front().first);
    if (m.kind == SparseSaveKind::Delta) out.deltas.push_back(m.sequence);
    parts.emplace_back(path, std::move(m));
  }
  for (const auto& [name, dim] : parts.front().second.tables) {
    SparseServingTable& t = out.tables[name];
    t.name = name;
    t.dim = dim;
  }
  for (const auto& [path, m] : parts)
    for (const auto& [name, dim] : m.tables)
      apply_file(path + "/" + table_file(name), out.tables[name]);
  return out;
}

}  // namespace lockstep::train
