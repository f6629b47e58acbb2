// open_dataset and read_data_directory: data files named by the user to a BatchSource.

#include "lockstep/train/dataset.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lockstep/core/error.h"
#include "lockstep/data/data_files.h"

namespace lockstep::train {

Dataset open_dataset(const std::vector<std::string>& specs, const data::Schema* schema,
                     const DatasetOptions& options, const std::string& what) {
  Dataset d;
  d.files = data::expand_data_paths(specs, what);
  d.sizes = data::file_sizes(d.files);
  for (const uint64_t size : d.sizes) d.bytes += size;
  LOCKSTEP_CHECK(d.bytes > 0 || options.allow_empty, "{} {}: the data is empty ({})", what,
                 fmt::join(specs, " "),
                 options.allow_empty_flag.empty()
                     ? std::string("set DatasetOptions::allow_empty to open it anyway")
                     : fmt::format("pass {} to run on it anyway", options.allow_empty_flag));
  const auto caches = std::count_if(d.files.begin(), d.files.end(), is_cache_file);
  if (caches == 0) {
    LOCKSTEP_CHECK(schema, "{} {}: text records need a schema ({}a schema TOML file or a preset, "
                   "docs/data.md); only binary caches carry their own",
                   what, d.files.front(),
                   options.schema_flag.empty() ? "" : options.schema_flag + ": ");
    d.schema = *schema;
    d.source = std::make_unique<TextBatchSource>(d.files, d.schema, options.source);
    return d;
  }
  LOCKSTEP_CHECK(caches == static_cast<long>(d.files.size()),
                 "{}: {} of {} files are binary caches: give caches or text files, not both",
                 what, caches, d.files.size());
  auto source = std::make_unique<CacheBatchSource>(d.files, options.source);
  LOCKSTEP_CHECK(!schema || source->schema() == *schema,
                 "{} {}: the cache's schema differs from {}: convert the data with this schema "
                 "or {} (a cache carries its own)",
                 what, d.files.front(),
                 options.schema_name.empty() ? "the schema given" : options.schema_name,
                 options.schema_flag.empty() ? "open it without a schema"
                                             : fmt::format("leave {} out", options.schema_flag));
  d.schema = source->schema();
  d.source = std::move(source);
  d.cache = true;
  return d;
}

DataDirectory read_data_directory(const std::string& dir) {
  DataDirectory d;
  d.schema = dir + "/schema.toml";
  const std::string meta = dir + "/meta.json";
  if (std::filesystem::exists(meta)) {
    try {
      const auto j = nlohmann::json::parse(std::ifstream(meta));
      const auto& splits = j.at("splits");
      const auto& test = splits.at("test");
      if (test.contains("oracle_auc") && !test.at("oracle_auc").is_null())  // null: not known
        d.oracle_auc = test.at("oracle_auc").get<double>();
      for (const auto& f : splits.at("train").at("files"))
        d.train.push_back(dir + "/" + f.at("path").get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("{}: not a lockstep-datagen meta.json: {}", meta, e.what()));
    }
  }
  if (d.train.empty()) d.train = {dir + "/train.tsv"};
  if (std::filesystem::exists(dir + "/valid.tsv")) d.valid = {dir + "/valid.tsv"};
  d.test = {dir + "/test.tsv"};
  return d;
}

}  // namespace lockstep::train
