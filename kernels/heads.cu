// Per-head attention helpers (see heads.cuh).
#include "portable.cuh"  // first: it decides how the CUDA keywords compile

#include <cmath>
#include <stdexcept>
#include <string>

#include "grid.cuh"
#include "heads.cuh"

namespace pgolf::kernels {

namespace {

constexpr int kThreads = kGridThreads;
constexpr int kMaxHeadDim = 256;

__global__ void rope_kernel(float* x, const float* cos_table, const float* sin_table, int seq, int heads, int hd,
                            int half, bool inverse, std::size_t pairs) {
  // One thread per rotated pair (row, head, j < half).
  for (std::size_t k = first_index(); k < pairs; k += grid_stride()) {
    const std::size_t j = k % static_cast<std::size_t>(half), rh = k / static_cast<std::size_t>(half);
    const std::size_t r = rh / static_cast<std::size_t>(heads);
    const std::size_t t = r % static_cast<std::size_t>(seq);
    float* v = x + rh * static_cast<std::size_t>(hd);
    const float cs = cos_table[t * static_cast<std::size_t>(half) + j], sn = sin_table[t * static_cast<std::size_t>(half) + j];
    const float a = v[j], b = v[j + static_cast<std::size_t>(half)];
    if (!inverse) {
      v[j] = a * cs + b * sn;
      v[j + static_cast<std::size_t>(half)] = -a * sn + b * cs;
    } else {
      v[j] = a * cs - b * sn;
      v[j + static_cast<std::size_t>(half)] = a * sn + b * cs;
    }
  }
}

__global__ void head_gain_kernel(float* y, const float* x, const float* gain, int heads, int hd, std::size_t total) {
  for (std::size_t i = first_index(); i < total; i += grid_stride())
    y[i] = x[i] * gain[(i / static_cast<std::size_t>(hd)) % static_cast<std::size_t>(heads)];
}

__global__ void head_gain_grad_kernel(float* dgain, const float* dy, const float* x, int rows, int heads, int hd) {
  const int h = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (h >= heads) return;
  double acc = 0.0;
  for (int r = 0; r < rows; ++r) {
    const std::size_t o = (static_cast<std::size_t>(r) * heads + static_cast<std::size_t>(h)) * hd;
    double s = 0.0;
    for (int e = 0; e < hd; ++e) s += static_cast<double>(dy[o + e]) * x[o + e];
    acc += s;
  }
  dgain[h] += static_cast<float>(acc);
}

__device__ float unit_direction(float* u, const float* v, int hd) {
  double sq = 0.0;
  for (int e = 0; e < hd; ++e) sq += static_cast<double>(v[e]) * v[e];
  const float norm = fmaxf(static_cast<float>(sqrt(sq)), 1e-12f);
  for (int e = 0; e < hd; ++e) u[e] = v[e] / norm;
  return norm;
}

__global__ void xsa_forward_kernel(float* out, const float* y, const float* v, int rows, int heads, int kv_heads, int hd) {
  const std::size_t k = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= static_cast<std::size_t>(rows) * static_cast<std::size_t>(kv_heads)) return;
  const int group = heads / kv_heads, g = static_cast<int>(k % static_cast<std::size_t>(kv_heads));
  const std::size_t r = k / static_cast<std::size_t>(kv_heads);
  float u[kMaxHeadDim];
  unit_direction(u, v + k * static_cast<std::size_t>(hd), hd);
  for (int h = g * group; h < (g + 1) * group; ++h) {
    const std::size_t o = (r * static_cast<std::size_t>(heads) + static_cast<std::size_t>(h)) * hd;
    double a = 0.0;
    for (int e = 0; e < hd; ++e) a += static_cast<double>(y[o + e]) * u[e];
    for (int e = 0; e < hd; ++e) out[o + e] = y[o + e] - static_cast<float>(a) * u[e];
  }
}

__global__ void xsa_backward_kernel(float* dy, float* dv, const float* dout, const float* y, const float* v, int rows,
                                    int heads, int kv_heads, int hd) {
  const std::size_t k = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= static_cast<std::size_t>(rows) * static_cast<std::size_t>(kv_heads)) return;
  const int group = heads / kv_heads, g = static_cast<int>(k % static_cast<std::size_t>(kv_heads));
  const std::size_t r = k / static_cast<std::size_t>(kv_heads);
  float u[kMaxHeadDim];
  double du[kMaxHeadDim];
  const float norm = unit_direction(u, v + k * static_cast<std::size_t>(hd), hd);
  for (int e = 0; e < hd; ++e) du[e] = 0.0;
  for (int h = g * group; h < (g + 1) * group; ++h) {
    const std::size_t o = (r * static_cast<std::size_t>(heads) + static_cast<std::size_t>(h)) * hd;
    double a = 0.0, gu = 0.0;  // a = y . u, gu = dout . u
    for (int e = 0; e < hd; ++e) {
      a += static_cast<double>(y[o + e]) * u[e];
      gu += static_cast<double>(dout[o + e]) * u[e];
    }
    for (int e = 0; e < hd; ++e) {
      dy[o + e] = dout[o + e] - static_cast<float>(gu) * u[e];
      du[e] -= gu * y[o + e] + a * dout[o + e];
    }
  }
  // u = v / max(|v|, 1e-12): project out the radial part when the norm is active.
  double udu = 0.0;
  for (int e = 0; e < hd; ++e) udu += du[e] * u[e];
  const bool clamped = norm <= 1e-12f;
  float* dvg = dv + k * static_cast<std::size_t>(hd);
  for (int e = 0; e < hd; ++e) dvg[e] += static_cast<float>((clamped ? du[e] : du[e] - u[e] * udu) / norm);
}

