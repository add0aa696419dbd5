#include "model/model.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <type_traits>

#include "common/error.hpp"
#include "common/strings.hpp"

namespace pgolf::model {

// ----- arena -----------------------------------------------------------------------------------
void Arena::add_entry(std::string name, std::size_t bytes, std::function<void(std::byte*, std::size_t)> bind) {
  const std::size_t aligned = (bytes + 63) / 64 * 64;  // every buffer starts on a cache line
  entries_.push_back(Entry{std::move(name), bytes, total_, std::move(bind)});
  total_ += aligned;
}

void Arena::allocate(backend::Device& device) {
  base_ = static_cast<std::byte*>(device.allocate(total_));
  for (const auto& e : entries_) e.bind(base_, e.offset);
}

void Arena::release(backend::Device& device) {
  if (base_ != nullptr) device.release(base_);
  base_ = nullptr;
}

void Arena::print(std::FILE* out, bool detailed) const {
  std::fprintf(out, "activation arena: %zu buffers, %s\n", entries_.size(), human_bytes(total_).c_str());
  if (!detailed) {
    // One line per kind of buffer ("step*.attn.q" summed over steps).
    std::map<std::string, std::pair<std::size_t, std::size_t>> kinds;
    std::vector<std::string> order;
    for (const auto& e : entries_) {
      std::string kind = e.name;
      if (kind.rfind("step", 0) == 0) kind = "step*" + kind.substr(kind.find('.'));
      if (!kinds.count(kind)) order.push_back(kind);
      kinds[kind].first += 1;
      kinds[kind].second += e.bytes;
    }
    for (const auto& k : order)
      std::fprintf(out, "  %-22s x%-3zu %s\n", k.c_str(), kinds[k].first, human_bytes(kinds[k].second).c_str());
    return;
  }
  for (const auto& e : entries_)
    std::fprintf(out, "  %-28s %12s at %s\n", e.name.c_str(), human_bytes(e.bytes).c_str(), with_commas(e.offset).c_str());
}

backend::MemoryPlan memory_plan(const ModelFootprint& f, const std::vector<backend::MemoryPlan::Part>& extra) {
  backend::MemoryPlan plan;
  plan.add("parameters", f.params);
  plan.add("gradients", f.grads);
  for (const auto& part : extra) plan.add(part.name, part.bytes);
  plan.add("activations", f.arena + f.tables);
  if (f.workspaces > 0) plan.add("op workspaces", f.workspaces);
  return plan;
}

// ----- schedule ------------------------------------------------------------------------------------
std::vector<Step> layer_schedule(const config::ModelConfig& m, bool recurrence_active) {
  const int L = static_cast<int>(m.num_layers);
  std::vector<int> layers;
  if (recurrence_active && !m.recurrence.virtual_layers.empty()) {
    for (auto v : m.recurrence.virtual_layers) layers.push_back(static_cast<int>(v));
  } else {
    for (int i = 0; i < L; ++i) layers.push_back(i);
  }
  const int n = static_cast<int>(layers.size()), n_enc = n / 2, n_skip = std::min(L / 2, L - L / 2);
  const bool clamp = m.recurrence.skip_policy == config::RecurrenceSkip::clamp;
  const int split_layer = static_cast<int>(m.parallel_residual.start_layer);
  const bool both_lanes = m.parallel_residual.skip_policy == config::ParallelSkip::both_lanes;
  std::vector<Step> steps;
  int stack = 0;  // entries currently on the skip stack (slots 0 .. stack-1)
  bool split = false;
  for (int j = 0; j < n; ++j) {
    Step s;
    s.layer = layers[static_cast<std::size_t>(j)];
    if (j < n_enc) {
      s.encoder = true;
      s.push_slot = stack++;
    } else {
      const int dj = j - n_enc;
      if (stack > 0 && n_skip > 0 && (clamp || dj < n_skip)) {
        s.skip_source = --stack;
        s.skip_weight = std::min(dj, n_skip - 1);
      }
      if (!split && split_layer >= 0 && s.layer >= split_layer) {
        split = true;
        s.split_here = true;
      }
      s.parallel = split;
      if (s.skip_source >= 0) {
        // Before the split (and at it) the skip goes into x. After it, both_lanes adds it to both
        // lanes; dead_x ([record quirk] #1334) adds it to the abandoned x, which nothing reads.
        const bool on_x = !s.parallel || s.split_here;
        s.skip_into_lane0 = on_x || both_lanes;
        s.skip_into_lane1 = !on_x && both_lanes;
      }
    }
    steps.push_back(s);
  }
  return steps;
}

// ----- model ------------------------------------------------------------------------------------------
// The layout alone: the parameter table, the schedule and the arena's table, nothing allocated.
template <class T>
Model<T>::Model(LayoutOnly, const config::ModelConfig& cfg, backend::Ops<T>& ops, int max_batch, int max_seq,
                ModelMode mode, bool shared_weights)
    : cfg_(cfg),
      ops_(ops),
      table_(cfg),
      max_batch_(max_batch),
      max_seq_(max_seq),
      training_(mode == ModelMode::training),
      shares_weights_(shared_weights) {
  if (training_ && shares_weights_) fail(ErrorKind::internal, "model: a training model holds its own parameters");
  fused_ce_ = training_ && ops.supports(backend::FusedOp::softcap_ce);
  fused_qk_ = ops.supports(backend::FusedOp::qk_prep);
  if (max_seq > cfg.seq_len)
    fail(ErrorKind::internal, "model: max_seq ", max_seq, " exceeds model.seq_len ", cfg.seq_len);
  max_steps_ = static_cast<int>(std::max<std::size_t>(layer_schedule(cfg, false).size(),
                                                      layer_schedule(cfg, true).size()));
  for (bool rec : {false, true})
    for (const auto& s : layer_schedule(cfg, rec)) max_enc_ = std::max(max_enc_, s.push_slot + 1);
  schedule_ = layer_schedule(cfg, false);
  const auto offset_of = [this](const std::string& name) {  // kAbsent when this model has no such tensor
    const ParamSpec* spec = table_.find(name);
    return spec != nullptr ? spec->offset : kAbsent;
  };
  block_offsets_.resize(static_cast<std::size_t>(cfg.num_layers));
  for (std::size_t l = 0; l < block_offsets_.size(); ++l)
    for (int t = 0; t < static_cast<int>(BlockTensor::count); ++t)
      block_offsets_[l][static_cast<std::size_t>(t)] =
          offset_of(cat("blocks.", l, ".", block_tensor_suffix(static_cast<BlockTensor>(t))));
  for (int t = 0; t < static_cast<int>(ModelTensor::count); ++t)
    model_offsets_[static_cast<std::size_t>(t)] = offset_of(model_tensor_name(static_cast<ModelTensor>(t)));
  if (cfg.value_embed.enabled)
    for (std::size_t k = 0; k < cfg.value_embed.layers.size(); ++k)
      ve_scale_offsets_.push_back(table_.at(cat("ve_layer_scales.", k)).offset);
  build_arena();
}

template <class T>
std::size_t Model<T>::rope_table_values() const {
  return static_cast<std::size_t>(cfg_.seq_len) * static_cast<std::size_t>(std::max<std::int64_t>(cfg_.rope.dims / 2, 1));
}

template <class T>
ModelFootprint Model<T>::footprint() const {
  ModelFootprint f;
  f.params = shares_weights_ ? 0 : table_.total() * sizeof(T);
  f.grads = training_ ? table_.total() * sizeof(T) : 0;
  f.tables = (2 * rope_table_values() + 1) * sizeof(T);  // RoPE cos/sin and the loss sum
  f.arena = arena_.bytes();
  f.reservation = reservation();
  f.workspaces = ops_.reserved_bytes(f.reservation);
  return f;
}

template <class T>
backend::Device::Reservation Model<T>::reservation() const {
  const auto N = static_cast<std::size_t>(max_batch_) * static_cast<std::size_t>(max_seq_);
  backend::Device::Reservation r;
  r.staging_bytes = N * sizeof(std::int32_t);  // ids and targets
  r.attention_kv_values = training_ ? N * static_cast<std::size_t>(cfg_.num_kv_heads * cfg_.head_dim()) : 0;
  r.loss_rows = N;
  return r;
}

template <class T>
ModelFootprint Model<T>::plan(const config::ModelConfig& cfg, backend::Ops<T>& ops, int max_batch, int max_seq,
                              ModelMode mode, bool shared_weights) {
  return Model(LayoutOnly{}, cfg, ops, max_batch, max_seq, mode, shared_weights).footprint();
}

template <class T>
Model<T>::Model(const config::ModelConfig& cfg, backend::Ops<T>& ops, int max_batch, int max_seq, ModelMode mode,
                const T* shared_weights)
    : Model(LayoutOnly{}, cfg, ops, max_batch, max_seq, mode, shared_weights != nullptr) {
  if (!shares_weights_) params_ = static_cast<T*>(ops_.allocate(table_.total() * sizeof(T)));
  if (training_) grads_ = static_cast<T*>(ops_.allocate(table_.total() * sizeof(T)));
  own_or_shared_ = shares_weights_ ? shared_weights : params_;
  weights_ = own_or_shared_;

  // RoPE tables for positions 0 .. seq_len-1 with the (possibly scaled) base, in double.
  const int r = static_cast<int>(cfg.rope.dims), half = r / 2;
  const auto T_cfg = static_cast<double>(cfg.seq_len), T_rope = static_cast<double>(cfg.rope.train_len);
  double base = cfg.rope.base;
  if (r > 0 && T_cfg > T_rope) base *= std::pow(T_cfg / T_rope, static_cast<double>(r) / (r - 2));
  std::vector<T> cos_t(rope_table_values()), sin_t(rope_table_values());
  for (std::int64_t t = 0; t < cfg.seq_len; ++t)
    for (int j = 0; j < half; ++j) {
      const double inv_freq = std::pow(base, -2.0 * j / r);
      const double theta = static_cast<double>(t) * inv_freq;
      cos_t[static_cast<std::size_t>(t) * half + j] = static_cast<T>(std::cos(theta));
      sin_t[static_cast<std::size_t>(t) * half + j] = static_cast<T>(std::sin(theta));
    }
  rope_cos_ = static_cast<T*>(ops_.allocate(cos_t.size() * sizeof(T)));
  rope_sin_ = static_cast<T*>(ops_.allocate(sin_t.size() * sizeof(T)));
  ops_.to_device(rope_cos_, cos_t.data(), cos_t.size() * sizeof(T));
  ops_.to_device(rope_sin_, sin_t.data(), sin_t.size() * sizeof(T));
  loss_sum_ = static_cast<T*>(ops_.allocate(sizeof(T)));
  arena_.allocate(ops_);
  ops_.reserve(reservation());
  if (!training_)  // every step reuses step 0's sublayer buffers; only the streams are per step
    for (std::size_t j = 1; j < steps_.size(); ++j) {
      StepActs& s = steps_[j];
      T* attn_out = s.attn.out;
      T* mlp_out = s.mlp.out;
      s.attn = steps_[0].attn;
      s.mlp = steps_[0].mlp;
      s.attn.out = attn_out;
      s.mlp.out = mlp_out;
    }
}

template <class T>
Model<T>::~Model() {
  arena_.release(ops_);
  for (T* p : {params_, grads_, rope_cos_, rope_sin_, loss_sum_}) ops_.release(p);
}

template <class T>
void Model<T>::build_arena() {
  const auto N = static_cast<std::size_t>(max_batch_) * max_seq_;
  const auto d = static_cast<std::size_t>(cfg_.model_dim), H = static_cast<std::size_t>(cfg_.num_heads),
             Hkv = static_cast<std::size_t>(cfg_.num_kv_heads), hd = static_cast<std::size_t>(cfg_.head_dim()),
             kvd = Hkv * hd, f = static_cast<std::size_t>(cfg_.mlp_hidden()), V = static_cast<std::size_t>(cfg_.vocab_size);
  Arena& a = arena_;
  a.add(ids_, "ids", N);
  a.add(targets_, "targets", N);
  a.add(e_raw_, "embed.raw", N * d);
  if (cfg_.bigram.enabled) {
    a.add(bigram_ids_, "bigram.ids", N);
    a.add(bigram_emb_, "bigram.embed", N * static_cast<std::size_t>(cfg_.bigram.dim));
    a.add(bigram_proj_, "bigram.proj", N * d);
  }
  a.add(e_norm_, "embed.norm", N * d);
  a.add(rstd_e_, "embed.rstd", N);
  a.add(x0_, "x0", N * d);
  if (cfg_.value_embed.enabled) {
    a.add(ve_emb_, "ve.embed", N * static_cast<std::size_t>(cfg_.value_embed.dim));
    a.add(ve_base_, "ve.base", N * kvd);
  }
  steps_.resize(static_cast<std::size_t>(max_steps_));
  for (int j = 0; j < max_steps_; ++j) {
    StepActs& s = steps_[static_cast<std::size_t>(j)];
    const std::string p = cat("step", j, ".");
    AttnActs& t = s.attn;
    MlpActs& m = s.mlp;
    if (training_ || j == 0) {
      const std::string q = training_ ? p : std::string("shared.");
      a.add(t.xin, q + "attn.xin", N * d);
      a.add(t.u, q + "attn.u", N * d);
      a.add(t.rstd, q + "attn.rstd", N);
      a.add(t.q, q + "attn.q", N * d);
      a.add(t.rstd_q, q + "attn.rstd_q", N * H);
      a.add(t.k, q + "attn.k", N * kvd);
      a.add(t.rstd_k, q + "attn.rstd_k", N * Hkv);
      a.add(t.v, q + "attn.v", N * kvd);
      a.add(t.qr, q + "attn.q_rope", N * d);
      a.add(t.qg, q + "attn.q_gain", N * d);
      a.add(t.kr, q + "attn.k_rope", N * kvd);
      a.add(t.y, q + "attn.y", N * d);
      a.add(t.lse, q + "attn.lse", N * H);
      a.add(t.yx, q + "attn.y_xsa", N * d);
      a.add(t.a, q + "attn.proj", N * d);
      a.add(m.u, q + "mlp.u", N * d);
      a.add(m.rstd, q + "mlp.rstd", N);
      a.add(m.h, q + "mlp.h", N * f);
      a.add(m.z, q + "mlp.z", N * f);
      a.add(m.m, q + "mlp.proj", N * d);
    }
    a.add(t.out, p + "attn.out", N * d);
    a.add(m.out, p + "mlp.out", N * d);
    a.add(s.skip_out, p + "skip.out", N * d);
    a.add(s.skip_out_b, p + "skip.out_lane1", N * d);
  }
  enc_out_.assign(static_cast<std::size_t>(max_enc_), nullptr);
  if (cfg_.parallel_residual.start_layer >= 0) a.add(x_final_, "x_final", N * d);
  a.add(h_final_, "head.norm", N * d);
  a.add(rstd_final_, "head.rstd", N);
  a.add(logits_, "head.logits", N * V);
  a.add(nll_, "head.nll", N);
  if (!training_) return;
  // Gradient scratch, reused by every step of the backward pass.
  a.add(g_.stream, "grad.stream", N * d);
  a.add(g_.lane1, "grad.lane1", N * d);
  a.add(g_.x0, "grad.x0", N * d);
  a.add(g_.xin, "grad.xin", N * d);
  a.add(g_.du, "grad.u", N * d);
  a.add(g_.dq, "grad.q", N * d);
  a.add(g_.dk, "grad.k", N * kvd);
  a.add(g_.dv, "grad.v", N * kvd);
  if (!fused_qk_) a.add(g_.dqr, "grad.q_rope", N * d);  // the fused backward keeps it in registers
  a.add(g_.dkr, "grad.k_rope", N * kvd);
  a.add(g_.dy, "grad.y", N * d);
  a.add(g_.dyx, "grad.y_xsa", N * d);
  a.add(g_.da, "grad.proj", N * d);
  a.add(g_.dh, "grad.mlp_h", N * f);
  a.add(g_.dz, "grad.mlp_z", N * f);
  a.add(g_.scratch, "grad.scratch", N * std::max({d, static_cast<std::size_t>(cfg_.bigram.dim),
                                                   static_cast<std::size_t>(cfg_.value_embed.dim)}));
  if (cfg_.value_embed.enabled) a.add(g_.ve, "grad.ve_base", N * kvd);
  g_.enc.assign(static_cast<std::size_t>(max_enc_), nullptr);
  for (int k = 0; k < max_enc_; ++k) a.add(g_.enc[static_cast<std::size_t>(k)], cat("grad.skip", k), N * d);
}

template <class T>
void Model<T>::print_layout(std::FILE* out, bool detailed) const {
  table_.print(out, detailed);
  arena_.print(out, detailed);
}

template <class T>
std::string Model<T>::layout_summary() const {
  return cat("model: ", table_.summary(), "; activation arena ", human_bytes(arena_.bytes()), " in ", arena_.size(),
             " buffers for ", max_batch_, " x ", max_seq_, " tokens, ", training_ ? "training" : "inference", " mode");
}

template <class T>
std::string Model<T>::layout_text() const {
  char* text = nullptr;
  std::size_t size = 0;
  std::FILE* f = ::open_memstream(&text, &size);
  if (f == nullptr) fail(ErrorKind::internal, "layout_text: open_memstream failed");
  print_layout(f, true);
  std::fclose(f);
  std::string out(text, size);
  std::free(text);
  return out;
}

template <class T>
void Model<T>::set_params_values(const T* values) {
  if (shares_weights_) fail(ErrorKind::internal, "set_params: this model reads another model's parameters");
  ops_.to_device(params_, values, table_.total() * sizeof(T));
}

template <class T>
void Model<T>::set_params(const std::vector<float>& host) {
  if (host.size() != table_.total())
    fail(ErrorKind::internal, "set_params: ", host.size(), " values for a table of ", table_.total());
  if constexpr (std::is_same_v<T, float>) {
    set_params_values(host.data());
  } else {
    const std::vector<T> v(host.begin(), host.end());
    set_params_values(v.data());
  }
}

template <class T>
void Model<T>::set_params(const std::vector<double>& host) {
  if (host.size() != table_.total())
    fail(ErrorKind::internal, "set_params: ", host.size(), " values for a table of ", table_.total());
  const std::vector<T> v(host.begin(), host.end());
  set_params_values(v.data());
}

template <class T>
std::vector<T> Model<T>::params_host() const {
  std::vector<T> v(table_.total());
  ops_.to_host(v.data(), own_or_shared_, v.size() * sizeof(T));
  return v;
}

template <class T>
std::vector<T> Model<T>::grads_host() const {
  if (!training_) fail(ErrorKind::internal, "model: an inference model has no gradients");
  std::vector<T> v(table_.total());
  ops_.to_host(v.data(), grads_, v.size() * sizeof(T));
  return v;
}

template <class T>
void Model<T>::zero_grads() {
  if (!training_) fail(ErrorKind::internal, "model: an inference model has no gradients");
  ops_.zero(grads_, table_.total() * sizeof(T));
}

template <class T>
void Model<T>::set_recurrence_active(bool active) {
  recurrence_active_ = active;
  schedule_ = layer_schedule(cfg_, active);
  have_forward_ = false;  // the saved activations belong to the other schedule
}

template <class T>
const char* Model<T>::block_tensor_suffix(BlockTensor t) {
  switch (t) {
    case BlockTensor::c_q: return "attn.c_q.weight";
    case BlockTensor::c_k: return "attn.c_k.weight";
    case BlockTensor::c_v: return "attn.c_v.weight";
    case BlockTensor::attn_proj: return "attn.proj.weight";
    case BlockTensor::q_gain: return "attn.q_gain";
    case BlockTensor::attn_scale: return "attn_scale";
    case BlockTensor::fc: return "mlp.fc.weight";
    case BlockTensor::mlp_proj: return "mlp.proj.weight";
    case BlockTensor::mlp_scale: return "mlp_scale";
    case BlockTensor::resid_mix: return "resid_mix";
    case BlockTensor::count: break;
  }
  fail(ErrorKind::internal, "model: no block tensor ", static_cast<int>(t));
}

template <class T>
std::size_t Model<T>::block_offset(int layer, BlockTensor t) const {
  const std::size_t off = block_offsets_.at(static_cast<std::size_t>(layer))[static_cast<std::size_t>(t)];
  if (off == kAbsent)
    fail(ErrorKind::internal, "model: blocks.", layer, ".", block_tensor_suffix(t), " is not a parameter of this model");
  return off;
}

template <class T>
const char* Model<T>::model_tensor_name(ModelTensor t) {
  switch (t) {
    case ModelTensor::tok_emb: return "tok_emb.weight";
    case ModelTensor::lm_head: return "lm_head.weight";
    case ModelTensor::bigram_embed: return "bigram.embed.weight";
    case ModelTensor::bigram_proj: return "bigram.proj.weight";
    case ModelTensor::bigram_scale: return "bigram.scale";
    case ModelTensor::smear_gate: return "smear.gate";
    case ModelTensor::ve_embed: return "ve_shared.embed.weight";
    case ModelTensor::ve_proj: return "ve_shared.proj.weight";
    case ModelTensor::ve_scale: return "ve_shared.scale";
    case ModelTensor::skip_weights: return "skip_weights";
    case ModelTensor::skip_gates: return "skip_gates";
    case ModelTensor::lane_merge: return "lane_merge";
    case ModelTensor::count: break;
  }
  fail(ErrorKind::internal, "model: no model tensor ", static_cast<int>(t));
}

template <class T>
std::size_t Model<T>::model_offset(ModelTensor t) const {
  const std::size_t off = model_offsets_[static_cast<std::size_t>(t)];
  if (off == kAbsent) fail(ErrorKind::internal, "model: ", model_tensor_name(t), " is not a parameter of this model");
  return off;
}

template <class T>
void Model<T>::observe_input(int layer, std::initializer_list<BlockTensor> tensors, const T* x, int n, int in) {
  if (!observer_) return;
  std::vector<std::string> names;
  for (BlockTensor t : tensors) names.push_back(cat("blocks.", layer, ".", block_tensor_suffix(t)));
  observer_(names, x, n, in);
}

template <class T>
T Model<T>::layer_multiplier(int layer) const {
  return cfg_.ln_scale ? static_cast<T>(1.0 / std::sqrt(static_cast<double>(layer) + 1.0)) : T(1);
}

template <class T>
int Model<T>::ve_index(int layer) const {
  if (!cfg_.value_embed.enabled) return -1;
  const auto& ls = cfg_.value_embed.layers;
  for (std::size_t k = 0; k < ls.size(); ++k)
    if (ls[k] == layer) return static_cast<int>(k);
  return -1;
}

template <class T>
bool Model<T>::has_xsa(int layer) const {
  return layer >= cfg_.num_layers - cfg_.xsa_last_n;
}

template <class T>
void Model<T>::attention_forward(StepActs& s, int layer, const T* stream_in) {
  const int N = batch_ * seq_, d = static_cast<int>(cfg_.model_dim), H = static_cast<int>(cfg_.num_heads),
            Hkv = static_cast<int>(cfg_.num_kv_heads), hd = static_cast<int>(cfg_.head_dim()), kvd = Hkv * hd;
  AttnActs& a = s.attn;
  ops_.resid_mix_forward(a.xin, stream_in, x0_, block_param(layer, BlockTensor::resid_mix), N, d);
  ops_.rmsnorm_forward(a.u, a.rstd, a.xin, N, d, layer_multiplier(layer));
  observe_input(layer, {BlockTensor::c_q, BlockTensor::c_k, BlockTensor::c_v}, a.u, N, d);
  ops_.matmul_forward(a.q, a.u, block_param(layer, BlockTensor::c_q), N, d, d, false);
  ops_.matmul_forward(a.k, a.u, block_param(layer, BlockTensor::c_k), N, d, kvd, false);
  ops_.matmul_forward(a.v, a.u, block_param(layer, BlockTensor::c_v), N, d, kvd, false);
  if (int k = ve_index(layer); k >= 0)
    ops_.add_scaled_forward(a.v, ve_base_, model_param(ModelTensor::ve_scale), ve_scale_param(k),
                            static_cast<std::size_t>(N) * kvd);
  const int r = static_cast<int>(cfg_.rope.dims);
  const T* q_gain = block_param(layer, BlockTensor::q_gain);
  if (fused_qk_) {
    ops_.qk_prep_forward(a.qr, a.qg, a.rstd_q, a.q, q_gain, rope_cos_, rope_sin_, N, seq_, H, hd, r);
    ops_.qk_prep_forward(a.kr, nullptr, a.rstd_k, a.k, nullptr, rope_cos_, rope_sin_, N, seq_, Hkv, hd, r);
  } else {
    ops_.rmsnorm_forward(a.qr, a.rstd_q, a.q, N * H, hd, T(1));
    ops_.rmsnorm_forward(a.kr, a.rstd_k, a.k, N * Hkv, hd, T(1));
    ops_.rope_apply(a.qr, rope_cos_, rope_sin_, N, seq_, H, hd, r, false);
    ops_.rope_apply(a.kr, rope_cos_, rope_sin_, N, seq_, Hkv, hd, r, false);
    ops_.head_gain_forward(a.qg, a.qr, q_gain, N, H, hd);
  }
  ops_.attention_forward(a.y, a.lse, a.qg, a.kr, a.v, batch_, seq_, H, Hkv, hd);
  const T* yx = a.y;
  if (has_xsa(layer)) {
    ops_.xsa_forward(a.yx, a.y, a.v, N, H, Hkv, hd);
    yx = a.yx;
  }
  observe_input(layer, {BlockTensor::attn_proj}, yx, N, d);
  ops_.matmul_forward(a.a, yx, block_param(layer, BlockTensor::attn_proj), N, d, d, false);
  ops_.residual_scale_forward(a.out, a.xin, a.a, block_param(layer, BlockTensor::attn_scale), N, d);
}

template <class T>
void Model<T>::mlp_forward(StepActs& s, int layer, const T* stream_in) {
  const int N = batch_ * seq_, d = static_cast<int>(cfg_.model_dim), f = static_cast<int>(cfg_.mlp_hidden());
  MlpActs& m = s.mlp;
  ops_.rmsnorm_forward(m.u, m.rstd, stream_in, N, d, layer_multiplier(layer));
  observe_input(layer, {BlockTensor::fc}, m.u, N, d);
  ops_.matmul_forward(m.h, m.u, block_param(layer, BlockTensor::fc), N, d, f, false);
  ops_.leaky_relu_sq_forward(m.z, m.h, static_cast<T>(cfg_.leaky_relu_slope), static_cast<std::size_t>(N) * f);
  observe_input(layer, {BlockTensor::mlp_proj}, m.z, N, f);
  ops_.matmul_forward(m.m, m.z, block_param(layer, BlockTensor::mlp_proj), N, f, d, false);
  ops_.residual_scale_forward(m.out, stream_in, m.m, block_param(layer, BlockTensor::mlp_scale), N, d);
}

template <class T>
double Model<T>::forward(const std::int32_t* ids, const std::int32_t* targets, int batch, int seq, T* nll) {
  forward_loss(ids, targets, batch, seq);
  if (nll != nullptr) ops_.to_host(nll, nll_, static_cast<std::size_t>(batch) * seq * sizeof(T));
  return read_mean_loss();
}

template <class T>
double Model<T>::read_mean_loss() const {
  if (!have_forward_) fail(ErrorKind::internal, "model: read_mean_loss() without a forward");
  T loss_sum{};
  ops_.to_host(&loss_sum, loss_sum_, sizeof(T));
  return static_cast<double>(loss_sum) / (batch_ * seq_);
}

template <class T>
void Model<T>::stage_targets(const std::int32_t* targets, int n) {
  const int V = static_cast<int>(cfg_.vocab_size);
  for (int i = 0; i < n; ++i)
    if (targets[i] < 0 || targets[i] >= V)
      fail(ErrorKind::data, "model input: target id ", targets[i], " at position ", i, " is outside [0, ", V, ")");
  ops_.stage_to_device(targets_, targets, static_cast<std::size_t>(n) * sizeof(std::int32_t));
}

template <class T>
void Model<T>::forward_loss(const std::int32_t* ids, const std::int32_t* targets, int batch, int seq) {
  forward_body(ids, batch, seq);  // checks the batch against the arena first, then the ids
  stage_targets(targets, batch * seq);
  // Head and loss (steps 10-11).
  head_forward(ops_, head_shape(batch * seq), stream_final_, head_weight(), targets_, head_acts());
  have_forward_ = true;
  logits_are_grads_ = false;
}

template <class T>
void Model<T>::forward_backward(const std::int32_t* ids, const std::int32_t* targets, int batch, int seq,
                                double loss_scale) {
  if (!training_) fail(ErrorKind::internal, "model: forward_backward() on a model built for inference");
  if (!fused_ce_) {
    forward_loss(ids, targets, batch, seq);
    backward(loss_scale);
    return;
  }
  forward_body(ids, batch, seq);
  stage_targets(targets, batch * seq);
  const int N = batch * seq;
  head_forward_backward(ops_, head_shape(N), lane1_final_ != nullptr ? g_.xin : g_.stream, model_grad(head_tensor()),
                        g_.scratch, stream_final_, model_param(head_tensor()), targets_, head_acts(),
                        static_cast<T>(loss_scale / N));
  have_forward_ = true;
  logits_are_grads_ = true;
  backward_body();
}

template <class T>
std::vector<std::pair<backend::FusedOp, bool>> Model<T>::fused_paths() const {
  return {{backend::FusedOp::softcap_ce, fused_ce_}, {backend::FusedOp::qk_prep, fused_qk_}};
}

template <class T>
void Model<T>::forward_hidden(const std::int32_t* ids, int batch, int seq) {
  forward_body(ids, batch, seq);
  ops_.rmsnorm_forward(h_final_, rstd_final_, stream_final_, batch * seq, static_cast<int>(cfg_.model_dim), T(1));
}

template <class T>
HeadShape<T> Model<T>::head_shape(int rows) const {
  return {rows, static_cast<int>(cfg_.model_dim), static_cast<int>(cfg_.vocab_size), true,
          static_cast<T>(cfg_.logit_softcap)};
}

template <class T>
HeadActs<T> Model<T>::head_acts() const {
  return {h_final_, rstd_final_, logits_, nll_, loss_sum_};
}

template <class T>
const T* Model<T>::head_weight() const {
  return model_param(head_tensor());
}

template <class T>
void Model<T>::forward_body(const std::int32_t* ids, int batch, int seq) {
  if (batch < 1 || batch > max_batch_ || seq < 1 || seq > max_seq_)
    fail(ErrorKind::internal, "model: a batch of ", batch, " x ", seq, " does not fit the arena (1..", max_batch_, " x 1..",
         max_seq_, ")");
  have_forward_ = false;
  batch_ = batch;
  seq_ = seq;
  const int N = batch * seq, d = static_cast<int>(cfg_.model_dim), V = static_cast<int>(cfg_.vocab_size);
  const auto Nd = static_cast<std::size_t>(N) * d;
  for (int i = 0; i < N; ++i)
    if (ids[i] < 0 || ids[i] >= V) fail(ErrorKind::data, "model input: input id ", ids[i], " at position ", i, " is outside [0, ", V, ")");
  ops_.stage_to_device(ids_, ids, static_cast<std::size_t>(N) * sizeof(std::int32_t));

  // Embedding, BigramHash, norm, SmearGate (docs/model.md steps 1-4).
  ops_.embedding_forward(e_raw_, ids_, model_param(ModelTensor::tok_emb), N, d);
  if (cfg_.bigram.enabled) {
    const int db = static_cast<int>(cfg_.bigram.dim);
    ops_.bigram_hash(bigram_ids_, ids_, batch, seq, static_cast<int>(cfg_.bigram.vocab_size));
    ops_.embedding_forward(bigram_emb_, bigram_ids_, model_param(ModelTensor::bigram_embed), N, db);
    ops_.matmul_forward(bigram_proj_, bigram_emb_, model_param(ModelTensor::bigram_proj), N, db, d, false);
    ops_.add_scaled_forward(e_raw_, bigram_proj_, model_param(ModelTensor::bigram_scale), nullptr, Nd);
  }
  ops_.rmsnorm_forward(e_norm_, rstd_e_, e_raw_, N, d, T(1));
  if (cfg_.smear_gate) {
    ops_.smear_forward(x0_, e_norm_, model_param(ModelTensor::smear_gate), batch, seq, d);
  } else {
    ops_.copy_values(x0_, e_norm_, Nd);
  }
  if (cfg_.value_embed.enabled) {
    const int dve = static_cast<int>(cfg_.value_embed.dim);
    const int kvd = static_cast<int>(cfg_.num_kv_heads * cfg_.head_dim());
    ops_.embedding_forward(ve_emb_, ids_, model_param(ModelTensor::ve_embed), N, dve);
    ops_.matmul_forward(ve_base_, ve_emb_, model_param(ModelTensor::ve_proj), N, dve, kvd, false);
  }

  // Blocks with U-Net skips and, optionally, parallel lanes (steps 5-9).
  const T* x = x0_;
  const T* lane1 = nullptr;
  const bool has_skips = has_tensor(ModelTensor::skip_weights);
  const T* skip_w = has_skips ? model_param(ModelTensor::skip_weights) : nullptr;
  const T* skip_g = has_skips && cfg_.sigmoid_skip_gates ? model_param(ModelTensor::skip_gates) : nullptr;
  for (std::size_t j = 0; j < schedule_.size(); ++j) {
    const Step& st = schedule_[j];
    StepActs& s = steps_[j];
    s.pre_skip = x;
    s.pre_skip_lane1 = lane1;
    if (st.skip_source >= 0) {
      const T* src = enc_out_[static_cast<std::size_t>(st.skip_source)];
      const T* w = skip_w + static_cast<std::size_t>(st.skip_weight) * d;
      const T* g = skip_g != nullptr ? skip_g + static_cast<std::size_t>(st.skip_weight) * d : nullptr;
      if (st.skip_into_lane0) {
        ops_.copy_values(s.skip_out, x, Nd);
        ops_.skip_forward(s.skip_out, src, w, g, N, d);
        x = s.skip_out;
      }
      if (st.skip_into_lane1) {
        ops_.copy_values(s.skip_out_b, lane1, Nd);
        ops_.skip_forward(s.skip_out_b, src, w, g, N, d);
        lane1 = s.skip_out_b;
      }
    }
    if (st.split_here) lane1 = x;
    s.attn_in = x;
    attention_forward(s, st.layer, x);
    s.mlp_in = st.parallel ? lane1 : s.attn.out;
    mlp_forward(s, st.layer, s.mlp_in);
    if (st.parallel) {
      x = s.attn.out;
      lane1 = s.mlp.out;
    } else {
      x = s.mlp.out;
    }
    if (st.encoder) enc_out_[static_cast<std::size_t>(st.push_slot)] = x;
  }
  if (lane1 != nullptr) {
    lane0_final_ = x;
    lane1_final_ = lane1;
    ops_.lane_merge_forward(x_final_, x, lane1, model_param(ModelTensor::lane_merge), Nd);
    x = x_final_;
  } else {
    lane0_final_ = lane1_final_ = nullptr;
  }
  stream_final_ = x;
}

template <class T>
void Model<T>::attention_backward(StepActs& s, int layer, const T* stream_in, T* dout, T* dstream_in) {
  const int N = batch_ * seq_, d = static_cast<int>(cfg_.model_dim), H = static_cast<int>(cfg_.num_heads),
            Hkv = static_cast<int>(cfg_.num_kv_heads), hd = static_cast<int>(cfg_.head_dim()), kvd = Hkv * hd;
  const auto Nd = static_cast<std::size_t>(N) * d;
  AttnActs& a = s.attn;
  ops_.residual_scale_backward(g_.da, block_grad(layer, BlockTensor::attn_scale), dout, a.a, block_param(layer, BlockTensor::attn_scale), N, d);
  ops_.copy_values(g_.xin, dout, Nd);  // the residual path: out = xin + ...
  const bool xsa = has_xsa(layer);
  const T* yx = xsa ? a.yx : a.y;
  ops_.matmul_backward(g_.dyx, block_grad(layer, BlockTensor::attn_proj), g_.da, yx, block_param(layer, BlockTensor::attn_proj),
                       N, d, d, false);
  const T* dy = g_.dyx;
  if (xsa) {
    ops_.zero(g_.dv, static_cast<std::size_t>(N) * kvd * sizeof(T));
    ops_.xsa_backward(g_.dy, g_.dv, g_.dyx, a.y, a.v, N, H, Hkv, hd);
    dy = g_.dy;
  }
  ops_.attention_backward(g_.dq, g_.dkr, g_.dv, dy, a.qg, a.kr, a.v, a.y, a.lse, batch_, seq_, H, Hkv, hd, xsa);
  const int r = static_cast<int>(cfg_.rope.dims);
  const T* q_gain = block_param(layer, BlockTensor::q_gain);
  T* dq_gain = block_grad(layer, BlockTensor::q_gain);
  if (fused_qk_) {
    ops_.qk_prep_backward(g_.dq, dq_gain, g_.dq, a.q, a.qr, a.rstd_q, q_gain, rope_cos_, rope_sin_, N, seq_, H, hd, r);
    ops_.qk_prep_backward(g_.dk, nullptr, g_.dkr, a.k, a.kr, a.rstd_k, nullptr, rope_cos_, rope_sin_, N, seq_, Hkv, hd,
                          r);
  } else {
    ops_.head_gain_backward(g_.dqr, dq_gain, g_.dq, a.qr, q_gain, N, H, hd);
    ops_.rope_apply(g_.dqr, rope_cos_, rope_sin_, N, seq_, H, hd, r, true);
    ops_.rope_apply(g_.dkr, rope_cos_, rope_sin_, N, seq_, Hkv, hd, r, true);
    ops_.rmsnorm_backward(g_.dq, g_.dqr, a.q, a.rstd_q, N * H, hd, T(1), false);
    ops_.rmsnorm_backward(g_.dk, g_.dkr, a.k, a.rstd_k, N * Hkv, hd, T(1), false);
  }
  if (int k = ve_index(layer); k >= 0) {
    ops_.add_scaled_backward(g_.ve, model_grad(ModelTensor::ve_scale), ve_scale_grad(k), g_.dv, ve_base_,
                             model_param(ModelTensor::ve_scale), ve_scale_param(k), static_cast<std::size_t>(N) * kvd, true);
  }
  ops_.matmul_backward(g_.du, block_grad(layer, BlockTensor::c_q), g_.dq, a.u, block_param(layer, BlockTensor::c_q), N,
                       d, d, false);
  ops_.matmul_backward(g_.du, block_grad(layer, BlockTensor::c_k), g_.dk, a.u, block_param(layer, BlockTensor::c_k), N,
                       d, kvd, true);
  ops_.matmul_backward(g_.du, block_grad(layer, BlockTensor::c_v), g_.dv, a.u, block_param(layer, BlockTensor::c_v), N,
                       d, kvd, true);
  ops_.rmsnorm_backward(g_.xin, g_.du, a.xin, a.rstd, N, d, layer_multiplier(layer), true);
  ops_.resid_mix_backward(dstream_in, g_.x0, block_grad(layer, BlockTensor::resid_mix), g_.xin, stream_in, x0_,
                          block_param(layer, BlockTensor::resid_mix), N, d);
}

template <class T>
void Model<T>::mlp_backward(StepActs& s, int layer, const T* stream_in, T* dout) {
  const int N = batch_ * seq_, d = static_cast<int>(cfg_.model_dim), f = static_cast<int>(cfg_.mlp_hidden());
  MlpActs& m = s.mlp;
  ops_.residual_scale_backward(g_.da, block_grad(layer, BlockTensor::mlp_scale), dout, m.m, block_param(layer, BlockTensor::mlp_scale), N, d);
  ops_.matmul_backward(g_.dz, block_grad(layer, BlockTensor::mlp_proj), g_.da, m.z, block_param(layer, BlockTensor::mlp_proj),
                       N, f, d, false);
  ops_.leaky_relu_sq_backward(g_.dh, g_.dz, m.h, static_cast<T>(cfg_.leaky_relu_slope), static_cast<std::size_t>(N) * f);
  ops_.matmul_backward(g_.du, block_grad(layer, BlockTensor::fc), g_.dh, m.u, block_param(layer, BlockTensor::fc), N, d,
                       f, false);
  // out = stream_in + ..., so dout already holds the residual part of d(stream_in).
  ops_.rmsnorm_backward(dout, g_.du, stream_in, m.rstd, N, d, layer_multiplier(layer), true);
}

template <class T>
void Model<T>::backward(double loss_scale) {
  if (!training_) fail(ErrorKind::internal, "model: backward() on a model built for inference");
  if (!have_forward_) fail(ErrorKind::internal, "model: backward() without a forward()");
  if (logits_are_grads_)
    fail(ErrorKind::internal, "model: backward() twice after one forward (the first replaced the logits)");
  const int N = batch_ * seq_;
  head_backward(ops_, head_shape(N), lane1_final_ != nullptr ? g_.xin : g_.stream, model_grad(head_tensor()),
                g_.scratch, stream_final_, model_param(head_tensor()), targets_, head_acts(),
                static_cast<T>(loss_scale / N));
  logits_are_grads_ = true;
  backward_body();
}

template <class T>
void Model<T>::backward_body() {
  const int N = batch_ * seq_, d = static_cast<int>(cfg_.model_dim);
  const auto Nd = static_cast<std::size_t>(N) * d;
  const bool lanes = lane1_final_ != nullptr;
  if (lanes)
    ops_.lane_merge_backward(g_.stream, g_.lane1, model_grad(ModelTensor::lane_merge), g_.xin, lane0_final_, lane1_final_,
                             model_param(ModelTensor::lane_merge), Nd);

  ops_.zero(g_.x0, Nd * sizeof(T));
  for (T* e : g_.enc) ops_.zero(e, Nd * sizeof(T));
  if (cfg_.value_embed.enabled)
    ops_.zero(g_.ve, static_cast<std::size_t>(N) * cfg_.num_kv_heads * cfg_.head_dim() * sizeof(T));

  const bool has_skips = has_tensor(ModelTensor::skip_weights);
  T* skip_dw = has_skips ? model_grad(ModelTensor::skip_weights) : nullptr;
  T* skip_dg = has_skips && cfg_.sigmoid_skip_gates ? model_grad(ModelTensor::skip_gates) : nullptr;
  const T* skip_w = has_skips ? model_param(ModelTensor::skip_weights) : nullptr;
  const T* skip_g = skip_dg != nullptr ? model_param(ModelTensor::skip_gates) : nullptr;

  // Walk the schedule backwards; g_.stream holds d(x or lane0), g_.lane1 d(lane1).
  for (std::size_t jj = schedule_.size(); jj-- > 0;) {
    const Step& st = schedule_[jj];
    StepActs& s = steps_[jj];
    if (st.encoder) ops_.add_into(g_.stream, g_.enc[static_cast<std::size_t>(st.push_slot)], Nd);
    mlp_backward(s, st.layer, s.mlp_in, st.parallel ? g_.lane1 : g_.stream);
    attention_backward(s, st.layer, s.attn_in, g_.stream, g_.stream);
    if (st.split_here) ops_.add_into(g_.stream, g_.lane1, Nd);  // lane0 = lane1 = x
    if (st.skip_source >= 0) {
      const auto row = static_cast<std::size_t>(st.skip_weight) * d;
      const T* src = enc_out_[static_cast<std::size_t>(st.skip_source)];
      T* dsrc = g_.enc[static_cast<std::size_t>(st.skip_source)];
      const T* g_row = skip_g != nullptr ? skip_g + row : nullptr;
      T* dg_row = skip_dg != nullptr ? skip_dg + row : nullptr;
      if (st.skip_into_lane0)
        ops_.skip_backward(g_.stream, dsrc, skip_dw + row, dg_row, s.pre_skip, src, skip_w + row, g_row, N, d);
      if (st.skip_into_lane1)
        ops_.skip_backward(g_.lane1, dsrc, skip_dw + row, dg_row, s.pre_skip_lane1, src, skip_w + row, g_row, N, d);
    }
  }

  // Embeddings: the stream started as x0, which every resid_mix also read.
  ops_.add_into(g_.stream, g_.x0, Nd);
  const T* de_norm = g_.stream;
  if (cfg_.smear_gate) {
    ops_.smear_backward(g_.scratch, model_grad(ModelTensor::smear_gate), g_.stream, e_norm_, model_param(ModelTensor::smear_gate), batch_, seq_, d);
    de_norm = g_.scratch;
  }
  ops_.rmsnorm_backward(g_.xin, de_norm, e_raw_, rstd_e_, N, d, T(1), false);
  ops_.embedding_backward(model_grad(ModelTensor::tok_emb), ids_, g_.xin, N, d);
  if (cfg_.bigram.enabled) {
    const int db = static_cast<int>(cfg_.bigram.dim);
    ops_.add_scaled_backward(g_.da, model_grad(ModelTensor::bigram_scale), nullptr, g_.xin, bigram_proj_, model_param(ModelTensor::bigram_scale), nullptr,
                             Nd, false);
    ops_.matmul_backward(g_.scratch, model_grad(ModelTensor::bigram_proj), g_.da, bigram_emb_, model_param(ModelTensor::bigram_proj), N, db,
                         d, false);
    ops_.embedding_backward(model_grad(ModelTensor::bigram_embed), bigram_ids_, g_.scratch, N, db);
  }
  if (cfg_.value_embed.enabled) {
    const int dve = static_cast<int>(cfg_.value_embed.dim);
    const int kvd = static_cast<int>(cfg_.num_kv_heads * cfg_.head_dim());
    ops_.matmul_backward(g_.scratch, model_grad(ModelTensor::ve_proj), g_.ve, ve_emb_, model_param(ModelTensor::ve_proj), N,
                         dve, kvd, false);
    ops_.embedding_backward(model_grad(ModelTensor::ve_embed), ids_, g_.scratch, N, dve);
  }
}

template <class T>
std::vector<T> Model<T>::logits_host() const {
  if (logits_are_grads_) fail(ErrorKind::internal, "model: logits_host() after a backward replaced the logits");
  std::vector<T> v(static_cast<std::size_t>(batch_) * seq_ * cfg_.vocab_size);
  ops_.to_host(v.data(), logits_, v.size() * sizeof(T));
  return v;
}

template class Model<float>;
template class Model<double>;

}  // namespace pgolf::model
