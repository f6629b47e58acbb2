#include "lockstep/core/error.h"

namespace lockstep {

void check_range(std::string_view field, double value, double lo, double hi) {
  LOCKSTEP_CHECK_KEY(value >= lo && value <= hi, std::string(field),
                     "{} = {} is out of range: must be in [{}, {}]", field, value, lo, hi);
}

void check_range(std::string_view field, float value, double lo, double hi) {
  LOCKSTEP_CHECK_KEY(value >= static_cast<float>(lo) && value <= static_cast<float>(hi),
                     std::string(field), "{} = {} is out of range: must be in [{}, {}]", field,
                     value, lo, hi);
}

void check_range(std::string_view field, int64_t value, int64_t lo, int64_t hi) {
  LOCKSTEP_CHECK_KEY(value >= lo && value <= hi, std::string(field),
                     "{} = {} is out of range: must be in [{}, {}]", field, value, lo, hi);
}

}  // namespace lockstep
