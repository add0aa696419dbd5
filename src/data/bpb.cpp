#include "data/bpb.hpp"

#include <cmath>
#include <limits>
#include <numbers>
#include <string>

#include "common/error.hpp"

namespace pgolf::data {

ByteTables load_byte_tables(const std::string& tokenizer, std::int64_t vocab_size) {
  const Tokenizer tok(tokenizer);
  if (tok.vocab_size() != vocab_size)
    fail(ErrorKind::config, "model.vocab_size: ", vocab_size, " does not match the tokenizer ", tokenizer, " (vocab size ",
         tok.vocab_size(), ")");
  return build_byte_tables(tok, vocab_size);
}

ByteTables build_byte_tables(const Tokenizer& tok, std::int64_t vocab_size) {
  const int sp_size = tok.vocab_size();
  const auto n = static_cast<std::size_t>(std::max<std::int64_t>(sp_size, vocab_size));
  ByteTables t;
  t.base_bytes.assign(n, 0);
  t.leading_space.assign(n, 0);
  t.boundary.assign(n, 1);
  static const std::string kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's whitespace
  for (int id = 0; id < sp_size; ++id) {
    const auto i = static_cast<std::size_t>(id);
    if (tok.is_control(id) || tok.is_unknown(id) || tok.is_unused(id)) continue;
    t.boundary[i] = 0;
    if (tok.is_byte(id)) {
      t.base_bytes[i] = 1;
      continue;
    }
    std::string piece = tok.piece(id);
    if (piece.rfind(kSpaceMark, 0) == 0) {
      t.leading_space[i] = 1;
      piece.erase(0, kSpaceMark.size());
    }
    t.base_bytes[i] = static_cast<std::int16_t>(piece.size());
  }
  return t;
}

std::int64_t count_target_bytes(std::span<const std::uint16_t> tokens, const ByteTables& tables,
                                const std::string& origin) {
  std::int64_t total = 0;
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] >= tables.size())
      fail(ErrorKind::data, origin, ": token id ", tokens[i], " at position ", i, " is outside the byte tables (",
           tables.size(), " entries; is the tokenizer the one the shard was made with?)");
  for (std::size_t i = 1; i < tokens.size(); ++i) {
    total += tables.target_bytes(tokens[i - 1], tokens[i]);
  }
  return total;
}

double BpbSums::mean_loss() const {
  return scored > 0 ? nll_nats / static_cast<double>(scored) : std::numeric_limits<double>::quiet_NaN();
}

double BpbSums::bpb() const {
  return bytes > 0 ? nll_nats / std::numbers::ln2 / static_cast<double>(bytes) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace pgolf::data
