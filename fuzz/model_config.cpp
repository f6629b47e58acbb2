// Fuzz target: model configurations (TOML; lockstep/models/factory.h, docs/configuration.md).
//
// Every reader sees every input: parse_model_kind() and the four parse_*_config(). Besides "only
// lockstep::Error": at most one of the four accepts an input, and then it is the kind that
// parse_model_kind() names. apply_overrides() (lockstep-train --set) on every input: only
// lockstep::Error, and where it succeeds the overridden seed is what the readers see.

#include <string>

#include "fuzz/fuzz_target.h"
#include "lockstep/models/factory.h"

namespace {

// Runs `read`; true when it accepted the input.
template <class F>
bool accepts(F&& read) {
  try {
    read();
    return true;
  } catch (const lockstep::Error&) {
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep::models;
  const std::string_view text = lockstep::fuzz::as_text(data, size);
  const std::string source = "model.toml";
  std::string kind;
  const bool has_kind = accepts([&] { kind = parse_model_kind(text, source); });
  const bool mlp = accepts([&] { parse_embedding_mlp_config(text, source); });
  const bool din = accepts([&] { parse_din_config(text, source); });
  const bool bst = accepts([&] { parse_bst_config(text, source); });
  const bool dual = accepts([&] { parse_dual_config(text, source); });
  lockstep::fuzz::require(mlp + din + bst + dual <= 1, "two model kinds accept one config");
  lockstep::fuzz::require(!(mlp || din || bst || dual) || has_kind,
                          "a config is accepted but parse_model_kind() rejects it");
  lockstep::fuzz::require(!mlp || kind == "embedding_mlp", "embedding_mlp accepted another kind");
  lockstep::fuzz::require(!din || kind == "din", "din accepted another kind");
  lockstep::fuzz::require(!bst || kind == "bst", "bst accepted another kind");
  lockstep::fuzz::require(!dual || kind == "dual", "dual accepted another kind");

  std::string edited;
  if (accepts([&] { edited = apply_overrides(text, {"seed=3", "model.use_dense=false"}, source); })) {
    EmbeddingMlpConfig c;
    if (accepts([&] { c = parse_embedding_mlp_config(edited, source); }))
      lockstep::fuzz::require(c.seed == 3 && !c.use_dense, "an override was not applied");
  }
  return 0;
}
