#include "eval/ttt.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "common/error.hpp"
#include "optim/optimizer.hpp"

namespace pgolf::eval {

double ttt_chunk_lr(double lr, std::int64_t chunk, std::int64_t n_chunks) {
  const double denom = static_cast<double>(std::max<std::int64_t>(n_chunks - 1, 1));
  return lr * 0.5 * (1.0 + std::cos(std::numbers::pi * static_cast<double>(chunk) / denom));
}

TttTrainer::TttTrainer(model::Model<float>& model, const config::TttConfig& ttt, dist::Communicator& comm)
    : model_(model), ttt_(ttt), comm_(comm), momentum_(model.ops(), model.table().total()) {
  model.ops().zero(momentum_.get(), momentum_.size() * sizeof(float));  // SPEC 6.3: starts at zero
  if (!model.training())
    fail(ErrorKind::internal, "TTT needs a training-mode model (it runs backward passes)");
  if (model.max_batch() < ttt.batch_seqs)
    fail(ErrorKind::internal, "TTT: the model holds ", model.max_batch(), " sequences, eval.ttt.batch_seqs is ",
         ttt.batch_seqs);
  for (const auto& p : model.table().specs())
    if (!model::ttt_trainable(p, ttt.freeze_blocks)) frozen_.emplace_back(p.offset, p.numel());
}

std::int64_t TttTrainer::train_chunk(const ValStream& stream, std::int64_t begin, std::int64_t end, double lr) {
  const int T = static_cast<int>(model_.config().seq_len);
  const std::int64_t n_seq = (end - begin) / T;
  const int W = comm_.world_size(), rank = comm_.rank();
  const std::size_t n = model_.table().total();
  backend::Ops<float>& ops = model_.ops();
  std::int64_t steps = 0;
  for (std::int64_t epoch = 0; epoch < ttt_.epochs; ++epoch) {
    for (std::int64_t b = 0; b < n_seq; b += ttt_.batch_seqs) {
      // This rank's share of the batch; its mean loss is weighted so that the rank average
      // of the gradients is the gradient of the whole batch's mean loss.
      const std::int64_t m = std::min<std::int64_t>(ttt_.batch_seqs, n_seq - b);
      const std::int64_t lo = b + m * rank / W, hi = b + m * (rank + 1) / W, share = hi - lo;
      model_.zero_grads();
      double loss = 0.0;
      if (share > 0) {
        ids_.resize(static_cast<std::size_t>(share * T));
        targets_.resize(ids_.size());
        for (std::int64_t s = 0; s < share; ++s) {
          const std::int64_t first = begin + (lo + s) * T;  // the sequence's first target
          for (int p = 0; p < T; ++p) {
            ids_[static_cast<std::size_t>(s * T + p)] = stream.tokens[static_cast<std::size_t>(first + p)];
            targets_[static_cast<std::size_t>(s * T + p)] = stream.tokens[static_cast<std::size_t>(first + p + 1)];
          }
        }
        model_.forward_backward(ids_.data(), targets_.data(), static_cast<int>(share), T,
                                static_cast<double>(W) * static_cast<double>(share) / static_cast<double>(m));
        loss = model_.read_mean_loss();  // checked below, before any update
      }
      if (comm_.any(!std::isfinite(loss)))
        fail(ErrorKind::diverged, "eval: the TTT loss is ", loss, " on targets ", begin, "..", end - 1,
             " (epoch ", epoch + 1, "); lower eval.ttt.lr");
      float* grads = model_.grads();
      comm_.all_reduce_mean(grads, n);
      for (const auto& [offset, count] : frozen_) ops.zero(grads + offset, count * sizeof(float));
      if (ttt_.grad_clip > 0) optim::clip_to_norm(ops, grads, n, std::sqrt(ops.sum_squares(grads, n)), ttt_.grad_clip);
      ops.sgd_momentum_update(model_.params(), grads, momentum_.get(), n, static_cast<float>(lr),
                              static_cast<float>(ttt_.momentum));
      ++steps;
    }
  }
  return steps;
}

}  // namespace pgolf::eval
