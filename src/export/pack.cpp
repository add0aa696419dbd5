#include "export/pack.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>

#include "common/error.hpp"
#include "common/finite.hpp"
#include "common/progress.hpp"
#include "common/strings.hpp"
#include "export/code_bundle.hpp"
#include "export/quantize.hpp"
#include "io/safetensors.hpp"
#include "model/model.hpp"

namespace pgolf::exporter {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A +-1 entry as one sortable key: its row scale (the cost of zeroing it is s_r^2, and for
// positive float16 values the bit pattern orders like the value), then its tensor, then its
// position. 8 bytes, because a pr549-sized model has about 12 million candidates.
constexpr int kIndexBits = 40, kTensorBits = 8;
std::uint64_t prune_key(std::uint16_t scale, std::size_t tensor, std::size_t index) {
  return (static_cast<std::uint64_t>(scale & 0x7fffu) << (kIndexBits + kTensorBits)) |
         (static_cast<std::uint64_t>(tensor) << kIndexBits) | static_cast<std::uint64_t>(index);
}
std::size_t key_tensor(std::uint64_t key) { return static_cast<std::size_t>((key >> kIndexBits) & ((1u << kTensorBits) - 1)); }
std::size_t key_index(std::uint64_t key) { return static_cast<std::size_t>(key & ((std::uint64_t{1} << kIndexBits) - 1)); }

}  // namespace

namespace {
int calibration_batch(const config::Config& c) {
  return static_cast<int>(std::clamp<std::int64_t>(c.eval.batch_windows, 1, c.export_.gptq.calibration_batches));
}
}  // namespace

std::uint64_t calibration_bytes(const config::Config& c, backend::Ops<float>& ops) {
  if (c.export_.int6_method != config::Int6Method::gptq) return 0;
  const model::ModelFootprint f = model::Model<float>::plan(c.model, ops, calibration_batch(c),
                                                            static_cast<int>(c.model.seq_len), model::ModelMode::inference);
  return f.total() + HessianCollector::planned_bytes(c.model);
}

Hessians calibrate(const config::Config& c, std::span<const float> weights, backend::Ops<float>& ops,
                   const TokenSource& train_tokens, std::FILE* log) {
  const auto& g = c.export_.gptq;
  const int seq = static_cast<int>(c.model.seq_len);
  const int count = static_cast<int>(g.calibration_batches);
  const int batch = calibration_batch(c);
  model::Model<float> net(c.model, ops, batch, seq, model::ModelMode::inference);
  net.set_params(std::vector<float>(weights.begin(), weights.end()));
  net.set_recurrence_active(!c.model.recurrence.virtual_layers.empty());

  std::vector<std::int32_t> ids(static_cast<std::size_t>(count) * seq), targets(ids.size(), 0);
  const auto t0 = std::chrono::steady_clock::now();
  if (g.calibration == config::CalibrationSource::train) {
    const std::vector<std::uint16_t> raw = train_tokens(static_cast<std::int64_t>(ids.size()) + 1);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      ids[i] = raw[i];
      targets[i] = raw[i + 1];
    }
  } else {
    // Seeded apart from the initialisation so the two streams never coincide.
    ids = sample_sequences(net, count, seq, batch, g.generation_temperature,
                           static_cast<std::int32_t>(g.generation_start_token),
                           static_cast<std::uint64_t>(c.seed) ^ 0x6770747163616c31ull);
    for (std::size_t i = 0; i + 1 < ids.size(); ++i) targets[i] = ids[i + 1];
    if (log != nullptr)
      std::fprintf(log, "gptq: sampled %d sequences of %d tokens from the model (temperature %g) in %.1f s\n", count,
                   seq, g.generation_temperature, seconds_since(t0));
  }
  HessianCollector collector(net);
  Progress progress("gptq calibration", 2.0, log != nullptr ? log : stderr);
  for (int first = 0; first < count; first += batch) {
    const int b = std::min(batch, count - first);
    const std::size_t at = static_cast<std::size_t>(first) * seq;
    collector.observe(ids.data() + at, targets.data() + at, b, seq);
    if (log != nullptr) progress.update(cat(first + b, "/", count, " sequences"));
  }
  Hessians h = collector.finish();
  if (log != nullptr)
    progress.finish(cat(count, " sequences (", with_commas(static_cast<std::uint64_t>(collector.rows_seen())),
                        " tokens, ", g.calibration == config::CalibrationSource::train ? "train stream" : "generated",
                        "), ", h.size(), " Hessians"));
  return h;
}

