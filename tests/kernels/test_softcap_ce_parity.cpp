// Parity of the softcapped cross-entropy kernels (kernels/softcap_ce.cu, executed by the
// SIMT emulator) with the CPU reference: the capped logits bit for bit (the same tanhf), row
// NLLs, the loss sum and the gradient within 2 ulps (float64 row statistics accumulated in
// another order); the in-place backward and the fused forward+backward likewise.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "kernels/parity_support.hpp"
#include "softcap_ce.cuh"

namespace pgolf {
namespace {

using test::Device;
using test::expect_close;
using test::expect_same_math;

struct Case {
  int n, vocab;
  float cap;
};

std::string label(const char* what, const Case& c) {
  return test::shape_label(what, {c.n, c.vocab}, c.cap == 30.0f ? "cap 30" : "cap 10");
}

TEST(SoftcapCeParity, ForwardAndBackwardMatchTheCpu) {
  backend::CpuOps<float> cpu;
  for (const Case c : {Case{1, 1, 30.0f}, Case{3, 100, 30.0f}, Case{5, 1024, 30.0f}, Case{4, 1031, 10.0f}}) {
    std::mt19937 rng(static_cast<std::uint32_t>(c.n * 7919 + c.vocab));
    std::normal_distribution<float> normal(0.0f, 5.0f);
    std::uniform_int_distribution<int> pick(0, c.vocab - 1);
    const std::size_t total = static_cast<std::size_t>(c.n) * c.vocab;
    std::vector<float> z(total);
    for (auto& v : z) v = normal(rng);
    std::vector<std::int32_t> targets(static_cast<std::size_t>(c.n));
    for (auto& t : targets) t = pick(rng);

    std::vector<float> logits = z, nll(static_cast<std::size_t>(c.n)), dz(total);
    float loss_sum = 0;
    cpu.softcap_ce_forward(logits.data(), nll.data(), &loss_sum, targets.data(), c.n, c.vocab, c.cap);
    cpu.softcap_ce_backward(dz.data(), logits.data(), targets.data(), c.n, c.vocab, c.cap, 0.25f);

    Device dev;
    float* dlogits = dev.upload(z);
    float* dnll = dev.upload(std::vector<float>(static_cast<std::size_t>(c.n), 0.0f));
    float* dloss = dev.upload(std::vector<float>(1, 0.0f));
    float* ddz = dev.upload(std::vector<float>(total, 0.0f));
    std::int32_t* dtargets = nullptr;
    double* scratch = nullptr;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dtargets), targets.size() * sizeof(std::int32_t)), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dtargets, targets.data(), targets.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&scratch), targets.size() * sizeof(double)), cudaSuccess);
    kernels::softcap_ce_forward(dlogits, dnll, dloss, dtargets, c.n, c.vocab, c.cap, scratch, nullptr);
    kernels::softcap_ce_backward(ddz, dlogits, dtargets, c.n, c.vocab, c.cap, 0.25f, nullptr);

    expect_same_math(logits, Device::download(dlogits, total), label("capped logits", c));
    expect_close(nll, Device::download(dnll, static_cast<std::size_t>(c.n)), 2, label("row nll", c));
    expect_close({loss_sum}, Device::download(dloss, 1), 2, label("loss sum", c));
    expect_close(dz, Device::download(ddz, total), 2, label("dz", c));

    // The backward in place (dz = the logits), and the fused op (FusedOp::softcap_ce) against
    // the CPU's composition: the same results.
    kernels::softcap_ce_backward(dlogits, dlogits, dtargets, c.n, c.vocab, c.cap, 0.25f, nullptr);
    expect_close(dz, Device::download(dlogits, total), 2, label("dz in place", c));
    float* dfused = dev.upload(z);
    float* dfused_nll = dev.upload(std::vector<float>(static_cast<std::size_t>(c.n), 0.0f));
    float* dfused_loss = dev.upload(std::vector<float>(1, 0.0f));
    kernels::softcap_ce_fused(dfused, dfused_nll, dfused_loss, dtargets, c.n, c.vocab, c.cap, 0.25f, scratch, nullptr);
    expect_close(dz, Device::download(dfused, total), 2, label("fused dz", c));
    expect_close(nll, Device::download(dfused_nll, static_cast<std::size_t>(c.n)), 2, label("fused row nll", c));
    expect_close({loss_sum}, Device::download(dfused_loss, 1), 2, label("fused loss sum", c));
    EXPECT_EQ(cudaFree(dtargets), cudaSuccess);
    EXPECT_EQ(cudaFree(scratch), cudaSuccess);
  }
}

}  // namespace
}  // namespace pgolf
