#include <gtest/gtest.h>

#include <functional>
#include <map>

#include "common/error.hpp"
#include "config/config_loader.hpp"
#include "support/test_support.hpp"

namespace pgolf::config {
namespace {

// An in-memory file system for config files, keyed by normalised absolute path.
struct VirtualFiles {
  std::map<std::string, std::string> files;
  FileReader reader() const {
    return [this](const std::filesystem::path& p) {
      auto it = files.find(p.lexically_normal().string());
      if (it == files.end()) fail(ErrorKind::io, p.string(), ": cannot open: No such file or directory");
      return it->second;
    };
  }
};

using test::expect_error;

LoadedConfig load_text(const std::string& text, const std::vector<std::string>& sets = {}) {
  VirtualFiles vf;
  vf.files["/virtual/configs/c.json"] = text;
  return load_config(std::filesystem::path("/virtual/configs/c.json"), sets, vf.reader());
}

void expect_config_error(const std::string& text, const std::vector<std::string>& fragments,
                         const std::vector<std::string>& sets = {}) {
  expect_error([&] { load_text(text, sets); }, ErrorKind::config, fragments);
}

// ----- defaults --------------------------------------------------------------------------------
TEST(ConfigDefaults, AreThePr549Record) {
  // SPEC section 10, `pr549`, value by value.
  const Config c;
  const ModelConfig& m = c.model;
  EXPECT_EQ(m.num_layers, 11);
  EXPECT_EQ(m.model_dim, 512);
  EXPECT_EQ(m.num_heads, 8);
  EXPECT_EQ(m.num_kv_heads, 4);
  EXPECT_EQ(m.vocab_size, 1024);
  EXPECT_EQ(m.mlp_hidden(), 1536);
  EXPECT_TRUE(m.bigram.enabled);
  EXPECT_EQ(m.bigram.vocab_size, 1536);
  EXPECT_EQ(m.bigram.dim, 128);
  EXPECT_DOUBLE_EQ(m.bigram.scale_init, 0.05);
  EXPECT_TRUE(m.smear_gate);
  EXPECT_EQ(m.xsa_last_n, 4);
  EXPECT_EQ(m.rope.dims, 16);
  EXPECT_EQ(m.rope.train_len, 1024);
  EXPECT_DOUBLE_EQ(m.rope.base, 10000.0);
  EXPECT_TRUE(m.ln_scale);
  EXPECT_TRUE(m.value_embed.enabled);
  EXPECT_EQ(m.value_embed.dim, 128);
  EXPECT_EQ(m.value_embed.layers, (std::vector<std::int64_t>{9, 10}));
  EXPECT_DOUBLE_EQ(m.qk_gain_init, 1.5);
  EXPECT_DOUBLE_EQ(m.logit_softcap, 30.0);
  EXPECT_TRUE(m.tie_embeddings);
  EXPECT_EQ(m.seq_len, 2048);
  EXPECT_TRUE(m.recurrence.virtual_layers.empty());
  EXPECT_EQ(m.parallel_residual.start_layer, -1);

  const OptimConfig& o = c.optim;
  EXPECT_DOUBLE_EQ(o.muon.lr, 0.025);
  EXPECT_DOUBLE_EQ(o.muon.weight_decay, 0.04);
  EXPECT_DOUBLE_EQ(o.muon.momentum, 0.99);
  EXPECT_DOUBLE_EQ(o.muon.momentum_warmup_start, 0.92);
  EXPECT_EQ(o.muon.momentum_warmup_steps, 1500);
  EXPECT_EQ(o.muon.ns_steps, 5);
  EXPECT_EQ(o.muon.ns_coefficients, (std::vector<double>{3.4445, -4.7750, 2.0315}));
  EXPECT_FALSE(o.muon.row_normalize);
  EXPECT_DOUBLE_EQ(o.embed.lr, 0.035);
  EXPECT_DOUBLE_EQ(o.scalar.lr, 0.025);
  for (const AdamConfig* a : {&o.embed, &o.scalar}) {
    EXPECT_DOUBLE_EQ(a->beta1, 0.9);
    EXPECT_DOUBLE_EQ(a->beta2, 0.95);
    EXPECT_DOUBLE_EQ(a->eps, 1e-8);
    EXPECT_DOUBLE_EQ(a->weight_decay, 0.04);
  }

  const TrainConfig& t = c.train;
  EXPECT_DOUBLE_EQ(t.grad_clip_norm, 0.3);
  EXPECT_EQ(t.clip_scope, ClipScope::local_rank);
  EXPECT_TRUE(t.ema.enabled);
  EXPECT_DOUBLE_EQ(t.ema.decay, 0.997);
  EXPECT_EQ(t.swa.every, 50);
  EXPECT_FALSE(t.swa.apply);
  EXPECT_DOUBLE_EQ(t.qat.start_scale, 0.15);
  EXPECT_EQ(t.warmdown.form, WarmdownForm::wallclock);
  EXPECT_EQ(t.warmdown.iters, 3500);
  EXPECT_EQ(t.batch_tokens, 786432);
  EXPECT_DOUBLE_EQ(t.wallclock_cap_s, 600.0);

  EXPECT_EQ(c.export_.int6_method, Int6Method::gptq_lite);
  EXPECT_EQ(c.export_.clip_percentiles, (std::vector<double>{0.999, 0.9995, 0.9999, 0.99999, 1.0}));
  EXPECT_EQ(c.export_.compressor, Compressor::lzma);
  EXPECT_EQ(c.export_.lzma_preset, 6);
  EXPECT_EQ(c.export_.budget_bytes, 16000000);

  const EvalConfig& e = c.eval;
  EXPECT_EQ(e.stride, 64);
  EXPECT_TRUE(e.ttt.enabled);
  EXPECT_DOUBLE_EQ(e.ttt.lr, 0.002);
  EXPECT_EQ(e.ttt.epochs, 3);
  EXPECT_EQ(e.ttt.chunk_tokens, 32768);
  EXPECT_EQ(e.ttt.batch_seqs, 32);
  EXPECT_DOUBLE_EQ(e.ttt.momentum, 0.9);
  EXPECT_DOUBLE_EQ(e.ttt.grad_clip, 1.0);
  EXPECT_EQ(e.ttt.freeze_blocks, 0);
  EXPECT_EQ(e.slot.variant, SlotVariant::none);
  EXPECT_EQ(e.tail, SlidingTail::exactly_once);
  validate(c);
}

TEST(ConfigDefaults, ShippedPr549JsonResolvesToTheDefaults) {
  test::ScopedCwd cwd(test::source_dir());  // defaults' relative paths resolve against the cwd
  LoadedConfig shipped = load_config(test::source_dir() / "configs/pr549.json", {});
  LoadedConfig defaults = load_config(std::nullopt, {});
  json a = to_json(shipped.config), b = to_json(defaults.config);
  a.erase("description");
  b.erase("description");
  EXPECT_EQ(a, b);
}

TEST(ConfigDefaults, EveryShippedConfigLoads) {
  for (const char* name : {"pr549", "pr1084", "pr1150", "pr1334", "pr1333", "legal_best", "tiny"}) {
    SCOPED_TRACE(name);
    LoadedConfig c = load_config(test::source_dir() / "configs" / (std::string(name) + ".json"), {});
    EXPECT_EQ(c.config.name, name);
    EXPECT_FALSE(c.config.description.empty());
  }
}

TEST(ConfigDefaults, RecordConfigsCarryTheirRecipes) {
  auto load = [](const char* name) {
    return load_config(test::source_dir() / "configs" / (std::string(name) + ".json"), {}).config;
  };
  Config pr1334 = load("pr1334");
  EXPECT_EQ(pr1334.model.vocab_size, 4096);
  EXPECT_EQ(pr1334.model.mlp_hidden(), 2048);
  EXPECT_FALSE(pr1334.model.bigram.enabled);
  EXPECT_FALSE(pr1334.model.smear_gate);
  EXPECT_EQ(pr1334.model.xsa_last_n, 11);
  EXPECT_DOUBLE_EQ(pr1334.model.qk_gain_init, 5.0);
  EXPECT_EQ(pr1334.model.recurrence.virtual_layers.size(), 13u);
  EXPECT_EQ(pr1334.model.recurrence.start_step, 3000);
  EXPECT_EQ(pr1334.model.parallel_residual.start_layer, 7);
  EXPECT_TRUE(pr1334.optim.muon.row_normalize);
  EXPECT_EQ(pr1334.export_.int6_method, Int6Method::gptq);
  EXPECT_EQ(pr1334.export_.compressor, Compressor::brotli);
  EXPECT_FALSE(pr1334.eval.ttt.enabled);
  EXPECT_EQ(load("pr1150").model.mlp_hidden(), 1433);
  EXPECT_EQ(load("pr1084").eval.slot.variant, SlotVariant::standard);
  EXPECT_EQ(load("pr1333").eval.slot.variant, SlotVariant::causal_shared);
  Config best = load("legal_best");
  EXPECT_EQ(best.eval.slot.variant, SlotVariant::causal);
  EXPECT_TRUE(best.eval.ttt.enabled);
  EXPECT_EQ(best.model.vocab_size, 4096);  // inherited from pr1334 through "extends"
}

TEST(ConfigDefaults, TinyPointsAtTheBundledData) {
  Config tiny = load_config(test::source_dir() / "configs/tiny.json", {}).config;
  EXPECT_EQ(std::filesystem::path(tiny.data.tokenizer), test::bundled("tokenizers/fineweb_1024_bpe.model"));
  EXPECT_EQ(std::filesystem::path(tiny.data.val_files), test::bundled("fineweb_mini_sp1024/fineweb_val_*.bin"));
  EXPECT_EQ(std::filesystem::path(tiny.data.train_files), test::bundled("fineweb_mini_sp1024/fineweb_train_*.bin"));
}

// ----- layering ------------------------------------------------------------------------------
TEST(ConfigLayering, ExtendsMergesSectionsAndChildWins) {
  VirtualFiles vf;
  vf.files["/v/base.json"] = R"({"name": "base", "model": {"num_layers": 9, "value_embed": {"layers": [7, 8]}}})";
  vf.files["/v/sub/child.json"] =
      R"({"extends": "../base.json", "name": "child", "model": {"model_dim": 256, "value_embed": {"layers": [8]}}})";
  LoadedConfig c = load_config(std::filesystem::path("/v/sub/child.json"), {}, vf.reader());
  EXPECT_EQ(c.config.name, "child");
  EXPECT_EQ(c.config.model.num_layers, 9);    // from the base
  EXPECT_EQ(c.config.model.model_dim, 256);   // from the child
  EXPECT_EQ(c.config.model.value_embed.layers, (std::vector<std::int64_t>{8}));  // lists are replaced, not merged
  EXPECT_EQ(c.provenance.at("model.num_layers"), "/v/base.json");
  EXPECT_EQ(c.provenance.at("model.model_dim"), "/v/sub/child.json");
  EXPECT_EQ(c.layers, (std::vector<std::string>{"/v/base.json", "/v/sub/child.json"}));
}

TEST(ConfigLayering, RelativePathsResolveAgainstTheFileThatSetsThem) {
  VirtualFiles vf;
  vf.files["/v/base.json"] = R"({"data": {"tokenizer": "tok/a.model"}})";
  vf.files["/v/sub/child.json"] = R"({"extends": "../base.json", "data": {"val_files": "../shards/val_*.bin"}})";
  Config c = load_config(std::filesystem::path("/v/sub/child.json"), {}, vf.reader()).config;
  EXPECT_EQ(c.data.tokenizer, "/v/tok/a.model");
  EXPECT_EQ(c.data.val_files, "/v/shards/val_*.bin");
}

TEST(ConfigLayering, SetOverridesFilesWithTypedValues) {
  LoadedConfig c = load_text(R"({"model": {"num_layers": 9}})",
                             {"model.num_layers=7", "name=my run", "train.ema.enabled=false",
                              "model.value_embed.layers=[5, 6]", "eval.slot.lr=0.5", "data.tokenizer=/abs/t.model"});
  EXPECT_EQ(c.config.model.num_layers, 7);
  EXPECT_EQ(c.config.name, "my run");
  EXPECT_FALSE(c.config.train.ema.enabled);
  EXPECT_EQ(c.config.model.value_embed.layers, (std::vector<std::int64_t>{5, 6}));
  EXPECT_DOUBLE_EQ(c.config.eval.slot.lr, 0.5);
  EXPECT_EQ(c.config.data.tokenizer, "/abs/t.model");
  EXPECT_EQ(c.provenance.at("model.num_layers"), "--set model.num_layers=7");
}

TEST(ConfigLayering, ResolvedJsonRoundTrips) {
  LoadedConfig a = load_config(test::source_dir() / "configs/legal_best.json", {});
  json first = to_json(a.config);
  Config b = parse_config_text(first.dump(), "<round trip>");
  EXPECT_EQ(to_json(b), first);
}

TEST(ConfigLayering, SchemaDocumentsEveryField) {
  std::size_t leaves = 0;
  std::function<void(const json&)> count = [&](const json& j) {
    for (const auto& item : j.items()) item.value().is_object() ? count(item.value()) : void(++leaves);
  };
  count(to_json(Config{}));
  std::size_t fields = 0;
  for (const auto& row : schema()) {
    EXPECT_FALSE(row.doc.empty()) << row.path;
    if (row.type != "section") ++fields;
  }
  EXPECT_EQ(fields, leaves);
}

// ----- one test per error class: each names the JSON path and the bad value ------------------
TEST(ConfigErrors, UnknownKeyNamesPathAndSuggests) {
  expect_config_error(R"({"model": {"num_layrs": 3}})", {"model.num_layrs", "unknown key", "model.num_layers", "c.json"});
  expect_config_error(R"({"modle": {}})", {"modle", "unknown key", "\"model\""});
}

TEST(ConfigErrors, WrongTypeNamesPathAndValue) {
  expect_config_error(R"({"model": {"num_layers": "eleven"}})", {"model.num_layers", "expected an integer", "\"eleven\""});
  expect_config_error(R"({"model": {"num_layers": 3.5}})", {"model.num_layers", "expected an integer", "3.5"});
  expect_config_error(R"({"model": {"tie_embeddings": 1}})", {"model.tie_embeddings", "expected true or false", "1"});
  expect_config_error(R"({"name": 5})", {"name", "expected a string", "5"});
  expect_config_error(R"({"model": {"mlp_mult": "3"}})", {"model.mlp_mult", "expected a number", "\"3\""});
  expect_config_error(R"({"model": {"value_embed": {"layers": 9}}})", {"model.value_embed.layers", "expected a list", "9"});
  expect_config_error(R"({"model": {"value_embed": {"layers": [9, "x"]}}})", {"model.value_embed.layers[1]", "\"x\""});
  expect_config_error(R"({"model": 3})", {"model", "expected an object", "3"});
  expect_config_error(R"([1, 2])", {"c.json", "must be a JSON object"});
}

TEST(ConfigErrors, IntegralNumbersAreAcceptedForIntegers) {
  EXPECT_EQ(load_text(R"({"train": {"batch_tokens": 7.86432e5}})").config.train.batch_tokens, 786432);
}

TEST(ConfigErrors, OutOfRangeNamesPathValueAndBounds) {
  expect_config_error(R"({"model": {"num_layers": 0}})", {"model.num_layers", "0", "out of range", "[1, 256]"});
  expect_config_error(R"({"train": {"ema": {"decay": 1.5}}})", {"train.ema.decay", "1.5", "[0, 1]"});
  expect_config_error(R"({"optim": {"embed": {"eps": 0}}})", {"optim.embed.eps", "> 0"});
  // AdamW's bias correction 1 - beta^t is 0 at beta = 1: the SLOT betas exclude it.
  expect_config_error(R"({"eval": {"slot": {"beta2": 1}}})", {"eval.slot.beta2", "[0, 1)"});
  expect_config_error(R"({"model": {"value_embed": {"layers": [-1]}}})", {"model.value_embed.layers[0]", "-1", ">= 0"});
  expect_config_error("{}", {"model.num_layers", "--set model.num_layers=-3"}, {"model.num_layers=-3"});
}

TEST(ConfigErrors, UnknownEnumNameListsChoices) {
  expect_config_error(R"({"eval": {"slot": {"variant": "causel"}}})",
                      {"eval.slot.variant", "\"causel\"", "none, standard, causal_shared, causal", "did you mean \"causal\""});
}

TEST(ConfigErrors, InvalidJsonNamesFileLineAndColumn) {
  expect_config_error("{\n  \"model\": {\n    \"num_layers\": 3,,\n  }\n}", {"c.json", "invalid JSON", "line 3, column 21"});
}

TEST(ConfigErrors, NumberOverflowIsAConfigError) {
  // Found by fuzz_safetensors: nlohmann reports overflow as out_of_range, not parse_error.
  expect_config_error(R"({"model": {"mlp_mult": 1e999}})", {"c.json", "invalid JSON", "overflow"});
}

TEST(ConfigErrors, DuplicateKeysAreRejected) {
  expect_config_error(R"({"model": {"num_layers": 3, "num_layers": 4}})", {"c.json", "model.num_layers", "duplicate key"});
}

TEST(ConfigErrors, ExtendsProblemsNameTheFiles) {
  VirtualFiles vf;
  vf.files["/v/a.json"] = R"({"extends": "b.json"})";
  vf.files["/v/b.json"] = R"({"extends": "a.json"})";
  vf.files["/v/c.json"] = R"({"extends": "missing.json"})";
  vf.files["/v/d.json"] = R"({"extends": 3})";
  expect_error([&] { load_config(std::filesystem::path("/v/a.json"), {}, vf.reader()); }, ErrorKind::config,
               {"cycle", "/v/a.json", "/v/b.json"});
  expect_error([&] { load_config(std::filesystem::path("/v/c.json"), {}, vf.reader()); }, ErrorKind::config,
               {"/v/missing.json"});
  expect_error([&] { load_config(std::filesystem::path("/v/d.json"), {}, vf.reader()); }, ErrorKind::config,
               {"/v/d.json", "extends"});
}

TEST(ConfigErrors, CrossFieldRulesNameTheField) {
  expect_config_error(R"({"model": {"num_heads": 3}})", {"model.num_heads", "does not divide", "512"});
  expect_config_error(R"({"model": {"num_kv_heads": 3}})", {"model.num_kv_heads", "does not divide", "8"});
  expect_config_error(R"({"model": {"rope": {"dims": 5}}})", {"model.rope.dims", "5", "even"});
  expect_config_error(R"({"model": {"rope": {"dims": 66}}})", {"model.rope.dims", "66", "head_dim = 64"});
  expect_config_error(R"({"model": {"value_embed": {"layers": [9, 11]}}})",
                      {"model.value_embed.layers[1]", "11", "not a layer index"});
  expect_config_error(R"({"model": {"value_embed": {"layers": [9, 9]}}})", {"model.value_embed.layers[1]", "twice"});
  expect_config_error(R"({"train": {"batch_tokens": 1000}})", {"train.batch_tokens", "1000", "multiple of model.seq_len"});
  expect_config_error(R"({"model": {"parallel_residual": {"start_layer": 2}}})",
                      {"model.parallel_residual.start_layer", "encoder"});
  expect_config_error(R"({"optim": {"muon": {"ns_coefficients": [1, 2]}}})", {"optim.muon.ns_coefficients", "exactly 3"});
  expect_config_error(R"({"eval": {"stride": 4096}})", {"eval.stride", "4096"});
}

// The distributed knobs select between modes only one of which exists: the other is refused,
// naming the key, rather than accepted and ignored.
TEST(ConfigErrors, UnwiredDistributedModesAreRefused) {
  expect_config_error(R"({"distributed": {"parallel_muon": false}})",
                      {"distributed.parallel_muon", "not implemented", "issue 15"});
  expect_config_error(R"({"distributed": {"overlap_comm": false}})",
                      {"distributed.overlap_comm", "not implemented", "issue 15"});
}

TEST(ConfigErrors, ProvenanceFollowsTheLayerThatWon) {
  VirtualFiles vf;
  vf.files["/v/base.json"] = R"({"model": 5})";
  vf.files["/v/child.json"] = R"({"extends": "base.json", "model": {"num_layrs": 3}})";
  expect_error([&] { load_config(std::filesystem::path("/v/child.json"), {}, vf.reader()); }, ErrorKind::config,
               {"model.num_layrs", "(from /v/child.json)"});
}

TEST(ConfigErrors, ExplicitNullIsNotSilentlyReplacedBySet) {
  expect_config_error(R"({"model": null})", {"model", "not a section"}, {"model.num_layers=3"});
}

TEST(ConfigErrors, SetValuesMustBeUtf8) {
  expect_error([] { load_text("{}", {"name=\xff\xfe"}); }, ErrorKind::usage, {"--set name", "UTF-8"});
}

TEST(ConfigErrors, HugeProductsAreRangeErrorsNotOverflow) {
  expect_config_error(R"({"model": {"mlp_mult": 1e300}})", {"model.mlp_mult", "out of range", "(0, 64]"});
  expect_config_error(R"({"model": {"model_dim": 1e15}})", {"model.model_dim", "out of range"});
}

TEST(ConfigErrors, BadSetAssignmentsAreUsageOrConfigErrors) {
  expect_error([] { load_text("{}", {"model.num_layers"}); }, ErrorKind::usage, {"PATH=VALUE"});
  expect_error([] { load_text("{}", {"model..x=1"}); }, ErrorKind::usage, {"model..x"});
  expect_error([] { load_text(R"({"model": {"num_layers": 3}})", {"model.num_layers.x=1"}); }, ErrorKind::config,
               {"model.num_layers", "not a section"});
  expect_config_error("{}", {"model.nope", "unknown key", "--set model.nope=1"}, {"model.nope=1"});
}

// The same classes through the binary: exit code 3 and a message naming the file and path.
TEST(ConfigErrorsCli, EachClassExitsWithTheConfigCodeAndNamesFileAndPath) {
  struct Case {
    const char* error_class;
    const char* content;
    std::vector<std::string> fragments;
  };
  const std::vector<Case> cases = {
      {"unknown key", R"({"train": {"ema": {"decya": 0.9}}})", {"train.ema.decya", "unknown key"}},
      {"wrong type", R"({"eval": {"stride": "64"}})", {"eval.stride", "\"64\""}},
      {"out of range", R"({"export": {"lzma_preset": 12}})", {"export.lzma_preset", "12", "[0, 9]"}},
      {"bad enum", R"({"export": {"compressor": "zstd"}})", {"export.compressor", "\"zstd\"", "lzma, brotli"}},
      {"bad list element", R"({"export": {"clip_percentiles": [0.9, 2]}})", {"export.clip_percentiles[1]", "2"}},
      {"not a section", R"({"optim": []})", {"optim", "expected an object"}},
      {"invalid JSON", "{\"name\": }", {"invalid JSON", "line 1"}},
      {"duplicate key", R"({"seed": 1, "seed": 2})", {"seed", "duplicate key"}},
      {"cross-field", R"({"model": {"num_kv_heads": 5}})", {"model.num_kv_heads", "does not divide"}},
      {"missing extends", R"({"extends": "nowhere.json"})", {"nowhere.json"}},
  };
  // --set is repeatable and may come before the config file.
  auto ok = test::run_pgolf({"inspect", "config", "--set", "model.num_layers=5", "--set", "seed=7",
                             (test::source_dir() / "configs/tiny.json").string()});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("\"num_layers\": 5"), std::string::npos);
  EXPECT_NE(ok.out.find("\"seed\": 7"), std::string::npos);
  test::TempDir dir;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.error_class);
    const auto file = dir / "config.json";
    test::write_bytes(file, c.content);
    auto r = test::run_pgolf({"inspect", "config", file.string()});
    EXPECT_EQ(r.exit_code, 3) << r.err;
    EXPECT_NE(r.err.find("config error"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(file.string()), std::string::npos) << "the file is named: " << r.err;
    for (const auto& f : c.fragments) EXPECT_NE(r.err.find(f), std::string::npos) << f << " in: " << r.err;
  }
}

}  // namespace
}  // namespace pgolf::config
