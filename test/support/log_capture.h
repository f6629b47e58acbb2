#pragma once
// Collects what the library logs (lockstep::log()) while a LogCapture is alive, at info level and
// above, for tests that check a warning or a message.

#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <memory>
#include <sstream>
#include <string>

#include "lockstep/core/logging.h"

namespace lockstep::test {

/// Collects what the library logs while alive.
class LogCapture {
 public:
  LogCapture()
      : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)), level_(log().level()) {
    log().sinks().push_back(sink_);
    log().set_level(spdlog::level::info);
  }
  ~LogCapture() {
    auto& sinks = log().sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    log().set_level(level_);
  }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
  spdlog::level::level_enum level_;
};

}  // namespace lockstep::test
