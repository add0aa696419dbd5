#pragma once
// The train stream (SPEC 4.1, docs/training.md): the train shards in sorted order, read
// sequentially and wrapping around; each micro-step takes the next world * span tokens and a
// rank keeps its own span.
#include <cstdint>
#include <string>
#include <vector>

#include "data/shard.hpp"

namespace pgolf::train {

struct LoaderPosition {
  std::int64_t shard = 0;   // index into the sorted shard list
  std::int64_t offset = 0;  // token offset inside that shard
  std::int64_t passes = 0;  // completed passes over the whole stream
};

class TrainLoader {
 public:
  TrainLoader(const std::string& glob, std::int64_t vocab_size);

  // One micro-step for `rank` of `world`: inputs and targets of span - 1 tokens each.
  void next_micro_batch(std::int64_t span, int rank, int world, std::vector<std::int32_t>& inputs,
                        std::vector<std::int32_t>& targets);
  // The next `count` tokens of the stream (wrapping around).
  void take(std::int64_t count, std::vector<std::uint16_t>& out);

  LoaderPosition position() const { return pos_; }
  void seek(const LoaderPosition& p);
  std::int64_t total_tokens() const { return shards_.total_tokens(); }

 private:
  data::ShardSet shards_;
  LoaderPosition pos_;
  std::vector<std::uint16_t> chunk_;
};

}  // namespace pgolf::train
