#include "lockstep/embedding/embedding_table.h"

#include <xxhash.h>

#include "kernels/init.h"
#include "kernels/optimizer.h"

namespace lockstep::embedding {

const char* pooling_name(Pooling p) { return p == Pooling::Sum ? "sum" : "mean"; }

Pooling parse_pooling(std::string_view name, std::string_view field) {
  if (name == "sum") return Pooling::Sum;
  if (name == "mean") return Pooling::Mean;
  throw Error(fmt::format("{} = '{}' is not a pooling: use sum or mean", field, name));
}

const char* table_kind_name(TableKind k) { return k == TableKind::Dynamic ? "dynamic" : "hashed"; }

void TableConfig::validate(std::string_view prefix) const {
  LOCKSTEP_CHECK_KEY(!name.empty(), fmt::format("{}.name", prefix),
                     "{}.name is empty: every table needs a name", prefix);
  check_range(fmt::format("{}.rows", prefix), rows, int64_t{1}, int64_t{1} << 40);
  check_range(fmt::format("{}.dim", prefix), dim, int64_t{1}, int64_t{4096});
  check_range(fmt::format("{}.init_scale", prefix), init_scale, 0.0, 10.0);
  if (!dynamic()) return;
  LOCKSTEP_CHECK_KEY(!identity, fmt::format("{}.ids", prefix),
                     "{}.ids = \"identity\" with kind = \"dynamic\": a dynamic table maps every "
                     "key to its own slot already; drop ids",
                     prefix);
  accessor.validate(fmt::format("{}.accessor", prefix));
  check_range(fmt::format("{}.accessor.shrink_every_steps", prefix), shrink_every_steps,
              int64_t{0}, int64_t{1} << 40);
}

template <class T>
EmbeddingTable<T>::EmbeddingTable(TableConfig config, nn::OptimizerConfig optimizer)
    : config_(std::move(config)), optimizer_(optimizer) {
  config_.validate("table '" + config_.name + "'");
  optimizer_.validate("sparse_optimizer");
  LOCKSTEP_CHECK_KEY(optimizer_.kind != nn::OptimizerKind::Sgd, "sparse_optimizer.kind",
                     "sparse_optimizer.kind = 'sgd' is not supported for embedding tables: use "
                     "adagrad or adam");
  const std::string& hash_name = config_.residual_of.empty() ? config_.name : config_.residual_of;
  hash_seed_ = XXH64(hash_name.data(), hash_name.size(), 0);
}

template <class T>
uint64_t EmbeddingTable<T>::row_of(uint64_t key) const {
  LOCKSTEP_CHECK(!dynamic(), "table '{}' is dynamic: its keys have slots, not hashed rows",
                 config_.name);
  if (config_.identity) {
    LOCKSTEP_CHECK(key < static_cast<uint64_t>(config_.rows),
                   "table '{}' (ids = \"identity\"): id {} is not below rows = {}; give the "
                   "table more rows or hash its ids (ids = \"hash\")",
                   config_.name, key, config_.rows);
    return key;
  }
  uint8_t le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(key >> (8 * i));
  return XXH64(le, 8, hash_seed_) % static_cast<uint64_t>(config_.rows);
}

template <class T>
void EmbeddingTable<T>::allocate(const Context& ctx, uint64_t seed) {
  if (dynamic()) {
    dynamic_ = std::make_unique<DynamicTable<T>>(
        ctx, config_.rows, config_.dim, config_.init_scale, config_.accessor,
        config_.shrink_every_steps, optimizer_, seed, hash_seed_);
  } else {
    allocate_rows(ctx, seed);
  }
  grad_.reserve(ctx, 1, grad_width());
  zero_bytes(ctx, grad_.count(), sizeof(int64_t));
}

template <class T>
void EmbeddingTable<T>::allocate_rows(const Context& ctx, uint64_t seed) {
  const int64_t n = config_.rows * config_.dim;
  weights_.resize(ctx, {config_.rows, config_.dim});
  kernels::fill_uniform<T>(ctx, n, seed, hash_seed_, 0, -config_.init_scale, config_.init_scale,
                           weights_.data());
  if (optimizer_.kind == nn::OptimizerKind::Adagrad) {
    state0_.resize(ctx, {config_.rows});
    kernels::fill_constant<T>(ctx, config_.rows, T(optimizer_.initial_accumulator), state0_.data());
  } else {
    state0_.resize(ctx, {config_.rows, config_.dim});
    state1_.resize(ctx, {config_.rows, config_.dim});
    kernels::fill_constant<T>(ctx, n, T(0), state0_.data());
    kernels::fill_constant<T>(ctx, n, T(0), state1_.data());
  }
}

template <class T>
void EmbeddingTable<T>::apply_gradients(const Context& ctx, T grad_scale, int64_t step) {
  if (dynamic_) {
    if (grad_.ready())
      dynamic_->apply(ctx, grad_, grad_scale, step);
    else
      dynamic_->after_update(ctx,
                             step);  // every replica: the exchange left no record for the table
    grad_.clear();
    return;
  }
  if (!grad_.ready()) return;
  const auto& o = optimizer_;
  if (o.kind == nn::OptimizerKind::Adagrad) {
    kernels::sparse_adagrad_update<T>(ctx, {o.lr, o.eps}, grad_scale, config_.dim,
                                      grad_.count(), grad_.capacity(), grad_.ids(),
                                      grad_.rows(), weights_.data(), config_.rows,
                                      state0_.data());
  } else {
    kernels::sparse_adam_update<T>(ctx, {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}, step,
                                   grad_scale, config_.dim, grad_.count(), grad_.capacity(),
                                   grad_.ids(), grad_.rows(), weights_.data(), config_.rows,
                                   state0_.data(), state1_.data());
  }
  grad_.clear();
}

template <class T>
std::map<std::string, std::vector<T>> EmbeddingTable<T>::to_host(const Context& ctx) const {
  std::map<std::string, std::vector<T>> out;
  if (dynamic_) {
    dynamic_->to_host(ctx, config_.name, out);
    return out;
  }
  out[config_.name + ".weight"] = lockstep::to_host(ctx, weights_);
  if (optimizer_.kind == nn::OptimizerKind::Adagrad) {
    out[config_.name + ".accum"] = lockstep::to_host(ctx, state0_);
  } else {
    out[config_.name + ".m"] = lockstep::to_host(ctx, state0_);
    out[config_.name + ".v"] = lockstep::to_host(ctx, state1_);
  }
  return out;
}

template <class T>
void EmbeddingTable<T>::from_host(const Context& ctx,
                                  const std::map<std::string, std::vector<T>>& tensors) {
  if (dynamic_) return dynamic_->from_host(ctx, config_.name, tensors);
  std::vector<std::pair<const std::vector<T>*, Tensor<T>*>> plan;
  const auto find = [&](const std::string& name, Tensor<T>& t) {
    auto it = tensors.find(name);
    LOCKSTEP_CHECK(it != tensors.end(), "embedding tensor '{}' is missing", name);
    LOCKSTEP_CHECK(static_cast<int64_t>(it->second.size()) == t.numel(),
                   "embedding tensor '{}' has {} values, the table needs {}", name,
                   it->second.size(), t.numel());
    plan.emplace_back(&it->second, &t);
  };
  find(config_.name + ".weight", weights_);
  if (optimizer_.kind == nn::OptimizerKind::Adagrad) {
    find(config_.name + ".accum", state0_);
  } else {
    find(config_.name + ".m", state0_);
    find(config_.name + ".v", state1_);
  }
  // Everything checked: now overwrite, so a bad input leaves the table as it was.
  for (auto& [src, dst] : plan)
    copy_bytes(ctx, dst->data(), ctx.device(), src->data(), Device::cpu(), dst->bytes());
}

template <class T>
void EmbeddingTable<T>::end_epoch(const Context& ctx) {
  if (dynamic_ && config_.shrink_each_epoch) dynamic_->shrink(ctx);
}

template class EmbeddingTable<float>;
template class EmbeddingTable<double>;

}  // namespace lockstep::embedding
