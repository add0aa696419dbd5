#pragma once
// The whole configuration of a record attempt: data, model, training, optimizers, export,
// evaluation and distribution. Defaults are the PR #549 record (SPEC section 10, `pr549`),
// including its training-side [record quirk]s, so an empty config reproduces #549.
// Fields are declared once, in config.cpp's describe() functions, which drive JSON reading,
// writing, validation messages and `pgolf inspect config --schema`.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "config/json_schema.hpp"

namespace pgolf::config {

enum class Backend { automatic, cpu, cuda };
enum class WarmdownForm { wallclock, iterations, fraction };
enum class ClipScope { rank_averaged, local_rank };
enum class QatScope { all_int6, record_small_projections };
enum class RecurrenceSkip { clamp, none_beyond };
enum class ParallelSkip { both_lanes, dead_x };
enum class Int6Method { gptq_lite, gptq };
enum class CalibrationSource { train, generated };
enum class Compressor { lzma, brotli };
enum class SlidingTail { exactly_once, record_rescore };
enum class SlotVariant { none, standard, causal_shared, causal };
enum class SlotPlacement { before_norm, after_norm };

// ----- enum spellings --------------------------------------------------------------------
template <> struct EnumNames<Backend> {
  static constexpr std::array<std::pair<Backend, const char*>, 3> values{
      {{Backend::automatic, "auto"}, {Backend::cpu, "cpu"}, {Backend::cuda, "cuda"}}};
};
template <> struct EnumNames<WarmdownForm> {
  static constexpr std::array<std::pair<WarmdownForm, const char*>, 3> values{
      {{WarmdownForm::wallclock, "wallclock"}, {WarmdownForm::iterations, "iterations"},
       {WarmdownForm::fraction, "fraction"}}};
};
template <> struct EnumNames<ClipScope> {
  static constexpr std::array<std::pair<ClipScope, const char*>, 2> values{
      {{ClipScope::rank_averaged, "rank_averaged"}, {ClipScope::local_rank, "local_rank"}}};
};
template <> struct EnumNames<QatScope> {
  static constexpr std::array<std::pair<QatScope, const char*>, 2> values{
      {{QatScope::all_int6, "all_int6"}, {QatScope::record_small_projections, "record_small_projections"}}};
};
template <> struct EnumNames<RecurrenceSkip> {
  static constexpr std::array<std::pair<RecurrenceSkip, const char*>, 2> values{
      {{RecurrenceSkip::clamp, "clamp"}, {RecurrenceSkip::none_beyond, "none_beyond"}}};
};
template <> struct EnumNames<ParallelSkip> {
  static constexpr std::array<std::pair<ParallelSkip, const char*>, 2> values{
      {{ParallelSkip::both_lanes, "both_lanes"}, {ParallelSkip::dead_x, "dead_x"}}};
};
template <> struct EnumNames<Int6Method> {
  static constexpr std::array<std::pair<Int6Method, const char*>, 2> values{
      {{Int6Method::gptq_lite, "gptq_lite"}, {Int6Method::gptq, "gptq"}}};
};
template <> struct EnumNames<CalibrationSource> {
  static constexpr std::array<std::pair<CalibrationSource, const char*>, 2> values{
      {{CalibrationSource::train, "train"}, {CalibrationSource::generated, "generated"}}};
};
template <> struct EnumNames<Compressor> {
  static constexpr std::array<std::pair<Compressor, const char*>, 2> values{
      {{Compressor::lzma, "lzma"}, {Compressor::brotli, "brotli"}}};
};
template <> struct EnumNames<SlidingTail> {
  static constexpr std::array<std::pair<SlidingTail, const char*>, 2> values{
      {{SlidingTail::exactly_once, "exactly_once"}, {SlidingTail::record_rescore, "record_rescore"}}};
};
template <> struct EnumNames<SlotVariant> {
  static constexpr std::array<std::pair<SlotVariant, const char*>, 4> values{
      {{SlotVariant::none, "none"}, {SlotVariant::standard, "standard"},
       {SlotVariant::causal_shared, "causal_shared"}, {SlotVariant::causal, "causal"}}};
};
template <> struct EnumNames<SlotPlacement> {
  static constexpr std::array<std::pair<SlotPlacement, const char*>, 2> values{
      {{SlotPlacement::before_norm, "before_norm"}, {SlotPlacement::after_norm, "after_norm"}}};
};

struct DataConfig {
  std::string train_files = "data/datasets/fineweb10B_sp1024/fineweb_train_*.bin";
  std::string val_files = "data/datasets/fineweb10B_sp1024/fineweb_val_*.bin";
  std::string tokenizer = "data/tokenizers/fineweb_1024_bpe.model";
  bool trim_val = true;
  std::int64_t val_max_tokens = 0;
};

struct BigramConfig {
  bool enabled = true;
  std::int64_t vocab_size = 1536;
  std::int64_t dim = 128;
  double scale_init = 0.05;
};

struct ValueEmbedConfig {
  bool enabled = true;
  std::int64_t dim = 128;
  std::vector<std::int64_t> layers = {9, 10};
  double scale_init = 0.1;
  double init_std = 0.01;
};

struct RopeConfig {
  std::int64_t dims = 16;
  double base = 10000.0;
  std::int64_t train_len = 1024;
};

struct RecurrenceConfig {
  std::vector<std::int64_t> virtual_layers;  // empty = off
  std::int64_t start_step = 0;
  double start_frac = 0.0;
  RecurrenceSkip skip_policy = RecurrenceSkip::clamp;
};

struct ParallelResidualConfig {
  std::int64_t start_layer = -1;  // -1 = off
  double lane_merge_init = 0.5;
  ParallelSkip skip_policy = ParallelSkip::both_lanes;
};

struct ModelConfig {
  std::int64_t vocab_size = 1024;
  std::int64_t num_layers = 11;
  std::int64_t model_dim = 512;
  std::int64_t num_heads = 8;
  std::int64_t num_kv_heads = 4;
  double mlp_mult = 3.0;
  double leaky_relu_slope = 0.5;
  std::int64_t seq_len = 2048;
  RopeConfig rope;
  double qk_gain_init = 1.5;
  double logit_softcap = 30.0;
  bool tie_embeddings = true;
  double tok_emb_init_std = 0.005;
  bool ln_scale = true;
  std::int64_t xsa_last_n = 4;
  BigramConfig bigram;
  bool smear_gate = true;
  ValueEmbedConfig value_embed;
  bool sigmoid_skip_gates = false;
  RecurrenceConfig recurrence;
  ParallelResidualConfig parallel_residual;

