#pragma once
// The model orchestration (SPEC 3, docs/model.md), written once against backend::Ops<T>:
// forward with every activation the backward needs kept in one arena, and backward that
// accumulates parameter gradients into a buffer laid out like the parameters.
#include <array>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/ops.hpp"
#include "config/config.hpp"
#include "model/head.hpp"
#include "model/params.hpp"

namespace pgolf::model {

// One allocation holding every named activation buffer; the table is printed at start-up.
class Arena {
 public:
  template <class U>
  void add(U*& slot, std::string name, std::size_t count) {
    add_entry(std::move(name), count * sizeof(U), [&slot](std::byte* base, std::size_t offset) {
      slot = reinterpret_cast<U*>(base + offset);
    });
  }
  void allocate(backend::Device& device);
  void release(backend::Device& device);
  std::size_t bytes() const { return total_; }
  std::size_t size() const { return entries_.size(); }
  void print(std::FILE* out, bool detailed) const;

 private:
  struct Entry {
    std::string name;
    std::size_t bytes;
    std::size_t offset;
    std::function<void(std::byte*, std::size_t)> bind;
  };
  void add_entry(std::string name, std::size_t bytes, std::function<void(std::byte*, std::size_t)> bind);
  std::vector<Entry> entries_;
  std::size_t total_ = 0;
  std::byte* base_ = nullptr;
};

// The layer schedule of one forward pass (docs/model.md steps 5 and 9).
struct Step {
  int layer = 0;             // physical block
  bool encoder = false;
  int push_slot = -1;        // encoder: index of the stack slot this step's output fills
  int skip_source = -1;      // decoder: stack slot popped before the block (-1: none)
  int skip_weight = -1;      // row of skip_weights / skip_gates
  bool split_here = false;   // the first parallel-lane step
  bool parallel = false;     // runs as two lanes
  // Where the popped skip is added (forward and backward both read these): into x (lane0 after
  // the split) and into lane1. After the split both_lanes sets both; dead_x neither (the
  // record adds it to the abandoned x, which nothing reads).
  bool skip_into_lane0 = false;
  bool skip_into_lane1 = false;
};
std::vector<Step> layer_schedule(const config::ModelConfig& m, bool recurrence_active);

// Training keeps every step's activations for the backward pass; inference (evaluation)
// shares one set of sublayer buffers between steps and has no gradient buffers, so it needs
// a fraction of the memory.
enum class ModelMode { training, inference };

// The bytes a Model allocates on its backend, by kind.
struct ModelFootprint {
  std::uint64_t params = 0;
  std::uint64_t grads = 0;
  std::uint64_t tables = 0;  // RoPE tables and the loss accumulator
  std::uint64_t arena = 0;   // every activation buffer
  std::uint64_t workspaces = 0;  // the backend's op scratch reserved for this model's shapes
  backend::Device::Reservation reservation;  // those shapes (plans that share a backend merge them)
  std::uint64_t total() const { return params + grads + tables + arena + workspaces; }
};

// A memory plan of a model's footprint and what a command allocates beside it: parameters,
// gradients, the `extra` parts, then the activations (arena and tables).
backend::MemoryPlan memory_plan(const ModelFootprint& f, const std::vector<backend::MemoryPlan::Part>& extra);

template <class T>
class Model {
 public:
  // Activations are sized for up to max_batch sequences of max_seq <= model.seq_len tokens.
  // Only a training model holds gradients. An inference model may read the parameters of
  // another model (`shared_weights`, a device pointer to table().total() values that outlives
  // it: the trainer's validation model reads the training weights) instead of holding its own;
  // set_params() is then refused.
  Model(const config::ModelConfig& cfg, backend::Ops<T>& ops, int max_batch, int max_seq,
        ModelMode mode = ModelMode::training, const T* shared_weights = nullptr);
  ~Model();
  // What that constructor would allocate, without allocating anything (memory plans).
  static ModelFootprint plan(const config::ModelConfig& cfg, backend::Ops<T>& ops, int max_batch, int max_seq,
                             ModelMode mode = ModelMode::training, bool shared_weights = false);
  ModelFootprint footprint() const;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const config::ModelConfig& config() const { return cfg_; }
  bool training() const { return training_; }
  int max_batch() const { return max_batch_; }
  int max_seq() const { return max_seq_; }
  const ParamTable& table() const { return table_; }
  backend::Ops<T>& ops() { return ops_; }
  T* params() { return params_; }  // null when the weights are shared
  T* grads() { return grads_; }    // null for an inference model
  // The weights the forward and backward read: params() unless late QAT points them at a
  // buffer of fake-quantised weights (gradients still land in grads(): straight-through).
  void set_forward_weights(const T* weights) { weights_ = weights != nullptr ? weights : own_or_shared_; }

