#pragma once
// Bits per byte (SPEC 2.3). A scored target y with previous token x counts
//   bytes(y) = base(y) + (leading_space(y) and not boundary(x))
// and val_bpb = (sum NLL_nats / ln 2) / sum bytes over exactly the scored positions.
// Every eval mode accumulates through BpbSums so they all count bytes the same way.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/tokenizer.hpp"

namespace pgolf::data {

struct ByteTables {
  std::vector<std::int16_t> base_bytes;     // UTF-8 bytes of the piece without a leading U+2581
  std::vector<std::uint8_t> leading_space;  // piece began with U+2581
  std::vector<std::uint8_t> boundary;       // control / unknown / unused / beyond the tokenizer

  std::size_t size() const { return base_bytes.size(); }
  int target_bytes(std::uint16_t prev, std::uint16_t target) const {
    return base_bytes[target] + ((leading_space[target] != 0 && boundary[prev] == 0) ? 1 : 0);
  }
};

// Tables of max(tokenizer vocab, vocab_size) entries; ids past the tokenizer are boundaries
// of 0 bytes (as the records' lookup tables).
ByteTables build_byte_tables(const Tokenizer& tok, std::int64_t vocab_size);
// The tables of the tokenizer file `tokenizer` for a model of `vocab_size` ids; Error(config)
// naming model.vocab_size when the tokenizer has another vocabulary size.
ByteTables load_byte_tables(const std::string& tokenizer, std::int64_t vocab_size);

// Sum of target_bytes over all targets t = 1..n-1 of a token stream; `origin` names the
// stream in the error raised for an id outside the tables.
std::int64_t count_target_bytes(std::span<const std::uint16_t> tokens, const ByteTables& tables,
                                const std::string& origin);

struct BpbSums {
  double nll_nats = 0.0;    // float64 accumulation, as SPEC 2.3 requires
  std::int64_t bytes = 0;   // exact
  std::int64_t scored = 0;  // targets scored

  void add(std::uint16_t prev, std::uint16_t target, double nll, const ByteTables& tables) {
    nll_nats += nll;
    bytes += tables.target_bytes(prev, target);
    ++scored;
  }
  void merge(const BpbSums& other) {
    nll_nats += other.nll_nats;
    bytes += other.bytes;
    scored += other.scored;
  }
  double mean_loss() const;  // nats per scored target
  double bpb() const;        // bits per byte
};

}  // namespace pgolf::data
