// Causal GQA attention, reference-grade (see attention.cuh).
#include "portable.cuh"  // first: it decides how the CUDA keywords compile

#include <cmath>
#include <stdexcept>
#include <string>

#include "attention.cuh"

namespace pgolf::kernels {

namespace {

constexpr int kThreads = 128;

// q, k, v rows: row (b, t) of head h is at ((b * seq + t) * heads + h) * hd.
__device__ __forceinline__ std::size_t at(int b, int t, int seq, int heads, int h, int hd) {
  return ((static_cast<std::size_t>(b) * seq + static_cast<std::size_t>(t)) * heads + static_cast<std::size_t>(h)) * hd;
}

// scores[s] = sum_e (q[e] * scale) * k_s[e] for s <= t, accumulated in e order (as the CPU).
__device__ void causal_scores(float* scores, const float* q, const float* k, int b, int g, int t, int seq, int kv_heads,
                              int hd, float scale) {
  for (int s = 0; s <= t; ++s) scores[s] = 0.0f;
  for (int e = 0; e < hd; ++e) {
    const float qe = q[e] * scale;
    for (int s = 0; s <= t; ++s) scores[s] += qe * k[at(b, s, seq, kv_heads, g, hd) + static_cast<std::size_t>(e)];
  }
}

__global__ void attention_forward_kernel(float* y, float* lse, const float* q, const float* k, const float* v, int batch,
                                         int seq, int heads, int kv_heads, int hd, float scale) {
  const std::size_t id = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= static_cast<std::size_t>(batch) * heads * seq) return;
  const int t = static_cast<int>(id % static_cast<std::size_t>(seq));
  const int h = static_cast<int>((id / static_cast<std::size_t>(seq)) % static_cast<std::size_t>(heads));
  const int b = static_cast<int>(id / (static_cast<std::size_t>(seq) * heads));
  const int g = h / (heads / kv_heads);
  float p[kAttentionMaxSeq], acc[kAttentionMaxHeadDim];
  causal_scores(p, q + at(b, t, seq, heads, h, hd), k, b, g, t, seq, kv_heads, hd, scale);
  float mx = -INFINITY;  // the CPU starts from p[0]: the same maximum for finite scores
  for (int s = 0; s <= t; ++s) mx = fmaxf(mx, p[s]);
  double sum = 0.0;
  for (int s = 0; s <= t; ++s) {
    p[s] = expf(p[s] - mx);
    sum += p[s];
  }
  for (int e = 0; e < hd; ++e) acc[e] = 0.0f;
  for (int s = 0; s <= t; ++s) {
    const float w = p[s];
    const float* vs = v + at(b, s, seq, kv_heads, g, hd);
    for (int e = 0; e < hd; ++e) acc[e] += w * vs[e];
  }
  const auto inv = static_cast<float>(1.0 / sum);
  float* yt = y + at(b, t, seq, heads, h, hd);
  for (int e = 0; e < hd; ++e) yt[e] = acc[e] * inv;
  lse[(static_cast<std::size_t>(b) * heads + static_cast<std::size_t>(h)) * seq + static_cast<std::size_t>(t)] =
      static_cast<float>(mx + log(sum));
}

// One thread per (b, g): the group's heads and query rows in the CPU's order, accumulating
// dk directly (it starts at zero) and dv in the workspace.
__global__ void attention_backward_kernel(float* dq, float* dk, float* dvacc, const float* dy, const float* q,
                                          const float* k, const float* v, const float* y, const float* lse, int batch,
                                          int seq, int heads, int kv_heads, int hd, float scale) {
  const std::size_t id = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= static_cast<std::size_t>(batch) * kv_heads) return;
  const int b = static_cast<int>(id / static_cast<std::size_t>(kv_heads)), g = static_cast<int>(id % static_cast<std::size_t>(kv_heads));
  const int group = heads / kv_heads;
  for (int s = 0; s < seq; ++s)
    for (int e = 0; e < hd; ++e) {
      dk[at(b, s, seq, kv_heads, g, hd) + static_cast<std::size_t>(e)] = 0.0f;
      dvacc[at(b, s, seq, kv_heads, g, hd) + static_cast<std::size_t>(e)] = 0.0f;
    }
  float p[kAttentionMaxSeq], dp[kAttentionMaxSeq], dqacc[kAttentionMaxHeadDim];
  for (int h = g * group; h < (g + 1) * group; ++h)
    for (int t = 0; t < seq; ++t) {
      const float* qt = q + at(b, t, seq, heads, h, hd);
      const float* dyt = dy + at(b, t, seq, heads, h, hd);
      const float* yt = y + at(b, t, seq, heads, h, hd);
      const float l = lse[(static_cast<std::size_t>(b) * heads + static_cast<std::size_t>(h)) * seq + static_cast<std::size_t>(t)];
      causal_scores(p, qt, k, b, g, t, seq, kv_heads, hd, scale);
      for (int s = 0; s <= t; ++s) dp[s] = 0.0f;
      for (int e = 0; e < hd; ++e) {
        const float de = dyt[e];
        for (int s = 0; s <= t; ++s) dp[s] += de * v[at(b, s, seq, kv_heads, g, hd) + static_cast<std::size_t>(e)];
      }
      float big_d = 0.0f;
      for (int e = 0; e < hd; ++e) big_d += dyt[e] * yt[e];
      for (int e = 0; e < hd; ++e) dqacc[e] = 0.0f;
      for (int s = 0; s <= t; ++s) {
        const float pr = expf(p[s] - l);
        const float ds = pr * (dp[s] - big_d) * scale;
        const float* ks = k + at(b, s, seq, kv_heads, g, hd);
        float* dks = dk + at(b, s, seq, kv_heads, g, hd);
        float* dvs = dvacc + at(b, s, seq, kv_heads, g, hd);
        for (int e = 0; e < hd; ++e) {
          dqacc[e] += ds * ks[e];
          dks[e] += ds * qt[e];
          dvs[e] += pr * dyt[e];
        }
      }
      float* dqt = dq + at(b, t, seq, heads, h, hd);
      for (int e = 0; e < hd; ++e) dqt[e] = dqacc[e];
    }
}