std::vector<QuantizedTensor> quantize_params(const model::ParamTable& table, std::span<const float> weights,
                                             const config::ExportConfig& e, const Hessians* hessians, std::FILE* log) {
  if (weights.size() != table.total())
    fail(ErrorKind::internal, "export: ", weights.size(), " weights for a table of ", table.total());
  const bool gptq = e.int6_method == config::Int6Method::gptq;
  GptqSettings settings{e.clip_percentiles, e.gptq.damping, static_cast<int>(e.gptq.damping_applications),
                        static_cast<int>(e.gptq.block_size)};
  std::vector<QuantizedTensor> out;
  Progress progress("quantize", 2.0, log != nullptr ? log : stderr);
  std::size_t done = 0;
  for (const auto& p : table.specs()) {
    const std::span<const float> w = weights.subspan(p.offset, p.numel());
    if (const auto bad = find_non_finite(w))
      fail(ErrorKind::format, "export: \"", p.name, "\" holds ", describe(*bad),
           "; non-finite weights cannot be quantised (nothing was written)");
    const Scheme scheme = scheme_for(p, e.passthrough_max_numel);
    const std::int64_t rows = p.shape.empty() ? 1 : p.shape[0];
    const std::int64_t cols = static_cast<std::int64_t>(p.numel()) / std::max<std::int64_t>(rows, 1);
    QuantizedTensor t;
    switch (scheme) {
      case Scheme::int6:
        if (gptq) {
          if (hessians == nullptr || !hessians->contains(p.name))
            fail(ErrorKind::internal, "export: full GPTQ has no Hessian for ", p.name);
          t = quantize_int6_gptq(p.name, w, rows, cols, hessians->at(p.name), settings);
        } else {
          t = quantize_int6_lite(p.name, w, rows, cols, e.clip_percentiles);
        }
        break;
      case Scheme::int8: t = quantize_int8(p.name, w, rows, cols, e.int8_percentile); break;
      case Scheme::fp16:
      case Scheme::fp32: t = passthrough(p.name, p.shape, w, scheme); break;
    }
    t.shape = p.shape;
    out.push_back(std::move(t));
    ++done;
    if (log != nullptr) progress.update(cat(done, "/", table.specs().size(), " tensors"));
  }
  if (log != nullptr) progress.finish(cat(done, " tensors (int6 ", gptq ? "full GPTQ" : "GPTQ-lite", ")"));
  return out;
}

