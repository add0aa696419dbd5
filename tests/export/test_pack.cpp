// The export stage: SPEC 5.1's treatment per tensor, Hessians from calibration forwards,
// pruning to the budget, and the way back from an artifact to the table's weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "backend/cpu/cpu_ops.hpp"
#include "common/error.hpp"
#include "common/rng.hpp"
#include "export/calibration.hpp"
#include "export/pack.hpp"
#include "export/quantize.hpp"
#include "io/safetensors.hpp"
#include "model/model.hpp"
#include "model/model_fixtures.hpp"
#include "support/test_support.hpp"

namespace pgolf::exporter {
namespace {

config::Config small_config() {
  config::Config c;
  c.model = test::small_base();
  c.model.model_dim = 32;
  c.model.seq_len = 16;
  c.export_.passthrough_max_numel = 256;
  c.export_.gptq.calibration_batches = 6;
  c.eval.batch_windows = 4;
  return c;
}

std::vector<float> trained_like_weights(const model::ParamTable& table, std::uint64_t seed) {
  std::vector<float> w;
  model::init_params(table, seed, w);
  Rng rng(seed + 1);
  for (auto& x : w) x += static_cast<float>(0.02 * rng.normal());  // no zero-initialised projections
  return w;
}

TEST(QuantizeParams, FollowsSpec51InRuleOrder) {
  const config::Config c = small_config();
  const model::ParamTable table(c.model);
  const auto w = trained_like_weights(table, 1);
  const auto tensors = quantize_params(table, w, c.export_, nullptr, nullptr);
  ASSERT_EQ(tensors.size(), table.specs().size());
  std::set<Scheme> seen;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& p = table.specs()[i];
    const auto& t = tensors[i];
    SCOPED_TRACE(p.name);
    EXPECT_EQ(t.name, p.name);
    EXPECT_EQ(t.shape, p.shape);
    seen.insert(t.scheme);
    const bool small = static_cast<std::int64_t>(p.numel()) <= c.export_.passthrough_max_numel;
    const bool control = p.name.find("resid_mix") != std::string::npos || p.name.find("q_gain") != std::string::npos ||
                         p.name.find("attn_scale") != std::string::npos || p.name.find("mlp_scale") != std::string::npos ||
                         p.name.find("skip_weight") != std::string::npos || p.name.find("smear") != std::string::npos ||
                         p.name.find("ve_layer_scales") != std::string::npos || p.name.find("ve_shared.scale") != std::string::npos;
    const bool block_matrix = p.name.starts_with("blocks.") && p.name.ends_with(".weight");
    const Scheme want = small ? Scheme::fp16 : control ? Scheme::fp32 : block_matrix ? Scheme::int6 : Scheme::int8;
    EXPECT_EQ(t.scheme, want);
  }
  EXPECT_TRUE(seen.contains(Scheme::int6));
  EXPECT_TRUE(seen.contains(Scheme::int8));
  EXPECT_TRUE(seen.contains(Scheme::fp16));
}

TEST(Calibration, HessiansAreTheGramMatricesOfEachLinearInput) {
  config::Config c = small_config();
  backend::CpuOps<float> ops;
  model::Model<float> net(c.model, ops, 4, static_cast<int>(c.model.seq_len), model::ModelMode::inference);
  std::vector<float> w;
  model::init_params(net.table(), 3, w);  // resid_mix = [1, 0]: layer 0 reads x0 alone
  net.set_params(w);
  const int batch = 4, seq = static_cast<int>(c.model.seq_len);
  Rng rng(4);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(batch) * seq), targets(ids.size());
  for (auto* v : {&ids, &targets})
    for (auto& x : *v) x = static_cast<std::int32_t>(rng.next_u64() % static_cast<std::uint64_t>(c.model.vocab_size));
  HessianCollector collector(net);
  collector.observe(ids.data(), targets.data(), batch, seq);
  collector.observe(ids.data(), targets.data(), 2, seq);
  EXPECT_EQ(collector.rows_seen(), 6 * seq);
  const Hessians h = collector.finish();
  // Every int6 matrix has one, of its input width.
  for (const auto& p : net.table().specs())
    if (scheme_for(p, 0) == Scheme::int6) {
      ASSERT_TRUE(h.contains(p.name)) << p.name;
      EXPECT_EQ(h.at(p.name).size(), static_cast<std::size_t>(p.shape[1] * p.shape[1])) << p.name;
    }
  EXPECT_EQ(h.at("blocks.1.attn.c_q.weight"), h.at("blocks.1.attn.c_v.weight"));
  const auto d = static_cast<std::size_t>(c.model.model_dim);
  // Layer 0's attention input is rmsnorm(x0): every row has mean square 1, so trace(H) = d.
  const auto& h0 = h.at("blocks.0.attn.c_q.weight");
  double trace = 0.0;
  for (std::size_t i = 0; i < d; ++i) trace += h0[i * d + i];
  EXPECT_NEAR(trace, static_cast<double>(d), 1e-3 * static_cast<double>(d));
  // The MLP projection reads LeakyReLU^2 >= 0, so its Gram matrix has no negative entry; all
  // are symmetric.
  for (double v : h.at("blocks.2.mlp.proj.weight")) EXPECT_GE(v, 0.0);
  for (const auto& [name, m] : h) {
    const std::size_t n = static_cast<std::size_t>(std::llround(std::sqrt(static_cast<double>(m.size()))));
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < i; ++j) ASSERT_EQ(m[i * n + j], m[j * n + i]) << name;
  }
}