// qk_prep: one warp per head vector (row r, head h). A vector's values split into units: unit
// u < half is the rotated pair (u, u + half), unit u >= half the unrotated value
// rope_dims + (u - half). Lane l owns units l, l + 32, ...: it reads and writes only those,
// so dx may alias dout.
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int kMaxUnitsPerLane = kMaxHeadDim / 32;

__device__ double warp_sum(double v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void qk_prep_forward_kernel(float* normed, float* out, float* rstd, const float* x, const float* gain,
                                       const float* cos_table, const float* sin_table, int seq, int heads, int hd,
                                       int half, std::size_t vectors) {
  constexpr double eps = 1.1920928955078125e-07;  // as rmsnorm_forward
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int units = hd - half;
  for (std::size_t v = static_cast<std::size_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; v < vectors;
       v += static_cast<std::size_t>(gridDim.x) * kWarpsPerBlock) {
    const float* xv = x + v * static_cast<std::size_t>(hd);
    double sq = 0.0;
    for (int e = lane; e < hd; e += 32) sq += static_cast<double>(xv[e]) * xv[e];
    sq = warp_sum(sq);
    const float r = static_cast<float>(1.0 / sqrt(sq / hd + eps));
    if (lane == 0) rstd[v] = r;
    const std::size_t t = (v / static_cast<std::size_t>(heads)) % static_cast<std::size_t>(seq);
    const float g = gain != nullptr ? gain[v % static_cast<std::size_t>(heads)] : 1.0f;
    float* nv = normed + v * static_cast<std::size_t>(hd);
    float* ov = out != nullptr ? out + v * static_cast<std::size_t>(hd) : nullptr;
    for (int u = lane; u < units; u += 32) {
      if (u < half) {
        const float a = xv[u] * r, b = xv[u + half] * r;
        const float cs = cos_table[t * static_cast<std::size_t>(half) + u], sn = sin_table[t * static_cast<std::size_t>(half) + u];
        const float ra = a * cs + b * sn, rb = -a * sn + b * cs;
        nv[u] = ra;
        nv[u + half] = rb;
        if (ov != nullptr) {
          ov[u] = ra * g;
          ov[u + half] = rb * g;
        }
      } else {
        const int e = 2 * half + (u - half);
        const float a = xv[e] * r;
        nv[e] = a;
        if (ov != nullptr) ov[e] = a * g;
      }
    }
  }
}

__global__ void qk_prep_backward_kernel(float* dx, const float* dout, const float* x, const float* rstd,
                                        const float* gain, const float* cos_table, const float* sin_table, int seq,
                                        int heads, int hd, int half, std::size_t vectors) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int units = hd - half;
  for (std::size_t v = static_cast<std::size_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; v < vectors;
       v += static_cast<std::size_t>(gridDim.x) * kWarpsPerBlock) {
    const std::size_t o = v * static_cast<std::size_t>(hd);
    const std::size_t t = (v / static_cast<std::size_t>(heads)) % static_cast<std::size_t>(seq);
    const float g = gain != nullptr ? gain[v % static_cast<std::size_t>(heads)] : 1.0f;
    // The gradient of the normalised vector, unit by unit: un-gained, then rotated back.
    float da[kMaxUnitsPerLane], db[kMaxUnitsPerLane];
    double dot = 0.0;
    int k = 0;
    for (int u = lane; u < units; u += 32, ++k) {
      if (u < half) {
        const float a = gain != nullptr ? dout[o + u] * g : dout[o + u];
        const float b = gain != nullptr ? dout[o + u + half] * g : dout[o + u + half];
        const float cs = cos_table[t * static_cast<std::size_t>(half) + u], sn = sin_table[t * static_cast<std::size_t>(half) + u];
        da[k] = a * cs - b * sn;
        db[k] = a * sn + b * cs;
        dot += static_cast<double>(da[k]) * x[o + u] + static_cast<double>(db[k]) * x[o + u + half];
      } else {
        const int e = 2 * half + (u - half);
        da[k] = gain != nullptr ? dout[o + e] * g : dout[o + e];
        dot += static_cast<double>(da[k]) * x[o + e];
      }
    }
    dot = warp_sum(dot);
    const float r = rstd[v];
    const float kk = static_cast<float>(dot * static_cast<double>(r) * r / hd);
    k = 0;
    for (int u = lane; u < units; u += 32, ++k) {
      if (u < half) {
        dx[o + u] = 1.0f * r * (da[k] - x[o + u] * kk);
        dx[o + u + half] = 1.0f * r * (db[k] - x[o + u + half] * kk);
      } else {
        const int e = 2 * half + (u - half);
        dx[o + e] = 1.0f * r * (da[k] - x[o + e] * kk);
      }
    }
  }
}

