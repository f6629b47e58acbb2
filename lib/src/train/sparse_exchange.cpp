#include "train/sparse_exchange.h"

#include <algorithm>

#include "kernels/embedding.h"

namespace lockstep::train {

void SparseExchange::run(const Context& ctx, comm::Communicator& comm,
                         const std::vector<embedding::EmbeddingTable<float>*>& tables,
                         const std::vector<uint64_t>& rows) {
  const int T = static_cast<int>(tables.size()), ranks = comm.size(), rank = comm.rank();
  const auto bytes_of = [&](int r, int t) {
    return static_cast<int64_t>(rows[r * T + t]) * (8 + 4 * tables[t]->grad_width());
  };
  std::vector<int64_t> seg_bytes(ranks, 0), seg_start(ranks, 0);
  int64_t total_bytes = 0;
  for (int r = 0; r < ranks; ++r) {
    for (int t = 0; t < T; ++t) seg_bytes[r] += bytes_of(r, t);
    seg_start[r] = total_bytes;
    total_bytes += seg_bytes[r];
  }
  if (total_bytes == 0) {
    for (auto* t : tables) t->grad().clear();
    return;
  }
  send_.resize(ctx, {std::max<int64_t>(seg_bytes[rank], 1)});
  recv_.resize(ctx, {total_bytes});
  const Device& dev = ctx.device();
  int64_t at = 0;
  for (int t = 0; t < T; ++t) {  // pack: ids then gradient rows, table by table
    const int64_t u = static_cast<int64_t>(rows[rank * T + t]), dim = tables[t]->grad_width();
    copy_bytes(ctx, send_.data() + at, dev, tables[t]->grad().ids(), dev, u * 8);
    at += u * 8;
    copy_bytes(ctx, send_.data() + at, dev, tables[t]->grad().rows(), dev, u * dim * 4);
    at += u * dim * 4;
  }
  comm.all_gather_v(ctx, send_.data(), recv_.data(), seg_bytes, comm::DataType::U8);
  for (int t = 0; t < T; ++t) {
    auto& grad = tables[t]->grad();
    const int64_t dim = tables[t]->grad_width();
    int64_t total = 0;
    for (int r = 0; r < ranks; ++r) total += static_cast<int64_t>(rows[r * T + t]);
    if (total == 0) {
      grad.clear();
      continue;
    }
    gathered_ids_.resize(ctx, {total});
    gathered_rows_.resize(ctx, {total, dim});
    int64_t filled = 0;
    for (int r = 0; r < ranks; ++r) {  // unpack rank r's piece of table t
      int64_t off = seg_start[r];
      for (int s = 0; s < t; ++s) off += bytes_of(r, s);
      const int64_t u = static_cast<int64_t>(rows[r * T + t]);
      copy_bytes(ctx, gathered_ids_.data() + filled, dev, recv_.data() + off, dev, u * 8);
      copy_bytes(ctx, gathered_rows_.data() + filled * dim, dev, recv_.data() + off + u * 8, dev,
                 u * dim * 4);
      filled += u;
    }
    // Merge: equal rows are summed in gathered (= rank) order, deterministically.
    grad.reserve(ctx, total, dim);
    kernels::merge_sparse_rows<float>(ctx, total, dim, gathered_ids_.data(), gathered_rows_.data(),
                                      grad.ids(), grad.rows(), grad.count());
    grad.mark_ready();
  }
}

}  // namespace lockstep::train