  std::int64_t head_dim() const { return model_dim / num_heads; }
  std::int64_t mlp_hidden() const { return static_cast<std::int64_t>(mlp_mult * static_cast<double>(model_dim)); }
};

struct WarmdownConfig {
  WarmdownForm form = WarmdownForm::wallclock;
  std::int64_t iters = 3500;
  double frac = 0.667;
  double min_lr_scale = 0.0;
};

struct EmaConfig {
  bool enabled = true;
  double decay = 0.997;
};

struct SwaConfig {
  bool enabled = true;
  std::int64_t every = 50;
  double start_scale = 0.2;
  bool apply = false;
};

struct QatConfig {
  bool enabled = true;
  double start_scale = 0.15;
  QatScope scope = QatScope::record_small_projections;
};

struct TrainConfig {
  std::int64_t iterations = 20000;
  std::int64_t batch_tokens = 786432;
  std::int64_t grad_accum_steps = 0;  // 0 = 8 / world size
  double wallclock_cap_s = 600.0;     // 0 = no cap
  WarmdownConfig warmdown;
  double grad_clip_norm = 0.3;
  ClipScope clip_scope = ClipScope::local_rank;
  EmaConfig ema;
  SwaConfig swa;
  QatConfig qat;
  std::int64_t log_every = 500;
  std::int64_t val_every = 4000;
  std::int64_t checkpoint_every = 0;
  // Also save once this much training time has passed since the last save, so a long run is
  // never far from a checkpoint. Saves count in the training time; with the default a record
  // run (600 s cap) writes none before the cap stops it.
  double checkpoint_every_s = 600.0;
};

struct AdamConfig {
  double lr = 0.025;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.04;
};

struct MuonConfig {
  double lr = 0.025;
  double momentum = 0.99;
  double momentum_warmup_start = 0.92;
  std::int64_t momentum_warmup_steps = 1500;
  bool nesterov = true;
  std::int64_t ns_steps = 5;
  std::vector<double> ns_coefficients = {3.4445, -4.7750, 2.0315};
  double weight_decay = 0.04;
  bool row_normalize = false;
};

struct OptimConfig {
  MuonConfig muon;
  AdamConfig embed{0.035, 0.9, 0.95, 1e-8, 0.04};
  double untied_embed_lr = 0.6;
  AdamConfig head{0.008, 0.9, 0.95, 1e-8, 0.0};  // #549 steps lm_head with plain Adam
  AdamConfig scalar{0.025, 0.9, 0.95, 1e-8, 0.04};
};

struct GptqConfig {
  CalibrationSource calibration = CalibrationSource::train;
  std::int64_t calibration_batches = 64;
  double generation_temperature = 0.8;
  std::int64_t generation_start_token = 1;  // <s> of the challenge tokenizers
  double damping = 0.01;
  std::int64_t damping_applications = 2;
  std::int64_t block_size = 128;
  double reserve_s = 10.0;
};

struct ExportConfig {
  bool enabled = true;
  Int6Method int6_method = Int6Method::gptq_lite;
  std::vector<double> clip_percentiles = {0.999, 0.9995, 0.9999, 0.99999, 1.0};
  double int8_percentile = 0.9999984;
  std::int64_t passthrough_max_numel = 65536;
  GptqConfig gptq;
  Compressor compressor = Compressor::lzma;
  std::int64_t lzma_preset = 6;
  std::int64_t brotli_quality = 11;
  std::int64_t byte_shuffle_stride = 0;
  bool prune_to_budget = false;
  std::int64_t budget_bytes = 16000000;
  bool count_code = true;
};

struct TttConfig {
  bool enabled = true;
  double lr = 0.002;
  std::int64_t epochs = 3;
  std::int64_t chunk_tokens = 32768;
  std::int64_t batch_seqs = 32;
  double momentum = 0.9;
  double grad_clip = 1.0;
  std::int64_t freeze_blocks = 0;
};

struct SlotConfig {
  SlotVariant variant = SlotVariant::none;
  SlotPlacement placement = SlotPlacement::before_norm;
  double lr = 1e-3;
  std::int64_t steps = 3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-5;
  double weight_decay = 1e-8;
};

struct EvalConfig {
  bool sliding = true;
  std::int64_t stride = 64;
  std::int64_t batch_windows = 32;
  SlidingTail tail = SlidingTail::exactly_once;
  TttConfig ttt;
  SlotConfig slot;
  double wallclock_budget_s = 600.0;
};

struct DistributedConfig {
  bool parallel_muon = true;
  bool overlap_comm = true;
};

struct Config {
  std::string name = "pr549";
  std::string description;
  std::int64_t seed = 1337;
  Backend backend = Backend::automatic;
  std::int64_t threads = 0;  // 0 = all cores
  std::string output_dir = "runs";
  DataConfig data;
  ModelConfig model;
  TrainConfig train;
  OptimConfig optim;
  ExportConfig export_;
  EvalConfig eval;
  DistributedConfig distributed;
};

// The schema: every field of Config with its bounds and documentation.
void describe(Visitor& v, Config& c);

// Cross-field rules (divisibility, layer indices in range, ...). Throws Error(config)
// naming the JSON path of the offending field.
void validate(const Config& c, const Provenance& provenance = {});

json to_json(const Config& c);
std::vector<SchemaRow> schema();

// The model section as to_json(Config) writes it (what checkpoints and artifacts record).
json model_to_json(const ModelConfig& m);

// A key (JSON path such as "model.xsa_last_n") whose value in a recorded section differs from
// the config in use; a value absent on one side is "(absent)".
struct KeyDifference {
  std::string key;
  std::string recorded;
  std::string now;
};
// Every leaf where `recorded` (a model section read from a file) and `now` differ, in key order,
// prefixed with `section`.
std::vector<KeyDifference> section_differences(const json& recorded, const json& now, const std::string& section);
// "model.xsa_last_n = 2 in <where>, 1 in the config; ..." (the first `max_listed`, then a count).
std::string describe_differences(const std::vector<KeyDifference>& diffs, const std::string& where,
                                 std::size_t max_listed = 8);

// The check of a model section recorded in weights (a checkpoint's model_config, an artifact's
// model) against the config's: Error(config) starting with `origin` and naming every differing
// key, or, with allow_mismatch, a warning on `log` (when not null). `what` names the weights
// ("checkpoint", "artifact"), `made` how they came to be ("trained", "packed").
void check_recorded_model(const json& recorded, const ModelConfig& now, const std::string& origin, const char* what,
                          const char* made, bool allow_mismatch, std::FILE* log);

}  // namespace pgolf::config