  void set_params(const std::vector<float>& host);
  void set_params(const std::vector<double>& host);
  std::vector<T> params_host() const;  // the parameters (shared ones too), not QAT's weights
  std::vector<T> grads_host() const;
  void zero_grads();

  void set_recurrence_active(bool active);
  bool recurrence_active() const { return recurrence_active_; }

  // Forward over `batch` sequences of `seq` tokens (ids and targets on the host, batch*seq
  // each). Returns the mean NLL; `nll` (host, batch*seq, may be null) receives each
  // position's NLL. Keeps what backward() needs.
  double forward(const std::int32_t* ids, const std::int32_t* targets, int batch, int seq, T* nll = nullptr);
  // The same forward without reading anything back (the training step's): afterwards
  // loss_sum() holds the summed NLL of the batch on the device, for later ops.
  void forward_loss(const std::int32_t* ids, const std::int32_t* targets, int batch, int seq);
  const T* loss_sum() const { return loss_sum_; }
  // The mean NLL of the last forward_loss() or forward_backward(), read back (one host sync).
  double read_mean_loss() const;
  // The transformer without the head (SLOT, docs/eval.md): afterwards final_hidden() holds
  // the stream entering the final norm and its normalised rows. backward() needs forward().
  void forward_hidden(const std::int32_t* ids, int batch, int seq);
  // Device pointers (batch*seq x model_dim) from the last forward or forward_hidden.
  const T* final_hidden(bool before_norm) const { return before_norm ? stream_final_ : h_final_; }
  // The output projection: tok_emb.weight when tied, lm_head.weight otherwise (vocab x dim).
  const T* head_weight() const;
  // Accumulates d(loss_scale * mean loss)/d(params) of the last forward into grads()
  // (loss_scale = 1/A averages A accumulation micro-steps). The loss's gradient replaces the
  // logits (one batch*seq x vocab buffer), so a second backward() needs another forward.
  void backward(double loss_scale = 1.0);
  // forward_loss() then backward(loss_scale), with the loss's forward and backward as one
  // fused op when the backend offers it (FusedOp::softcap_ce; the same values): the training
  // step's path.
  void forward_backward(const std::int32_t* ids, const std::int32_t* targets, int batch, int seq, double loss_scale = 1.0);
  // The path each fused op family takes in forward_backward(): {FusedOp, fused?} (pgolf bench;
  // qk_prep in every forward and backward too).
  std::vector<std::pair<backend::FusedOp, bool>> fused_paths() const;
  // The softcapped logits of the last forward (batch*seq x vocab), on the host; Error(internal)
  // once a backward has replaced them.
  std::vector<T> logits_host() const;

  // Called during forward() with the input of each block's linear layers (a device pointer to
  // n rows of `in` values) and the names of the weights that read it; GPTQ builds its
  // Hessians from these (SPEC 5.2). Pass an empty function to remove it.
  using LinearInputObserver = std::function<void(const std::vector<std::string>& weights, const T* x, int n, int in)>;
  void set_linear_input_observer(LinearInputObserver observer) { observer_ = std::move(observer); }

