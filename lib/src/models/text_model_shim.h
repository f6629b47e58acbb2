#pragma once
// TEMPORARY (replaced by factory.h's API of the short-config work): models from TOML text.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/data/schema.h"
#include "lockstep/models/model.h"

namespace lockstep::models {
std::string preset_config_text(const std::string& kind, int64_t table_rows);
template <class T>
std::unique_ptr<Model<T>> build_model(std::string_view toml_text, const std::string& source,
                                      const data::Schema& schema, const Context& ctx,
                                      bool student_only = false);
}  // namespace lockstep::models
