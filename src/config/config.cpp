#include "config/config.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "common/error.hpp"

namespace pgolf::config {

// ----- schema ------------------------------------------------------------------------------
namespace {

void describe(Visitor& v, DataConfig& c) {
  v.path("train_files", c.train_files, "glob of training shards, read in sorted order (SPEC 2.1)");
  v.path("val_files", c.val_files, "glob of validation shards, read in sorted order (SPEC 2.1)");
  v.path("tokenizer", c.tokenizer, "SentencePiece .model; its vocab size must equal model.vocab_size (SPEC 2.2)");
  v.boolean("trim_val", c.trim_val,
            "trim the val stream to ((n-1)//seq_len)*seq_len+1 tokens, as the records do (SPEC 2.1)");
  v.integer("val_max_tokens", c.val_max_tokens, at_least(0),
            "use only the first N val tokens (0 = all); for CPU runs on small machines");
}

void describe(Visitor& v, RopeConfig& c) {
  v.integer("dims", c.dims, at_least(0), "rotary dims per head (partial RoPE); 0 = none, else even and >= 4");
  v.number("base", c.base, positive(), "RoPE base");
  v.integer("train_len", c.train_len, at_least(1),
            "Trope: base is scaled by (seq_len/Trope)^(r/(r-2)) when seq_len > Trope "
            "([record quirk] #549 uses 1024 while training at 2048)");
}

void describe(Visitor& v, BigramConfig& c) {
  v.boolean("enabled", c.enabled, "BigramHash embedding of (previous, current) token pairs");
  v.integer("vocab_size", c.vocab_size, at_least(2), "hash buckets Vb (bucket Vb-1 is the first position's)");
  v.integer("dim", c.dim, at_least(1), "bigram embedding dim db, projected to model_dim");
  v.number("scale_init", c.scale_init, any(), "initial bigram.scale");
}

void describe(Visitor& v, ValueEmbedConfig& c) {
  v.boolean("enabled", c.enabled, "shared value embedding added to v on value_embed.layers");
  v.integer("dim", c.dim, at_least(1), "value embedding dim dve");
  v.integer_list("layers", c.layers, at_least(0), "physical layer indices that receive the value embedding");
  v.number("scale_init", c.scale_init, any(), "initial ve_shared.scale");
  v.number("init_std", c.init_std, at_least(0), "std of ve_shared.embed's normal init");
}

void describe(Visitor& v, RecurrenceConfig& c) {
  v.integer_list("virtual_layers", c.virtual_layers, at_least(0),
                 "depth recurrence: the physical layer run at each virtual depth, e.g. "
                 "[0,1,2,3,4,5,4,5,6,7,8,9,10]; empty = off (SPEC 3.3)");
  v.integer("start_step", c.start_step, at_least(0), "training step at which recurrence switches on");
  v.number("start_frac", c.start_frac, in_range(0, 1),
           "switch on at this fraction of the wall-clock cap instead (0 = use start_step)");
  enumeration(v, "skip_policy", c.skip_policy,
              "decoder steps beyond the skip count: clamp = reuse the last skip (#1285), "
              "none_beyond = no skip ([record quirk] #1334)");
}

void describe(Visitor& v, ParallelResidualConfig& c) {
  v.integer("start_layer", c.start_layer, at_least(-1),
            "first physical (decoder) layer with parallel attention/MLP lanes (#1334: 7); -1 = off");
  v.number("lane_merge_init", c.lane_merge_init, any(), "initial lane_merge m (output m*lane0 + (1-m)*lane1)");
  enumeration(v, "skip_policy", c.skip_policy,
              "U-Net skips after the split: both_lanes = add to both lanes (correct), "
              "dead_x = add to the unused x ([record quirk] #1334)");
}

void describe(Visitor& v, ModelConfig& c) {
  v.integer("vocab_size", c.vocab_size, in_range(2, 65536), "V; must equal the tokenizer's vocab size");
  v.integer("num_layers", c.num_layers, in_range(1, 256), "physical transformer layers L");
  v.integer("model_dim", c.model_dim, in_range(1, 65536), "d");
  v.integer("num_heads", c.num_heads, in_range(1, 65536), "query heads H; must divide model_dim");
  v.integer("num_kv_heads", c.num_kv_heads, in_range(1, 65536), "key/value heads Hkv; must divide num_heads (GQA)");
  v.number("mlp_mult", c.mlp_mult, Bounds{0.0, 64.0, true}, "MLP hidden size f = int(mlp_mult * d) (3.0, 2.8, 4.0)");
  v.number("leaky_relu_slope", c.leaky_relu_slope, any(), "negative slope of the LeakyReLU before squaring");
  v.integer("seq_len", c.seq_len, in_range(2, 1 << 20), "T: training sequence length and eval window");
  v.section("rope", "partial rotary position embedding", [&](Visitor& s) { describe(s, c.rope); });
  v.number("qk_gain_init", c.qk_gain_init, any(), "initial per-head q_gain (1.5; #1334: 5.0)");
  v.number("logit_softcap", c.logit_softcap, positive(), "c in logits = c*tanh(z/c)");
  v.boolean("tie_embeddings", c.tie_embeddings, "tied head; false adds a zero-initialised lm_head.weight");
  v.number("tok_emb_init_std", c.tok_emb_init_std, at_least(0), "std of tok_emb's normal init");
  v.boolean("ln_scale", c.ln_scale, "scale block i's normed inputs by 1/sqrt(i+1)");
  v.integer("xsa_last_n", c.xsa_last_n, at_least(0), "XSA on the last N physical layers (#549: 4; later: all)");
  v.section("bigram", "BigramHash embedding (SPEC 3.2 step 1)", [&](Visitor& s) { describe(s, c.bigram); });
  v.boolean("smear_gate", c.smear_gate, "SmearGate mixing each position with the previous one");
  v.section("value_embed", "value embeddings (SPEC 3.2 step 6)", [&](Visitor& s) { describe(s, c.value_embed); });
  v.boolean("sigmoid_skip_gates", c.sigmoid_skip_gates, "sigmoid-gated U-Net skips (#1204 onward)");
  v.section("recurrence", "depth recurrence (SPEC 3.3)", [&](Visitor& s) { describe(s, c.recurrence); });
  v.section("parallel_residual", "parallel residual lanes, #1334's form (SPEC 3.3)",
            [&](Visitor& s) { describe(s, c.parallel_residual); });
}

void describe(Visitor& v, WarmdownConfig& c) {
  enumeration(v, "form", c.form,
              "wallclock: warmdown_ms = iters x mean step ms under the cap (#549); iterations: linear "
              "decay over the last iters of train.iterations; fraction: last frac of the cap (#1334)");
  v.integer("iters", c.iters, at_least(0), "warmdown length in iterations");
  v.number("frac", c.frac, in_range(0, 1), "warmdown fraction of the wall-clock cap (fraction form)");
  v.number("min_lr_scale", c.min_lr_scale, in_range(0, 1), "floor of the lr scale (fraction form)");
}

void describe(Visitor& v, TrainConfig& c) {
  v.integer("iterations", c.iterations, at_least(0), "maximum training steps");
  v.integer("batch_tokens", c.batch_tokens, at_least(1), "global batch B_tok in tokens (a multiple of seq_len)");
  v.integer("grad_accum_steps", c.grad_accum_steps, at_least(0), "A; 0 = 8 / world size, as the records");
  v.number("wallclock_cap_s", c.wallclock_cap_s, at_least(0), "training time cap in seconds (0 = none)");
  v.section("warmdown", "learning-rate warmdown (SPEC 4.3)", [&](Visitor& s) { describe(s, c.warmdown); });
  v.number("grad_clip_norm", c.grad_clip_norm, at_least(0), "global L2 gradient clip (0 = off)");
  enumeration(v, "clip_scope", c.clip_scope,
              "rank_averaged = clip the rank-averaged gradient; local_rank = each rank's own ([record quirk] #549)");
  v.section("ema", "exponential moving average of the weights", [&](Visitor& s) {
    s.boolean("enabled", c.ema.enabled, "keep an fp32 EMA and export it");
    s.number("decay", c.ema.decay, in_range(0, 1), "EMA decay per step");
  });
  v.section("swa", "stochastic weight averaging", [&](Visitor& s) {
    s.boolean("enabled", c.swa.enabled, "accumulate SWA snapshots");
    s.integer("every", c.swa.every, at_least(1), "steps between snapshots");
    s.number("start_scale", c.swa.start_scale, in_range(0, 1), "snapshot while the lr scale is below this");
    s.boolean("apply", c.swa.apply, "export the SWA average ([record quirk] #549 accumulates but never applies)");
  });
  v.section("qat", "late quantization-aware training", [&](Visitor& s) {
    s.boolean("enabled", c.qat.enabled, "fake-quantise weights to int6 late in training");
    s.number("start_scale", c.qat.start_scale, in_range(0, 1), "switch on once the lr scale is below this");
    enumeration(s, "scope", c.qat.scope,
                "all_int6 = every matrix exported as int6 (intended); record_small_projections = "
                "only the small projections ([record quirk] #549)");
  });
  v.integer("log_every", c.log_every, at_least(0), "steps between log lines (0 = only the end)");
  v.integer("val_every", c.val_every, at_least(0), "steps between validations (0 = only the end)");
  v.integer("checkpoint_every", c.checkpoint_every, at_least(0), "steps between checkpoints (0 = by time only)");
  v.number("checkpoint_every_s", c.checkpoint_every_s, at_least(0),
           "seconds of training time between checkpoints (0 = by steps only); the saves count in the training time");
}

void describe(Visitor& v, AdamConfig& c) {
  v.number("lr", c.lr, at_least(0), "base learning rate");
  v.number("beta1", c.beta1, in_range(0, 1), "AdamW beta1");
  v.number("beta2", c.beta2, in_range(0, 1), "AdamW beta2");
  v.number("eps", c.eps, positive(), "AdamW epsilon");
  v.number("weight_decay", c.weight_decay, at_least(0), "decoupled weight decay");
}

void describe(Visitor& v, MuonConfig& c) {
  v.number("lr", c.lr, at_least(0), "base learning rate");
  v.number("momentum", c.momentum, in_range(0, 1), "momentum after warmup");
  v.number("momentum_warmup_start", c.momentum_warmup_start, in_range(0, 1), "momentum at step 0");
  v.integer("momentum_warmup_steps", c.momentum_warmup_steps, at_least(0), "linear momentum warmup length");
  v.boolean("nesterov", c.nesterov, "Nesterov momentum");
  v.integer("ns_steps", c.ns_steps, in_range(1, 100), "Newton-Schulz iterations");
  v.number_list("ns_coefficients", c.ns_coefficients, any(), "Newton-Schulz (a, b, c)");
  v.number("weight_decay", c.weight_decay, at_least(0), "decoupled weight decay");
  v.boolean("row_normalize", c.row_normalize, "MuonEq-R: unit-normalise rows before Newton-Schulz (#1285/#1334)");
}

void describe(Visitor& v, OptimConfig& c) {
  v.section("muon", "matrix group: Muon (SPEC 4.2)", [&](Visitor& s) { describe(s, c.muon); });
  v.section("embed", "embed group: AdamW; lr applies with tied embeddings", [&](Visitor& s) { describe(s, c.embed); });
  v.number("untied_embed_lr", c.untied_embed_lr, at_least(0), "tok_emb lr when embeddings are untied");
  v.section("head", "untied lm_head: AdamW", [&](Visitor& s) { describe(s, c.head); });
  v.section("scalar", "scalar group: AdamW", [&](Visitor& s) { describe(s, c.scalar); });
}

void describe(Visitor& v, ExportConfig& c) {
  v.boolean("enabled", c.enabled, "quantize and pack the artifact after training");
  enumeration(v, "int6_method", c.int6_method, "gptq_lite (#549) or full gptq (#1019/#1334)");
  v.number_list("clip_percentiles", c.clip_percentiles, Bounds{0.0, 1.0, true},
                "per-row clip percentiles tried by the int6 search (SPEC 5.2)");
  v.number("int8_percentile", c.int8_percentile, Bounds{0.0, 1.0, true}, "int8 per-row clip percentile");
  v.integer("passthrough_max_numel", c.passthrough_max_numel, at_least(0),
            "tensors with at most this many elements are stored as fp16 / as is");
  v.section("gptq", "full GPTQ (SPEC 5.2)", [&](Visitor& s) {
    enumeration(s, "calibration", c.gptq.calibration, "Hessians from train batches or model-generated sequences");
    s.integer("calibration_batches", c.gptq.calibration_batches, at_least(1), "calibration sequences of seq_len");
    s.number("generation_temperature", c.gptq.generation_temperature, positive(),
             "sampling temperature of model-generated calibration sequences");
    s.integer("generation_start_token", c.gptq.generation_start_token, at_least(0),
              "first token of each generated sequence (1 = <s> in the challenge tokenizers)");
    s.number("damping", c.gptq.damping, at_least(0), "H += damping * mean(diag H) * I");
    s.integer("damping_applications", c.gptq.damping_applications, in_range(1, 10),
              "how many times damping is added ([record quirk] the record applies it twice)");
    s.integer("block_size", c.gptq.block_size, at_least(1), "columns per GPTQ block");
    s.number("reserve_s", c.gptq.reserve_s, at_least(0), "seconds of the training budget reserved for calibration");
  });
  enumeration(v, "compressor", c.compressor, "lzma (xz) or brotli");
  v.integer("lzma_preset", c.lzma_preset, in_range(0, 9), "xz preset (#549: 6, #1019: 9)");
  v.integer("brotli_quality", c.brotli_quality, in_range(0, 11), "brotli quality");
  v.integer("byte_shuffle_stride", c.byte_shuffle_stride, in_range(0, 16),
            "byte-shuffle the blob with this stride before compressing (0 = off; #1334: 2)");
  v.boolean("prune_to_budget", c.prune_to_budget, "zero the fewest +-1 entries needed to fit budget_bytes");
  v.integer("budget_bytes", c.budget_bytes, at_least(1), "artifact budget in bytes (decimal)");
  v.boolean("count_code", c.count_code, "count the compressed evaluator source in the artifact");
}

void describe(Visitor& v, EvalConfig& c) {
  v.boolean("sliding", c.sliding, "report plain sliding-window val_bpb (SPEC 6.2)");
  v.integer("stride", c.stride, at_least(1), "sliding-window stride S");
  v.integer("batch_windows", c.batch_windows, at_least(1), "windows per eval batch");
  enumeration(v, "tail", c.tail,
              "exactly_once = every target scored once (SPEC 6.2); record_rescore = tail windows rescore "
              "the last stride targets ([record quirk] #549)");
  v.section("ttt", "score-first test-time training (SPEC 6.3)", [&](Visitor& s) {
    s.boolean("enabled", c.ttt.enabled, "score each chunk, then train on it");
    s.number("lr", c.ttt.lr, at_least(0), "peak SGD lr (cosine over chunks)");
    s.integer("epochs", c.ttt.epochs, at_least(1), "epochs over each chunk");
    s.integer("chunk_tokens", c.ttt.chunk_tokens, at_least(1), "targets per chunk");
    s.integer("batch_seqs", c.ttt.batch_seqs, at_least(1), "sequences per TTT batch");
    s.number("momentum", c.ttt.momentum, in_range(0, 1), "SGD momentum (buffer kept across chunks)");
    s.number("grad_clip", c.ttt.grad_clip, at_least(0), "gradient clip (0 = off)");
    s.integer("freeze_blocks", c.ttt.freeze_blocks, at_least(0), "leading blocks kept frozen");
  });
  v.section("slot", "test-time delta on the final hidden state (SPEC 6.4)", [&](Visitor& s) {
    enumeration(s, "variant", c.slot.variant,
                "none; standard (#1084/#1150) and causal_shared (#1333) violate C1 and are labelled "
                "non-compliant; causal = one delta per window (compliant)");
    enumeration(s, "placement", c.slot.placement, "delta added before or after the final norm");
    s.number("lr", c.slot.lr, at_least(0), "AdamW lr (constant)");
    s.integer("steps", c.slot.steps, at_least(1), "AdamW steps per batch");
    s.number("beta1", c.slot.beta1, in_range_below(0, 1), "AdamW beta1");
    s.number("beta2", c.slot.beta2, in_range_below(0, 1), "AdamW beta2");
    s.number("eps", c.slot.eps, positive(), "AdamW epsilon");
    s.number("weight_decay", c.slot.weight_decay, at_least(0), "AdamW weight decay");
  });
  v.number("wallclock_budget_s", c.wallclock_budget_s, at_least(0), "evaluation time budget (0 = none)");
}

}  // namespace

void describe(Visitor& v, Config& c) {
  v.string("name", c.name, "name of the record attempt; names the output directory");
  v.string("description", c.description, "free text");
  v.integer("seed", c.seed, at_least(0), "seed for initialisation and data order");
  enumeration(v, "backend", c.backend, "compute backend: auto picks cuda when a GPU is present, else cpu");
  v.integer("threads", c.threads, at_least(0), "CPU threads (0 = all cores)");
  v.path("output_dir", c.output_dir, "where runs write checkpoints, logs and results");
  v.section("data", "token shards and tokenizer (SPEC 2)", [&](Visitor& s) { describe(s, c.data); });
  v.section("model", "the #549 model family (SPEC 3)", [&](Visitor& s) { describe(s, c.model); });
  v.section("train", "training loop, schedule and averaging (SPEC 4)", [&](Visitor& s) { describe(s, c.train); });
  v.section("optim", "optimizers (SPEC 4.2)", [&](Visitor& s) { describe(s, c.optim); });
  v.section("export", "quantization and packing (SPEC 5)", [&](Visitor& s) { describe(s, c.export_); });
  v.section("eval", "evaluation modes (SPEC 6)", [&](Visitor& s) { describe(s, c.eval); });
  v.section("distributed", "multi-rank training (SPEC 8)", [&](Visitor& s) {
    s.boolean("parallel_muon", c.distributed.parallel_muon,
              "reduce-scatter matrix grads, Muon on the local shard, all-gather updates (the only mode; "
              "false is refused until multi-rank training lands, issue 15)");
    s.boolean("overlap_comm", c.distributed.overlap_comm,
              "overlap communication with compute on GPUs (the only mode; false is refused until multi-rank "
              "training lands, issue 15)");
  });
}

// ----- cross-field validation ----------------------------------------------------------------
namespace {

class Checker {
 public:
  explicit Checker(const Provenance& provenance) : provenance_(provenance) {}
  void require(bool ok, const std::string& path, const std::string& what) const {
    if (!ok) fail_at(provenance_, path, what);
  }

