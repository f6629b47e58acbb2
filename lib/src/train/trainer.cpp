#include "lockstep/train/trainer.h"

#include <xxhash.h>

#include <chrono>
#include <csignal>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "kernels/copy.h"
#include "kernels/embedding.h"
#include "lockstep/core/logging.h"
#include "lockstep/train/checkpoint.h"
#include "lockstep/train/local_trainer.h"
#include "lockstep/train/metrics.h"

namespace lockstep::train {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kExitCommError = 3;

// ---- signals: the handler only sets a flag; the next step turns it into a collective stop.
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_stop_signal(int sig) { g_signal = sig; }

class SignalGuard {
 public:
  explicit SignalGuard(bool install) : installed_(install) {
    if (!installed_) return;
    g_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &old_term_);
    sigaction(SIGINT, &sa, &old_int_);
  }
  ~SignalGuard() {
    if (!installed_) return;
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
  }

 private:
  bool installed_;
  struct sigaction old_term_ {}, old_int_ {};
};

uint64_t hash_bytes(const void* data, size_t n, uint64_t seed = 0) { return XXH64(data, n, seed); }
uint64_t hash_string(const std::string& s) { return hash_bytes(s.data(), s.size()); }

std::string hms(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds));
  return fmt::format("{:02d}:{:02d}:{:02d}", s / 3600, s / 60 % 60, s % 60);
}

}  // namespace

