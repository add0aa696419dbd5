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

dim3 grid_of(std::size_t work) { return dim3(static_cast<unsigned>((work + kThreads - 1) / kThreads)); }

void check_head_dim(int hd) {
  if (hd > kMaxHeadDim)
    throw std::invalid_argument("xsa kernels: head dimension " + std::to_string(hd) + " exceeds " +
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

void xsa_forward(float* out, const float* y, const float* v, int rows, int heads, int kv_heads, int hd,
                 cudaStream_t stream) {
  const std::size_t work = static_cast<std::size_t>(rows) * static_cast<std::size_t>(kv_heads);
  if (work == 0) return;
  check_head_dim(hd);
  PG_LAUNCH(xsa_forward_kernel, grid_of(work), dim3(kThreads), 0, stream, out, y, v, rows, heads, kv_heads, hd);
}

void xsa_backward(float* dy, float* dv, const float* dout, const float* y, const float* v, int rows, int heads,
                  int kv_heads, int hd, cudaStream_t stream) {
  const std::size_t work = static_cast<std::size_t>(rows) * static_cast<std::size_t>(kv_heads);
  if (work == 0) return;
  check_head_dim(hd);
  PG_LAUNCH(xsa_backward_kernel, grid_of(work), dim3(kThreads), 0, stream, dy, dv, dout, y, v, rows, heads, kv_heads,
            hd);
}

}  // namespace pgolf::kernels