 private:
  const Provenance& provenance_;
};

void check_layer_list(const Checker& check, const std::vector<std::int64_t>& layers, const std::string& path,
                      std::int64_t num_layers, bool unique) {
  std::set<std::int64_t> seen;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    check.require(layers[i] < num_layers, join_index(path, i),
                  cat(layers[i], " is not a layer index: model.num_layers is ", num_layers));
    if (unique) check.require(seen.insert(layers[i]).second, join_index(path, i), cat("layer ", layers[i], " is listed twice"));
  }
}

}  // namespace

void validate(const Config& c, const Provenance& provenance) {
  Checker check(provenance);
  const ModelConfig& m = c.model;
  check.require(m.model_dim % m.num_heads == 0, "model.num_heads",
                cat(m.num_heads, " does not divide model.model_dim = ", m.model_dim));
  check.require(m.num_heads % m.num_kv_heads == 0, "model.num_kv_heads",
                cat(m.num_kv_heads, " does not divide model.num_heads = ", m.num_heads));
  const std::int64_t hd = m.model_dim / m.num_heads;
  check.require(m.rope.dims == 0 || (m.rope.dims % 2 == 0 && m.rope.dims >= 4 && m.rope.dims <= hd), "model.rope.dims",
                cat(m.rope.dims, " must be 0 or an even number in [4, head_dim = ", hd, "]"));
  check.require(m.mlp_hidden() >= 1, "model.mlp_mult", cat(m.mlp_mult, " gives an empty MLP"));
  check.require(m.xsa_last_n <= m.num_layers, "model.xsa_last_n",
                cat(m.xsa_last_n, " exceeds model.num_layers = ", m.num_layers));
  if (m.value_embed.enabled)
    check_layer_list(check, m.value_embed.layers, "model.value_embed.layers", m.num_layers, true);
  check_layer_list(check, m.recurrence.virtual_layers, "model.recurrence.virtual_layers", m.num_layers, false);
  check.require(!(m.recurrence.start_step > 0 && m.recurrence.start_frac > 0), "model.recurrence.start_frac",
                "set either start_step or start_frac, not both");
  check.require(m.recurrence.start_frac == 0 || c.train.wallclock_cap_s > 0, "model.recurrence.start_frac",
                "a fraction of the wall-clock cap needs train.wallclock_cap_s > 0");
  check.require(m.parallel_residual.start_layer < m.num_layers, "model.parallel_residual.start_layer",
                cat(m.parallel_residual.start_layer, " is not a layer index: model.num_layers is ", m.num_layers));
  check.require(m.parallel_residual.start_layer < 0 || m.parallel_residual.start_layer >= m.num_layers / 2,
                "model.parallel_residual.start_layer",
                cat(m.parallel_residual.start_layer, " is an encoder layer; parallel lanes start in the decoder (>= ",
                    m.num_layers / 2, ")"));

  check.require(c.train.batch_tokens % m.seq_len == 0, "train.batch_tokens",
                cat(c.train.batch_tokens, " is not a multiple of model.seq_len = ", m.seq_len));
  check.require(c.train.warmdown.form != WarmdownForm::wallclock || c.train.wallclock_cap_s > 0,
                "train.warmdown.form", "\"wallclock\" needs train.wallclock_cap_s > 0");
  check.require(c.train.warmdown.form != WarmdownForm::fraction || c.train.wallclock_cap_s > 0,
                "train.warmdown.form", "\"fraction\" needs train.wallclock_cap_s > 0");
  check.require(c.optim.muon.ns_coefficients.size() == 3, "optim.muon.ns_coefficients",
                cat("needs exactly 3 numbers (a, b, c), got ", c.optim.muon.ns_coefficients.size()));
  check.require(!c.export_.clip_percentiles.empty(), "export.clip_percentiles", "needs at least one percentile");
  check.require(c.export_.gptq.generation_start_token < m.vocab_size, "export.gptq.generation_start_token",
                cat(c.export_.gptq.generation_start_token, " is not below model.vocab_size = ", m.vocab_size));
  check.require(c.eval.stride <= m.seq_len, "eval.stride",
                cat(c.eval.stride, " exceeds the window model.seq_len = ", m.seq_len));
  check.require(c.eval.ttt.freeze_blocks <= m.num_layers, "eval.ttt.freeze_blocks",
                cat(c.eval.ttt.freeze_blocks, " exceeds model.num_layers = ", m.num_layers));
  // One rank has nothing to communicate, so both knobs change nothing today; the alternatives
  // they would select (replicated Muon after an all-reduce, communication after compute) are
  // not written. Refused rather than accepted and ignored.
  check.require(c.distributed.parallel_muon, "distributed.parallel_muon",
                "false (replicated Muon after a gradient all-reduce) is not implemented; multi-rank training "
                "lands with issue 15 and uses Parallel Muon");
  check.require(c.distributed.overlap_comm, "distributed.overlap_comm",
                "false (communication after compute) is not implemented; multi-rank training lands with issue 15 "
                "and overlaps communication with compute");
}