FaultInjection FaultInjection::parse(const std::string& spec) {
  FaultInjection f;
  if (spec.empty() || spec == "none") return f;
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t colon = spec.find(':', start);
    parts.push_back(spec.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  const std::string usage =
      "use kind:rank:step[:seconds] with kind skew, fail, sleep, kill or sigterm, e.g. sleep:1:5:30";
  LOCKSTEP_CHECK(parts.size() >= 3 && parts.size() <= 4, "--inject-fault = '{}': {}", spec, usage);
  const std::string& kind = parts[0];
  if (kind == "skew") f.kind = Kind::StepSkew;
  else if (kind == "fail") f.kind = Kind::Fail;
  else if (kind == "sleep") f.kind = Kind::Sleep;
  else if (kind == "kill") f.kind = Kind::Kill;
  else if (kind == "sigterm") f.kind = Kind::Signal;
  else throw Error(fmt::format("--inject-fault = '{}': unknown kind '{}': {}", spec, kind, usage));
  try {
    f.rank = std::stoi(parts[1]);
    f.step = std::stoull(parts[2]);
    if (parts.size() == 4) f.seconds = std::stod(parts[3]);
  } catch (const std::exception&) {
    throw Error(fmt::format("--inject-fault = '{}': rank, step and seconds must be numbers: {}",
                            spec, usage));
  }
  LOCKSTEP_CHECK(f.kind != Kind::Sleep || parts.size() == 4,
                 "--inject-fault = '{}': sleep needs seconds: {}", spec, usage);
  return f;
}

struct Trainer::Impl {
  models::Model<float>& model;
  comm::Communicator& comm;
  Context& ctx;
  TrainerConfig config;
  LocalTrainer<float> local;
  std::vector<embedding::EmbeddingTable<float>*> tables;
  ControlBlock control;
  int rank, ranks;
  int64_t state_begin, state_size, grad_size;  // ParamSet regions (elements)
  std::vector<std::function<void(const StepInfo&)>> callbacks;
  std::vector<float> host_block;
  // Sparse exchange buffers.
  Tensor<uint8_t> send, recv;
  Tensor<uint64_t> gathered_ids;
  Tensor<float> gathered_grads;
  Tensor<int64_t> merge_offsets;
  Tensor<double> scalars;
  Tensor<float> state_before;  // non-trainable state at the start of the step (ranks > 1)
  std::ofstream metrics;
  EvalResult last_eval{0, NAN, NAN};

  Impl(models::Model<float>& m, comm::Communicator& c, Context& x, TrainerConfig cfg)
      : model(m),
        comm(c),
        ctx(x),
        config(std::move(cfg)),
        local(m, x),
        tables(m.tables()),
        control(c.size(), static_cast<int>(m.tables().size())),
        rank(c.rank()),
        ranks(c.size()) {
    auto& ps = model.dense_params();
    state_begin = ps.trainable_size();
    state_size = ps.size() - ps.trainable_size();
    grad_size = ps.size();
    ps.reserve_grad_tail(ctx, control.size());
    if (state_size > 0) state_before.resize(ctx, {state_size});
    host_block.assign(control.size(), 0.0f);
    if (rank == 0 && !config.metrics_path.empty()) {
      metrics.open(config.metrics_path, std::ios::app);
      LOCKSTEP_CHECK(metrics.good(), "{}: cannot open the metrics file for appending",
                     config.metrics_path);
    }
  }

  /// Sums host values over all ranks through ctx's device memory (F64, exact for counts < 2^53).
  std::vector<double> all_reduce_host(std::vector<double> values) {
    upload(ctx, values, scalars);
    comm.all_reduce_sum(ctx, scalars.data(), static_cast<int64_t>(values.size()),
                        comm::DataType::F64);
    return to_host(ctx, scalars);
  }

  /// Gathers each rank's host floats (any counts) into one vector, rank 0's first.
  std::vector<float> all_gather_host(const std::vector<float>& mine) {
    std::vector<double> one_hot(ranks, 0.0);
    one_hot[rank] = static_cast<double>(mine.size());
    const auto totals = all_reduce_host(one_hot);
    std::vector<int64_t> counts(ranks);
    int64_t total = 0;
    for (int r = 0; r < ranks; ++r) total += counts[r] = static_cast<int64_t>(totals[r]);
    Tensor<float> send_t = make_tensor(ctx, mine.empty() ? std::vector<float>{0.0f} : mine);
    Tensor<float> recv_t(ctx, {std::max<int64_t>(total, 1)});
    comm.all_gather_v(ctx, send_t.data(), recv_t.data(), counts, comm::DataType::F32);
    auto out = to_host(ctx, recv_t.data(), total);
    return out;
  }

  /// The start-up check: identical layout and configuration on every rank.
  uint64_t check_consistency() {
    std::vector<std::pair<std::string, uint64_t>> parts;
    parts.emplace_back("model", hash_string(model.name()));
    parts.emplace_back("dense parameter layout", model.dense_params().layout_hash());
    std::string tables_text;
    for (auto* t : tables) {
      const auto& c = t->config();
      tables_text += fmt::format("{}:{}:{}:{}:{};", c.name, c.rows, c.dim,
                                 embedding::pooling_name(c.pooling), c.init_scale);
    }
    parts.emplace_back("embedding tables", hash_string(tables_text));
    parts.emplace_back("run configuration", hash_string(config.run_config));
    const auto values = to_host(ctx, model.dense_params().values(), model.dense_params().size());
    parts.emplace_back("initial dense parameters (seed?)",
                       hash_bytes(values.data(), values.size() * sizeof(float)));
    // One-hot slots of 16-bit chunks keep the 64-bit hashes exact in the F64 sum.
    const size_t k = parts.size();
    std::vector<double> slots(static_cast<size_t>(ranks) * k * 4, 0.0);
    for (size_t i = 0; i < k; ++i)
      for (int c = 0; c < 4; ++c)
        slots[(rank * k + i) * 4 + c] = static_cast<double>((parts[i].second >> (16 * c)) & 0xffff);
    const auto all = all_reduce_host(slots);
    const auto value = [&](int r, size_t i) {
      uint64_t v = 0;
      for (int c = 0; c < 4; ++c)
        v |= static_cast<uint64_t>(all[(r * k + i) * 4 + c]) << (16 * c);
      return v;
    };
    for (size_t i = 0; i < k; ++i) {
      std::vector<int> differ;
      for (int r = 1; r < ranks; ++r)
        if (value(r, i) != value(0, i)) differ.push_back(r);
      LOCKSTEP_CHECK(differ.empty(),
                     "ranks disagree at start-up: the {} of rank(s) {} differs from rank 0's "
                     "({:016x} vs {:016x}); start every rank with the same model, configuration "
                     "and flags",
                     parts[i].first, fmt::join(differ, ", "), value(differ.empty() ? 0 : differ[0], i),
                     value(0, i));
    }
    uint64_t h = 0;
    for (size_t i = 0; i + 1 < k; ++i) h = hash_bytes(&parts[i].second, sizeof(uint64_t), h);
    return h;
  }

  /// Exchanges every rank's sparse gradients and merges them in rank order (identical bits on
  /// every rank). rows[r * T + t] = rows rank r holds for table t.
  void exchange_sparse(const std::vector<uint64_t>& rows) {
    const int T = static_cast<int>(tables.size());
    std::vector<int64_t> seg_bytes(ranks, 0);
    int64_t total_bytes = 0;
    for (int r = 0; r < ranks; ++r) {
      for (int t = 0; t < T; ++t)
        seg_bytes[r] += static_cast<int64_t>(rows[r * T + t]) * (8 + 4 * tables[t]->dim());
      total_bytes += seg_bytes[r];
    }
    if (total_bytes == 0) {
      for (auto* t : tables) t->grad().clear();
      return;
    }
    send.resize(ctx, {std::max<int64_t>(seg_bytes[rank], 1)});
    recv.resize(ctx, {total_bytes});
    const Device& dev = ctx.device();
    int64_t at = 0;
    for (int t = 0; t < T; ++t) {  // pack: ids then gradient rows, table by table
      const int64_t u = static_cast<int64_t>(rows[rank * T + t]), dim = tables[t]->dim();
      copy_bytes(ctx, send.data() + at, dev, tables[t]->grad().ids(), dev, u * 8);
      at += u * 8;
      copy_bytes(ctx, send.data() + at, dev, tables[t]->grad().rows(), dev, u * dim * 4);
      at += u * dim * 4;
    }
    comm.all_gather_v(ctx, send.data(), recv.data(), seg_bytes, comm::DataType::U8);
    std::vector<int64_t> seg_start(ranks, 0);
    for (int r = 1; r < ranks; ++r) seg_start[r] = seg_start[r - 1] + seg_bytes[r - 1];
    for (int t = 0; t < T; ++t) {
      auto& table = *tables[t];
      const int64_t dim = table.dim();
      int64_t total = 0;
      for (int r = 0; r < ranks; ++r) total += static_cast<int64_t>(rows[r * T + t]);
      if (total == 0) {
        table.grad().clear();
        continue;
      }
      gathered_ids.resize(ctx, {total});
      gathered_grads.resize(ctx, {total, dim});
      int64_t filled = 0;
      for (int r = 0; r < ranks; ++r) {  // unpack rank r's piece of table t
        int64_t off = seg_start[r];
        for (int s = 0; s < t; ++s)
          off += static_cast<int64_t>(rows[r * T + s]) * (8 + 4 * tables[s]->dim());
        const int64_t u = static_cast<int64_t>(rows[r * T + t]);
        copy_bytes(ctx, gathered_ids.data() + filled, dev, recv.data() + off, dev, u * 8);
        copy_bytes(ctx, gathered_grads.data() + filled * dim, dev, recv.data() + off + u * 8, dev,
                   u * dim * 4);
        filled += u;
      }
      // Merge: every gathered row is a one-id "bag"; the sort + segmented sum adds equal rows in
      // rank order, deterministically.
      std::vector<int64_t> offsets(total + 1);
      for (int64_t i = 0; i <= total; ++i) offsets[i] = i;
      upload(ctx, offsets, merge_offsets);
      auto& g = table.grad();
      g.reserve(ctx, total, dim);
      kernels::pooled_lookup_backward<float>(ctx, kernels::Pooling::Sum, total, dim,
                                             merge_offsets.data(), gathered_ids.data(), total,
                                             gathered_grads.data(), dim, g.ids(), g.rows(),
                                             g.count());
      g.mark_ready();
    }
  }

  void inject(RankReport& report, uint64_t step) {
    const auto& f = config.fault;
    if (f.kind == FaultInjection::Kind::None || f.rank != rank || f.step != step) return;
    switch (f.kind) {
      case FaultInjection::Kind::StepSkew: report.step += 1; break;
      case FaultInjection::Kind::Fail: report.status = kStatusInjected; break;
      case FaultInjection::Kind::Sleep:
        log().warn("fault injection: rank {} sleeps {} s at step {}", rank, f.seconds, step);
        std::this_thread::sleep_for(std::chrono::duration<double>(f.seconds));
        break;
      case FaultInjection::Kind::Kill:
        log().warn("fault injection: rank {} kills itself at step {}", rank, step);
        std::raise(SIGKILL);
        break;
      case FaultInjection::Kind::Signal:
        std::raise(SIGTERM);  // as if delivered now: this step's report carries the request
        report.stop_requested = g_signal != 0;
        break;
      case FaultInjection::Kind::None: break;
    }
  }
};

Trainer::Trainer(models::Model<float>& model, comm::Communicator& comm, Context& ctx,
                 TrainerConfig config)
    : impl_(std::make_unique<Impl>(model, comm, ctx, std::move(config))) {
  check_range("epochs", impl_->config.epochs, int64_t{0}, int64_t{1} << 30);
  check_range("log_every", impl_->config.log_every, int64_t{0}, int64_t{1} << 40);
  check_range("checkpoint_every", impl_->config.checkpoint_every, int64_t{0}, int64_t{1} << 40);
  LOCKSTEP_CHECK(!impl_->config.resume || !impl_->config.checkpoint_dir.empty(),
                 "--resume needs --checkpoint-dir");
  comm.set_step(0);
  config_hash_ = impl_->check_consistency();
}

Trainer::~Trainer() = default;

void Trainer::on_step(std::function<void(const StepInfo&)> callback) {
  impl_->callbacks.push_back(std::move(callback));
}

std::string Trainer::save_checkpoint() {
  Impl& m = *impl_;
  LOCKSTEP_CHECK(!m.config.checkpoint_dir.empty(), "save_checkpoint: no checkpoint directory set");
  std::string path, error;
  if (m.rank == 0) {
    CheckpointMeta meta;
    meta.step = step_;
    meta.updates = updates_;
    meta.epoch = epoch_;
    meta.step_in_epoch = step_in_epoch_;
    meta.random_offset = m.ctx.random_offset();
    meta.ranks = m.ranks;
    meta.config_hash = config_hash_;
    meta.model = m.model.name();
    try {
      path = write_checkpoint(m.config.checkpoint_dir, meta, m.model, m.ctx,
                              m.config.keep_checkpoints);
      log().info("checkpoint written: {}", path);
    } catch (const Error& e) {
      error = e.what();
      log().error("{}", error);
    }
  }
  // Every rank learns whether rank 0 succeeded, so that all stop together on a failure.
  const auto failed = m.all_reduce_host({error.empty() ? 0.0 : 1.0});
  LOCKSTEP_CHECK(failed[0] == 0.0, "writing the checkpoint at step {} failed on rank 0{}{}", step_,
                 error.empty() ? "" : ": ", error);
  return path;
}

EvalResult Trainer::evaluate(BatchSource& data) {
  Impl& m = *impl_;
  std::vector<float> probs, labels;
  data.start_epoch(0);
  data::Batch batch;
  while (data.next(batch)) {
    const auto p = m.local.predict(batch);
    probs.insert(probs.end(), p.begin(), p.end());
    labels.insert(labels.end(), batch.labels.begin(), batch.labels.end());
  }
  const auto all_probs = m.all_gather_host(probs);
  const auto all_labels = m.all_gather_host(labels);
  EvalResult r;
  r.samples = static_cast<int64_t>(all_probs.size());
  r.auc = r.samples ? roc_auc(all_probs, all_labels) : NAN;
  r.logloss = r.samples ? mean_log_loss_from_probs(all_probs, all_labels) : NAN;
  m.last_eval = r;
  return r;
}

FitResult Trainer::fit(BatchSource& train, BatchSource* eval) {
  Impl& m = *impl_;
  FitResult result;
  SignalGuard signals(m.config.handle_signals);
  const auto t0 = Clock::now();
  auto last_log = t0;
  int64_t samples_since_log = 0;
  uint64_t saved_at = UINT64_MAX;  // step of the last checkpoint this fit() wrote
  double side_seconds = 0;         // evaluation and checkpoints, not stepping
  const auto timed = [&](auto&& fn) {
    const auto s0 = Clock::now();
    fn();
    side_seconds += std::chrono::duration<double>(Clock::now() - s0).count();
  };
  const auto finish = [&] {
    result.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    result.train_seconds = result.seconds - side_seconds;
  };
  try {
    if (m.config.resume) {
      const std::string path = latest_checkpoint(m.config.checkpoint_dir);
      if (!path.empty()) {
        const CheckpointMeta meta = read_checkpoint(path, m.model, m.ctx, config_hash_);
        LOCKSTEP_CHECK(meta.ranks == m.ranks,
                       "{}: written by a run with {} ranks; resume it with {} ranks (each rank's "
                       "data position depends on the rank count)",
                       path, meta.ranks, m.ranks);
        step_ = meta.step;
        updates_ = meta.updates;
        epoch_ = meta.epoch;
        step_in_epoch_ = meta.step_in_epoch;
        m.ctx.set_random_offset(meta.random_offset);
        if (m.rank == 0)
          log().info("resumed from {} (step {}, epoch {}, batch {} of the epoch)", path, step_,
                     epoch_, step_in_epoch_);
      }
    }
    auto& ps = m.model.dense_params();
    data::Batch cur, nxt, empty;
    for (; epoch_ < m.config.epochs; ++epoch_, step_in_epoch_ = 0) {
      train.start_epoch(epoch_);
      if (step_in_epoch_ > 0) train.skip(step_in_epoch_);
      uint16_t pending = kStatusOk;  // a failure while reading ahead is reported next step
      const auto read = [&](data::Batch& b) {
        try {
          return train.next(b);
        } catch (const Error& e) {
          log().error("rank {}: reading the next batch failed: {}", m.rank, e.what());
          pending = kStatusDataFailed;
          return false;
        }
      };
      bool has_cur = read(cur);
      bool has_nxt = has_cur && read(nxt);
      while (true) {
        // ---- 1. local work: gradients of this rank's batch (or nothing).
        m.comm.set_step(step_);
        const data::Batch& batch = has_cur ? cur : empty;
        RankReport report;
        report.step = step_;
        report.n_samples = static_cast<uint64_t>(batch.size);
        report.has_next = has_nxt;
        report.status = pending;
        report.stop_requested = g_signal != 0;
        const bool share_state = m.ranks > 1 && m.state_size > 0;
        if (share_state)  // the state before this step's forward (see below)
          copy_bytes(m.ctx, m.state_before.data(), m.ctx.device(), ps.values() + m.state_begin,
                     m.ctx.device(), m.state_before.bytes());
        try {
          if (batch.size > 0 && pending == kStatusOk) {
            report.loss_sum = to_host(m.ctx, m.local.compute_gradients(m.local.stage(batch)), 1)[0];
          } else {
            ps.zero_grad(m.ctx);
            for (auto* t : m.tables) t->grad().clear();
          }
        } catch (const Error& e) {
          log().error("rank {}: step {} failed: {}", m.rank, step_, e.what());
          report.status = kStatusComputeFailed;
          ps.zero_grad(m.ctx);
        }
        for (auto* t : m.tables)
          report.sparse_rows.push_back(t->grad().ready() && report.status == kStatusOk
                                           ? static_cast<uint64_t>(to_host(m.ctx, t->grad().count(), 1)[0])
                                           : 0);
        m.inject(report, step_);
        // Non-trainable state (Dice running averages) travels as this rank's change weighted by
        // its sample count: every replica then applies the same sample-weighted mean change, and
        // state that no rank changed (a frozen teacher) stays bitwise as it was.
        if (share_state) {
          float* delta = ps.grads() + m.state_begin;
          kernels::scale<float>(m.ctx, m.state_size, -1.0f, m.state_before.data(), delta);
          kernels::copy_2d<float>(m.ctx, 1, m.state_size, ps.values() + m.state_begin,
                                  m.state_size, delta, m.state_size, /*accumulate=*/true);
          kernels::scale<float>(m.ctx, m.state_size, static_cast<float>(batch.size), delta, delta);
        }
        std::fill(m.host_block.begin(), m.host_block.end(), 0.0f);
        m.control.encode(report, m.rank, m.host_block.data());
        copy_bytes(m.ctx, ps.grad_tail(), m.ctx.device(), m.host_block.data(), Device::cpu(),
                   m.host_block.size() * sizeof(float));

        // ---- 2. THE collective: dense gradients, state and control block in one all-reduce.
        m.comm.all_reduce_sum(m.ctx, ps.grads(), m.grad_size + m.control.size(),
                              comm::DataType::F32);
        copy_bytes(m.ctx, m.host_block.data(), Device::cpu(), ps.grad_tail(), m.ctx.device(),
                   m.host_block.size() * sizeof(float));
        const StepSummary summary = summarize(m.control.decode(m.host_block.data()), step_);

        // ---- 3. identical update on every rank.
        if (m.ranks > 1) m.exchange_sparse(summary.sparse_rows);
        const bool update = summary.samples > 0;
        if (update) {
          const float scale = 1.0f / static_cast<float>(summary.samples);
          if (share_state) {  // state = before + Σ n_r·Δ_r / N
            float* delta = ps.grads() + m.state_begin;
            kernels::scale<float>(m.ctx, m.state_size, scale, delta, delta);
            copy_bytes(m.ctx, ps.values() + m.state_begin, m.ctx.device(), m.state_before.data(),
                       m.ctx.device(), m.state_before.bytes());
            kernels::copy_2d<float>(m.ctx, 1, m.state_size, delta, m.state_size,
                                    ps.values() + m.state_begin, m.state_size, /*accumulate=*/true);
          }
          m.model.apply_gradients(m.ctx, scale);
          ++updates_;
          ++result.updates;
        }
        ++step_;
        ++step_in_epoch_;
        ++result.steps;
        result.samples += static_cast<int64_t>(summary.samples);
        result.loss_sum += summary.loss_sum;
        samples_since_log += static_cast<int64_t>(summary.samples);
        StepInfo info{step_ - 1, epoch_, &batch, summary, update};
        for (auto& cb : m.callbacks) cb(info);

        // ---- 4. progress, checkpoints, stop.
        if (m.rank == 0 && m.config.log_every > 0 && step_ % m.config.log_every == 0) {
          const auto now = Clock::now();
          const double dt = std::chrono::duration<double>(now - last_log).count();
          const double elapsed = std::chrono::duration<double>(now - t0).count();
          std::string line = fmt::format("step {} | epoch {}/{} | {:.0f} samples/s | loss {:.4f}",
                                         step_, epoch_ + 1, m.config.epochs,
                                         samples_since_log / std::max(dt, 1e-9),
                                         summary.samples ? summary.loss_sum / summary.samples : NAN);
          if (!std::isnan(m.last_eval.auc)) line += fmt::format(" | eval AUC {:.4f}", m.last_eval.auc);
          const int64_t total = m.config.steps_per_epoch * m.config.epochs;
          if (total > 0 && static_cast<int64_t>(result.steps) < total) {
            const double per_step = elapsed / static_cast<double>(result.steps);
            line += fmt::format(" | ETA {}", hms(per_step * (total - static_cast<double>(step_))));
          }
          log().info("{} | elapsed {}", line, hms(elapsed));
          if (m.metrics.is_open())
            m.metrics << nlohmann::json{{"step", step_},
                                        {"epoch", epoch_},
                                        {"samples_per_s", samples_since_log / std::max(dt, 1e-9)},
                                        {"loss", summary.samples ? summary.loss_sum / summary.samples
                                                                 : 0.0}}
                             .dump()
                      << std::endl;
          last_log = now;
          samples_since_log = 0;
        }
        if (summary.stop_requested) {
          if (m.rank == 0) log().warn("stop requested by a signal: stopping at step {}", step_);
          if (!m.config.checkpoint_dir.empty()) result.last_checkpoint = save_checkpoint();
          result.stopped = true;
          finish();
          return result;
        }
        if (!m.config.checkpoint_dir.empty() && m.config.checkpoint_every > 0 &&
            step_ % m.config.checkpoint_every == 0) {
          timed([&] { result.last_checkpoint = save_checkpoint(); });
          saved_at = step_;
        }
        if (!summary.any_next) break;
        std::swap(cur, nxt);
        has_cur = has_nxt;
        has_nxt = has_cur && read(nxt);
      }
      if (eval) {
        timed([&] { result.last_eval = evaluate(*eval); });
        if (m.rank == 0) {
          log().info("epoch {} done at step {}: eval AUC {:.4f}, logloss {:.4f} over {} samples",
                     epoch_ + 1, step_, result.last_eval.auc, result.last_eval.logloss,
                     result.last_eval.samples);
          if (m.metrics.is_open())
            m.metrics << nlohmann::json{{"step", step_},
                                        {"epoch", epoch_ + 1},
                                        {"eval_auc", result.last_eval.auc},
                                        {"eval_logloss", result.last_eval.logloss},
                                        {"eval_samples", result.last_eval.samples}}
                             .dump()
                      << std::endl;
        }
      }
    }
    if (!m.config.checkpoint_dir.empty() && saved_at != step_)
      timed([&] { result.last_checkpoint = save_checkpoint(); });
    epoch_ = 0;  // completed: a further fit() trains config.epochs more epochs
    step_in_epoch_ = 0;
  } catch (const comm::CommError& e) {
    log().error("{}", e.what());  // names this rank, the step and the silent ranks
    if (!m.config.abort_on_comm_error) throw;
    log().error("rank {}: aborting the job (exit code {})", m.rank, kExitCommError);
    m.comm.abort(kExitCommError);
  }
  finish();
  return result;
}

}  // namespace lockstep::train
