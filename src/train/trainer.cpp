#include "train/trainer.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <functional>

#include "common/error.hpp"
#include "common/finite.hpp"
#include "common/json.hpp"
#include "common/strings.hpp"
#include "common/version.hpp"
#include "data/manifest.hpp"
#include "export/pack.hpp"
#include "io/safetensors.hpp"
#include "backend/cpu/cpu_ops.hpp"
#include "model/params.hpp"
#include "train/checkpoints.hpp"
#include "train/schedule.hpp"

namespace pgolf::train {

namespace {

std::atomic<int> g_signal{0};

extern "C" void on_stop_signal(int sig) {
  if (g_signal.exchange(sig) != 0) {  // the second signal: stop now, without saving
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  static const char msg[] = "\npgolf: stopping after the current step and saving a checkpoint "
                            "(signal again to abort without saving)\n";
  [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
}

constexpr const char* kStateFormat = "pgolf-train-state-v1";

// The knobs a user changes to get a diverged run going again: they may differ on resume (the
// change is logged). Everything else that shapes training must stay as the run started.
constexpr const char* kRecoveryKnobs[] = {"optim.muon.lr",   "optim.embed.lr",  "optim.untied_embed_lr",
                                          "optim.head.lr",   "optim.scalar.lr", "train.grad_clip_norm"};
constexpr int kCheckpointsKept = 2;

// What sizes a training run's memory plan, for the refusal.
constexpr const char* kMemoryKnobs =
    "train.batch_tokens, eval.batch_windows, eval.ttt.batch_seqs, train.ema/swa/qat.enabled, "
    "export.gptq.calibration_batches or the model size (model.*)";

json step_json(const StepRecord& r) {
  return {{"step", r.step},         {"loss", r.loss},         {"lr_scale", r.lr_scale}, {"grad_norm", r.grad_norm},
          {"step_ms", r.step_ms},   {"elapsed_s", r.elapsed_s}, {"qat", r.qat},       {"recurrence", r.recurrence}};
}

StepRecord step_from_json(const json& j) {
  StepRecord r;
  r.step = j.at("step").get<std::int64_t>();
  r.loss = j.at("loss").get<double>();
  r.lr_scale = j.at("lr_scale").get<double>();
  r.grad_norm = j.at("grad_norm").get<double>();
  r.step_ms = j.at("step_ms").get<double>();
  r.elapsed_s = j.at("elapsed_s").get<double>();
  r.qat = j.at("qat").get<bool>();
  r.recurrence = j.at("recurrence").get<bool>();
  return r;
}

}  // namespace

void install_stop_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void restore_default_signal_handlers() {
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

bool stop_signal_received() { return g_signal.load() != 0; }
int stop_signal_number() { return g_signal.load(); }

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::completed: return "completed";
    case StopReason::wallclock_cap: return "wallclock_cap";
    case StopReason::interrupted: return "interrupted";
    case StopReason::diverged: return "diverged";
  }
  return "?";
}

Trainer::BatchSplit Trainer::batch_split(const config::Config& c, int world_size) {
  const std::int64_t W = world_size, T = c.model.seq_len;
  BatchSplit b;
  b.accum = c.train.grad_accum_steps > 0 ? c.train.grad_accum_steps : std::max<std::int64_t>(1, 8 / W);
  const std::int64_t per_rank = c.train.batch_tokens / (W * b.accum);
  if (per_rank * W * b.accum != c.train.batch_tokens || per_rank % T != 0 || per_rank == 0)
    fail(ErrorKind::config, "train.batch_tokens: ", c.train.batch_tokens, " must split into ", W, " rank(s) x ", b.accum,
         " micro-step(s) of whole sequences of model.seq_len = ", T);
  b.span = per_rank + 1;
  b.micro_seqs = per_rank / T;
  b.max_batch = static_cast<int>(b.micro_seqs);
  b.val_batch = static_cast<int>(std::max<std::int64_t>(b.micro_seqs, c.eval.batch_windows));
  return b;
}

std::string Trainer::check_memory(const config::Config& c, backend::Ops<float>& ops, int world_size) {
  return backend::check_memory_plan(memory_plan(c, ops, world_size), ops, kMemoryKnobs);
}

Trainer::Trainer(const config::Config& c, dist::Communicator& comm, backend::Ops<float>& ops, RunPaths paths)
    : cfg_(c), train_(c.train), comm_(comm), ops_(ops), paths_(std::move(paths)) {
  const std::int64_t W = comm_.world_size(), T = c.model.seq_len;
  const BatchSplit split = batch_split(c, comm_.world_size());
  accum_ = split.accum;
  span_ = split.span;
  micro_seqs_ = split.micro_seqs;
  // Full GPTQ calibrating on train data does so inside the training budget (SPEC 5.2): the
  // cap that stops training and drives the wall-clock schedules leaves export.gptq.reserve_s.
  if (c.export_.enabled && c.export_.int6_method == config::Int6Method::gptq &&
      c.export_.gptq.calibration == config::CalibrationSource::train && c.train.wallclock_cap_s > 0) {
    train_.wallclock_cap_s = c.train.wallclock_cap_s - c.export_.gptq.reserve_s;
    if (train_.wallclock_cap_s <= 0)
      fail(ErrorKind::config, "export.gptq.reserve_s: ", c.export_.gptq.reserve_s,
           " s leaves no training time under train.wallclock_cap_s = ", c.train.wallclock_cap_s, " s");
  }

  tables_ = std::make_unique<data::ByteTables>(data::load_byte_tables(c.data.tokenizer, c.model.vocab_size));
  data::check_shard_tokenizer(c.data.train_files, c.data.tokenizer, "data.train_files");
  loader_ = std::make_unique<TrainLoader>(c.data.train_files, c.model.vocab_size);
  // Fewer tokens than one sequence cannot make a training example; fewer than a step's would
  // repeat within every batch.
  if (loader_->total_tokens() < T + 1)
    fail(ErrorKind::data, "data.train_files ", c.data.train_files, ": the train stream holds ", loader_->total_tokens(),
         " tokens, fewer than one sequence of model.seq_len + 1 = ", T + 1);
  if (loader_->total_tokens() < W * accum_ * span_)
    std::fprintf(stderr, "warning: data.train_files %s: %lld tokens are fewer than one step's %lld; every step repeats data\n",
                 c.data.train_files.c_str(), static_cast<long long>(loader_->total_tokens()),
                 static_cast<long long>(W * accum_ * span_));
  val_ = std::make_unique<eval::ValStream>(eval::load_val_stream(c));

  memory_line_ = check_memory(c, ops_, comm_.world_size());
  std::fprintf(stderr, "%s\n", memory_line_.c_str());
  model_ = std::make_unique<model::Model<float>>(c.model, ops_, split.max_batch, static_cast<int>(T));
  val_model_ = std::make_unique<model::Model<float>>(c.model, ops_, split.val_batch, static_cast<int>(T),
                                                     model::ModelMode::inference, model_->params());
  optimizer_ = std::make_unique<optim::Optimizer<float>>(model_->table(), c.optim, c.model.tie_embeddings, ops_);
  const std::size_t n = model_->table().total();
  if (c.train.ema.enabled) ema_ = backend::DeviceBuffer<float>(ops_, n);
  if (c.train.swa.enabled) swa_sum_ = backend::DeviceBuffer<float>(ops_, n);
  if (c.train.qat.enabled) qat_weights_ = backend::DeviceBuffer<float>(ops_, n);
  // The step guard is per rank: with several ranks its skip flag must be reduced across them
  // with the gradients (issue 15) before any rank may skip or apply an update alone.
  if (comm_.world_size() != 1)
    fail(ErrorKind::internal, "trainer: the device-side step guard is single-rank until multi-rank training lands");
  device_step_ = std::make_unique<DeviceStep>(ops_, kMaxUnreadSteps);
  average_constants_ = backend::DeviceBuffer<float>(ops_, 4);
  const std::vector<float> averages = {static_cast<float>(c.train.ema.decay), static_cast<float>(1.0 - c.train.ema.decay),
                                       1.0f, 1.0f};
  ops_.to_device(average_constants_.get(), averages.data(), averages.size() * sizeof(float));
  if (!paths_.dir.empty() && comm_.rank() == 0) {
    std::error_code ec;
    fs::create_directories(paths_.dir, ec);
    if (ec) fail(ErrorKind::io, paths_.dir.string(), ": cannot create the run directory: ", ec.message());
    log_file_.reset(std::fopen(paths_.log().c_str(), "a"));
    if (!log_file_) fail(ErrorKind::io, paths_.log().string(), ": cannot open for appending: ", std::strerror(errno));
    std::fprintf(log_file_.get(), "%s\n", memory_line_.c_str());
    // Temporary directories of saves that were killed halfway.
    for (const auto& e : fs::directory_iterator(paths_.checkpoints(), ec))
      if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path(), ec);
  }
}

Trainer::~Trainer() = default;

backend::MemoryPlan Trainer::memory_plan(const config::Config& c, backend::Ops<float>& ops, int world_size) {
  const BatchSplit split = batch_split(c, world_size);
  const int T = static_cast<int>(c.model.seq_len);
  model::ModelFootprint f = model::Model<float>::plan(c.model, ops, split.max_batch, T);
  const model::ModelFootprint val =
      model::Model<float>::plan(c.model, ops, split.val_batch, T, model::ModelMode::inference, true);
  const eval::EvalOptions eo = eval::eval_options(c);
  const model::ModelFootprint final_eval = eval::eval_model_footprint(c.model, ops, eo);
  // The three models share the backend's op workspaces: counted once, for the largest shapes.
  f.workspaces = ops.reserved_bytes(f.reservation.merged(val.reservation).merged(final_eval.reservation));
  const model::ParamTable table(c.model);
  const std::uint64_t copy = table.total() * sizeof(float);
  backend::MemoryPlan plan = model::memory_plan(
      f, {{"optimizer state", optim::Optimizer<float>::planned_bytes(table)},
          {"EMA/SWA/QAT copies",
           copy * ((c.train.ema.enabled ? 1 : 0) + (c.train.swa.enabled ? 1 : 0) + (c.train.qat.enabled ? 1 : 0))},
          {"step state", DeviceStep::planned_bytes(kMaxUnreadSteps) + 4 * sizeof(float)},
          {"validation model", val.total() - val.workspaces}});
  // After training, the final evaluation's model and buffers and then GPTQ's calibration model
  // come and go one after the other beside everything above: the larger of the two counts.
  const std::uint64_t eval_extra = final_eval.total() - final_eval.workspaces + eval::eval_extra_bytes(c.model, eo);
  const std::uint64_t calibration = c.export_.enabled ? exporter::calibration_bytes(c, ops) : 0;
  plan.add(calibration > eval_extra ? "GPTQ calibration" : "final evaluation", std::max(eval_extra, calibration));
  return plan;
}

void Trainer::log(const std::string& line) {
  if (comm_.rank() != 0) return;
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  if (log_file_) {
    std::fprintf(log_file_.get(), "%s\n", line.c_str());
    std::fflush(log_file_.get());
  }
}

void Trainer::init_weights(std::uint64_t seed) {
  std::vector<float> values;
  model::init_params(model_->table(), seed, values);
  set_weights(values);
}

void Trainer::set_weights(const std::vector<float>& values) {
  model_->set_params(values);
  if (ema_) ops_.copy_values(ema_.get(), model_->params(), values.size());
}

std::vector<float> Trainer::weights() const { return model_->params_host(); }

bool Trainer::qat_covers(const model::ParamSpec& p) const {
  return model::qat_covers(p, cfg_.train.qat.scope, cfg_.export_.passthrough_max_numel);
}

void Trainer::update_forward_weights() {
  if (!qat_active_) {
    model_->set_forward_weights(nullptr);
    return;
  }
  const auto& table = model_->table();
  float* q = qat_weights_.get();
  ops_.copy_values(q, model_->params(), table.total());
  for (const auto& p : table.specs())
    if (qat_covers(p) && p.shape.size() == 2)
      ops_.fake_quant_int6(q + p.offset, model_->params() + p.offset, static_cast<int>(p.shape[0]),
                           static_cast<int>(p.shape[1]));
  model_->set_forward_weights(q);
}

StepRecord Trainer::step() {
  enqueue_step();
  read_steps();
  return history_.back();
}

void Trainer::enqueue_step() {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const config::TrainConfig& tc = train_;
  const std::optional<backend::Device::StallCounts> stalls_before = ops_.stall_counts();
  const std::int64_t reads_before = reads_;
  PendingStep pending;
  pending.before = loader_->position();
  pending.swa_count_before = swa_count_;
  pending.qat_before = qat_active_;
  pending.elapsed_before = elapsed_s_;
  const double mean_step_s = step_ > 0 ? elapsed_s_ / static_cast<double>(step_) : 0.0;
  const double scale = lr_scale(tc, step_, elapsed_s_, mean_step_s);
  if (tc.qat.enabled && !qat_active_ && scale < tc.qat.start_scale) {
    read_steps();  // a divergence before this step is reported first
    qat_active_ = true;
    int covered = 0;
    for (const auto& p : model_->table().specs()) covered += qat_covers(p) ? 1 : 0;
    log(cat("late QAT on from step ", step_ + 1, " (lr scale ", fixed(scale, 4), "): ", covered, " tensor(s) fake-quantised",
            covered == 0 ? " (none is exported as int6 under this config)" : ""));
  }
  const auto& rec = cfg_.model.recurrence;
  const bool recurrence = !rec.virtual_layers.empty() &&
                          (rec.start_frac > 0 ? tc.wallclock_cap_s > 0 && elapsed_s_ / tc.wallclock_cap_s >= rec.start_frac
                                              : step_ >= rec.start_step);
  if (recurrence != model_->recurrence_active()) {
    read_steps();
    model_->set_recurrence_active(recurrence);
    log(cat("depth recurrence ", recurrence ? "on" : "off", " from step ", step_ + 1));
  }
  update_forward_weights();
  optimizer_->stage_constants(step_, scale);

  const std::size_t slot = pending_.size();
  device_step_->begin(slot);
  model_->zero_grads();
  const int T = static_cast<int>(cfg_.model.seq_len);
  for (std::int64_t a = 0; a < accum_; ++a) {
    loader_->next_micro_batch(span_, comm_.rank(), comm_.world_size(), inputs_, targets_);
    model_->forward_backward(inputs_.data(), targets_.data(), static_cast<int>(micro_seqs_), T,
                             1.0 / static_cast<double>(accum_));
    device_step_->add_loss(slot, model_->loss_sum(), static_cast<double>(micro_seqs_) * T);
  }
  const std::size_t n = model_->table().total();
  float* grads = model_->grads();
  if (tc.clip_scope == config::ClipScope::local_rank) {
    device_step_->guard_and_clip(slot, grads, n, tc.grad_clip_norm);
    comm_.all_reduce_mean(grads, n);
  } else {
    comm_.all_reduce_mean(grads, n);
    device_step_->guard_and_clip(slot, grads, n, tc.grad_clip_norm);
  }
  // A non-finite loss or gradient sets the guard's skip flag: this update and every later one
  // leave the weights, the optimizer state and the averages as they were.
  const double* skip = device_step_->skip();
  optimizer_->apply(model_->params(), grads, skip);
  if (ema_) ops_.axpby_step(ema_.get(), model_->params(), average_constants_.get(), n, skip);
  ++step_;
  if (swa_sum_ && scale < tc.swa.start_scale && step_ % tc.swa.every == 0) {
    ops_.axpby_step(swa_sum_.get(), model_->params(), average_constants_.get() + 2, n, skip);
    ++swa_count_;
  }
  // The host's time for the step (on an asynchronous device its work may still be running; the
  // read that follows charges the wait to the steps it reads).
  const double dt = std::chrono::duration<double>(clock::now() - t0).count();
  elapsed_s_ += dt;
  pending.record = StepRecord{step_ - 1, std::nan(""), scale, std::nan(""), dt * 1e3, elapsed_s_, qat_active_, recurrence};
  pending_.push_back(pending);
  if (const auto after = ops_.stall_counts(); after && stalls_before && step_ > 1 && reads_ == reads_before) {
    if (!step_stalls_) step_stalls_ = StepStalls{};
    ++step_stalls_->steps;
    step_stalls_->counts.host_syncs += after->host_syncs - stalls_before->host_syncs;
    step_stalls_->counts.allocation_calls += after->allocation_calls - stalls_before->allocation_calls;
    step_stalls_->counts.staging_waits += after->staging_waits - stalls_before->staging_waits;
  }
  if (pending_.size() == kMaxUnreadSteps) read_steps();
}

void Trainer::read_steps() {
  if (pending_.empty()) return;
  ++reads_;
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<DeviceStep::Result> results = device_step_->read(pending_.size());
  const double wait = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  elapsed_s_ += wait;
  pending_.back().record.step_ms += wait * 1e3;
  pending_.back().record.elapsed_s += wait;
  for (std::size_t i = 0; i < pending_.size(); ++i) {
    StepRecord r = pending_[i].record;
    r.loss = comm_.all_reduce_sum(results[i].loss_sum / static_cast<double>(accum_)) / comm_.world_size();
    r.grad_norm = std::sqrt(results[i].sum_squares);
    std::string what;
    if (!std::isfinite(r.loss)) {
      what = cat("the training loss is ", r.loss);
    } else if (comm_.any(!std::isfinite(r.grad_norm))) {
      // A finite loss can still come with an infinite or NaN gradient; it did not reach the weights.
      what = cat("the gradient norm is ", r.grad_norm);
    }
    if (!what.empty()) {
      // The device skipped this update and every later one: the state is the one before step i.
      const PendingStep failed = pending_[i];
      pending_.clear();
      step_ = failed.record.step;
      elapsed_s_ = failed.elapsed_before;
      swa_count_ = failed.swa_count_before;
      qat_active_ = failed.qat_before;
      diverged(what, failed.before);
    }
    history_.push_back(r);
  }
  pending_.clear();
}

void Trainer::diverged(const std::string& what, const LoaderPosition& before) {
  // The weights and optimizer state are still those before this step; rewind the data too.
  failed_step_ = step_ + 1;
  fs::path saved;
  if (!paths_.dir.empty()) {
    loader_->seek(before);
    saved = save_checkpoint();
  }
  fail(ErrorKind::diverged, "step ", step_ + 1, ": ", what, "; training stopped",
       saved.empty() ? std::string() : cat(", the state before this step is saved in ", saved.string()),
       saved.empty() ? std::string(" (lower the learning rates or check the data)")
                     : cat(" (lower the learning rates (optim.*.lr) or train.grad_clip_norm and continue: pgolf run --resume --out ",
                           paths_.dir.string(), " --set optim.muon.lr=..., or --resume-from an earlier step_N if the "
                           "weights were already damaged)"));
}

ValRecord Trainer::validate() {
  read_steps();
  // The validation model reads the parameters themselves (late QAT's fake-quantised copy is the
  // training forward's only) with the training model's layer schedule.
  val_model_->set_recurrence_active(model_->recurrence_active());
  eval::EvalOptions o;
  o.mode = eval::Mode::nonoverlap;
  o.batch_windows = val_model_->max_batch();  // BatchSplit::val_batch
  o.progress = false;
  eval::EvalResult e = eval::evaluate(*val_model_, *val_, *tables_, o);
  ValRecord v{step_, e.val_loss, e.val_bpb};
  validations_.push_back(v);
  log(cat("step ", step_, "/", cfg_.train.iterations, " val_loss ", fixed(e.val_loss, 4), " val_bpb ",
          fixed(e.val_bpb, 4), " (", with_commas(static_cast<std::uint64_t>(e.scored)), " targets, ", fixed(e.seconds, 1),
          " s)"));
  return v;
}

StopReason Trainer::run(const std::function<bool()>& stop_requested) {
  const config::TrainConfig& tc = train_;
  const bool tty = ::isatty(::fileno(stdout)) != 0;
  log(cat("training ", cfg_.name, ": ", tc.iterations, " steps of ", with_commas(static_cast<std::uint64_t>(tc.batch_tokens)),
          " tokens (", comm_.world_size(), " rank(s) x ", accum_, " micro-step(s) x ", micro_seqs_, " x ",
          cfg_.model.seq_len, ")", step_ > 0 ? cat(", resuming after step ", step_) : std::string()));
  if (tc.wallclock_cap_s != cfg_.train.wallclock_cap_s)
    log(cat("wall-clock cap ", fixed(tc.wallclock_cap_s, 1), " s: train.wallclock_cap_s less export.gptq.reserve_s = ",
            fixed(cfg_.export_.gptq.reserve_s, 1), " s for GPTQ calibration"));
  StopReason reason = StopReason::completed;
  // A non-finite loss or gradient (step()) or state (save_checkpoint()) ends the run here.
  try {
    while (step_ < tc.iterations) {
      if (tc.wallclock_cap_s > 0 && comm_.any(elapsed_s_ >= tc.wallclock_cap_s)) {
        read_steps();
        reason = StopReason::wallclock_cap;
        log(cat("stopping at the wall-clock cap: ", fixed(elapsed_s_, 1), " s after ", step_, " steps"));
        break;
      }
      enqueue_step();
      // The loss comes back only on logged steps (one read for every step since the last);
      // between them the progress line shows the host's view.
      const bool logged = step_ <= 10 || (tc.log_every > 0 && step_ % tc.log_every == 0) || step_ == tc.iterations;
      if (logged) read_steps();
      const StepRecord& r = logged ? history_.back() : pending_.back().record;
      const double tok_s = static_cast<double>(tc.batch_tokens) / (r.step_ms / 1e3);
      double eta = (elapsed_s_ / static_cast<double>(step_)) * static_cast<double>(tc.iterations - step_);
      if (tc.wallclock_cap_s > 0) eta = std::min(eta, std::max(tc.wallclock_cap_s - elapsed_s_, 0.0));
      const std::string measured =
          logged ? cat(" loss ", fixed(r.loss, 4), " lr_scale ", fixed(r.lr_scale, 3), " grad_norm ", fixed(r.grad_norm, 3))
                 : cat(" lr_scale ", fixed(r.lr_scale, 3));
      const std::string line = cat("step ", step_, "/", tc.iterations, measured, " ", fixed(r.step_ms, 0), " ms ",
                                   with_commas(static_cast<std::uint64_t>(tok_s)), " tok/s ETA ", fixed(eta, 0), " s");
      if (logged) {
        if (tty && comm_.rank() == 0) std::printf("\r\033[K");
        log(line);
      } else if (tty && comm_.rank() == 0) {
        std::printf("\r\033[K%s", line.c_str());
        std::fflush(stdout);
      }
      if (tc.val_every > 0 && step_ % tc.val_every == 0 && step_ < tc.iterations) validate();
      // Periodic checkpoints (by steps or by training time) while training goes on; their time
      // counts in the training time (and so in the cap and the ETA).
      const bool continues = step_ < tc.iterations && !(tc.wallclock_cap_s > 0 && elapsed_s_ >= tc.wallclock_cap_s);
      const bool by_steps = tc.checkpoint_every > 0 && step_ % tc.checkpoint_every == 0;
      const bool by_time = tc.checkpoint_every_s > 0 && elapsed_s_ - last_save_elapsed_s_ >= tc.checkpoint_every_s;
      if (continues && (by_steps || by_time)) {
        const auto t0 = std::chrono::steady_clock::now();
        const fs::path saved = save_checkpoint();
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        elapsed_s_ += dt;
        last_save_elapsed_s_ = elapsed_s_;
        log(cat("checkpoint ", saved.filename().string(), " saved in ", fixed(dt, 2), " s (",
                by_steps ? cat("every ", tc.checkpoint_every, " steps") : cat("every ", fixed(tc.checkpoint_every_s, 0), " s"),
                "; counted in the training time)"));
      }
      if (comm_.any(stop_requested())) {
        const fs::path saved = save_checkpoint();
        log(cat("interrupted after step ", step_, "; the state is saved in ", saved.string()));
        return StopReason::interrupted;
      }
    }
    save_checkpoint();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::diverged) throw;
    divergence_ = Divergence{failed_step_, e.what(), history_.empty() ? std::nan("") : history_.back().loss,
                             history_.empty() ? 0 : history_.back().step + 1};
    log(cat("diverged: ", e.what()));
    return StopReason::diverged;
  }
  if (validations_.empty() || validations_.back().step != step_) validate();
  return reason;
}

