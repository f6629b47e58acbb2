// Fuzz target: student bundle manifests (lib/src/serving/student_bundle.h,
// parse_student_bundle_manifest), the bytes as they are and sealed again (manifest_fuzz.h).
//
// Checks, besides "only lockstep::Error": an accepted manifest written again with
// student_bundle_manifest_text() parses back to the same text.

#include "fuzz/manifest_fuzz.h"
#include "serving/student_bundle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep::serving;
  return lockstep::fuzz::fuzz_manifest(data, size, [](const std::string& text) {
    const std::string again =
        student_bundle_manifest_text(parse_student_bundle_manifest(text, "m.json"));
    lockstep::fuzz::require(
        student_bundle_manifest_text(parse_student_bundle_manifest(again, "m.json")) == again,
        "a written manifest reads back to the same text");
  });
}