Packed pack_artifact(std::vector<QuantizedTensor>& tensors, const json& metadata, const config::ExportConfig& e,
                     std::span<const std::byte> code_bundle, std::FILE* log) {
  Packed packed;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::size_t> q_offsets;
  const std::vector<std::byte> raw = encode_container(tensors, metadata, &q_offsets);
  auto artifact_of = [&](const std::vector<std::byte>& container, ArtifactSizes* sizes) {
    return encode_artifact(compress(container, e), e, container.size(), code_bundle, sizes);
  };
  packed.bytes = artifact_of(raw, &packed.sizes);
  packed.prune.compressions = 1;
  const std::int64_t budget = e.budget_bytes;
  if (static_cast<std::int64_t>(packed.sizes.total()) <= budget) {
    packed.compress_s = seconds_since(t0);
    return packed;
  }
  auto over = [&](std::int64_t size, const std::string& why) {
    fail(ErrorKind::over_budget, "export: the artifact is ", with_commas(static_cast<std::uint64_t>(size)),
         " bytes (model ", with_commas(packed.sizes.model), " + code ", with_commas(packed.sizes.code), " + header ",
         packed.sizes.header, "), over export.budget_bytes = ", with_commas(static_cast<std::uint64_t>(budget)), "; ", why);
  };
  if (!e.prune_to_budget)
    over(static_cast<std::int64_t>(packed.sizes.total()),
         "set export.prune_to_budget=true to prune, or shrink the model (or raise the budget for a non-record run)");

  // Candidates: every +-1 entry, cheapest first.
  if (tensors.size() > (std::size_t{1} << kTensorBits))
    fail(ErrorKind::internal, "export: pruning supports at most ", 1 << kTensorBits, " tensors");
  std::vector<std::uint64_t> cand;
  for (std::size_t ti = 0; ti < tensors.size(); ++ti) {
    const auto& t = tensors[ti];
    if (!t.quantized()) continue;
    if (t.q.size() >= (std::size_t{1} << kIndexBits)) fail(ErrorKind::internal, "export: ", t.name, " is too large to prune");
    const auto cols = static_cast<std::size_t>(t.cols());
    for (std::size_t i = 0; i < t.q.size(); ++i)
      if (t.q[i] == 1 || t.q[i] == -1) cand.push_back(prune_key(t.scales[i / cols], ti, i));
  }
  std::sort(cand.begin(), cand.end());  // keys are unique: a total, deterministic order
  packed.prune.candidates = static_cast<std::int64_t>(cand.size());
  const auto n = static_cast<std::int64_t>(cand.size());

  // The artifact with the first k candidates zeroed, built from the container bytes (a
  // candidate is one byte at a known offset), so probes can run in parallel.
  struct Probe {
    explicit Probe(std::int64_t count) : k(count) {}
    std::int64_t k;
    std::int64_t size = 0;
    std::vector<std::byte> bytes;
    ArtifactSizes sizes;
  };
  auto evaluate = [&](std::vector<Probe>& probes) {
#pragma omp parallel for schedule(dynamic, 1)
    for (std::size_t p = 0; p < probes.size(); ++p) {
      std::vector<std::byte> c = raw;
      for (std::int64_t j = 0; j < probes[p].k; ++j) {
        const auto key = cand[static_cast<std::size_t>(j)];
        c[q_offsets[key_tensor(key)] + key_index(key)] = std::byte{0};
      }
      reseal_container(c);
      probes[p].bytes = artifact_of(c, &probes[p].sizes);
      probes[p].size = static_cast<std::int64_t>(probes[p].sizes.total());
    }
    packed.prune.compressions += static_cast<int>(probes.size());
    if (log != nullptr)
      for (const auto& p : probes)
        std::fprintf(log, "prune: %s of %s +-1 entries zeroed -> %s bytes (budget %s)\n",
                     with_commas(static_cast<std::uint64_t>(p.k)).c_str(), with_commas(cand.size()).c_str(),
                     with_commas(static_cast<std::uint64_t>(p.size)).c_str(),
                     with_commas(static_cast<std::uint64_t>(budget)).c_str());
  };

  // Bracket [lo: too big, hi: fits]. Each round probes the regula-falsi point of the bracket
  // (Illinois variant: an end kept twice in a row has its excess halved, so the guesses do
  // not creep in from one side) plus points splitting the bracket evenly; a round whose guess did not at least halve the bracket is followed by a pure
  // split. The first fitting probe becomes hi, the largest smaller probe that does not fit lo.
  std::vector<Probe> first;
  first.emplace_back(n);
  evaluate(first);
  if (first[0].size > budget) over(first[0].size, cat("even zeroing all ", with_commas(cand.size()), " +-1 entries does not fit"));
  std::int64_t lo = 0, hi = n;
  double excess_lo = static_cast<double>(packed.sizes.total()) - static_cast<double>(budget);
  double excess_hi = static_cast<double>(first[0].size) - static_cast<double>(budget);  // <= 0
  Probe best = std::move(first[0]);
  int kept_side = 0;  // -1: lo kept last round, +1: hi kept
  bool split_only = false;
  // A fixed number of probes per round (run in parallel on the available threads), so the
  // pruned artifact does not depend on the thread count.
  constexpr int width_probes = 4;
  while (hi - lo > 1) {
    std::vector<std::int64_t> ks;
    if (!split_only && excess_lo > 0 && excess_hi <= 0) {
      const double f = excess_lo / (excess_lo - excess_hi);
      ks.push_back(lo + std::clamp<std::int64_t>(static_cast<std::int64_t>(std::ceil(f * static_cast<double>(hi - lo))), 1, hi - lo - 1));
    }
    const int splits = split_only || ks.empty() ? width_probes : width_probes - 1;
    for (int j = 1; j <= splits; ++j) ks.push_back(lo + (hi - lo) * j / (splits + 1));
    std::sort(ks.begin(), ks.end());
    ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
    ks.erase(std::remove_if(ks.begin(), ks.end(), [&](std::int64_t k) { return k <= lo || k >= hi; }), ks.end());
    if (ks.empty()) ks.push_back(lo + (hi - lo) / 2);
    std::vector<Probe> probes;
    for (auto k : ks) probes.emplace_back(k);
    evaluate(probes);
    const std::int64_t width = hi - lo;
    const std::int64_t old_lo = lo, old_hi = hi;
    for (auto& p : probes)  // ascending k: the first that fits
      if (p.size <= budget) {
        hi = p.k;
        excess_hi = static_cast<double>(p.size - budget);
        best = std::move(p);
        break;
      }
    for (const auto& p : probes)
      if (p.k < hi && p.size > budget && p.k > lo) {
        lo = p.k;
        excess_lo = static_cast<double>(p.size - budget);
      }
    const int side = lo == old_lo ? -1 : hi == old_hi ? +1 : 0;
    if (side != 0 && side == kept_side) (side < 0 ? excess_lo : excess_hi) /= 2;
    kept_side = side;
    split_only = !split_only && 2 * (hi - lo) > width;
  }
  packed.bytes = std::move(best.bytes);
  packed.sizes = best.sizes;
  packed.prune.zeroed = hi;
  for (std::int64_t j = 0; j < hi; ++j) {
    const auto key = cand[static_cast<std::size_t>(j)];
    tensors[key_tensor(key)].q[key_index(key)] = 0;
  }
  packed.compress_s = seconds_since(t0);
  return packed;
}

