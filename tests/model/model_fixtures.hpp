#pragma once
// Small model configurations covering every option combination the record configs use, and
// random parameters that make every path carry gradient (the real init zeroes several
// projections, which would hide errors behind zero gradients).
#include <ostream>
#include <string>
#include <vector>

#include "common/rng.hpp"
#include "config/config.hpp"
#include "model/params.hpp"

namespace pgolf::test {

struct ModelCase {
  std::string name;
  config::ModelConfig model;
  bool recurrence_active = false;
};
// gtest prints a parameter's name, not its bytes.
inline void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.name; }

inline config::ModelConfig small_base() {
  config::ModelConfig m;
  m.vocab_size = 64;
  m.num_layers = 4;
  m.model_dim = 24;
  m.num_heads = 4;
  m.num_kv_heads = 2;
  m.mlp_mult = 3.0;
  m.seq_len = 8;
  m.rope.dims = 4;
  m.rope.train_len = 4;  // seq_len > Trope: the scaled base is in force, as in #549
  m.xsa_last_n = 2;
  m.bigram.vocab_size = 37;
  m.bigram.dim = 8;
  m.value_embed.dim = 8;
  m.value_embed.layers = {2, 3};
  return m;
}

inline std::vector<ModelCase> model_cases() {
  std::vector<ModelCase> cases;
  cases.push_back({"pr549_like", small_base(), false});

  config::ModelConfig all = small_base();
  all.num_layers = 6;
  all.mlp_mult = 2.5;
  all.logit_softcap = 10.0;
  all.tie_embeddings = false;
  all.value_embed.layers = {4, 5};
  all.sigmoid_skip_gates = true;
  all.recurrence.virtual_layers = {0, 1, 2, 3, 2, 3, 4, 5};
  all.parallel_residual.start_layer = 4;
  cases.push_back({"all_options", all, true});
  cases.push_back({"all_options_recurrence_off", all, false});

  config::ModelConfig quirks = all;
  quirks.tie_embeddings = true;
  quirks.recurrence.skip_policy = config::RecurrenceSkip::none_beyond;
  quirks.parallel_residual.skip_policy = config::ParallelSkip::dead_x;
  cases.push_back({"record_quirks", quirks, true});

  config::ModelConfig bare = small_base();
  bare.bigram.enabled = false;
  bare.smear_gate = false;
  bare.value_embed.enabled = false;
  bare.xsa_last_n = 0;
  bare.rope.dims = 0;
  bare.ln_scale = false;
  bare.num_layers = 3;
  cases.push_back({"bare", bare, false});

  config::ModelConfig pr1334 = all;  // #1334's shape: XSA everywhere, qk gain 5, MLP 4x
  pr1334.xsa_last_n = 6;
  pr1334.qk_gain_init = 5.0;
  pr1334.mlp_mult = 4.0;
  pr1334.bigram.enabled = false;
  pr1334.smear_gate = false;
  cases.push_back({"pr1334_like", pr1334, true});
  return cases;
}

// Random parameters around the real init, rounded to float32 (exactly representable in both
// precisions).
inline std::vector<double> random_params(const model::ParamTable& table, std::uint64_t seed) {
  std::vector<double> v(table.total());
  Rng rng(seed);
  for (const auto& p : table.specs()) {
    double* x = v.data() + p.offset;
    const std::size_t n = p.numel();
    for (std::size_t i = 0; i < n; ++i) {
      double val;
      if (p.group == model::ParamGroup::matrix || (p.shape.size() == 2 && p.group != model::ParamGroup::embed &&
                                                   p.name.find("resid_mix") == std::string::npos &&
                                                   p.name.find("skip_") == std::string::npos)) {
        val = rng.normal() / std::sqrt(static_cast<double>(p.shape.back()));
      } else if (p.group == model::ParamGroup::embed || p.group == model::ParamGroup::head) {
        val = 0.5 * rng.normal();
      } else if (p.name.find("resid_mix") != std::string::npos) {
        val = i < n / 2 ? 1.0 + 0.2 * rng.normal() : 0.3 * rng.normal();
      } else if (p.name.find("gate") != std::string::npos) {
        val = 0.5 * rng.normal();
      } else if (p.name.find("q_gain") != std::string::npos) {
        val = p.init_value + 0.2 * rng.normal();
      } else {
        val = (p.init == model::InitKind::constant ? p.init_value : 0.0) + 0.2 * rng.normal();
        if (p.name == "bigram.scale" || p.name == "ve_shared.scale") val = 0.5 + 0.1 * rng.normal();
      }
      x[i] = static_cast<double>(static_cast<float>(val));
    }
  }
  return v;
}

inline std::vector<std::int32_t> random_tokens(std::size_t n, int vocab, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = static_cast<std::int32_t>(rng.next_u64() % static_cast<std::uint64_t>(vocab));
  if (n > 2) t[1] = 1;  // a BOS inside the batch
  return t;
}

}  // namespace pgolf::test