  const Arena& arena() const { return arena_; }
  void print_layout(std::FILE* out, bool detailed) const;
  // One start-up line: "model: 51 tensors, 778,644 parameters (...); activation arena 129 MiB in
  // 131 buffers for 16 x 256 tokens".
  std::string layout_summary() const;
  // Every parameter tensor and every arena buffer (for --verbose and a run's layout.txt).
  std::string layout_text() const;

 private:
  struct AttnActs {
    T *xin, *u, *rstd, *q, *rstd_q, *k, *rstd_k, *v, *qr, *qg, *kr, *y, *lse, *yx, *a, *out;
  };
  struct MlpActs {
    T *u, *rstd, *h, *z, *m, *out;
  };
  struct StepActs {
    AttnActs attn;
    MlpActs mlp;
    T* skip_out;     // x (or lane0) after the skip: a copy of the stream, then updated
    T* skip_out_b;   // lane1 after the skip (both_lanes)
    // What the forward fed each part of the step (pointers into the arena, or x0).
    const T* pre_skip;        // x (lane0) before the skip
    const T* pre_skip_lane1;  // lane1 before the skip
    const T* attn_in;         // stream entering attention (x, or lane0)
    const T* mlp_in;          // stream entering the MLP (attention's output, or lane1)
  };
  struct Grads {
    T *stream, *lane1, *x0, *xin, *du, *dq, *dk, *dv, *dqr, *dkr, *dy, *dyx, *da, *dh, *dz, *ve, *scratch;
    std::vector<T*> enc;
  };

  struct LayoutOnly {};
  Model(LayoutOnly, const config::ModelConfig& cfg, backend::Ops<T>& ops, int max_batch, int max_seq, ModelMode mode,
        bool shared_weights);
  void set_params_values(const T* values);
  std::size_t rope_table_values() const;  // per table: seq_len x max(rope.dims / 2, 1)
  // The largest shapes this model's ops see (its batch), reserved on the backend at construction.
  backend::Device::Reservation reservation() const;
  void build_arena();
  // Embedding to the stream entering the final norm (stream_final_), for `batch` x `seq` ids.
  void forward_body(const std::int32_t* ids, int batch, int seq);
  void attention_forward(StepActs& s, int layer, const T* stream_in);
  void mlp_forward(StepActs& s, int layer, const T* stream_in);
  // attention_backward takes the gradient of the sublayer's output in `dout` and leaves the
  // gradient of its input stream in `dstream_in` (which may be dout); mlp_backward turns
  // `dout` into the gradient of its input stream in place.
  void attention_backward(StepActs& s, int layer, const T* stream_in, T* dout, T* dstream_in);
  void mlp_backward(StepActs& s, int layer, const T* stream_in, T* dout);
  // Targets checked and staged for the loss.
  void stage_targets(const std::int32_t* targets, int n);
  // The backward from the head's input gradient (in g_.stream, or g_.xin with lanes) down.
  void backward_body();
  // The tensors of one block by role. block_param/block_grad find them through offsets into
  // the parameter buffer filled once from the table (block_offsets_), so the forward and
  // backward never build or look up a name; an absent tensor is Error(internal) naming it.
  enum class BlockTensor : int { c_q, c_k, c_v, attn_proj, q_gain, attn_scale, fc, mlp_proj, mlp_scale, resid_mix, count };
  static const char* block_tensor_suffix(BlockTensor t);  // "attn.c_q.weight", ...
  std::size_t block_offset(int layer, BlockTensor t) const;
  const T* block_param(int layer, BlockTensor t) const { return weights_ + block_offset(layer, t); }
  T* block_grad(int layer, BlockTensor t) { return grads_ + block_offset(layer, t); }
  // The tensors outside the blocks, found the same way (model_offsets_, ve_scale_offsets_).
  enum class ModelTensor : int {
    tok_emb, lm_head, bigram_embed, bigram_proj, bigram_scale, smear_gate, ve_embed, ve_proj, ve_scale,
    skip_weights, skip_gates, lane_merge, count
  };
  static const char* model_tensor_name(ModelTensor t);  // "tok_emb.weight", ...
  std::size_t model_offset(ModelTensor t) const;
  bool has_tensor(ModelTensor t) const { return model_offsets_[static_cast<std::size_t>(t)] != kAbsent; }
  const T* model_param(ModelTensor t) const { return weights_ + model_offset(t); }
  T* model_grad(ModelTensor t) { return grads_ + model_offset(t); }
  ModelTensor head_tensor() const { return cfg_.tie_embeddings ? ModelTensor::tok_emb : ModelTensor::lm_head; }
  // ve_layer_scales.k of the k-th value-embedding layer.
  const T* ve_scale_param(int k) const { return weights_ + ve_scale_offsets_.at(static_cast<std::size_t>(k)); }
  T* ve_scale_grad(int k) { return grads_ + ve_scale_offsets_.at(static_cast<std::size_t>(k)); }
  void observe_input(int layer, std::initializer_list<BlockTensor> tensors, const T* x, int n, int in);
  HeadShape<T> head_shape(int rows) const;  // the final norm, the projection, the softcap
  HeadActs<T> head_acts() const;
  T layer_multiplier(int layer) const;
  int ve_index(int layer) const;  // -1 when the layer has no value embedding
  bool has_xsa(int layer) const;