fs::path Trainer::save_checkpoint() {
  read_steps();  // a checkpoint holds read, finite steps only
  if (paths_.dir.empty()) fail(ErrorKind::internal, "trainer: no run directory to save checkpoints in");
  if (comm_.rank() != 0) return {};
  const auto& table = model_->table();
  const std::size_t n = table.total();
  char name[32];
  std::snprintf(name, sizeof name, "step_%07lld", static_cast<long long>(step_));
  const fs::path root = paths_.checkpoints(), final_dir = root / name, tmp = root / cat(".tmp-", name, "-", ::getpid());
  if (last_saved_step_ == step_ && fs::exists(final_dir / "state.safetensors")) return final_dir;  // already saved

  // Everything on the host first, checked: a state with NaN/Inf (an update that overflowed
  // while its loss was still finite) is never saved, so `latest` keeps naming a usable one.
  const std::vector<float> weights = model_->params_host();
  std::vector<std::pair<std::string, std::vector<float>>> state;
  auto take = [&](const std::string& tensor, const float* device, std::size_t count) {
    std::vector<float> host(count);
    ops_.to_host(host.data(), device, count * sizeof(float));
    state.emplace_back(tensor, std::move(host));
  };
  for (const auto& s : optimizer_->state()) take("optim." + s.name, s.data, s.count);
  if (ema_) take("ema", ema_.get(), n);
  if (swa_sum_) take("swa_sum", swa_sum_.get(), n);
  auto refuse = [&](const std::string& what, const NonFinite& bad) {
    failed_step_ = step_;  // the step whose update produced it
    fail(ErrorKind::diverged, "after step ", step_, ": ", what, " holds ", describe(bad),
         "; training stopped without saving it", newest_intact_hint(root, step_ + 1),
         " (lower the learning rates (optim.*.lr) or train.grad_clip_norm)");
  };
  for (const auto& p : table.specs())
    if (const auto bad = find_non_finite(std::span<const float>(weights).subspan(p.offset, p.numel())))
      refuse(cat("the weight \"", p.name, "\""), *bad);
  for (const auto& [tensor, values] : state)
    if (const auto bad = find_non_finite(values)) refuse(cat("the training state \"", tensor, "\""), *bad);

  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) fail(ErrorKind::io, tmp.string(), ": cannot create directory: ", ec.message());
  const json model_cfg = config::to_json(cfg_)["model"];
  model::save_checkpoint(tmp / "model.safetensors", table, weights,
                         {{"format", "pgolf-params-v1"}, {"step", std::to_string(step_)}, {"model_config", dump_json(model_cfg)}});
  io::SafetensorsWriter w;
  for (const auto& [tensor, values] : state) w.add_f32(tensor, {static_cast<std::int64_t>(values.size())}, values);
  json history = json::array(), vals = json::array();
  for (const auto& r : history_) history.push_back(step_json(r));
  for (const auto& v : validations_) vals.push_back({{"step", v.step}, {"val_loss", v.val_loss}, {"val_bpb", v.val_bpb}});
  const LoaderPosition pos = loader_->position();
  w.set_metadata("format", kStateFormat);
  w.set_metadata("pgolf_git", std::string(build_info().git_hash));
  w.set_metadata("step", std::to_string(step_));
  w.set_metadata("elapsed_s", dump_json(json(elapsed_s_)));
  w.set_metadata("loader", dump_json({{"shard", pos.shard}, {"offset", pos.offset}, {"passes", pos.passes}}));
  w.set_metadata("swa_count", std::to_string(swa_count_));
  w.set_metadata("qat_active", qat_active_ ? "true" : "false");
  w.set_metadata("world_size", std::to_string(comm_.world_size()));
  w.set_metadata("model_config", dump_json(model_cfg));
  w.set_metadata("config", dump_json(config::to_json(cfg_)));
  w.set_metadata("cpu_threads", std::to_string(backend::cpu_threads()));
  w.set_metadata("history", dump_json(history));
  w.set_metadata("validations", dump_json(vals));
  w.write(tmp / "state.safetensors");

  // Point `latest` elsewhere before replacing a directory of the same name (a resumed run
  // saving again at the step it resumed from), so it never names a missing checkpoint.
  if (fs::exists(final_dir)) {
    fs::remove(root / "latest", ec);
    fs::remove_all(final_dir, ec);
  }
  fs::rename(tmp, final_dir, ec);
  if (ec) fail(ErrorKind::io, final_dir.string(), ": cannot move the checkpoint into place: ", ec.message());
  fsync_directory(root);
  write_file_atomic(root / "latest", std::string(name) + "\n");
  fsync_directory(root);
  last_saved_step_ = step_;
  // Keep the newest few checkpoints.
  std::vector<fs::path> all;
  for (const auto& e : fs::directory_iterator(root, ec))
    if (e.is_directory() && e.path().filename().string().rfind("step_", 0) == 0) all.push_back(e.path());
  std::sort(all.begin(), all.end());
  for (std::size_t i = 0; i + kCheckpointsKept < all.size(); ++i) fs::remove_all(all[i], ec);
  return final_dir;
}