json artifact_metadata(const config::Config& c, const json& extra) {
  const json full = config::to_json(c);
  json m = {{"format", "pgolf-model-v1"}, {"config_name", c.name}, {"model", full["model"]}, {"export", full["export"]}};
  for (const auto& [k, v] : extra.items()) m[k] = v;
  return m;
}

void check_artifact_model(const Container& container, const config::Config& c, const std::string& origin,
                          bool allow_mismatch, std::FILE* log) {
  if (!container.metadata.is_object() || !container.metadata.contains("model"))
    fail(ErrorKind::format, origin, ": the artifact records no model config");
  config::check_recorded_model(container.metadata["model"], c.model, origin, "artifact", "packed", allow_mismatch, log);
}

std::vector<float> unpack_weights(const Container& container, const model::ParamTable& table,
                                  const std::string& origin) {
  std::map<std::string, const QuantizedTensor*> by_name;
  for (const auto& t : container.tensors)
    if (!by_name.emplace(t.name, &t).second)
      fail(ErrorKind::format, origin, ": tensor \"", t.name, "\" appears twice");
  std::vector<float> out(table.total());
  for (const auto& p : table.specs()) {
    auto it = by_name.find(p.name);
    if (it == by_name.end()) fail(ErrorKind::format, origin, ": tensor \"", p.name, "\" of the model is missing");
    if (it->second->shape != p.shape)
      fail(ErrorKind::format, origin, ": tensor \"", p.name, "\" has shape ", json(it->second->shape).dump(),
           ", the model needs ", json(p.shape).dump());
    const std::vector<float> w = dequantize(*it->second);
    std::copy(w.begin(), w.end(), out.begin() + static_cast<std::ptrdiff_t>(p.offset));
    by_name.erase(it);
  }
  if (!by_name.empty())
    fail(ErrorKind::format, origin, ": tensor \"", by_name.begin()->first, "\" is not part of the model (",
         by_name.size(), " extra)");
  return out;
}

