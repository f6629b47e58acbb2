#pragma once
// lockstep::Error and the checks that raise it.
//
// Bad input and misuse throw lockstep::Error with a message that says what is wrong, where
// (the file:line of the data or config, or the name of the argument) and how to fix it.
// Library code never calls exit().

#include <fmt/format.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace lockstep {

/// The one exception type lockstep throws for user-visible failures (bad data, config, flags,
/// shapes; CUDA/cuBLAS/NCCL/MPI failures). `what()` is a complete, human-readable message.
/// ConfigError, below, is an Error that also names the setting it is about.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// An Error that every rank of the job raises together, at the same point, with the same message
/// (the outcome of a vote, or a failed step reported through the step's control block). No rank is
/// left waiting in a collective, so a driver may simply unwind and exit.
class JobError : public Error {
 public:
  using Error::Error;
};

/// The device failed in a way that leaves this process unable to use it (a sticky CUDA error such
/// as an illegal address): this rank cannot take part in any further collective.
class DeviceError : public Error {
 public:
  using Error::Error;
};

/// An Error about one setting: key() names it as the user wrote it, for a configuration value
/// its dotted path in the file ("model.fields[3].table", "model.bst.transformer.heads"). The
/// checks of configuration values (Config::validate(), model constructors) throw it, so that a
/// loader that knows where each key was written adds the file and line
/// (io::TomlDoc::located); the C++ API without a file gets the same message without them.
class ConfigError : public Error {
 public:
  ConfigError(std::string key, const std::string& message) : Error(message), key_(std::move(key)) {}
  const std::string& key() const { return key_; }

 private:
  std::string key_;
};

/// Throws ConfigError(field, "<field> = <value> is out of range: must be in [lo, hi]") when value
/// is outside [lo, hi]. `field` names the flag or config key as the user wrote it.
void check_range(std::string_view field, double value, double lo, double hi);
/// Same for a value stored as float: the bounds are rounded to float first, so a documented
/// bound such as 1e-12 is accepted when written in a configuration (float(1e-12) < 1e-12).
void check_range(std::string_view field, float value, double lo, double hi);
/// Same for integers, printed without decimals.
void check_range(std::string_view field, int64_t value, int64_t lo, int64_t hi);

}  // namespace lockstep

/// Throws lockstep::Error with a fmt-formatted message when `cond` is false.
#define LOCKSTEP_CHECK(cond, ...)                                     \
  do {                                                                \
    if (!(cond)) throw ::lockstep::Error(::fmt::format(__VA_ARGS__)); \
  } while (0)

/// Throws lockstep::ConfigError about the setting `key` (see ConfigError) when `cond` is false.
#define LOCKSTEP_CHECK_KEY(cond, key, ...)                                         \
  do {                                                                             \
    if (!(cond)) throw ::lockstep::ConfigError((key), ::fmt::format(__VA_ARGS__)); \
  } while (0)

/// Internal invariant: a failure is a lockstep bug, reported with file:line.
#define LOCKSTEP_ASSERT(cond)                                             \
  do {                                                                    \
    if (!(cond))                                                          \
      throw ::lockstep::Error(                                            \
          ::fmt::format("internal error: assertion '{}' failed at {}:{} " \
                        "(please report this as a lockstep bug)",         \
                        #cond, __FILE__, __LINE__));                      \
  } while (0)
