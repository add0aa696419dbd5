#pragma once
// The training loop of SPEC 4 / docs/training.md: batches, the learning-rate schedule,
// clipping, optimizer steps, EMA / SWA / late QAT, depth-recurrence switch-on, periodic
// validation, checkpoints that resume bit for bit, and clean stops on signals or NaN.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/device_buffer.hpp"
#include "backend/memory.hpp"
#include "backend/ops.hpp"
#include "config/config.hpp"
#include "data/bpb.hpp"
#include "dist/communicator.hpp"
#include "common/json.hpp"
#include "eval/evaluator.hpp"
#include "model/model.hpp"
#include "optim/optimizer.hpp"
#include "train/device_step.hpp"
#include "train/loader.hpp"

namespace pgolf::train {

struct StepRecord {
  std::int64_t step = 0;  // 0-based index of the step
  double loss = 0.0;
  double lr_scale = 0.0;
  double grad_norm = 0.0;  // before clipping
  double step_ms = 0.0;
  double elapsed_s = 0.0;  // training time after the step
  bool qat = false;
  bool recurrence = false;
};

struct ValRecord {
  std::int64_t step = 0;  // steps completed when measured
  double val_loss = 0.0;
  double val_bpb = 0.0;
};

enum class StopReason { completed, wallclock_cap, interrupted, diverged };

// Why and where a run stopped on a non-finite loss or gradient.
struct Divergence {
  std::int64_t step = 0;              // the 1-based step that failed
  std::string message;                // the Error(diverged) text
  double last_finite_loss = 0.0;      // NaN when no step finished
  std::int64_t last_finite_step = 0;  // the step that produced it (0: none)
};
const char* stop_reason_name(StopReason r);

// Where a run keeps its files.
struct RunPaths {
  fs::path dir;
  fs::path checkpoints() const { return dir / "checkpoints"; }
  fs::path log() const { return dir / "train.log"; }
};

class Trainer {
 public:
  // Refuses with Error(config) before allocating when memory_plan() does not fit the backend.
  Trainer(const config::Config& c, dist::Communicator& comm, backend::Ops<float>& ops, RunPaths paths);
  ~Trainer();

  // Everything a Trainer allocates on its backend for `c` on `world_size` ranks: the training
  // model, the optimizer state, the weight averages, the validation model, and then the larger
  // of the final evaluation's model (eval::eval_memory_plan, built by the caller beside the
  // trainer) and full GPTQ's calibration.
  static backend::MemoryPlan memory_plan(const config::Config& c, backend::Ops<float>& ops, int world_size);
  // How train.batch_tokens splits over ranks and accumulation steps (Error(config) when it does
  // not), and the batches of the two models a Trainer builds for it: the training model holds
  // one micro-batch, the validation model (inference, reading the training weights) the
  // validation's windows.
  struct BatchSplit {
    std::int64_t accum = 1, span = 0, micro_seqs = 0;
    int max_batch = 0;  // the training model's sequences (micro_seqs)
    int val_batch = 0;  // max(micro_seqs, eval.batch_windows)
  };
  static BatchSplit batch_split(const config::Config& c, int world_size);
  // The check the constructor makes, for callers that must know before touching anything.
  static std::string check_memory(const config::Config& c, backend::Ops<float>& ops, int world_size);
  // "memory: ... planned on ...; ... available", as printed at construction.
  const std::string& memory_line() const { return memory_line_; }

  // Fresh weights from the parameter table's init (seed), or given ones.
  void init_weights(std::uint64_t seed);
  void set_weights(const std::vector<float>& values);
  // Restores weights and the whole training state from a checkpoint directory.
  void resume(const fs::path& checkpoint_dir);

  // One training step (docs/training.md), read back at once: enqueue_step() then read_steps().
  // Throws Error(diverged) on a non-finite loss or gradient norm, after saving a checkpoint of
  // the state before the step.
  StepRecord step();
  // Issues one training step without waiting for the device: its loss and gradient norm stay
  // on the device until read_steps(), and a non-finite one stops every later update there
  // (docs/training.md, "capture-safe steps").
  void enqueue_step();
  // Reads the steps issued since the last read (one copy) into history(). When one of them was
  // non-finite, rewinds the step count, data position and averages to just before it, saves
  // that state and throws Error(diverged) naming it.
  void read_steps();
  // Steps issued and not read yet.
  std::size_t unread_steps() const { return pending_.size(); }
  // What the steps issued without a read stalled on (after the first step, which stages and
  // allocates for the first time), summed: host syncs, device allocation calls and staging
  // waits of the backend (backend::Device::StallCounts). Empty on a backend with nothing to
  // stall (the CPU's). The fast path's target is 0 host syncs and 0 allocations per step.
  struct StepStalls {
    std::int64_t steps = 0;
    backend::Device::StallCounts counts;
  };
  const std::optional<StepStalls>& step_stalls() const { return step_stalls_; }
  // Steps until done, the wall-clock cap, or `stop_requested()` turns true; logs, validates
  // and checkpoints as configured. A step that diverges ends the run with
  // StopReason::diverged (the state before it saved, divergence() says where, train.log ends
  // with the message).
  StopReason run(const std::function<bool()>& stop_requested);
  const std::optional<Divergence>& divergence() const { return divergence_; }