  config::ModelConfig cfg_;
  backend::Ops<T>& ops_;
  ParamTable table_;
  int max_batch_, max_seq_;
  bool training_;
  bool shares_weights_;
  int batch_ = 0, seq_ = 0;
  bool recurrence_active_ = false;
  bool have_forward_ = false;
  bool logits_are_grads_ = false;  // a backward replaced the logits with their gradient
  bool fused_ce_ = false;          // the backend offers FusedOp::softcap_ce
  bool fused_qk_ = false;          // the backend offers FusedOp::qk_prep
  std::vector<Step> schedule_;
  static constexpr std::size_t kAbsent = static_cast<std::size_t>(-1);
  std::vector<std::array<std::size_t, static_cast<std::size_t>(BlockTensor::count)>> block_offsets_;
  std::array<std::size_t, static_cast<std::size_t>(ModelTensor::count)> model_offsets_{};
  std::vector<std::size_t> ve_scale_offsets_;
  int max_steps_ = 0, max_enc_ = 0;

  T* params_ = nullptr;
  T* grads_ = nullptr;
  const T* own_or_shared_ = nullptr;  // params_, or the shared weights
  const T* weights_ = nullptr;
  T* rope_cos_ = nullptr;
  T* rope_sin_ = nullptr;
  T* loss_sum_ = nullptr;
  Arena arena_;
  std::int32_t *ids_ = nullptr, *targets_ = nullptr, *bigram_ids_ = nullptr;
  T *e_raw_ = nullptr, *bigram_emb_ = nullptr, *bigram_proj_ = nullptr, *e_norm_ = nullptr, *rstd_e_ = nullptr,
    *x0_ = nullptr, *ve_emb_ = nullptr, *ve_base_ = nullptr, *x_final_ = nullptr, *h_final_ = nullptr,
    *rstd_final_ = nullptr, *logits_ = nullptr, *nll_ = nullptr;
  const T *lane0_final_ = nullptr, *lane1_final_ = nullptr, *stream_final_ = nullptr;
  std::vector<StepActs> steps_;
  std::vector<const T*> enc_out_;  // stream after each encoder step (the skip stack)
  Grads g_;
  LinearInputObserver observer_;
};

extern template class Model<float>;
extern template class Model<double>;

}  // namespace pgolf::model
