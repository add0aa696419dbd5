#include "eval/eval_fixture.hpp"

#include "backend/cpu/cpu_ops.hpp"
#include "config/config_loader.hpp"
#include "dist/communicator.hpp"
#include "model/params.hpp"
#include "support/test_support.hpp"
#include "train/trainer.hpp"

namespace pgolf::test {

namespace {

const fs::path kGolden = source_dir() / "tests/reference/golden";

EvalFixture load(const std::vector<std::string>& sets) {
  EvalFixture f;
  f.config = config::load_config(kGolden / "eval_ttt_slot.json", sets).config;
  f.stream = eval::load_val_stream(f.config);
  f.tables = data::load_byte_tables(f.config.data.tokenizer, f.config.model.vocab_size);
  return f;
}

std::vector<float> trained_weights() {
  const config::Config c =
      config::load_config(kGolden / "eval_ttt_slot.json",
                          {"train.iterations=60", "train.batch_tokens=2048", "train.grad_accum_steps=1",
                           "train.warmdown.form=iterations", "train.warmdown.iters=20", "train.wallclock_cap_s=0",
                           "train.checkpoint_every=0", "train.val_every=0", "train.log_every=0", "train.qat.enabled=false",
                           "train.swa.enabled=false", "train.ema.enabled=false"})
          .config;
  backend::CpuOps<float> ops;
  dist::LocalCommunicator comm;
  TempDir dir;
  train::Trainer t(c, comm, ops, train::RunPaths{dir.path()});
  t.init_weights(7);
  for (int s = 0; s < 60; ++s) t.step();
  return t.export_weights();
}

}  // namespace

EvalFixture EvalFixture::golden(const std::vector<std::string>& sets) {
  EvalFixture f = load(sets);
  model::ParamTable table(f.config.model);
  f.weights = model::load_checkpoint(kGolden / "interchange_twin_v1.safetensors", table);
  return f;
}

EvalFixture EvalFixture::trained(const std::vector<std::string>& sets) {
  static const std::vector<float> weights = trained_weights();
  EvalFixture f = load(sets);
  f.weights = weights;
  return f;
}

eval::EvalOptions EvalFixture::options() const {
  eval::EvalOptions o = eval::eval_options(config);
  o.keep_nll = true;
  o.progress = false;
  return o;
}

eval::EvalResult EvalFixture::run(const eval::EvalOptions& o, backend::Ops<float>* ops) const {
  backend::CpuOps<float> cpu;
  model::Model<float> net(config.model, ops != nullptr ? *ops : cpu, eval::eval_model_batch(o),
                          static_cast<int>(config.model.seq_len), eval::eval_model_mode(o));
  net.set_params(weights);
  net.set_recurrence_active(!config.model.recurrence.virtual_layers.empty());
  return eval::evaluate(net, stream, tables, o);
}

eval::AuditReport EvalFixture::audit(const eval::EvalOptions& o, const std::vector<eval::AuditPosition>& positions) const {
  backend::CpuOps<float> ops;
  model::Model<float> net(config.model, ops, eval::eval_model_batch(o), static_cast<int>(config.model.seq_len),
                          eval::eval_model_mode(o));
  net.set_recurrence_active(!config.model.recurrence.virtual_layers.empty());
  return eval::audit_eval(net, weights, stream, tables, o, positions);
}

eval::AuditReport EvalFixture::audit(const eval::EvalOptions& o) const {
  return audit(o, eval::default_audit_positions(o, stream.targets(), static_cast<int>(config.model.seq_len)));
}

}  // namespace pgolf::test
