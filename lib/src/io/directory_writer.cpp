#include "io/directory_writer.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <filesystem>

#include "lockstep/core/atomic_file.h"
#include "lockstep/core/error.h"
#include "lockstep/core/logging.h"

namespace lockstep::io {

namespace fs = std::filesystem;

namespace {
constexpr std::string_view kTempPrefix = ".tmp-";

std::string host_name() {
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "unknown-host";
  return name;
}

/// kill(pid, 0) succeeds or is refused for a process that exists.
bool process_running(long pid) {
  return pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

/// The pid in the suffix "<digits>" of a temporary's name, or -1.
long parse_pid(std::string_view digits) {
  if (digits.empty() || digits.size() > 9) return -1;
  long pid = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return -1;
    pid = pid * 10 + (c - '0');
  }
  return pid > 0 ? pid : -1;
}
}  // namespace

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;  // best effort: some file systems refuse to open directories
  ::fsync(fd);
  ::close(fd);
}

std::string temporary_directory_name(std::string_view target_name, long pid) {
  return fmt::format("{}{}@{}-{}", kTempPrefix, target_name, host_name(), pid);
}

void write_directory_atomically(const std::string& final_dir,
                                const std::function<void(const std::string& tmp)>& fill) {
  const fs::path target(directory_target(final_dir));  // "out/" is "out"
  check_replaceable_directory(final_dir, "the output directory");
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(parent, ec);
  LOCKSTEP_CHECK(!ec, "{}: cannot create ({})", parent.string(), ec.message());
  const fs::path tmp = parent / temporary_directory_name(target.filename().string(), ::getpid());
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  LOCKSTEP_CHECK(!ec, "{}: cannot create ({})", tmp.string(), ec.message());
  try {
    fill(tmp.string());
    fsync_path(tmp.string());
    // The check again, right before the swap: nothing but a directory lockstep wrote is removed.
    check_replaceable_directory(final_dir, "the output directory");
    if (!fs::exists(fs::symlink_status(target))) {
      fs::rename(tmp, target);
    } else if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
      // The new contents and the old swapped in one step: the target never lacks a complete
      // directory. The old one, now under the temporary name, goes.
      fs::remove_all(tmp, ec);
      if (ec)
        log().warn("{}: cannot remove the replaced directory: {}", tmp.string(), ec.message());
    } else {  // a file system without RENAME_EXCHANGE: the old contents go first
      fs::remove_all(target);
      fs::rename(tmp, target);
    }
    fsync_path(parent.string());
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp, ec);
    throw Error(fmt::format("{}: writing failed: {}", final_dir, e.what()));
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

std::vector<std::string> remove_stale_temporaries(const std::string& dir,
                                                  std::string_view target_prefix) {
  const std::string start = std::string(kTempPrefix) + std::string(target_prefix);
  std::vector<fs::path> candidates;  // listed first: the loop below removes entries
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (it->path().filename().string().rfind(start, 0) == 0 && it->is_directory(type_ec))
      candidates.push_back(it->path());
  }
  if (ec && ec != std::errc::no_such_file_or_directory)
    log().warn("{}: cannot look for leftovers of crashed writes: {}", dir, ec.message());

  const std::string this_host = "@" + host_name() + "-";
  std::vector<std::string> removed;
  for (const auto& path : candidates) {
    const std::string name = path.filename().string();
    const size_t at = name.rfind(this_host);
    const long pid = at == std::string::npos ? -1 : parse_pid(name.substr(at + this_host.size()));
    if (pid < 0) {
      log().warn(
          "{}: looks like the temporary directory of a write that did not finish, on "
          "another host or by an older lockstep; not removed (remove it by hand when no "
          "run writes into {})",
          path.string(), dir);
    } else if (process_running(pid)) {
      if (pid != ::getpid())
        log().warn("{}: a temporary directory of process {}, which is still running; not removed",
                   path.string(), pid);
    } else if (fs::remove_all(path, ec); ec) {
      log().warn("{}: cannot remove this leftover of a crashed write: {}", path.string(),
                 ec.message());
    } else {
      log().warn("removed {}: left by process {}, whose write did not finish", path.string(), pid);
      removed.push_back(path.string());
    }
  }
  return removed;
}

}  // namespace lockstep::io
