#pragma once
// Full GPTQ's calibration (SPEC 5.2): the Hessian H = X^T X / n of the inputs of every int6
// matrix, accumulated over calibration forwards of the model, from train-stream sequences or
// from sequences the model samples itself.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "backend/device_buffer.hpp"
#include "model/model.hpp"

namespace pgolf::exporter {

// Per weight name, H (cols x cols, row-major, float64). Weights that read the same input
// (c_q, c_k, c_v) get the same matrix.
using Hessians = std::map<std::string, std::vector<double>>;

class HessianCollector {
 public:
  // Installs itself as the model's linear-input observer until destroyed.
  explicit HessianCollector(model::Model<float>& model);
  // The bytes its accumulators take for a model: per physical block, X^T X of the attention
  // input (shared by c_q, c_k, c_v), of the projection input and of the MLP input (d x d each)
  // and of the MLP projection input (hidden x hidden), the inputs Model::forward observes.
  static std::uint64_t planned_bytes(const config::ModelConfig& m);
  ~HessianCollector();
  HessianCollector(const HessianCollector&) = delete;
  HessianCollector& operator=(const HessianCollector&) = delete;

  // One calibration forward over `batch` sequences of `seq` tokens (inputs and next tokens).
  void observe(const std::int32_t* ids, const std::int32_t* targets, int batch, int seq);
  // The Hessians, each divided by the number of rows it saw and symmetrised.
  Hessians finish() const;
  std::int64_t rows_seen() const { return rows_; }

 private:
  struct Accumulator {
    std::vector<std::string> weights;
    int dim = 0;
    std::int64_t rows = 0;
    backend::DeviceBuffer<float> sum;  // X^T X
  };
  model::Model<float>& model_;
  std::map<std::string, Accumulator> inputs_;  // keyed by the first weight reading the input
  std::int64_t rows_ = 0;
};

// `count` sequences of `seq` tokens sampled from the model: each starts with `start_token`,
// then token t+1 ~ softmax(logits_t / temperature), drawn with a generator seeded by `seed`.
// The model must hold activations for `batch` x `seq`. Returns count * seq ids.
std::vector<std::int32_t> sample_sequences(model::Model<float>& model, int count, int seq, int batch,
                                           double temperature, std::int32_t start_token, std::uint64_t seed);

}  // namespace pgolf::exporter