void Trainer::resume(const fs::path& checkpoint_dir) {
  const auto& table = model_->table();
  const std::size_t n = table.total();
  const fs::path state_path = checkpoint_dir / "state.safetensors", model_path = checkpoint_dir / "model.safetensors";
  // Whole, one save (a model file of another step would resume weights with another step's
  // optimizer) and finite, or nothing is restored.
  if (const std::string why = checkpoint_problem(checkpoint_dir); !why.empty())
    fail(ErrorKind::format, checkpoint_dir.string(), ": cannot be resumed: ", why,
         newest_intact_hint(paths_.checkpoints(), checkpoint_step(checkpoint_dir.filename().string())));
  auto st = io::SafetensorsFile::open(state_path);
  auto meta = [&](const char* key) -> const std::string& {
    auto it = st.metadata().find(key);
    if (it == st.metadata().end()) fail(ErrorKind::format, state_path.string(), ": no \"", key, "\" in the metadata");
    return it->second;
  };
  if (meta("format") != kStateFormat)
    fail(ErrorKind::format, state_path.string(), ": format \"", meta("format"), "\", expected \"", kStateFormat, "\"");
  if (auto it = st.metadata().find("config"); it != st.metadata().end()) {
    const json trained_with = parse_json_strict(it->second, state_path.string() + ": metadata config", ErrorKind::format);
    const json now = config::to_json(cfg_);
    const auto diffs = resume_conflicts(trained_with, now);
    if (!diffs.empty()) {
      std::string list;
      for (std::size_t i = 0; i < diffs.size() && i < 8; ++i) list += (i ? ", " : "") + diffs[i];
      if (diffs.size() > 8) list += cat(" and ", diffs.size() - 8, " more");
      fail(ErrorKind::config, checkpoint_dir.string(), ": was trained with a different config (", list,
           "); resume with the run's own config.json (only evaluation, export, logging, length, learning-rate and "
           "clipping knobs may change)");
    }
    const auto adjusted = recovery_changes(trained_with, now);
    if (!adjusted.empty())
      log(cat("resume: continuing with changed recovery knobs (allowed on resume): ",
              config::describe_differences(adjusted, "the checkpoint", adjusted.size())));
  } else if (json::parse(meta("model_config")) != config::to_json(cfg_)["model"]) {
    fail(ErrorKind::config, checkpoint_dir.string(), ": was trained with a different model section");
  }
  if (auto it = st.metadata().find("cpu_threads");
      it != st.metadata().end() && std::stoi(it->second) != backend::cpu_threads())
    log(cat("warning: the checkpoint was written with ", it->second, " CPU threads, resuming with ",
            backend::cpu_threads(), "; the resumed run may differ from an uninterrupted one in the last bits"));
  if (std::stoi(meta("world_size")) != comm_.world_size())
    fail(ErrorKind::config, checkpoint_dir.string(), ": trained on ", meta("world_size"), " rank(s), resumed on ",
         comm_.world_size(), "; resume with the same world size");
  model_->set_params(model::load_checkpoint(model_path, table, {&cfg_.model, false, nullptr}));
  auto restore = [&](const std::string& tensor, float* device, std::size_t count) {
    const io::TensorView& t = st.at(tensor);
    if (t.dtype != io::DType::F32 || t.numel() != static_cast<std::int64_t>(count))
      fail(ErrorKind::format, state_path.string(), ": \"", tensor, "\" is not ", count, " float32 values");
    ops_.to_device(device, t.data.data(), count * sizeof(float));
  };
  for (const auto& s : optimizer_->state()) restore("optim." + s.name, s.data, s.count);
  if (ema_) restore("ema", ema_.get(), n);
  if (swa_sum_) restore("swa_sum", swa_sum_.get(), n);
  step_ = std::stoll(meta("step"));
  elapsed_s_ = json::parse(meta("elapsed_s")).get<double>();
  const json pos = json::parse(meta("loader"));
  loader_->seek({pos.at("shard").get<std::int64_t>(), pos.at("offset").get<std::int64_t>(),
                 pos.at("passes").get<std::int64_t>()});
  swa_count_ = std::stoll(meta("swa_count"));
  qat_active_ = meta("qat_active") == "true";
  history_.clear();
  for (const auto& j : json::parse(meta("history"))) history_.push_back(step_from_json(j));
  validations_.clear();
  for (const auto& j : json::parse(meta("validations")))
    validations_.push_back({j.at("step").get<std::int64_t>(), j.at("val_loss").get<double>(), j.at("val_bpb").get<double>()});
  last_saved_step_ = step_;
  last_save_elapsed_s_ = elapsed_s_;
}

