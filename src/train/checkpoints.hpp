#pragma once
// Finding the checkpoint to resume in a run directory without trusting what is on disk: the
// `latest` pointer must name a step_N directory inside checkpoints/, and the checkpoint must be
// whole (both files parse completely and belong to one save). When it is not, the error says
// what is wrong and names the newest intact older checkpoint to resume instead.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/files.hpp"

namespace pgolf::train {

struct CheckpointDir {
  std::string name;  // "step_0000040"
  std::int64_t step = 0;
  fs::path path;
};

// N of a "step_N" name, or -1 for any other name (paths, "..", empty).
std::int64_t checkpoint_step(std::string_view name);

// The step_N directories of `root` (a run's checkpoints/), by ascending step.
std::vector<CheckpointDir> list_checkpoints(const fs::path& root);

// Empty when `dir` holds a complete checkpoint (model.safetensors and state.safetensors both
// parse and validate, record the same step and hold only finite values), else what is wrong.
std::string checkpoint_problem(const fs::path& dir);

// "; the newest intact checkpoint is step_N: pass --resume-from step_N to continue from step N"
// for the newest intact checkpoint of `root` before `before_step` (any step when negative), or
// the advice to start over when there is none.
std::string newest_intact_hint(const fs::path& root, std::int64_t before_step = -1);

// The checkpoint directory `pgolf run --resume` continues from: `resume_from` (a step_N name
// in `root`) when given, else the one `root`/latest names. Error(usage) when the run has no
// checkpoint at all; Error(format) naming the problem and the newest intact alternative
// ("pass --resume-from step_N") when the pointer or the checkpoint cannot be trusted.
fs::path resume_checkpoint(const fs::path& root, const std::string& resume_from);

}  // namespace pgolf::train