TEST(Calibration, SampledSequencesAreDeterministicAndStartWithTheStartToken) {
  config::Config c = small_config();
  backend::CpuOps<float> ops;
  model::Model<float> net(c.model, ops, 2, static_cast<int>(c.model.seq_len), model::ModelMode::inference);
  const auto w = trained_like_weights(net.table(), 5);
  net.set_params(w);
  const auto a = sample_sequences(net, 3, 10, 2, 0.8, 1, 42);
  const auto b = sample_sequences(net, 3, 10, 2, 0.8, 1, 42);
  const auto other = sample_sequences(net, 3, 10, 2, 0.8, 1, 43);
  ASSERT_EQ(a.size(), 30u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, other);
  for (int s = 0; s < 3; ++s) EXPECT_EQ(a[static_cast<std::size_t>(s) * 10], 1);
  for (auto t : a) {
    EXPECT_GE(t, 0);
    EXPECT_LT(t, c.model.vocab_size);
  }
  // Low temperature concentrates on the mode: the sequences repeat far less varied tokens.
  const auto cold = sample_sequences(net, 3, 10, 2, 0.01, 1, 42);
  std::set<std::int32_t> warm_set(a.begin(), a.end()), cold_set(cold.begin(), cold.end());
  EXPECT_LT(cold_set.size(), warm_set.size());
}

// Random int6 tensors with many +-1 entries (small scales vary by row).
std::vector<QuantizedTensor> prunable(std::uint64_t seed) {
  std::vector<QuantizedTensor> out;
  Rng rng(seed);
  for (int t = 0; t < 3; ++t) {
    QuantizedTensor q;
    q.name = "blocks." + std::to_string(t) + ".mlp.fc.weight";
    q.shape = {64, 128};
    q.scheme = Scheme::int6;
    q.clip_percentile = 1.0;
    for (int r = 0; r < 64; ++r) q.scales.push_back(io::float_to_half(static_cast<float>(0.001 * (1 + rng.uniform()))));
    for (int i = 0; i < 64 * 128; ++i) q.q.push_back(static_cast<std::int8_t>(std::lround(2.0 * rng.normal())));
    out.push_back(std::move(q));
  }
  return out;
}

std::int64_t packed_size(std::vector<QuantizedTensor> t, const config::ExportConfig& e) {
  config::ExportConfig big = e;
  big.budget_bytes = 1 << 30;
  return static_cast<std::int64_t>(pack_artifact(t, json::object(), big, {}, nullptr).sizes.total());
}

