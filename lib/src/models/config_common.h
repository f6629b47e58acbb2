#pragma once
// Internal: readers for the configuration pieces models share (MLP, tables, fields, optimizers).

#include <string_view>
#include <vector>

#include "io/toml_util.h"
#include "lockstep/embedding/embedding_bag_collection.h"
#include "lockstep/nn/mlp.h"
#include "lockstep/nn/optimizer.h"

namespace lockstep::models {

/// activation, leaky_slope, prelu_init, dice_eps, dice_momentum of table `t` (keys not checked).
nn::ActivationConfig read_activation_config(const io::TomlDoc& doc, const toml::table& t,
                                            std::string_view prefix, nn::ActivationConfig defaults);
/// `allow_empty`: widths = [] is allowed (embedding_mlp without a deep part: LR, FM).
nn::MlpConfig read_mlp_config(const io::TomlDoc& doc, const toml::table& t, std::string_view prefix,
                              nn::MlpConfig defaults, bool allow_empty = false);
nn::OptimizerConfig read_optimizer_config(const io::TomlDoc& doc, const toml::table& t,
                                          std::string_view prefix, nn::OptimizerConfig defaults);
/// rows, dim, pooling, init_scale and ids of table `t` (keys not checked; absent keys keep the
/// values of `defaults`).
embedding::TableConfig read_table_params(const io::TomlDoc& doc, const toml::table& t,
                                         const std::string& prefix,
                                         embedding::TableConfig defaults);
/// [[<prefix>.tables]]
std::vector<embedding::TableConfig> read_table_configs(const io::TomlDoc& doc, const toml::table& t,
                                                       std::string_view prefix);
/// [[<prefix>.fields]]
std::vector<embedding::FieldConfig> read_field_configs(const io::TomlDoc& doc, const toml::table& t,
                                                       std::string_view prefix);

}  // namespace lockstep::models
