// pgolf init / eval / bench: the commands that build the model from a config.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <memory>
#include <optional>

#include "backend/cpu/cpu_ops.hpp"
#include "cli/cli_checks.hpp"
#include "cli/commands.hpp"
#include "cli/model_args.hpp"
#include "common/error.hpp"
#include "common/json.hpp"
#include "common/rng.hpp"
#include "common/strings.hpp"
#include "common/version.hpp"
#include "data/bpb.hpp"
#include "eval/evaluator.hpp"
#include "export/artifact.hpp"
#include "export/pack.hpp"
#include "model/model.hpp"
#include "model/params.hpp"
#include "optim/optimizer.hpp"
#include "train/device_step.hpp"

namespace pgolf::cli {

namespace {

// ----- init --------------------------------------------------------------------------------
struct InitOptions {
  ConfigArgs cfg;
  std::int64_t seed = -1;
  std::string out;
};

void run_init(const InitOptions& o) {
  auto loaded = load_config_args(o.cfg);
  const config::Config& c = loaded.config;
  const auto seed = static_cast<std::uint64_t>(o.seed >= 0 ? o.seed : c.seed);
  check_output_file("--out", o.out);
  model::ParamTable table(c.model);
  {
    // The values, the safetensors writer's copy and the serialised file, all in host memory.
    backend::MemoryPlan plan;
    plan.add("parameters", table.total() * sizeof(float));
    plan.add("writer copy and file image", 2 * table.total() * sizeof(float));
    std::fprintf(stderr, "%s\n",
                 backend::check_memory_plan(plan, backend::host_memory_info(), "host", "the model size (model.*)").c_str());
  }
  std::fprintf(stderr, "parameters: %s\n", table.summary().c_str());
  if (o.cfg.verbose) table.print(stderr, true);
  std::vector<float> values;
  model::init_params(table, seed, values);
  json model_cfg = config::to_json(c)["model"];
  model::save_checkpoint(o.out, table, values,
                         {{"format", "pgolf-params-v1"},
                          {"pgolf_version", std::string(build_info().version)},
                          {"pgolf_git", std::string(build_info().git_hash)},
                          {"config_name", c.name},
                          {"seed", std::to_string(seed)},
                          {"model_config", dump_json(model_cfg)}});
  std::printf("init: wrote %s (%zu tensors, %s parameters, seed %llu)\n", o.out.c_str(), table.specs().size(),
              with_commas(table.total()).c_str(), static_cast<unsigned long long>(seed));
}

// ----- eval --------------------------------------------------------------------------------
struct EvalCommand {
  ConfigArgs cfg;
  std::string checkpoint;
  std::string artifact;
  std::string mode;
  int stride = 0;
  int batch_windows = 0;
  std::string nll_out;
  std::string results;
  bool allow_config_mismatch = false;
};

void run_eval(const EvalCommand& o) {
  if (o.checkpoint.empty() && o.artifact.empty()) fail(ErrorKind::usage, "eval: give --checkpoint or --artifact");
  auto loaded = load_config_args(o.cfg);
  const config::Config& c = loaded.config;
  if (!o.nll_out.empty()) check_output_file("--nll-out", o.nll_out);
  if (!o.results.empty()) check_output_file("--results", o.results);
  const std::unique_ptr<backend::Ops<float>> backend_ops = make_backend(c);
  backend::Ops<float>& ops = *backend_ops;
  const data::ByteTables tables = data::load_byte_tables(c.data.tokenizer, c.model.vocab_size);
  const eval::ValStream stream = eval::load_val_stream(c);
  std::fprintf(stderr, "val: %s tokens from %s (%s read%s)\n", with_commas(stream.tokens.size()).c_str(),
               stream.origin.c_str(), with_commas(static_cast<std::uint64_t>(stream.read_tokens)).c_str(),
               c.data.trim_val ? ", trimmed to a multiple of seq_len + 1" : "");

  const std::vector<float> params = load_eval_weights(c, o.checkpoint, o.artifact, o.allow_config_mismatch);
  eval::EvalOptions opts = eval_options_for(c, o.mode, o.stride, o.batch_windows);
  opts.nll_out = o.nll_out;
  const std::int64_t windows = stream.targets() / opts.stride + 1;  // an upper bound on the plan's windows
  opts.batch_windows = static_cast<int>(std::min<std::int64_t>(opts.batch_windows, windows));

  check_memory(ops, eval::eval_memory_plan(c.model, ops, opts),
               opts.ttt.enabled ? "eval.batch_windows (--batch-windows), eval.ttt.batch_seqs or the model size (model.*)"
                                : "eval.batch_windows (--batch-windows) or the model size (model.*)");
  // Depth recurrence is part of the trained model once it has switched on.
  const auto net = eval::make_eval_model(c.model, ops, opts, !c.model.recurrence.virtual_layers.empty());
  print_model_layout(*net, o.cfg.verbose);
  net->set_params(params);
  const eval::EvalResult r = eval::evaluate(*net, stream, tables, opts);

  std::printf("%s\n", eval_summary_line(r, opts).c_str());
  if (!o.results.empty()) {
    json out = {{"pgolf", {{"version", build_info().version}, {"git", build_info().git_hash}}},
                {o.artifact.empty() ? "checkpoint" : "artifact", o.artifact.empty() ? o.checkpoint : o.artifact}};
    out.update(eval_result_json(r, opts));
    out["config"] = config::to_json(c);
    write_file_atomic(o.results, dump_json(out, 2) + "\n");
  }
}

// ----- bench --------------------------------------------------------------------------------
struct BenchOptions {
  ConfigArgs cfg;
  int batch = 0;
  int steps = 5;
  int warmup = 1;
  std::vector<std::string> phases = {"forward", "forward_backward", "step"};
  bool profile = false;
  double peak_tflops = 989.0;
  std::string results;
};

struct PhaseResult {
  double seconds = 0.0;  // per step
  backend::OpProfile profile;
  bool profiled = false;
  std::optional<backend::Device::StallCounts> stalls;  // summed over the timed steps
};

json profile_json(const backend::OpProfile& p, int steps) {
  json ops = json::array();
  for (const backend::OpTiming& o : p.ops)
    ops.push_back({{"op", o.op}, {"calls_per_step", static_cast<double>(o.calls) / steps}, {"ms_per_step", o.ms / steps},
                   {"gflops_per_step", o.flops / steps / 1e9}});
  return ops;
}

void run_bench(const BenchOptions& o) {
  if (!o.results.empty()) check_output_file("--results", o.results);
  auto loaded = load_config_args(o.cfg);
  const config::Config& c = loaded.config;
  const std::unique_ptr<backend::Ops<float>> backend_ops = make_backend(c);
  backend::Ops<float>& ops = *backend_ops;
  const int T = static_cast<int>(c.model.seq_len);
  const std::int64_t accum = c.train.grad_accum_steps > 0 ? c.train.grad_accum_steps : 8;
  const int batch = o.batch > 0 ? o.batch : static_cast<int>(std::max<std::int64_t>(1, c.train.batch_tokens / T / accum));
  const model::ParamTable table(c.model);
  check_model_memory(ops, c.model, batch, T, model::ModelMode::training,
                     {{"optimizer state", optim::Optimizer<float>::planned_bytes(table)},
                      {"EMA copy", table.total() * sizeof(float)}},
                     "--batch (default: train.batch_tokens / seq_len / accumulation steps) or the model size (model.*)");
  model::Model<float> net(c.model, ops, batch, T);
  std::vector<float> params;
  model::init_params(net.table(), static_cast<std::uint64_t>(c.seed), params);
  net.set_params(params);
  Rng rng(static_cast<std::uint64_t>(c.seed));
  std::vector<std::int32_t> ids(static_cast<std::size_t>(batch) * T), targets(ids.size());
  for (auto* v : {&ids, &targets})
    for (auto& x : *v) x = static_cast<std::int32_t>(rng.next_u64() % static_cast<std::uint64_t>(c.model.vocab_size));
  print_model_layout(net, o.cfg.verbose);
  const double tokens = static_cast<double>(batch) * T;
  std::printf("bench %s: %d x %d tokens, backend %s, %d cpu threads\n", c.name.c_str(), batch, T, ops.name().c_str(),
              backend::cpu_threads());
  // The path each fused op family takes in forward+backward and the training step.
  json fused_json = json::object();
  for (const auto& [op, fused] : net.fused_paths()) {
    std::printf("  fused op %-12s %s\n", backend::fused_op_name(op),
                fused ? "fused" : cat("composed (", backend::fused_op_reference(op), ")").c_str());
    fused_json[backend::fused_op_name(op)] = fused ? "fused" : "composed";
  }
  std::fflush(stdout);

  // A whole training step as the trainer issues it (Trainer::enqueue_step): the per-step
  // constants staged, forward, backward, the device-side guard and global-norm clipping, the
  // optimizers of every group and the EMA update; nothing is read back, as between two log
  // lines of a run.
  const std::size_t n = net.table().total();
  optim::Optimizer<float> opt(net.table(), c.optim, c.model.tie_embeddings, ops);
  train::DeviceStep device_step(ops, 1);
  backend::DeviceBuffer<float> ema(ops, n), ema_constants(ops, 2);
  ops.copy_values(ema.get(), net.params(), n);
  const std::vector<float> decay = {static_cast<float>(c.train.ema.decay), static_cast<float>(1.0 - c.train.ema.decay)};
  ops.to_device(ema_constants.get(), decay.data(), decay.size() * sizeof(float));
  std::int64_t step = 0;
  auto train_step = [&] {
    opt.stage_constants(step++, 1.0);
    device_step.begin(0);
    net.zero_grads();
    net.forward_backward(ids.data(), targets.data(), batch, T);
    device_step.add_loss(0, net.loss_sum(), tokens);
    device_step.guard_and_clip(0, net.grads(), n, c.train.grad_clip_norm);
    opt.apply(net.params(), net.grads(), device_step.skip());
    ops.axpby_step(ema.get(), net.params(), ema_constants.get(), n, device_step.skip());
  };
  auto run_phase = [&](const std::string& phase) {
    auto once = [&] {
      if (phase == "step") return train_step();
      net.zero_grads();
      if (phase == "forward_backward") {
        net.forward_backward(ids.data(), targets.data(), batch, T);
      } else {
        net.forward_loss(ids.data(), targets.data(), batch, T);
      }
    };
    for (int i = 0; i < o.warmup; ++i) once();
    ops.synchronize();  // a GPU backend runs asynchronously: time finished work only
    PhaseResult r;
    using clock = std::chrono::steady_clock;
    const auto before = ops.stall_counts();
    const auto t0 = clock::now();
    for (int i = 0; i < o.steps; ++i) once();
    const auto after = ops.stall_counts();  // before the bench's own synchronisation below
    ops.synchronize();
    if (before && after)
      r.stalls = backend::Device::StallCounts{after->host_syncs - before->host_syncs,
                                              after->allocation_calls - before->allocation_calls,
                                              after->staging_waits - before->staging_waits};
    r.seconds = std::chrono::duration<double>(clock::now() - t0).count() / o.steps;
    if (o.profile) {  // once more, op by op between device events (which perturbs the timing above)
      r.profiled = ops.start_op_timing();
      if (r.profiled) {
        for (int i = 0; i < o.steps; ++i) once();
        r.profile = ops.stop_op_timing();
      }
    }
    return r;
  };

  const char* labels[] = {"forward", "forward+backward", "training step"};
  json phases_json = json::array();
  for (const std::string& phase : o.phases) {
    const PhaseResult r = run_phase(phase);
    const int which = phase == "forward" ? 0 : phase == "forward_backward" ? 1 : 2;
    std::printf("  %-17s %9.1f ms/step %12.0f tokens/s%s\n", labels[which], r.seconds * 1e3, tokens / r.seconds,
                which == 2 ? "  (+ clipping, optimizers, EMA)" : "");
    json pj = {{"phase", phase}, {"ms_per_step", r.seconds * 1e3}, {"tokens_per_s", tokens / r.seconds}};
    if (r.stalls) {
      const auto per_step = [&](std::uint64_t v) { return static_cast<double>(v) / o.steps; };
      std::printf("    host syncs per step %g, device allocations per step %g (cudaMalloc/cudaFree calls), staging "
                  "waits per step %g\n",
                  per_step(r.stalls->host_syncs), per_step(r.stalls->allocation_calls), per_step(r.stalls->staging_waits));
      pj["host_syncs_per_step"] = per_step(r.stalls->host_syncs);
      pj["device_allocations_per_step"] = per_step(r.stalls->allocation_calls);
      pj["staging_waits_per_step"] = per_step(r.stalls->staging_waits);
    }
    if (o.profile && !r.profiled) std::printf("    (no per-op timing on backend %s)\n", ops.name().c_str());
    if (r.profiled) {
      // Model FLOPs of the model's products only (the optimizer's Newton-Schulz products are
      // listed under gemm but left out of MFU, as MFU figures do).
      double model_flops = 0.0;
      for (const backend::OpTiming& t : r.profile.ops)
        if (t.op != "gemm") model_flops += t.flops;
      model_flops /= o.steps;
      const double mfu = model_flops / r.seconds / (o.peak_tflops * 1e12);
      // MFU is against the peak of the precision the records train in (bf16); today's CUDA
      // products are float32 (SPEC 9's bf16 path is issue 16), whose H100 peak is about 67.
      std::printf("    model FLOPs %.4g GFLOP/step, %.4g TFLOP/s, MFU %.3g%% of %.0f TFLOP/s (--peak-tflops); op time "
                  "%.1f ms/step\n",
                  model_flops / 1e9, model_flops / r.seconds / 1e12, 100.0 * mfu, o.peak_tflops,
                  r.profile.total_ms() / o.steps);
      std::printf("    %-26s %10s %8s %12s %9s\n", "op", "ms/step", "share", "calls/step", "TFLOP/s");
      for (const backend::OpTiming& t : r.profile.ops)
        std::printf("    %-26s %10.2f %7.1f%% %12.1f %9s\n", t.op.c_str(), t.ms / o.steps,
                    100.0 * t.ms / std::max(r.profile.total_ms(), 1e-9), static_cast<double>(t.calls) / o.steps,
                    t.flops > 0 ? cat(std::setprecision(3), t.flops / (t.ms * 1e-3) / 1e12).c_str() : "");
      pj["model_tflops_per_step"] = model_flops / 1e12;
      pj["mfu"] = mfu;
      pj["ops"] = profile_json(r.profile, o.steps);
    }
    phases_json.push_back(pj);
    std::fflush(stdout);
  }
  std::printf("  peak memory       %s on %s\n", human_bytes(ops.peak_bytes()).c_str(), ops.name().c_str());
  if (!o.results.empty()) {
    json out = {{"config", c.name},
                {"backend", ops.name()},
                {"batch", batch},
                {"seq_len", T},
                {"tokens_per_step", tokens},
                {"steps", o.steps},
                {"warmup", o.warmup},
                {"peak_tflops", o.peak_tflops},
                {"peak_memory_bytes", ops.peak_bytes()},
                {"fused_ops", fused_json},
                {"phases", phases_json},
                {"version", std::string(build_info().version)},
                {"git", std::string(build_info().git_hash)}};
    write_file_atomic(o.results, dump_json(out, 2) + "\n");
  }
}

}  // namespace

void register_model_commands(CLI::App& app) {
  auto io = std::make_shared<InitOptions>();
  CLI::App* init = app.add_subcommand("init", "Write freshly initialised weights (SPEC 3.1 names) as safetensors");
  add_config_options(init, io->cfg, false);
  init->add_option("--seed", io->seed, "Initialisation seed (default: the config's seed)")->check(whole_number(0, INT64_MAX));
  init->add_option("-o,--out", io->out, "Output .safetensors")->required();
  init->callback([io] { run_init(*io); });

  auto eo = std::make_shared<EvalCommand>();
  CLI::App* ev = app.add_subcommand(
      "eval", "Evaluate a checkpoint or an artifact on the val split: val_loss, val_bpb (SPEC 6, docs/eval.md)");
  add_config_options(ev, eo->cfg, false);
  auto* ckpt = ev->add_option("--checkpoint", eo->checkpoint, "Weights (.safetensors with SPEC 3.1 names)")
                   ->check(CLI::ExistingFile);
  auto* art = ev->add_option("--artifact", eo->artifact, "A packed artifact (pgolf pack): evaluates its dequantised weights")
                  ->check(CLI::ExistingFile);
  ckpt->excludes(art);
  ev->add_option("--mode", eo->mode, "nonoverlap or sliding (default: sliding when eval.sliding)")
      ->check(CLI::IsMember({"nonoverlap", "sliding"}));
  ev->add_option("--stride", eo->stride, "Sliding-window stride (default: eval.stride)")->check(whole_number(1));
  ev->add_option("--batch-windows", eo->batch_windows, "Windows per forward (default: eval.batch_windows)")
      ->check(whole_number(1));
  ev->add_option("--nll-out", eo->nll_out,
                 "Write the NLL of every target as little-endian float64, index = target position, NaN if unscored");
  ev->add_option("--results", eo->results, "Write the results (and the resolved config) as JSON");
  add_allow_config_mismatch(ev, eo->allow_config_mismatch);
  ev->footer(
      "The mode comes from the config's eval section: sliding or non-overlapping windows, score-first TTT "
      "(eval.ttt.enabled) and SLOT (eval.slot.variant = none, standard, causal_shared or causal); e.g. --set "
      "eval.ttt.enabled=true --set eval.slot.variant=causal. Results state the mode and whether it is compliant by "
      "construction (standard and causal_shared SLOT and eval.tail = record_rescore are not); pgolf audit checks it.");
  ev->callback([eo] { run_eval(*eo); });

  auto bo = std::make_shared<BenchOptions>();
  CLI::App* bench = app.add_subcommand("bench", "Measure forward and forward+backward tokens/s of the model");
  add_config_options(bench, bo->cfg, false);
  bench->add_option("--batch", bo->batch, "Sequences per step (default: one micro-batch of the config)")
      ->check(whole_number(1));
  bench->add_option("--steps", bo->steps, "Timed steps")->capture_default_str()->check(whole_number(1));
  bench->add_option("--warmup", bo->warmup, "Untimed steps first")->capture_default_str()->check(whole_number(0));
  bench->add_option("--phases", bo->phases, "What to time, in order: forward, forward_backward, step (the trainer's step)")
      ->delimiter(',')
      ->check(CLI::IsMember({"forward", "forward_backward", "step"}))
      ->capture_default_str();
  bench->add_flag("--profile", bo->profile,
                  "Then run each phase again op by op between device events: ms, calls and TFLOP/s per op, model "
                  "FLOPs and MFU (GPU backends)");
  bench->add_option("--peak-tflops", bo->peak_tflops,
                    "The peak MFU is measured against: the H100/H200 SXM's dense bf16 rate, 989, by default (the "
                    "records' precision; today's CUDA products are float32, whose peak is about 67)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bench->add_option("--results", bo->results, "Write every figure as JSON");
  bench->callback([bo] { run_bench(*bo); });
}

}  // namespace pgolf::cli