std::vector<config::KeyDifference> Trainer::recovery_changes(const json& trained_with, const json& now) {
  std::vector<config::KeyDifference> out;
  for (auto& d : config::section_differences(trained_with, now, ""))
    for (const char* key : kRecoveryKnobs)
      if (d.key == key) out.push_back(std::move(d));
  return out;
}

std::vector<std::string> Trainer::resume_conflicts(const json& trained_with, const json& now) {
  // Knobs that may change between the pieces of one run.
  static const char* const kFree[] = {"name", "description", "threads", "output_dir", "backend", "eval", "export",
                                      "train.iterations", "train.wallclock_cap_s", "train.log_every", "train.val_every",
                                      "train.checkpoint_every", "train.checkpoint_every_s", "data.val_files",
                                      "data.val_max_tokens", "data.trim_val"};
  auto is_free = [](const std::string& path) {
    for (const char* f : kFree)
      if (path == f) return true;
    for (const char* f : kRecoveryKnobs)
      if (path == f) return true;
    return false;
  };
  std::vector<std::string> out;
  std::function<void(const json&, const json&, const std::string&)> walk = [&](const json& a, const json& b,
                                                                                const std::string& path) {
    if (is_free(path)) return;
    if (a.is_object() && b.is_object()) {
      for (const auto& item : a.items()) {
        const std::string p = join_key(path, item.key());
        if (!b.contains(item.key())) {
          if (!is_free(p)) out.push_back(p);
          continue;
        }
        walk(item.value(), b.at(item.key()), p);
      }
      // A key only one side has (a knob added since the checkpoint was written) conflicts
      // unless it is free.
      for (const auto& item : b.items())
        if (!a.contains(item.key()) && !is_free(join_key(path, item.key()))) out.push_back(join_key(path, item.key()));
      return;
    }
    if (a != b) out.push_back(path);
  };
  walk(trained_with, now, "");
  return out;
}

std::vector<std::uint16_t> Trainer::take_train_tokens(std::int64_t count) {
  std::vector<std::uint16_t> out;
  loader_->take(count, out);
  return out;
}

const char* Trainer::export_kind() const {
  if (cfg_.train.swa.apply && swa_sum_ && swa_count_ > 0) return "swa";
  if (ema_) return "ema";
  return "raw";
}

std::vector<float> Trainer::export_weights() const {
  const std::size_t n = model_->table().total();
  std::vector<float> out(n);
  const std::string kind = export_kind();
  if (kind == "swa") {
    ops_.to_host(out.data(), swa_sum_.get(), n * sizeof(float));
    for (auto& x : out) x = static_cast<float>(static_cast<double>(x) / static_cast<double>(swa_count_));
  } else if (kind == "ema") {
    ops_.to_host(out.data(), ema_.get(), n * sizeof(float));
  } else {
    out = model_->params_host();
  }
  return out;
}

}  // namespace pgolf::train