json tensor_summary(const std::vector<QuantizedTensor>& tensors) {
  json out = json::object();
  for (const auto& t : tensors) {
    json& s = out[scheme_name(t.scheme)];
    if (s.is_null()) s = {{"tensors", 0}, {"values", 0}, {"stored_bytes", 0}};
    const auto bytes = t.q.size() + 2 * t.scales.size() + 4 * t.values.size();
    s["tensors"] = s["tensors"].get<std::int64_t>() + 1;
    s["values"] = s["values"].get<std::int64_t>() + t.numel();
    s["stored_bytes"] = s["stored_bytes"].get<std::int64_t>() + static_cast<std::int64_t>(bytes);
  }
  return out;
}

json ExportResult::to_json(std::int64_t budget) const {
  return {{"artifact_bytes", sizes.total()},
          {"model_bytes", sizes.model},
          {"code_bytes", sizes.code},
          {"header_bytes", sizes.header},
          {"container_raw_bytes", sizes.container_raw},
          {"budget_bytes", budget},
          {"fits_budget", static_cast<std::int64_t>(sizes.total()) <= budget},
          {"pruned_entries", prune.zeroed},
          {"prune_candidates", prune.candidates},
          {"compressions", prune.compressions},
          {"weight_mse", quantize_mse},
          {"tensors", summary},
          {"calibrate_seconds", calibrate_s},
          {"quantize_seconds", quantize_s},
          {"compress_seconds", compress_s}};
}

ExportResult export_model(const ExportRequest& r, std::FILE* log) {
  const config::Config& c = *r.config;
  const config::ExportConfig& e = c.export_;
  const model::ParamTable table(c.model);
  ExportResult res;
  Hessians hessians;
  auto t0 = std::chrono::steady_clock::now();
  if (e.int6_method == config::Int6Method::gptq) {
    hessians = calibrate(c, r.weights, *r.ops, r.train_tokens, log);
    res.calibrate_s = seconds_since(t0);
  }
  t0 = std::chrono::steady_clock::now();
  std::vector<QuantizedTensor> tensors =
      quantize_params(table, r.weights, e, e.int6_method == config::Int6Method::gptq ? &hessians : nullptr, log);
  res.quantize_s = seconds_since(t0);
  const std::vector<std::byte> code = e.count_code ? make_code_bundle(r.source_dir) : std::vector<std::byte>{};
  Packed packed = pack_artifact(tensors, artifact_metadata(c, r.metadata_extra), e, code, log);
  res.sizes = packed.sizes;
  res.prune = packed.prune;
  res.compress_s = packed.compress_s;
  res.summary = tensor_summary(tensors);

  // What an evaluator will load: decode the bytes as a reader does and compare with q * s in
  // memory, before anything is written, so that a failure leaves no file behind.
  const Artifact back = read_artifact(packed.bytes, r.out.string());
  res.weights = unpack_weights(back.container, table, r.out.string());
  std::vector<float> expected(table.total());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::vector<float> w = dequantize(tensors[i]);
    std::copy(w.begin(), w.end(), expected.begin() + static_cast<std::ptrdiff_t>(table.specs()[i].offset));
  }
  if (std::memcmp(expected.data(), res.weights.data(), expected.size() * sizeof(float)) != 0)
    fail(ErrorKind::internal, r.out.string(), ": the artifact does not restore the quantised weights");
  write_file_atomic(r.out, packed.bytes);
  // And the file holds exactly those bytes (a full disk or a faulty mount shows here); a file
  // that cannot be confirmed does not stay.
  try {
    if (read_file(r.out) != std::string_view(reinterpret_cast<const char*>(packed.bytes.data()), packed.bytes.size()))
      fail(ErrorKind::io, r.out.string(), ": the file read back differs from the artifact written; removed it");
  } catch (...) {
    std::error_code ec;
    fs::remove(r.out, ec);
    throw;
  }
  double sq = 0.0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double d = static_cast<double>(r.weights[i]) - static_cast<double>(res.weights[i]);
    sq += d * d;
  }
  res.quantize_mse = expected.empty() ? 0.0 : sq / static_cast<double>(expected.size());
  return res;
}

}  // namespace pgolf::exporter
