#pragma once
// Building any model from its TOML configuration (docs/configuration.md).

#include <memory>
#include <string>
#include <vector>

#include "lockstep/models/bst.h"
#include "lockstep/models/din.h"
#include "lockstep/models/dual_dnn.h"
#include "lockstep/models/model.h"

namespace lockstep::models {

/// The model kind of a configuration file ([model] kind: embedding_mlp, din, bst, dual).
std::string model_kind(const std::string& path);

/// Reads a DIN configuration (kind = "din"): see docs/configuration.md.
DinConfig load_din_config(const std::string& path);
/// Reads a BST configuration (kind = "bst").
BstConfig load_bst_config(const std::string& path);
/// Reads a dual DNN configuration (kind = "dual").
DualConfig load_dual_config(const std::string& path);

/// Builds the model a configuration file describes, allocated and initialised on ctx.
/// `sparse_columns` and `num_dense` describe the data (Batch::sparse order, Batch::dense width).
/// Errors name the file, line and key.
template <class T>
std::unique_ptr<Model<T>> load_model(const std::string& path,
                                     const std::vector<std::string>& sparse_columns,
                                     int64_t num_dense, const Context& ctx);

}  // namespace lockstep::models
