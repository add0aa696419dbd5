// Parity of the embedding and row-group kernels (kernels/embedding.cu, executed by the SIMT
// emulator) with the CPU reference, bit for bit: gathers, the scatter-add of the embedding
// gradient with repeated ids (rows added in index order on both sides), BigramHash's int32
// wrap-around, and SLOT's per-group rows (float64 sums in the same row order).
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "embedding.cuh"
#include "kernels/parity_support.hpp"

namespace pgolf {
namespace {

using test::Device;
using test::expect_same;
using test::inputs;

std::vector<std::int32_t> ids(std::size_t n, int vocab, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(0, vocab - 1);
  std::vector<std::int32_t> v(n);
  for (auto& x : v) x = pick(rng);
  return v;
}

TEST(EmbeddingParity, GatherScatterAndBigramHashMatchTheCpu) {
  backend::CpuOps<float> cpu;
  for (int vocab : {1, 7, 1024, 65536}) {
    const int dim = vocab == 65536 ? 8 : 48, n = 300;
    const std::vector<std::int32_t> tok = ids(static_cast<std::size_t>(n), vocab, static_cast<std::uint32_t>(vocab));
    const std::vector<float> table = inputs(static_cast<std::size_t>(vocab) * dim, 101),
                             dout = inputs(static_cast<std::size_t>(n) * dim, 102);
    std::vector<float> out(static_cast<std::size_t>(n) * dim), dtable = table;
    cpu.embedding_forward(out.data(), tok.data(), table.data(), n, dim);
    cpu.embedding_backward(dtable.data(), tok.data(), dout.data(), n, dim);
    std::vector<std::int32_t> hashes(static_cast<std::size_t>(n));
    cpu.bigram_hash(hashes.data(), tok.data(), 3, n / 3, 1536);

    Device dev;
    const std::int32_t* dTok = dev.upload(tok);
    float* dOut = dev.upload(std::vector<float>(out.size()));
    float* dTable = dev.upload(table);
    std::int32_t* dHash = dev.upload(std::vector<std::int32_t>(hashes.size()));
    kernels::embedding_forward(dOut, dTok, dTable, n, dim, nullptr);
    kernels::embedding_backward(dTable, dTok, dev.upload(dout), n, dim, nullptr);
    kernels::bigram_hash(dHash, dTok, 3, n / 3, 1536, nullptr);
    const std::string v = std::to_string(vocab);
    expect_same(out, Device::download(dOut, out.size()), "embedding_forward vocab " + v);
    expect_same(dtable, Device::download(dTable, dtable.size()), "embedding_backward vocab " + v);
    EXPECT_EQ(hashes, Device::download(dHash, hashes.size())) << "bigram_hash vocab " << v;
  }
}

TEST(EmbeddingParity, SlotRowGroupsMatchTheCpu) {
  backend::CpuOps<float> cpu;
  for (const auto& [groups, group_rows, dim] : {std::tuple{1, 1, 1}, std::tuple{4, 64, 32}, std::tuple{1, 256, 128},
                                                std::tuple{8, 30, 300}}) {
    const std::size_t n = static_cast<std::size_t>(groups) * group_rows, total = n * dim;
    const std::vector<float> x = inputs(total, 111), rows = inputs(static_cast<std::size_t>(groups) * dim, 112);
    std::vector<float> w = inputs(n, 113);
    for (std::size_t i = 0; i < n; i += 3) w[i] = 0.0f;  // masked rows
    std::vector<float> y(total), sums(static_cast<std::size_t>(groups) * dim), scaled = x;
    scaled[0] = std::numeric_limits<float>::infinity();  // in a masked row: must become 0
    std::vector<float> scaled_in = scaled;
    cpu.add_group_rows(y.data(), x.data(), rows.data(), groups, group_rows, dim);
    cpu.sum_group_rows(sums.data(), x.data(), groups, group_rows, dim);
    cpu.scale_rows(scaled.data(), w.data(), static_cast<int>(n), dim);

    Device dev;
    const float* dX = dev.upload(x);
    float* dY = dev.upload(std::vector<float>(total));
    float* dSums = dev.upload(std::vector<float>(sums.size()));
    float* dScaled = dev.upload(scaled_in);
    kernels::add_group_rows(dY, dX, dev.upload(rows), groups, group_rows, dim, nullptr);
    kernels::sum_group_rows(dSums, dX, groups, group_rows, dim, nullptr);
    kernels::scale_rows(dScaled, dev.upload(w), static_cast<int>(n), dim, nullptr);
    const std::string at = test::shape_label("", {groups, group_rows, dim});
    expect_same(y, Device::download(dY, total), "add_group_rows" + at);
    expect_same(sums, Device::download(dSums, sums.size()), "sum_group_rows" + at);
    expect_same(scaled, Device::download(dScaled, total), "scale_rows" + at);
  }
}

}  // namespace
}  // namespace pgolf