TEST(Pruning, ZeroesTheCheapestPlusMinusOnesUntilTheArtifactFits) {
  config::ExportConfig e;
  e.lzma_preset = 1;
  const auto original = prunable(11);
  const std::int64_t full = packed_size(original, e);
  auto all_pruned = original;
  for (auto& t : all_pruned)
    for (auto& q : t.q)
      if (q == 1 || q == -1) q = 0;
  const std::int64_t floor = packed_size(all_pruned, e);
  ASSERT_LT(floor, full - 1000);

  e.prune_to_budget = true;
  e.budget_bytes = (full + floor) / 2;
  auto tensors = original;
  const Packed p = pack_artifact(tensors, json::object(), e, {}, nullptr);
  EXPECT_LE(static_cast<std::int64_t>(p.sizes.total()), e.budget_bytes);
  EXPECT_EQ(p.sizes.total(), p.bytes.size());
  EXPECT_GT(p.prune.zeroed, 0);
  EXPECT_LT(p.prune.zeroed, p.prune.candidates);
  // The artifact holds the pruned tensors.
  const Artifact back = read_artifact(p.bytes, "pruned");
  for (std::size_t i = 0; i < tensors.size(); ++i) EXPECT_EQ(back.container.tensors[i].q, tensors[i].q);
  // Only +-1 entries changed, exactly `zeroed` of them, and none is dearer than a kept one.
  std::int64_t zeroed = 0;
  double max_pruned = 0.0, min_kept = INFINITY;
  for (std::size_t t = 0; t < tensors.size(); ++t)
    for (std::size_t i = 0; i < tensors[t].q.size(); ++i) {
      const std::int8_t before = original[t].q[i], after = tensors[t].q[i];
      if (before == after) {
        if (before == 1 || before == -1) {
          const double s = io::half_to_float(tensors[t].scales[i / 128]);
          min_kept = std::min(min_kept, s * s);
        }
        continue;
      }
      ASSERT_TRUE((before == 1 || before == -1) && after == 0);
      ++zeroed;
      const double s = io::half_to_float(tensors[t].scales[i / 128]);
      max_pruned = std::max(max_pruned, s * s);
    }
  EXPECT_EQ(zeroed, p.prune.zeroed);
  EXPECT_LE(max_pruned, min_kept);
  // As few as needed: one entry fewer does not fit.
  auto one_fewer = original;
  std::int64_t left = zeroed - 1;
  // Re-apply the same order: every pruned entry but the dearest one.
  std::vector<std::pair<double, std::pair<std::size_t, std::size_t>>> pruned;
  for (std::size_t t = 0; t < tensors.size(); ++t)
    for (std::size_t i = 0; i < tensors[t].q.size(); ++i)
      if (original[t].q[i] != tensors[t].q[i]) {
        const double s = io::half_to_float(tensors[t].scales[i / 128]);
        pruned.push_back({s * s, {t, i}});
      }
  std::stable_sort(pruned.begin(), pruned.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (std::int64_t k = 0; k < left; ++k) one_fewer[pruned[static_cast<std::size_t>(k)].second.first].q[pruned[static_cast<std::size_t>(k)].second.second] = 0;
  EXPECT_GT(packed_size(one_fewer, e), e.budget_bytes);
}

TEST(Pruning, OverBudgetWithoutPruningOrBeyondReachIsAnError) {
  config::ExportConfig e;
  e.lzma_preset = 1;
  auto tensors = prunable(12);
  e.budget_bytes = 1000;
  for (bool prune : {false, true}) {
    e.prune_to_budget = prune;
    try {
      pack_artifact(tensors, json::object(), e, {}, nullptr);
      FAIL() << "prune " << prune;
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), ErrorKind::over_budget);
      const std::string msg = err.what();
      EXPECT_NE(msg.find("export.budget_bytes = 1,000"), std::string::npos) << msg;
      EXPECT_NE(msg.find(prune ? "even zeroing all" : "export.prune_to_budget"), std::string::npos) << msg;
    }
  }
}