json to_json(const Config& c) {
  Config copy = c;  // visitors take mutable references; writing never changes the value
  return write_json([&](Visitor& v) { describe(v, copy); });
}

json model_to_json(const ModelConfig& m) {
  Config c;
  c.model = m;
  return to_json(c)["model"];
}

std::vector<KeyDifference> section_differences(const json& recorded, const json& now, const std::string& section) {
  const json a = recorded.flatten(), b = now.flatten();
  auto key = [&](const std::string& pointer) {
    std::string k = section;
    for (char ch : pointer) {
      if (ch != '/') k += ch;
      else if (!k.empty()) k += '.';
    }
    return k;
  };
  std::map<std::string, KeyDifference> out;  // sorted by key
  for (const auto& [ptr, v] : a.items())
    if (!b.contains(ptr) || b[ptr] != v) out[ptr] = {key(ptr), v.dump(), b.contains(ptr) ? b[ptr].dump() : "(absent)"};
  for (const auto& [ptr, v] : b.items())
    if (!a.contains(ptr)) out[ptr] = {key(ptr), "(absent)", v.dump()};
  std::vector<KeyDifference> list;
  for (auto& [ptr, d] : out) list.push_back(std::move(d));
  return list;
}

std::string describe_differences(const std::vector<KeyDifference>& diffs, const std::string& where,
                                 std::size_t max_listed) {
  std::string text;
  for (std::size_t i = 0; i < diffs.size() && i < max_listed; ++i)
    text += cat(i ? "; " : "", diffs[i].key, " = ", diffs[i].recorded, " in ", where, ", ", diffs[i].now, " in the config");
  if (diffs.size() > max_listed) text += cat("; and ", diffs.size() - max_listed, " more");
  return text;
}

void check_recorded_model(const json& recorded, const ModelConfig& now, const std::string& origin, const char* what,
                          const char* made, bool allow_mismatch, std::FILE* log) {
  const auto diffs = section_differences(recorded, model_to_json(now), "model");
  if (diffs.empty()) return;
  const std::string list = describe_differences(diffs, cat("the ", what));
  if (!allow_mismatch)
    fail(ErrorKind::config, origin, ": was ", made, " with a different model config: ", list, "; use the config it was ",
         made, " with (a run's config.json), or pass --allow-config-mismatch to use this one");
  if (log != nullptr)
    std::fprintf(log, "warning: --allow-config-mismatch: %s was %s with another model config (%s); using the config's\n",
                 origin.c_str(), made, list.c_str());
}

std::vector<SchemaRow> schema() {
  Config defaults;
  return schema_rows([&](Visitor& v) { describe(v, defaults); });
}

}  // namespace pgolf::config
