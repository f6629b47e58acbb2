#include "train/signals.h"

namespace lockstep::train {

namespace {
volatile std::sig_atomic_t g_signal = 0;
int g_depth = 0;  // guards alive: an inner one (fit() inside a driver's own) keeps the flag
extern "C" void on_stop_signal(int sig) { g_signal = sig; }
}  // namespace

SignalGuard::SignalGuard(bool install) : installed_(install) {
  if (!installed_) return;
  if (g_depth++ == 0) g_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, &old_term_);
  sigaction(SIGINT, &sa, &old_int_);
}

SignalGuard::~SignalGuard() {
  if (!installed_) return;
  sigaction(SIGTERM, &old_term_, nullptr);
  sigaction(SIGINT, &old_int_, nullptr);
  // A stop request belongs to the outermost guard's scope (one fit(), or a driver's whole loop).
  if (--g_depth == 0) g_signal = 0;
}

bool stop_signal_pending() { return g_signal != 0; }

}  // namespace lockstep::train
