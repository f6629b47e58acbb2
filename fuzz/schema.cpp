// Fuzz target: TOML data schemas (lockstep/data/schema.h, Schema::parse).
//
// Checks, besides "only lockstep::Error": an accepted schema's to_toml() parses back to an equal
// schema, and the accepted schema can parse an empty records text.

#include <string>

#include "fuzz/fuzz_target.h"
#include "lockstep/data/schema.h"
#include "lockstep/data/text_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep;
  return fuzz::accept_only_lockstep_errors([&] {
    const data::Schema schema = data::Schema::parse(fuzz::as_text(data, size), "schema.toml");
    data::Schema again;
    try {
      again = data::Schema::parse(schema.to_toml(), "to_toml");
      data::parse_text("", schema, "empty");
    } catch (const Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      fuzz::require(false, "an accepted schema does not read back from to_toml()");
    }
    fuzz::require(again == schema, "to_toml() reads back to another schema");
  });
}