__global__ void apply_dv_kernel(float* dv, const float* dvacc, std::size_t n, bool accumulate) {
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    dv[i] = accumulate ? dv[i] + dvacc[i] : dvacc[i];
}

void check_shape(int seq, int hd, int heads, int kv_heads) {
  if (seq > kAttentionMaxSeq || hd > kAttentionMaxHeadDim || kv_heads < 1 || heads % kv_heads != 0)
    throw std::invalid_argument("attention kernels: seq " + std::to_string(seq) + " (max " +
                                std::to_string(kAttentionMaxSeq) + "), head dim " + std::to_string(hd) + " (max " +
                                std::to_string(kAttentionMaxHeadDim) + "), heads " + std::to_string(heads) +
                                " over KV heads " + std::to_string(kv_heads));
}

dim3 blocks(std::size_t work) { return dim3(static_cast<unsigned>((work + kThreads - 1) / kThreads)); }

}  // namespace

void attention_forward(float* y, float* lse, const float* q, const float* k, const float* v, int batch, int seq,
                       int heads, int kv_heads, int hd, cudaStream_t stream) {
  check_shape(seq, hd, heads, kv_heads);
  const std::size_t rows = static_cast<std::size_t>(batch) * heads * seq;
  if (rows == 0) return;
  const auto scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  PG_LAUNCH(attention_forward_kernel, blocks(rows), dim3(kThreads), 0, stream, y, lse, q, k, v, batch, seq, heads,
            kv_heads, hd, scale);
}

void attention_backward(float* dq, float* dk, float* dv, const float* dy, const float* q, const float* k, const float* v,
                        const float* y, const float* lse, int batch, int seq, int heads, int kv_heads, int hd,
                        bool accumulate_dv, float* dv_workspace, cudaStream_t stream) {
  check_shape(seq, hd, heads, kv_heads);
  const std::size_t groups = static_cast<std::size_t>(batch) * kv_heads;
  if (groups == 0) return;
  const auto scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  PG_LAUNCH(attention_backward_kernel, blocks(groups), dim3(kThreads), 0, stream, dq, dk, dv_workspace, dy, q, k, v, y,
            lse, batch, seq, heads, kv_heads, hd, scale);
  const std::size_t n = groups * static_cast<std::size_t>(seq) * hd;
  PG_LAUNCH(apply_dv_kernel, blocks(n), dim3(kThreads), 0, stream, dv, static_cast<const float*>(dv_workspace), n,
            accumulate_dv);
}

}  // namespace pgolf::kernels
