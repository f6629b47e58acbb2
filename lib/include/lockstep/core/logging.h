#pragma once
// Library logging through spdlog: one logger named "lockstep" writing to stderr.

#include <spdlog/spdlog.h>

#include <string>

namespace lockstep {

/// The library logger. Thread-safe. Lines look like "[lockstep] [info] message", or
/// "[lockstep r3] [info] message" once set_log_rank(3) was called.
spdlog::logger& log();

/// Sets the level by name: trace, debug, info, warn, error, critical, off.
/// Throws lockstep::Error naming the allowed values for anything else.
void set_log_level(const std::string& level);

/// Adds the MPI rank to every line (multi-rank runs).
void set_log_rank(int rank);

}  // namespace lockstep
