// Fuzz target: checkpoint manifests (lib/src/train/checkpoint_manifest.h,
// parse_checkpoint_manifest), the bytes as they are and sealed again (manifest_fuzz.h), so that
// mutations reach the field checks behind the checksum.
//
// Checks, besides "only lockstep::Error": an accepted manifest written again with
// checkpoint_manifest_text() parses back to the same text.

#include "fuzz/manifest_fuzz.h"
#include "train/checkpoint_manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep::train;
  return lockstep::fuzz::fuzz_manifest(data, size, [](const std::string& text) {
    const std::string again = checkpoint_manifest_text(parse_checkpoint_manifest(text, "m.json"));
    lockstep::fuzz::require(
        checkpoint_manifest_text(parse_checkpoint_manifest(again, "m.json")) == again,
        "a written manifest reads back to the same text");
  });
}
