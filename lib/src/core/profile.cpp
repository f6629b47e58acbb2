#include "lockstep/core/profile.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace lockstep {

void Profile::add(std::vector<Entry>& list, const char* name, double seconds) {
  auto it = std::find_if(list.begin(), list.end(),
                         [&](const Entry& e) { return std::strcmp(e.name.c_str(), name) == 0; });
  if (it == list.end()) it = list.insert(list.end(), Entry{name});
  it->seconds += seconds;
  ++it->calls;
}

std::string Profile::table(int64_t steps, size_t top) const {
  const double n = static_cast<double>(std::max<int64_t>(steps, 1));
  double total = 0;
  for (const Entry& e : phases_) total += e.seconds;
  const auto share = [&](double s) { return total > 0 ? 100.0 * s / total : 0.0; };
  std::string out =
      fmt::format("{:<34} {:>10} {:>8} {:>7}\n", "phase", "ms/step", "calls", "share");
  for (const Entry& e : phases_)
    out += fmt::format("{:<34} {:>10.3f} {:>8.1f} {:>6.1f}%\n", e.name, 1e3 * e.seconds / n,
                       e.calls / n, share(e.seconds));
  out += fmt::format("{:<34} {:>10.3f}\n", "sum of phases", 1e3 * total / n);
  std::vector<Entry> k = kernels_;
  std::sort(k.begin(), k.end(),
            [](const Entry& a, const Entry& b) { return a.seconds > b.seconds; });
  double kernel_total = 0;
  for (const Entry& e : k) kernel_total += e.seconds;
  out += fmt::format("\n{:<34} {:>10} {:>8} {:>7}\n", "kernel", "ms/step", "calls", "share");
  for (size_t i = 0; i < k.size() && i < top; ++i)
    out += fmt::format("{:<34} {:>10.3f} {:>8.1f} {:>6.1f}%\n", k[i].name, 1e3 * k[i].seconds / n,
                       k[i].calls / n, share(k[i].seconds));
  out += fmt::format("{:<34} {:>10.3f} {:>8} {:>6.1f}%\n", "all kernels", 1e3 * kernel_total / n,
                     "", share(kernel_total));
  return out;
}

void ProfileScope::start(const Context& ctx, const char* name, Kind kind) {
  profile_ = ctx.profile();
  ctx_ = &ctx;
  name_ = name;
  kind_ = kind;
  if (kind == Kind::Kernel) {
    counted_ = profile_->kernel_depth == 0;
    ++profile_->kernel_depth;
    if (!counted_) return;
  }
  ctx.synchronize();
  t0_ = std::chrono::steady_clock::now();
}

// Runs in a destructor: a failing synchronisation drops the measurement (the error surfaces at
// the context's next read) instead of throwing.
void ProfileScope::stop() {
  if (kind_ == Kind::Kernel) {
    --profile_->kernel_depth;
    if (!counted_) return;
  }
  try {
    ctx_->synchronize();
  } catch (...) {
    return;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  if (kind_ == Kind::Kernel)
    profile_->add_kernel(name_, s);
  else
    profile_->add_phase(name_, s);
}

}  // namespace lockstep