  // Validation (non-overlapping, SPEC 6.1) of the current weights on the val stream.
  ValRecord validate();
  // Writes model.safetensors + state.safetensors into checkpoints/step_NNNNNNN (atomically,
  // via a temporary directory) and points checkpoints/latest at it.
  fs::path save_checkpoint();

  // The weights to export: the SWA average when swa.apply and a snapshot was taken, else the
  // EMA when enabled, else the current weights; export_kind() says which ("swa", "ema", "raw").
  std::vector<float> export_weights() const;
  const char* export_kind() const;
  // The next `count` tokens of the train stream after training's (GPTQ calibration data).
  std::vector<std::uint16_t> take_train_tokens(std::int64_t count);
  // The training-time cap in force: train.wallclock_cap_s less the GPTQ calibration reserve.
  double wallclock_cap_s() const { return train_.wallclock_cap_s; }
  std::vector<float> weights() const;
  std::int64_t steps_done() const { return step_; }
  double elapsed_s() const { return elapsed_s_; }
  const std::vector<StepRecord>& history() const { return history_; }
  const std::vector<ValRecord>& validations() const { return validations_; }
  model::Model<float>& model() { return *model_; }
  const data::ByteTables& byte_tables() const { return *tables_; }
  const config::Config& config() const { return cfg_; }
  std::int64_t tokens_per_step() const { return cfg_.train.batch_tokens; }

  // Keys of the config (JSON paths) whose values differ from `trained_with` in ways that make
  // resuming a different run: everything but the evaluation, export, logging and naming
  // knobs, and train.iterations / wallclock_cap_s.
  // The learning rates and the clipping norm (the knobs that recover a diverged run) are free
  // too; recovery_changes() lists those that changed, for the log.
  static std::vector<std::string> resume_conflicts(const json& trained_with, const json& now);
  static std::vector<config::KeyDifference> recovery_changes(const json& trained_with, const json& now);

 // Prints a line (rank 0) and appends it to train.log.
  void log(const std::string& line);

 private:
  void update_forward_weights();
  bool qat_covers(const model::ParamSpec& p) const;
  // Saves the state before the current step and throws Error(diverged).
  [[noreturn]] void diverged(const std::string& what, const LoaderPosition& before);
  // A step issued and not read yet: its record (loss and gradient norm come with the read) and
  // the host state before it, which a divergence rewinds to.
  struct PendingStep {
    StepRecord record;
    LoaderPosition before;
    std::int64_t swa_count_before = 0;
    bool qat_before = false;
    double elapsed_before = 0.0;
  };
  // Steps between two reads at most: run() reads when it logs, validates, saves or stops, and
  // at the latest when this many are pending.
  static constexpr std::size_t kMaxUnreadSteps = 256;

  config::Config cfg_;
  config::TrainConfig train_;  // cfg_.train with the cap in force (see wallclock_cap_s())
  dist::Communicator& comm_;
  backend::Ops<float>& ops_;
  RunPaths paths_;
  std::int64_t accum_ = 1, span_ = 0, micro_seqs_ = 0;
  std::unique_ptr<model::Model<float>> model_;
  std::unique_ptr<model::Model<float>> val_model_;  // inference, reads model_'s parameters
  std::unique_ptr<optim::Optimizer<float>> optimizer_;
  std::unique_ptr<TrainLoader> loader_;
  std::unique_ptr<eval::ValStream> val_;
  std::unique_ptr<data::ByteTables> tables_;
  backend::DeviceBuffer<float> ema_, swa_sum_, qat_weights_;
  std::unique_ptr<DeviceStep> device_step_;
  backend::DeviceBuffer<float> average_constants_;  // {EMA decay, 1 - decay, 1, 1 (the SWA sum)}
  std::vector<PendingStep> pending_;
  std::int64_t reads_ = 0;  // read_steps() calls that read something
  std::optional<StepStalls> step_stalls_;
  std::int64_t swa_count_ = 0;
  bool qat_active_ = false;
  std::int64_t step_ = 0;
  double elapsed_s_ = 0.0;
  std::vector<StepRecord> history_;
  std::vector<ValRecord> validations_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> log_file_{nullptr, &std::fclose};
  std::int64_t last_saved_step_ = -1;
  std::vector<std::int32_t> inputs_, targets_;
  std::string memory_line_;
  std::optional<Divergence> divergence_;
  double last_save_elapsed_s_ = 0.0;  // training time at the last periodic checkpoint
  std::int64_t failed_step_ = 0;      // the step a divergence is charged to
};

// Process-wide stop request set by SIGINT / SIGTERM: the run finishes its step, saves and
// stops; a second signal ends the process at once. restore_default_signal_handlers() gives
// Ctrl-C its usual meaning back once training is over.
void install_stop_signal_handlers();
void restore_default_signal_handlers();
bool stop_signal_received();
int stop_signal_number();  // the signal received, 0 if none

}  // namespace pgolf::train
