#pragma once
// The parameter table (SPEC 3.1, docs/model.md): one entry per named tensor with its shape,
// initialisation, optimizer group, weight-decay flag and export quantization class. The
// table fixes the layout of the single parameter buffer (and of the gradient buffer, which
// mirrors it); optimizers, export and checkpoints all read this one table.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "common/files.hpp"
#include "config/config.hpp"

namespace pgolf::model {

enum class ParamGroup { matrix, embed, scalar, head };
enum class InitKind { zeros, constant, normal, orthogonal, resid_mix };
// SPEC 5.1, in rule order: small tensors as fp16, control tensors as fp32, attention/MLP
// matrices as int6, everything else int8 per row.
enum class QuantClass { fp16, fp32_control, int6, int8 };

const char* group_name(ParamGroup g);
const char* quant_name(QuantClass q);

// SPEC 5.1's class of a tensor for a given fp16-passthrough threshold
// (export.passthrough_max_numel; #549 uses 65536).
QuantClass quant_class(const std::string& name, std::size_t numel, std::int64_t passthrough_max_numel);

struct ParamSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  InitKind init = InitKind::zeros;
  double init_value = 0.0;  // the constant, or the normal's std
  ParamGroup group = ParamGroup::scalar;
  bool weight_decay = true;
  QuantClass quant = QuantClass::fp16;  // with #549's threshold; see quant_class()
  std::size_t offset = 0;  // elements from the start of the buffer
  int block = -1;          // i for the tensors of blocks.<i>., -1 for the others
  std::size_t numel() const;
};

// The other two classifications of a tensor, beside quant_class, kept here so that training,
// export and evaluation read one rule each:
// - whether late QAT fake-quantises it (train.qat.scope: every tensor exported as int6, or
//   #549's two small projections [record quirk]);
// - whether score-first TTT trains it (eval.ttt.freeze_blocks keeps the leading blocks fixed).
bool qat_covers(const ParamSpec& p, config::QatScope scope, std::int64_t passthrough_max_numel);
bool ttt_trainable(const ParamSpec& p, std::int64_t freeze_blocks);

// A run of same-shape matrices stored back to back (Parallel Muon shards whole matrices).
struct Bank {
  std::string name;
  std::size_t offset = 0;
  int count = 0;
  int rows = 0;
  int cols = 0;
};

class ParamTable {
 public:
  explicit ParamTable(const config::ModelConfig& model);

  const std::vector<ParamSpec>& specs() const { return specs_; }
  const std::vector<Bank>& banks() const { return banks_; }
  std::size_t total() const { return total_; }
  const ParamSpec* find(const std::string& name) const;
  const ParamSpec& at(const std::string& name) const;  // Error(internal) when absent
  // Totals per group and the banks; `detailed` adds one row per tensor (shape, group, decay,
  // export class, offset).
  void print(std::FILE* out, bool detailed = false) const;
  // "51 tensors, 778,644 parameters (embed 180,224, matrix 589,824, scalar 8,596)"
  std::string summary() const;
  std::map<std::string, std::size_t> group_totals() const;  // values per group name

 private:
  void add(std::string name, std::vector<std::int64_t> shape, InitKind init, double value, ParamGroup group,
           int block = -1);
  std::vector<ParamSpec> specs_;
  std::vector<Bank> banks_;
  std::map<std::string, std::size_t> index_;
  std::size_t total_ = 0;
};

// Fills `values` (table.total() entries) with the table's initialisation. Each tensor draws
// from its own stream seeded by (seed, name), so adding a tensor never changes the others.
void init_params(const ParamTable& table, std::uint64_t seed, std::vector<float>& values);

// A uniformly random (semi-)orthogonal rows x cols matrix: QR of a Gaussian with the sign
// correction; orthonormal rows when rows <= cols, orthonormal columns otherwise.
std::vector<double> random_orthogonal(int rows, int cols, std::uint64_t seed);

// Safetensors checkpoints with the table's names (F32). Loading checks that the file holds
// exactly the table's tensors with the table's shapes and names every difference, and refuses
// NaN/Inf values (Error(format) naming each tensor and its first bad index).
void save_checkpoint(const fs::path& path, const ParamTable& table, const std::vector<float>& values,
                     const std::map<std::string, std::string>& metadata);
// What load_checkpoint checks beyond names and shapes: the model section a checkpoint records
// in its "model_config" metadata (pgolf writes it) against `expected`, which catches knobs that
// change the computation but no shape (model.xsa_last_n, say): Error(config) naming every
// differing key (checked before the shapes), or a warning on `log` when allow_mismatch. A file without the metadata (from
// another tool) is checked by names and shapes only, and `log` says so.
struct ModelCheck {
  const config::ModelConfig* expected = nullptr;
  bool allow_mismatch = false;
  std::FILE* log = stderr;
};
std::vector<float> load_checkpoint(const fs::path& path, const ParamTable& table, const ModelCheck& check = {});

}  // namespace pgolf::model
