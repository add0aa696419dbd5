#pragma once
// Cross-rank operations used by training and evaluation. Every collective goes through this
// interface so the trainer is written once; this issue provides the single-process
// implementation, MPI (CPU) and NCCL (GPU) implementations come with distributed training.
#include <cstddef>
#include <memory>

namespace pgolf::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // In place: every rank ends with the mean over ranks (device pointer, n floats).
  virtual void all_reduce_mean(float* data, std::size_t n) = 0;
  // The sum over ranks of a host scalar.
  virtual double all_reduce_sum(double value) = 0;
  // True on every rank when any rank passes true (agreeing to stop).
  virtual bool any(bool flag) = 0;
};

// One process, one rank: collectives are identities.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_mean(float*, std::size_t) override {}
  double all_reduce_sum(double value) override { return value; }
  bool any(bool flag) override { return flag; }
};

}  // namespace pgolf::dist