dim3 grid_of(std::size_t work) { return dim3(static_cast<unsigned>((work + kThreads - 1) / kThreads)); }

void check_head_dim(const char* kernels, int hd) {
  if (hd > kMaxHeadDim)
    throw std::invalid_argument(std::string(kernels) + " kernels: head dimension " + std::to_string(hd) + " exceeds " +
                                std::to_string(kMaxHeadDim));
}

}  // namespace

void rope_apply(float* x, const float* cos_table, const float* sin_table, int rows, int seq, int heads, int hd,
                int rope_dims, bool inverse, cudaStream_t stream) {
  const int half = rope_dims / 2;
  const std::size_t pairs = static_cast<std::size_t>(rows) * static_cast<std::size_t>(heads) * static_cast<std::size_t>(half);
  if (pairs == 0) return;
  PG_LAUNCH(rope_kernel, grid_for(pairs), dim3(kThreads), 0, stream, x, cos_table, sin_table, seq, heads, hd, half,
            inverse, pairs);
}

void head_gain_forward(float* y, const float* x, const float* gain, int rows, int heads, int hd, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(rows) * heads * hd;
  PG_LAUNCH(head_gain_kernel, grid_for(total), dim3(kThreads), 0, stream, y, x, gain, heads, hd, total);
}

void head_gain_backward(float* dx, float* dgain, const float* dy, const float* x, const float* gain, int rows, int heads,
                        int hd, cudaStream_t stream) {
  if (heads > 0)
    PG_LAUNCH(head_gain_grad_kernel, grid_of(static_cast<std::size_t>(heads)), dim3(kThreads), 0, stream, dgain, dy, x,
              rows, heads, hd);
  head_gain_forward(dx, dy, gain, rows, heads, hd, stream);
}

namespace {

dim3 warp_grid(std::size_t vectors) {
  const std::size_t blocks = (vectors + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return dim3(static_cast<unsigned>(blocks < 65535 ? blocks : 65535));
}

}  // namespace

void qk_prep_forward(float* normed, float* out, float* rstd, const float* x, const float* gain, const float* cos_table,
                     const float* sin_table, int rows, int seq, int heads, int hd, int rope_dims, cudaStream_t stream) {
  const std::size_t vectors = static_cast<std::size_t>(rows) * static_cast<std::size_t>(heads);
  if (vectors == 0) return;
  check_head_dim("qk_prep", hd);
  PG_LAUNCH(qk_prep_forward_kernel, warp_grid(vectors), dim3(kThreads), 0, stream, normed, gain != nullptr ? out : nullptr,
            rstd, x, gain, cos_table, sin_table, seq, heads, hd, rope_dims / 2, vectors);
}

void qk_prep_backward(float* dx, float* dgain, const float* dout, const float* x, const float* normed,
                      const float* rstd, const float* gain, const float* cos_table, const float* sin_table, int rows,
                      int seq, int heads, int hd, int rope_dims, cudaStream_t stream) {
  const std::size_t vectors = static_cast<std::size_t>(rows) * static_cast<std::size_t>(heads);
  if (vectors == 0) return;
  check_head_dim("qk_prep", hd);
  if (gain != nullptr)  // before dx, which may overwrite dout
    PG_LAUNCH(head_gain_grad_kernel, grid_of(static_cast<std::size_t>(heads)), dim3(kThreads), 0, stream, dgain, dout,
              normed, rows, heads, hd);
  PG_LAUNCH(qk_prep_backward_kernel, warp_grid(vectors), dim3(kThreads), 0, stream, dx, dout, x, rstd, gain, cos_table,
            sin_table, seq, heads, hd, rope_dims / 2, vectors);
}

void xsa_forward(float* out, const float* y, const float* v, int rows, int heads, int kv_heads, int hd,
                 cudaStream_t stream) {
  const std::size_t work = static_cast<std::size_t>(rows) * static_cast<std::size_t>(kv_heads);
  if (work == 0) return;
  check_head_dim("xsa", hd);
  PG_LAUNCH(xsa_forward_kernel, grid_of(work), dim3(kThreads), 0, stream, out, y, v, rows, heads, kv_heads, hd);
}

void xsa_backward(float* dy, float* dv, const float* dout, const float* y, const float* v, int rows, int heads,
                  int kv_heads, int hd, cudaStream_t stream) {
  const std::size_t work = static_cast<std::size_t>(rows) * static_cast<std::size_t>(kv_heads);
  if (work == 0) return;
  check_head_dim("xsa", hd);
  PG_LAUNCH(xsa_backward_kernel, grid_of(work), dim3(kThreads), 0, stream, dy, dv, dout, y, v, rows, heads, kv_heads,
            hd);
}

}  // namespace pgolf::kernels
