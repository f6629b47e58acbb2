#include "lockstep/core/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

#include "lockstep/core/error.h"

namespace lockstep {

namespace {
std::shared_ptr<spdlog::logger> make_logger() {
  auto logger = spdlog::get("lockstep");
  if (!logger) logger = spdlog::stderr_color_mt("lockstep");
  logger->set_pattern("[lockstep] [%l] %v");
  return logger;
}
}  // namespace

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = make_logger();
  return *logger;
}

void set_log_level(const std::string& level) {
  static const char* kNames[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  for (int i = 0; i < 7; ++i) {
    if (level == kNames[i]) {
      log().set_level(static_cast<spdlog::level::level_enum>(i));
      return;
    }
  }
  throw Error(
      fmt::format("--log-level = '{}' is not a level: use one of trace, debug, info, "
                  "warn, error, critical, off",
                  level));
}

void set_log_rank(int rank) { log().set_pattern(fmt::format("[lockstep r{}] [%l] %v", rank)); }

}  // namespace lockstep
