// pgolf run: the main job. Train -> apply the weight average -> evaluate -> export -> evaluate the
// artifact -> results.json, from one config (the embedded default, configs/tiny.json, when none
// is given).
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <memory>

#include "cli/cli_checks.hpp"
#include "cli/commands.hpp"
#include "cli/model_args.hpp"
#include "common/error.hpp"
#include "common/json.hpp"
#include "common/strings.hpp"
#include "common/version.hpp"
#include "dist/communicator.hpp"
#include "eval/evaluator.hpp"
#include "data/manifest.hpp"
#include "export/code_bundle.hpp"
#include "export/pack.hpp"
#include "model/params.hpp"
#include "train/checkpoints.hpp"
#include "train/report.hpp"
#include "train/trainer.hpp"

namespace pgolf::cli {

namespace {

struct RunOptions {
  ConfigArgs cfg;
  std::string out;
  bool resume = false;
  std::string resume_from;
  bool force = false;
  std::int64_t seed = -1;
  std::string source_dir;
};

// The embedded default: configs/tiny.json of the working directory, else of the source tree
// (the one this binary was built from, or $PGOLF_SOURCE_DIR).
std::string default_config() {
  const fs::path tree = exporter::default_source_dir();
  for (const fs::path& p : {fs::path("configs/tiny.json"), tree / "configs/tiny.json"})
    if (fs::exists(p)) return p.string();
  fail(ErrorKind::usage, "run: no config given and configs/tiny.json not found (looked in ", fs::current_path().string(),
       " and ", tree.string(), "); pass a config file");
}

json step_records(const std::vector<train::StepRecord>& steps) {
  json out = json::array();
  for (const auto& s : steps)
    out.push_back({{"step", s.step + 1}, {"loss", s.loss}, {"lr_scale", s.lr_scale}, {"grad_norm", s.grad_norm},
                   {"step_ms", s.step_ms}});
  return out;
}

// Where `pgolf run` puts the run: --out, else OUTPUT_DIR/NAME of the config.
fs::path run_dir(const RunOptions& o, const config::Config& c) {
  return o.out.empty() ? fs::path(c.output_dir) / c.name : fs::path(o.out);
}

// What the training steps issued between two reads stalled on (Trainer::step_stalls), per
// step; null on a backend with nothing to stall or when every step was read at once.
json device_stalls(const train::Trainer& trainer) {
  const auto& s = trainer.step_stalls();
  if (!s || s->steps == 0) return nullptr;
  const auto per_step = [&](std::uint64_t v) { return static_cast<double>(v) / static_cast<double>(s->steps); };
  return {{"steps_measured", s->steps},
          {"host_syncs_per_step", per_step(s->counts.host_syncs)},
          {"device_allocations_per_step", per_step(s->counts.allocation_calls)},
          {"staging_waits_per_step", per_step(s->counts.staging_waits)}};
}

// The results.json fields a run has whatever way it ends.
json base_results(const train::Trainer& trainer, train::StopReason reason, const config::Config& recorded) {
  // val_bpb first: the number a run is judged by (filled in once evaluated; null otherwise).
  return {{"val_bpb", nullptr},
          {"val_bpb_of", nullptr},
          {"artifact_bytes", nullptr},
          {"pgolf", {{"version", build_info().version}, {"git", build_info().git_hash}}},
          {"status", train::stop_reason_name(reason)},
          {"steps", trainer.steps_done()},
          {"train_seconds", trainer.elapsed_s()},
          {"tokens_seen", trainer.steps_done() * trainer.tokens_per_step()},
          {"tokens_per_second", static_cast<double>(trainer.steps_done() * trainer.tokens_per_step()) /
                                    std::max(trainer.elapsed_s(), 1e-9)},
          {"train_losses", step_records(trainer.history())},
          {"device_stalls", device_stalls(trainer)},
          {"config", config::to_json(recorded)}};
}

void run_main(RunOptions o) {
  const bool resuming = o.resume || !o.resume_from.empty();
  // `--resume --out DIR` without a config continues with the run's own resolved config.
  if (o.cfg.config.empty() && resuming && !o.out.empty() && fs::exists(fs::path(o.out) / "config.json"))
    o.cfg.config = (fs::path(o.out) / "config.json").string();
  if (o.cfg.config.empty()) o.cfg.config = default_config();
  auto loaded = load_config_args(o.cfg);
  const config::Config& c = loaded.config;
  const fs::path dir = run_dir(o, c);
  train::RunPaths paths{dir};
  // Which checkpoint a resume continues from is settled first: a broken pointer or a cut file
  // is found before anything is built.
  const fs::path resume_from = resuming ? train::resume_checkpoint(paths.checkpoints(), o.resume_from) : fs::path();
  const auto checkpoints = train::list_checkpoints(paths.checkpoints());
  const bool holds_run = fs::exists(paths.checkpoints() / "latest") || !checkpoints.empty();
  if (!resuming && holds_run && !o.force)
    fail(ErrorKind::usage, dir.string(), ": already holds a run (",
         checkpoints.empty() ? std::string("a checkpoints/latest pointer") : cat("checkpoints up to ", checkpoints.back().name),
         "); pass --resume to continue it, --force to start over, or --out for another directory");
  check_output_dir(o.out.empty() ? "the run directory (output_dir/name)" : "--out", dir);
  const std::unique_ptr<backend::Ops<float>> backend_ops = make_backend(c);
  backend::Ops<float>& ops = *backend_ops;
  if (!resuming && holds_run) {
    // --force: what can refuse the new run is checked before the old one is deleted.
    data::check_shard_tokenizer(c.data.train_files, c.data.tokenizer, "data.train_files");
    data::check_shard_tokenizer(c.data.val_files, c.data.tokenizer, "data.val_files");
    train::Trainer::check_memory(c, ops, 1);
    std::error_code ec;
    fs::remove_all(paths.checkpoints(), ec);
    for (const char* f : {"train.log", "config.json", "results.json", "model.safetensors", "val_nll.f64", "loss_curve.svg",
                          "artifact.pgolf", "val_nll_roundtrip.f64", "layout.txt"})
      fs::remove(dir / f, ec);
    std::fprintf(stderr, "run: --force: removed the previous run's outputs from %s\n", dir.string().c_str());
  }
  std::fprintf(stderr, "pgolf %s (git %s): run %s from %s into %s\n", std::string(build_info().version).c_str(),
               std::string(build_info().git_hash).c_str(), c.name.c_str(), o.cfg.config.c_str(), dir.string().c_str());

  dist::LocalCommunicator comm;
  train::Trainer trainer(c, comm, ops, paths);
  print_model_layout(trainer.model(), o.cfg.verbose, "the tables are in layout.txt, or use --verbose");
  write_file_atomic(dir / "layout.txt", cat(trainer.memory_line(), "\n", trainer.model().layout_text()));
  if (resuming) {
    trainer.resume(resume_from);
    std::fprintf(stderr, "resumed from %s after step %lld%s\n", resume_from.string().c_str(),
                 static_cast<long long>(trainer.steps_done()), o.seed >= 0 ? " (--seed is ignored when resuming)" : "");
  } else {
    trainer.init_weights(static_cast<std::uint64_t>(o.seed >= 0 ? o.seed : c.seed));
  }
  config::Config recorded = c;
  if (!resuming && o.seed >= 0) recorded.seed = o.seed;  // the seed the weights came from
  config::save_resolved_config(recorded, dir / "config.json");
  train::install_stop_signal_handlers();
  const train::StopReason reason = trainer.run(train::stop_signal_received);
  train::restore_default_signal_handlers();  // Ctrl-C during the final evaluation just stops

  json results = base_results(trainer, reason, recorded);
  json vals = json::array();
  for (const auto& v : trainer.validations())
    vals.push_back({{"step", v.step}, {"val_loss", v.val_loss}, {"val_bpb", v.val_bpb}});
  results["validations"] = vals;
  train::write_loss_svg(dir / "loss_curve.svg", cat("pgolf ", c.name, ": training loss"), trainer.history(),
                        trainer.validations());
  if (reason == train::StopReason::interrupted || reason == train::StopReason::diverged) {
    // Nothing to evaluate, but the run directory says what happened and how far it got.
    results["peak_rss_mib"] = train::peak_rss_mib();
    if (const auto& d = trainer.divergence()) {
      results["diverged_at_step"] = d->step;
      results["message"] = d->message;
      results["last_finite_loss"] = std::isfinite(d->last_finite_loss) ? json(d->last_finite_loss) : json(nullptr);
      results["last_finite_step"] = d->last_finite_step;
    }
    write_file_atomic(dir / "results.json", dump_json(results, 2) + "\n");
    if (reason == train::StopReason::diverged) throw Error(ErrorKind::diverged, trainer.divergence()->message);
    std::fprintf(stderr, "run: interrupted after step %lld; continue with: pgolf run --resume --out %s\n",
                 static_cast<long long>(trainer.steps_done()), dir.string().c_str());
    throw Interrupted(train::stop_signal_number());
  }

  // Export the averaged weights and evaluate them (SPEC 4.4, 6.1/6.2).
  const std::vector<float> exported = trainer.export_weights();
  const char* averaging = trainer.export_kind();
  model::save_checkpoint(dir / "model.safetensors", trainer.model().table(), exported,
                         {{"format", "pgolf-params-v1"}, {"config_name", c.name}, {"averaging", averaging},
                          {"steps", std::to_string(trainer.steps_done())},
                          {"model_config", dump_json(config::model_to_json(c.model))},
                          {"pgolf_version", std::string(build_info().version)},
                          {"pgolf_git", std::string(build_info().git_hash)}});
  eval::EvalOptions eo = eval::eval_options(c);
  eo.nll_out = dir / "val_nll.f64";
  // The final evaluations run on a model of their own (the trainer's memory plan counts it),
  // with the layer schedule training ended with.
  const bool recurrence = trainer.model().recurrence_active();
  auto net = eval::make_eval_model(c.model, ops, eo, recurrence);
  net->set_params(exported);
  const eval::ValStream stream = eval::load_val_stream(c);
  const eval::EvalResult e = eval::evaluate(*net, stream, trainer.byte_tables(), eo);
  const auto model_bytes = fs::file_size(dir / "model.safetensors");
  auto eval_json = [&](const eval::EvalResult& r, const char* weights) {
    json j = eval_result_json(r, eo);
    j["weights"] = weights;
    return j;
  };
  auto eval_line = [&](const eval::EvalResult& r) { return eval_summary_line(r, eo); };
  results["final_eval"] = eval_json(e, averaging);
  // The number a run reports at the top: the artifact's when there is one (below), else this.
  results["val_bpb"] = e.val_bpb;
  results["val_bpb_of"] = cat(averaging, " weights (float32)");
  results["model_file_bytes"] = model_bytes;
  results["peak_rss_mib"] = train::peak_rss_mib();
  // Saved before the export stage, so a failing export leaves the training results.
  write_file_atomic(dir / "results.json", dump_json(results, 2) + "\n");
  trainer.log(cat("run ", c.name, ": ", trainer.steps_done(), " steps in ", fixed(trainer.elapsed_s(), 1), " s; ", averaging,
                  " weights (float32): ", eval_line(e)));

  if (c.export_.enabled) {
    // Export (SPEC 5) and the round trip: evaluate exactly what the artifact restores.
    exporter::ExportRequest req;
    req.config = &c;
    req.weights = exported;
    req.ops = &ops;
    req.train_tokens = [&](std::int64_t n) { return trainer.take_train_tokens(n); };
    req.source_dir = o.source_dir.empty() ? exporter::default_source_dir() : fs::path(o.source_dir);
    req.metadata_extra = {{"averaging", averaging},
                          {"steps", trainer.steps_done()},
                          {"pgolf_version", std::string(build_info().version)},
                          {"pgolf_git", std::string(build_info().git_hash)}};
    req.out = dir / "artifact.pgolf";
    // Full GPTQ builds its calibration model during the export: the evaluation's model is
    // released first and rebuilt for the round trip (the memory plan counts the larger of the two).
    net.reset();
    const exporter::ExportResult x = exporter::export_model(req, stderr);
    net = eval::make_eval_model(c.model, ops, eo, recurrence);
    net->set_params(x.weights);
    eo.nll_out = dir / "val_nll_roundtrip.f64";
    const eval::EvalResult q = eval::evaluate(*net, stream, trainer.byte_tables(), eo);
    results["export"] = x.to_json(c.export_.budget_bytes);
    results["export"]["artifact"] = "artifact.pgolf";
    results["roundtrip_eval"] = eval_json(q, "artifact");
    results["roundtrip_eval"]["delta_bpb"] = q.val_bpb - e.val_bpb;
    results["val_bpb"] = q.val_bpb;
    results["val_bpb_of"] = "artifact.pgolf (what a submission is scored on)";
    results["artifact_bytes"] = x.sizes.total();
    results["peak_rss_mib"] = train::peak_rss_mib();
    write_file_atomic(dir / "results.json", dump_json(results, 2) + "\n");
    print_export_result(x, c.export_, req.out.string());
    trainer.log(cat("run ", c.name, ": artifact weights (",
                    c.export_.int6_method == config::Int6Method::gptq ? "full GPTQ" : "GPTQ-lite", " int6): ", eval_line(q),
                    ", ", q.val_bpb - e.val_bpb >= 0 ? "+" : "", fixed(q.val_bpb - e.val_bpb, 4), " bpb from quantisation"));
  }
  std::printf("outputs in %s: model.safetensors (%s, float32)%s, results.json\n", dir.string().c_str(),
              human_bytes(model_bytes).c_str(), c.export_.enabled ? ", artifact.pgolf" : "");
}

}  // namespace

void register_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Train, average, evaluate and report one record attempt from a config");
  cmd->add_option("config", o->cfg.config, "Config JSON (default: configs/tiny.json, the embedded CPU default)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", o->cfg.sets, "Override a config value: PATH=VALUE (repeatable)")->allow_extra_args(false);
  cmd->add_option("--threads", o->cfg.threads, "CPU threads (default: the config's threads; 0 = all cores)")
      ->check(whole_number(0));
  cmd->add_option("--out", o->out, "Run directory (default: OUTPUT_DIR/NAME from the config)");
  auto* resume = cmd->add_flag("--resume", o->resume, "Continue the run in the run directory from its latest checkpoint");
  auto* resume_from = cmd->add_option("--resume-from", o->resume_from,
                                      "Continue from this checkpoint of the run directory (a step_N name in checkpoints/) "
                                      "instead of the one checkpoints/latest names");
  cmd->add_flag("--force", o->force, "Start over in a run directory that already holds a run (deletes its outputs)")
      ->excludes(resume)
      ->excludes(resume_from);
  cmd->add_flag("-v,--verbose", o->cfg.verbose, "Print the parameter and activation-arena tables at start-up");
  cmd->add_option("--seed", o->seed, "Initialisation seed (default: the config's seed)")->check(whole_number(0, INT64_MAX));
  cmd->add_option("--source-dir", o->source_dir,
                  "pgolf source tree counted in the artifact (default: the tree this binary was built from)")
      ->check(CLI::ExistingDirectory);
  cmd->footer(
      "Writes into the run directory: config.json (resolved), train.log, layout.txt (the parameter and activation "
      "tables), checkpoints/ (model + training state, every train.checkpoint_every steps or train.checkpoint_every_s "
      "seconds of training and at the end; SIGINT/SIGTERM finish the step, save and exit 130/143; --resume continues, "
      "--resume-from step_N from an older one), model.safetensors (the EMA/SWA weights), val_nll.f64, results.json "
      "(val_bpb at the top: the artifact's) and loss_curve.svg; with export.enabled also artifact.pgolf (quantised + "
      "compressed + code, SPEC 5) and val_nll_roundtrip.f64. A non-finite loss stops with exit 8, the state before the "
      "step saved and results.json saying where; --resume may then change the learning rates and train.grad_clip_norm.");
  cmd->callback([o] { run_main(*o); });
}

}  // namespace pgolf::cli
