#include "export/calibration.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "common/rng.hpp"

namespace pgolf::exporter {

HessianCollector::HessianCollector(model::Model<float>& model) : model_(model) {
  model_.set_linear_input_observer([this](const std::vector<std::string>& weights, const float* x, int n, int in) {
    auto [it, fresh] = inputs_.try_emplace(weights.front());
    Accumulator& a = it->second;
    if (fresh) {
      a.weights = weights;
      a.dim = in;
      a.sum = backend::DeviceBuffer<float>(model_.ops(), static_cast<std::size_t>(in) * in);
    }
    // sum += x^T x, on the device that holds x.
    model_.ops().gemm(a.sum.get(), x, x, in, in, n, true, false, 1.0f, 1.0f);
    a.rows += n;
  });
}

std::uint64_t HessianCollector::planned_bytes(const config::ModelConfig& m) {
  const auto d = static_cast<std::uint64_t>(m.model_dim), f = static_cast<std::uint64_t>(m.mlp_hidden());
  return static_cast<std::uint64_t>(m.num_layers) * (3 * d * d + f * f) * sizeof(float);
}

HessianCollector::~HessianCollector() { model_.set_linear_input_observer({}); }

void HessianCollector::observe(const std::int32_t* ids, const std::int32_t* targets, int batch, int seq) {
  model_.forward(ids, targets, batch, seq);
  rows_ += static_cast<std::int64_t>(batch) * seq;
}

Hessians HessianCollector::finish() const {
  Hessians out;
  for (const auto& [key, a] : inputs_) {
    const auto n = static_cast<std::size_t>(a.dim);
    std::vector<float> host(n * n);
    model_.ops().to_host(host.data(), a.sum.get(), host.size() * sizeof(float));
    std::vector<double> h(n * n);
    const double inv = a.rows > 0 ? 1.0 / static_cast<double>(a.rows) : 0.0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j)
        h[i * n + j] = 0.5 * (static_cast<double>(host[i * n + j]) + static_cast<double>(host[j * n + i])) * inv;
    for (const auto& w : a.weights) out[w] = h;
  }
  return out;
}

std::vector<std::int32_t> sample_sequences(model::Model<float>& model, int count, int seq, int batch,
                                           double temperature, std::int32_t start_token, std::uint64_t seed) {
  const int vocab = static_cast<int>(model.config().vocab_size);
  if (start_token < 0 || start_token >= vocab)
    fail(ErrorKind::config, "export.gptq.generation_start_token: ", start_token, " is outside [0, ", vocab, ")");
  if (!(temperature > 0)) fail(ErrorKind::config, "export.gptq.generation_temperature must be > 0");
  std::vector<std::int32_t> out(static_cast<std::size_t>(count) * seq);
  Rng rng(seed);
  std::vector<double> p(static_cast<std::size_t>(vocab));
  for (int first = 0; first < count; first += batch) {
    const int b = std::min(batch, count - first);
    std::vector<std::int32_t> ids(static_cast<std::size_t>(b) * seq, start_token), targets(ids.size(), 0);
    // Without a KV cache, position t is predicted by a forward over the first t + 1 tokens.
    for (int t = 0; t + 1 < seq; ++t) {
      const int len = t + 1;
      std::vector<std::int32_t> in(static_cast<std::size_t>(b) * len), tg(in.size(), 0);
      for (int r = 0; r < b; ++r)
        std::copy_n(ids.begin() + static_cast<std::ptrdiff_t>(r) * seq, len, in.begin() + static_cast<std::ptrdiff_t>(r) * len);
      model.forward(in.data(), tg.data(), b, len);
      const std::vector<float> logits = model.logits_host();
      for (int r = 0; r < b; ++r) {
        const float* row = logits.data() + (static_cast<std::size_t>(r) * len + t) * vocab;
        double mx = -INFINITY;
        for (int v = 0; v < vocab; ++v) mx = std::max(mx, static_cast<double>(row[v]) / temperature);
        double total = 0.0;
        for (int v = 0; v < vocab; ++v) total += (p[static_cast<std::size_t>(v)] = std::exp(row[v] / temperature - mx));
        double u = rng.uniform() * total;
        int pick = vocab - 1;
        for (int v = 0; v < vocab; ++v) {
          u -= p[static_cast<std::size_t>(v)];
          if (u < 0) {
            pick = v;
            break;
          }
        }
        ids[static_cast<std::size_t>(r) * seq + t + 1] = pick;
      }
    }
    std::copy(ids.begin(), ids.end(), out.begin() + static_cast<std::ptrdiff_t>(first) * seq);
  }
  return out;
}

}  // namespace pgolf::exporter
