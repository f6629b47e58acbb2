#include "train/signals.h"

namespace lockstep::train {

namespace {
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_stop_signal(int sig) { g_signal = sig; }
}  // namespace

SignalGuard::SignalGuard(bool install) : installed_(install) {
  if (!installed_) return;
  g_signal = 0;
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
  g_signal = 0;  // a stop request belongs to the fit() that received it
}

bool stop_signal_pending() { return g_signal != 0; }

}  // namespace lockstep::train
