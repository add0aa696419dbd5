#include "train/loader.hpp"

#include "common/error.hpp"

namespace pgolf::train {

TrainLoader::TrainLoader(const std::string& glob, std::int64_t vocab_size) : shards_(glob, "train", vocab_size) {}

void TrainLoader::take(std::int64_t count, std::vector<std::uint16_t>& out) {
  out.clear();
  out.reserve(static_cast<std::size_t>(count));
  const auto& list = shards_.shards();
  while (static_cast<std::int64_t>(out.size()) < count) {
    auto tokens = list[static_cast<std::size_t>(pos_.shard)].tokens();
    const auto avail = static_cast<std::int64_t>(tokens.size()) - pos_.offset;
    const std::int64_t n = std::min<std::int64_t>(avail, count - static_cast<std::int64_t>(out.size()));
    out.insert(out.end(), tokens.begin() + pos_.offset, tokens.begin() + pos_.offset + n);
    pos_.offset += n;
    if (pos_.offset == static_cast<std::int64_t>(tokens.size())) {
      pos_.offset = 0;
      if (++pos_.shard == static_cast<std::int64_t>(list.size())) {
        pos_.shard = 0;
        ++pos_.passes;
      }
    }
  }
}

void TrainLoader::next_micro_batch(std::int64_t span, int rank, int world, std::vector<std::int32_t>& inputs,
                                   std::vector<std::int32_t>& targets) {
  take(span * world, chunk_);
  const auto* s = chunk_.data() + static_cast<std::size_t>(span) * rank;
  inputs.assign(s, s + span - 1);
  targets.assign(s + 1, s + span);
}

void TrainLoader::seek(const LoaderPosition& p) {
  const auto& list = shards_.shards();
  if (p.shard < 0 || p.shard >= static_cast<std::int64_t>(list.size()) || p.offset < 0 ||
      p.offset >= static_cast<std::int64_t>(list[static_cast<std::size_t>(p.shard)].tokens().size()))
    fail(ErrorKind::format, "training state: loader position (shard ", p.shard, ", offset ", p.offset,
         ") does not fit the train shards of ", shards_.glob());
  pos_ = p;
}

}  // namespace pgolf::train