TEST(Unpack, RestoresTheTableLayoutAndNamesEveryMismatch) {
  const config::Config c = small_config();
  const model::ParamTable table(c.model);
  const auto w = trained_like_weights(table, 2);
  auto tensors = quantize_params(table, w, c.export_, nullptr, nullptr);
  Container cont{tensors, artifact_metadata(c, json::object())};
  const auto back = unpack_weights(cont, table, "x.pgolf");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto d = dequantize(tensors[i]);
    const auto& p = table.specs()[i];
    ASSERT_TRUE(std::equal(d.begin(), d.end(), back.begin() + static_cast<std::ptrdiff_t>(p.offset))) << p.name;
  }
  auto expect_error = [&](Container bad, const std::string& needle) {
    try {
      unpack_weights(bad, table, "x.pgolf");
      ADD_FAILURE() << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::format);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("x.pgolf"), std::string::npos) << e.what();
    }
  };
  Container missing = cont;
  missing.tensors.erase(missing.tensors.begin() + 3);
  expect_error(missing, table.specs()[3].name + "\" of the model is missing");
  Container extra = cont;
  extra.tensors.push_back(extra.tensors[0]);
  extra.tensors.back().name = "stray";
  expect_error(extra, "\"stray\" is not part of the model");
  Container dup = cont;
  dup.tensors.push_back(dup.tensors[0]);
  expect_error(dup, "appears twice");
  Container reshaped = cont;
  reshaped.tensors[0].shape = {reshaped.tensors[0].numel()};
  expect_error(reshaped, "has shape");

  // The model config recorded in the artifact must match the one used to rebuild it.
  check_artifact_model(cont, c, "x.pgolf");
  config::Config other = c;
  other.model.num_layers = 6;
  try {
    check_artifact_model(cont, other, "x.pgolf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::config);
    EXPECT_NE(std::string(e.what()).find("model.num_layers"), std::string::npos) << e.what();
  }
}

TEST(ExportModel, FullGptqPacksWritesAndReadsBackTheExactWeights) {
  config::Config c = small_config();
  c.export_.int6_method = config::Int6Method::gptq;
  c.export_.count_code = false;
  const model::ParamTable table(c.model);
  const auto w = trained_like_weights(table, 3);
  backend::CpuOps<float> ops;
  test::TempDir dir;
  Rng rng(9);
  std::int64_t asked = 0;
  ExportRequest req;
  req.config = &c;
  req.weights = w;
  req.ops = &ops;
  req.train_tokens = [&](std::int64_t n) {
    asked += n;
    std::vector<std::uint16_t> t(static_cast<std::size_t>(n));
    for (auto& x : t) x = static_cast<std::uint16_t>(rng.next_u64() % static_cast<std::uint64_t>(c.model.vocab_size));
    return t;
  };
  req.out = dir / "a.pgolf";
  const ExportResult r = export_model(req, nullptr);
  EXPECT_EQ(asked, c.export_.gptq.calibration_batches * c.model.seq_len + 1);
  EXPECT_EQ(r.sizes.code, 0u);
  EXPECT_EQ(fs::file_size(req.out), r.sizes.total());
  const Artifact a = read_artifact_file(req.out);
  EXPECT_EQ(unpack_weights(a.container, table, "a"), r.weights);
  EXPECT_EQ(a.container.metadata["model"], config::to_json(c)["model"]);
  double sq = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    sq += (static_cast<double>(w[i]) - r.weights[i]) * (static_cast<double>(w[i]) - r.weights[i]);
    norm += static_cast<double>(w[i]) * w[i];
  }
  EXPECT_NEAR(r.quantize_mse, sq / static_cast<double>(w.size()), 1e-9 * r.quantize_mse);
  EXPECT_GT(r.quantize_mse, 0.0);
  EXPECT_LT(sq, 0.01 * norm) << "int6/int8 keep the weights to about 1%";
  EXPECT_EQ(r.summary["int6"]["tensors"].get<int>(), 6 * static_cast<int>(c.model.num_layers));
}

}  // namespace
}  // namespace pgolf::exporter
