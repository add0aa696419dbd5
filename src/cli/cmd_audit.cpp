// pgolf audit: the legality audit of SPEC 7 on the configured eval mode (docs/eval.md).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "cli/cli_checks.hpp"
#include "cli/commands.hpp"
#include "cli/model_args.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/json.hpp"
#include "common/strings.hpp"
#include "common/version.hpp"
#include "data/bpb.hpp"
#include "eval/audit.hpp"
#include "model/params.hpp"

namespace pgolf::cli {

namespace {

struct AuditOptions {
  ConfigArgs cfg;
  std::string checkpoint;
  std::string artifact;
  std::vector<std::int64_t> positions;
  std::string results;
  bool allow_config_mismatch = false;
};

void run_audit(const AuditOptions& o) {
  auto loaded = load_config_args(o.cfg);
  const config::Config& c = loaded.config;
  if (!o.results.empty()) check_output_file("--results", o.results);
  const std::unique_ptr<backend::Ops<float>> backend_ops = make_backend(c);
  backend::Ops<float>& ops = *backend_ops;
  const data::ByteTables tables = data::load_byte_tables(c.data.tokenizer, c.model.vocab_size);
  const eval::ValStream stream = eval::load_val_stream(c);
  std::vector<float> weights;
  std::string weights_name;
  if (o.checkpoint.empty() && o.artifact.empty()) {
    // Fresh weights still exercise every code path (SLOT and TTT fit whatever they get),
    // but a trained checkpoint makes a leak's effect larger and easier to see.
    model::ParamTable table(c.model);
    model::init_params(table, static_cast<std::uint64_t>(c.seed), weights);
    weights_name = cat("initialisation (seed ", c.seed, ")");
    std::fprintf(stderr, "audit: no --checkpoint or --artifact: using the config's initialisation (seed %lld)\n",
                 static_cast<long long>(c.seed));
  } else {
    weights = load_eval_weights(c, o.checkpoint, o.artifact, o.allow_config_mismatch);
    weights_name = o.artifact.empty() ? o.checkpoint : o.artifact;
  }
  eval::EvalOptions opts = eval::eval_options(c);
  const std::int64_t N = stream.targets();
  const int T = static_cast<int>(c.model.seq_len);
  std::vector<eval::AuditPosition> positions;
  if (o.positions.empty()) {
    positions = eval::default_audit_positions(opts, N, T);
  } else {
    for (std::int64_t q : o.positions) {
      if (q < 1 || q > N)
        fail(ErrorKind::usage, "--positions ", q, ": outside [1, ", N, "] (token indices of the val stream; its last is ",
             N, ")");
      positions.push_back(eval::AuditPosition{q, "given"});
    }
  }

  check_memory(ops, eval::eval_memory_plan(c.model, ops, opts),
               "eval.batch_windows, eval.ttt.batch_seqs or the model size (model.*)");
  const auto net = eval::make_eval_model(c.model, ops, opts, !c.model.recurrence.virtual_layers.empty());
  std::fprintf(stderr, "audit %s on %s val targets, weights: %s; %zu positions, %zu + 1 evaluations\n",
               eval::eval_label(opts).c_str(), with_commas(static_cast<std::uint64_t>(N)).c_str(), weights_name.c_str(),
               positions.size(), positions.size());
  const eval::AuditReport rep = eval::audit_eval(
      *net, weights, stream, tables, opts, positions, [](const eval::AuditProbe& p, std::size_t done, std::size_t total) {
        std::fprintf(stderr, "  [%zu/%zu] q = %lld (%s): %s\n", done, total, static_cast<long long>(p.position.token),
                     p.position.where.c_str(),
                     p.violation() ? cat("VIOLATION, ", p.changed, " earlier targets changed").c_str() : "ok");
      });

  std::printf("audit %s (%s by construction): %zu positions tried, %lld violations, base val_bpb %.6f, %.1f s\n",
              rep.mode.c_str(), rep.compliant_by_construction ? "compliant" : "NON-COMPLIANT", rep.probes.size(),
              static_cast<long long>(rep.violations()), rep.base_val_bpb, rep.seconds);
  std::printf("  %9s  %-26s %9s %8s %16s %12s\n", "q", "where", "compared", "changed", "max|dNLL| < q", "miscounted");
  for (const auto& p : rep.probes)
    std::printf("  %9lld  %-26s %9lld %8lld %16.3g %12lld%s\n", static_cast<long long>(p.position.token),
                p.position.where.c_str(), static_cast<long long>(p.compared), static_cast<long long>(p.changed),
                p.max_abs_delta, static_cast<long long>(p.miscounted), p.violation() ? "  VIOLATION" : "");
  if (rep.base_miscounted > 0)
    std::printf("  the base run scored %lld targets other than exactly once (C4)\n",
                static_cast<long long>(rep.base_miscounted));

  if (!o.results.empty()) {
    json probes = json::array();
    for (const auto& p : rep.probes)
      probes.push_back({{"position", p.position.token},
                        {"where", p.position.where},
                        {"compared", p.compared},
                        {"changed", p.changed},
                        {"first_changed_target", p.first_changed},
                        {"max_abs_delta_nll", p.max_abs_delta},
                        {"miscounted", p.miscounted},
                        {"violation", p.violation()}});
    json out = {{"pgolf", {{"version", build_info().version}, {"git", build_info().git_hash}}},
                {"weights", weights_name},
                {"mode", rep.mode},
                {"compliant_by_construction", rep.compliant_by_construction},
                {"targets", rep.targets},
                {"base_val_bpb", rep.base_val_bpb},
                {"base_miscounted", rep.base_miscounted},
                {"violations", rep.violations()},
                {"passed", rep.passed()},
                {"seconds", rep.seconds},
                {"probes", probes},
                {"config", config::to_json(c)}};
    write_file_atomic(o.results, dump_json(out, 2) + "\n");
  }
  if (!rep.passed())
    fail(ErrorKind::audit_failed, rep.mode, ": ", rep.violations(), " of ", rep.probes.size(),
         " positions showed a prediction that depends on a later token or a target not scored exactly once",
         rep.compliant_by_construction ? " (this mode should be compliant: a bug)" : " (expected for this mode)");
  std::printf("audit passed: no prediction before any tried position moved, every target scored exactly once\n");
}

}  // namespace

void register_audit(CLI::App& app) {
  auto o = std::make_shared<AuditOptions>();
  CLI::App* cmd = app.add_subcommand(
      "audit", "Check the configured eval mode's legality (SPEC 7): causality, score-before-update, exactly-once");
  cmd->add_option("config", o->cfg.config, "Config JSON (its eval section is the mode audited)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", o->cfg.sets, "Override a config value: PATH=VALUE (repeatable)")->allow_extra_args(false);
  cmd->add_option("--threads", o->cfg.threads, "CPU threads (default: the config's threads; 0 = all cores)")
      ->check(whole_number(0));
  auto* ckpt = cmd->add_option("--checkpoint", o->checkpoint, "Weights (.safetensors; default: the config's initialisation)")
                   ->check(CLI::ExistingFile);
  auto* art = cmd->add_option("--artifact", o->artifact, "A packed artifact (its dequantised weights)")
                  ->check(CLI::ExistingFile);
  ckpt->excludes(art);
  cmd->add_option("--positions", o->positions,
                  "Token indices q to perturb, comma separated (default: stream start/middle/end, window and chunk edges)")
      ->delimiter(',');
  cmd->add_option("--results", o->results, "Write the audit table as JSON");
  add_allow_config_mismatch(cmd, o->allow_config_mismatch);
  cmd->footer(
      "For each position q the token there is changed and the whole eval re-run from the same weights; every NLL of "
      "a target before q must be bit-identical and every target scored exactly once (docs/eval.md). Exits 10 on any "
      "violation. Audit the leaky SLOT variants with e.g. --set eval.slot.variant=causal_shared to see it catch them.");
  cmd->callback([o] { run_audit(*o); });
}

}  // namespace pgolf::cli
