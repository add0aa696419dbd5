// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 and ldmatrix.sync.aligned.m8n8.b16 for
// the SIMT emulator, with the fragment layouts of the PTX ISA (sections "Matrix fragments for
// mma.m16n8k16 with floating point type" and "ldmatrix"). In both, groupID = lane / 4 and
// threadID_in_group = lane % 4.
#include <cstdint>
#include <cstring>

#include "emu/runtime.hpp"

namespace pgolf::emu {

namespace {

float bf16_to_float(std::uint16_t h) {
  const std::uint32_t bits = std::uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
std::uint16_t low_half(unsigned r) { return static_cast<std::uint16_t>(r & 0xFFFFu); }
std::uint16_t high_half(unsigned r) { return static_cast<std::uint16_t>(r >> 16); }

struct MmaLane {
  float* d;
  const unsigned* a;
  const unsigned* b;
  const float* c;
};

// A (16 x 16, row-major), four .b32 registers of two bf16 each: a0,a1 at (g, 2t..2t+1),
// a2,a3 at (g+8, 2t..), a4,a5 at (g, 2t+8..), a6,a7 at (g+8, 2t+8..). B (16 x 8, "col"):
// b0,b1 at (k = 2t..2t+1, n = g), b2,b3 at (k = 2t+8.., n = g). C and D (16 x 8, f32):
// c0,c1 at (g, 2t..2t+1), c2,c3 at (g+8, 2t..).
void mma_compute(void* const* lanes) {
  float A[16][16], B[16][8], C[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const auto* L = static_cast<const MmaLane*>(lanes[lane]);
    const int g = lane / 4, t = lane % 4;
    for (int half = 0; half < 2; ++half) {  // the two bf16 in a register: low first
      auto pick = [half](unsigned r) { return bf16_to_float(half == 0 ? low_half(r) : high_half(r)); };
      A[g][2 * t + half] = pick(L->a[0]);
      A[g + 8][2 * t + half] = pick(L->a[1]);
      A[g][2 * t + 8 + half] = pick(L->a[2]);
      A[g + 8][2 * t + 8 + half] = pick(L->a[3]);
      B[2 * t + half][g] = pick(L->b[0]);
      B[2 * t + 8 + half][g] = pick(L->b[1]);
      C[g][2 * t + half] = L->c[half];
      C[g + 8][2 * t + half] = L->c[2 + half];
    }
  }
  float D[16][8];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      // bf16 x bf16 products are exact in float32; they are summed in k order.
      float acc = 0.0f;
      for (int k = 0; k < 16; ++k) acc += A[i][k] * B[k][j];
      D[i][j] = acc + C[i][j];
    }
  for (int lane = 0; lane < 32; ++lane) {
    const auto* L = static_cast<const MmaLane*>(lanes[lane]);
    const int g = lane / 4, t = lane % 4;
    L->d[0] = D[g][2 * t];
    L->d[1] = D[g][2 * t + 1];
    L->d[2] = D[g + 8][2 * t];
    L->d[3] = D[g + 8][2 * t + 1];
  }
}

struct LdmatrixLane {
  unsigned* r;
  const void* row;  // the address of one 8 x b16 row (lanes 8i..8i+7 give matrix i's rows)
};

// Lane l receives, for matrix i, the register holding row l / 4, columns 2 (l % 4) and
// 2 (l % 4) + 1 (low half first); with .trans the matrix is transposed first.
template <int kMatrices, bool kTrans>
void ldmatrix_compute(void* const* lanes) {
  std::uint16_t m[4][8][8];
  for (int i = 0; i < kMatrices; ++i)
    for (int row = 0; row < 8; ++row)
      std::memcpy(m[i][row], static_cast<const LdmatrixLane*>(lanes[8 * i + row])->row, 8 * sizeof(std::uint16_t));
  for (int lane = 0; lane < 32; ++lane) {
    auto* L = static_cast<const LdmatrixLane*>(lanes[lane]);
    const int r = lane / 4, c = 2 * (lane % 4);
    for (int i = 0; i < kMatrices; ++i) {
      const std::uint16_t lo = kTrans ? m[i][c][r] : m[i][r][c], hi = kTrans ? m[i][c + 1][r] : m[i][r][c + 1];
      L->r[i] = unsigned{lo} | (unsigned{hi} << 16);
    }
  }
}

}  // namespace

void mma_m16n8k16_bf16(float* d, const unsigned* a, const unsigned* b, const float* c, Location where) {
  MmaLane lane{d, a, b, c};
  warp_custom("mma.sync.m16n8k16", &lane, &mma_compute, where);
}

void ldmatrix(unsigned* r, int matrices, bool trans, const void* row, Location where) {
  LdmatrixLane lane{r, row};
  WarpCompute f = nullptr;
  switch (matrices * 2 + (trans ? 1 : 0)) {
    case 2: f = &ldmatrix_compute<1, false>; break;
    case 3: f = &ldmatrix_compute<1, true>; break;
    case 4: f = &ldmatrix_compute<2, false>; break;
    case 5: f = &ldmatrix_compute<2, true>; break;
    case 8: f = &ldmatrix_compute<4, false>; break;
    case 9: f = &ldmatrix_compute<4, true>; break;
    default: throw Error("SIMT emulator: ldmatrix loads 1, 2 or 4 matrices");
  }
  warp_custom(trans ? "ldmatrix.trans" : "ldmatrix", &lane, f, where);
}

}  // namespace pgolf::emu
