#pragma once
// Score-first TTT's training phase (SPEC 6.3, docs/eval.md "Score-first TTT"): after a chunk
// has been scored, SGD with momentum on that chunk's sequences of T tokens.
#include <cstdint>
#include <utility>
#include <vector>

#include "backend/device_buffer.hpp"
#include "config/config.hpp"
#include "dist/communicator.hpp"
#include "eval/evaluator.hpp"
#include "model/model.hpp"

namespace pgolf::eval {

// lr_c = lr * 0.5 * (1 + cos(pi * c / max(n_chunks - 1, 1)))
double ttt_chunk_lr(double lr, std::int64_t chunk, std::int64_t n_chunks);

class TttTrainer {
 public:
  // The model must be a training-mode model with room for batch_seqs sequences of seq_len.
  TttTrainer(model::Model<float>& model, const config::TttConfig& ttt, dist::Communicator& comm);

  // Trains on the sequences of T tokens of targets [begin, end) (docs/eval.md), with the
  // chunk's learning rate. Returns the number of optimizer steps taken.
  std::int64_t train_chunk(const ValStream& stream, std::int64_t begin, std::int64_t end, double lr);

 private:
  model::Model<float>& model_;
  config::TttConfig ttt_;
  dist::Communicator& comm_;
  backend::DeviceBuffer<float> momentum_;  // kept across chunks, zero at first
  std::vector<std::pair<std::size_t, std::size_t>> frozen_;  // [offset, count) of frozen tensors
  std::vector<std::int32_t> ids_, targets_;
};

}  // namespace pgolf::eval
