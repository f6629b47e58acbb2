// lockstep::version(): the version this library was built as, from the build's generated header.

#include "lockstep/version.h"

namespace lockstep {

// The macros as this library saw them when it was built: a program compiled against other
// headers gets this library's values from these functions, not its own.
const char* version() { return LOCKSTEP_VERSION_STRING; }
int version_major() { return LOCKSTEP_VERSION_MAJOR; }
int version_minor() { return LOCKSTEP_VERSION_MINOR; }
int version_patch() { return LOCKSTEP_VERSION_PATCH; }

bool version_compatible(int major, int minor) {
  return major == version_major() && (major != 0 || minor == version_minor());
}

}  // namespace lockstep
