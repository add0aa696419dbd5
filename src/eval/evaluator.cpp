#include "eval/evaluator.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <span>

#include "common/error.hpp"
#include "data/manifest.hpp"
#include "common/progress.hpp"
#include "common/strings.hpp"
#include "data/shard.hpp"
#include "eval/slot.hpp"
#include "eval/ttt.hpp"

namespace pgolf::eval {

ValStream load_val_stream(const config::Config& c) {
  data::check_shard_tokenizer(c.data.val_files, c.data.tokenizer, "data.val_files");
  data::ShardSet set(c.data.val_files, "val", c.model.vocab_size);
  ValStream s;
  s.origin = c.data.val_files;
  s.tokens = set.read_prefix(c.data.val_max_tokens);
  s.read_tokens = static_cast<std::int64_t>(s.tokens.size());
  if (c.data.trim_val) {
    const std::int64_t T = c.model.seq_len;
    const std::int64_t keep = (s.read_tokens - 1) / T * T + 1;
    if (keep < 2)
      fail(ErrorKind::data, c.data.val_files, ": ", s.read_tokens, " val tokens are fewer than one window of model.seq_len = ",
           T, " (+1); lower seq_len, raise data.val_max_tokens or set data.trim_val = false");
    s.tokens.resize(static_cast<std::size_t>(keep));
  }
  if (s.tokens.size() < 2) fail(ErrorKind::data, c.data.val_files, ": the val stream needs at least 2 tokens");
  return s;
}

const char* mode_name(Mode m) { return m == Mode::nonoverlap ? "nonoverlap" : "sliding"; }

EvalOptions eval_options(const config::Config& c) {
  EvalOptions o;
  o.mode = c.eval.sliding ? Mode::sliding : Mode::nonoverlap;
  o.stride = static_cast<int>(c.eval.stride);
  o.batch_windows = static_cast<int>(c.eval.batch_windows);
  o.record_rescore = c.eval.tail == config::SlidingTail::record_rescore;
  o.ttt = c.eval.ttt;
  o.slot = c.eval.slot;
  o.wallclock_budget_s = c.eval.wallclock_budget_s;
  return o;
}

std::string eval_label(const EvalOptions& o) {
  std::string s = mode_name(o.mode);
  if (o.ttt.enabled) s += "+ttt";
  if (o.slot.variant != config::SlotVariant::none) s += cat("+slot:", config::enum_name(o.slot.variant));
  return s;
}

bool eval_compliant(const EvalOptions& o) { return !o.record_rescore && slot_compliant(o.slot.variant); }

int eval_model_batch(const EvalOptions& o) {
  return static_cast<int>(std::max<std::int64_t>(o.batch_windows, o.ttt.enabled ? o.ttt.batch_seqs : 1));
}

model::ModelMode eval_model_mode(const EvalOptions& o) {
  return o.ttt.enabled ? model::ModelMode::training : model::ModelMode::inference;
}

std::uint64_t eval_extra_bytes(const config::ModelConfig& model, const EvalOptions& o) {
  std::uint64_t bytes = 0;
  if (o.ttt.enabled) bytes += model::ParamTable(model).total() * sizeof(float);  // SGD momentum
  if (o.slot.variant != config::SlotVariant::none)
    bytes += SlotHead::planned_bytes(model, o.batch_windows, static_cast<int>(model.seq_len));
  return bytes;
}

model::ModelFootprint eval_model_footprint(const config::ModelConfig& model, backend::Ops<float>& ops,
                                           const EvalOptions& o) {
  return model::Model<float>::plan(model, ops, eval_model_batch(o), static_cast<int>(model.seq_len), eval_model_mode(o));
}

backend::MemoryPlan eval_memory_plan(const config::ModelConfig& model, backend::Ops<float>& ops, const EvalOptions& o) {
  return model::memory_plan(eval_model_footprint(model, ops, o), {{"TTT/SLOT buffers", eval_extra_bytes(model, o)}});
}

std::unique_ptr<model::Model<float>> make_eval_model(const config::ModelConfig& model, backend::Ops<float>& ops,
                                                     const EvalOptions& o, bool recurrence_active) {
  auto net = std::make_unique<model::Model<float>>(model, ops, eval_model_batch(o), static_cast<int>(model.seq_len),
                                                   eval_model_mode(o));
  net->set_recurrence_active(recurrence_active);
  return net;
}

namespace {

// A fingerprint of every weight bit, taken around each score phase: scoring must not change
// the weights (SPEC 6.3's "a mode in which weights cannot change", checked, not assumed).
std::uint64_t weights_fingerprint(const model::Model<float>& model) {
  const std::vector<float> w = model.params_host();
  std::uint64_t h = 0x9e3779b97f4a7c15ull ^ w.size();
  for (float f : w) {
    std::uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    h = (h ^ bits) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  return h;
}

// Scores windows [first, last) of the plan in batches of equal-length windows.
class WindowScorer {
 public:
  WindowScorer(model::Model<float>& model, const ValStream& stream, const data::ByteTables& tables,
               const EvalOptions& o)
      : model_(model), stream_(stream), tables_(tables), o_(o) {
    if (o.slot.variant != config::SlotVariant::none)
      slot_ = std::make_unique<SlotHead>(model.ops(), model.config(), o.slot, o.batch_windows,
                                         static_cast<int>(model.config().seq_len));
    counts_.assign(static_cast<std::size_t>(stream.targets()), 0);
    if (!o.nll_out.empty() || o.keep_nll)
      nll_out_.assign(static_cast<std::size_t>(stream.targets()), std::numeric_limits<double>::quiet_NaN());
  }

  // Calls after_batch(windows in the batch) after each batch.
  template <class F>
  void score(std::span<const Window> windows, F&& after_batch) {
    std::size_t done = 0;
    while (done < windows.size()) {
      const int len = windows[done].length;
      std::size_t end = done;
      while (end < windows.size() && windows[end].length == len && static_cast<int>(end - done) < o_.batch_windows) ++end;
      score_batch(windows.subspan(done, end - done), len);
      after_batch(end - done);
      done = end;
    }
  }

  data::BpbSums sums;
  std::vector<std::uint8_t> counts_;
  std::vector<double> nll_out_;

 private:
  void score_batch(std::span<const Window> batch, int len) {
    const int b = static_cast<int>(batch.size());
    ids_.resize(static_cast<std::size_t>(b) * len);
    targets_.resize(ids_.size());
    for (int w = 0; w < b; ++w) {
      const auto s = static_cast<std::size_t>(batch[static_cast<std::size_t>(w)].start);
      for (int p = 0; p < len; ++p) {
        ids_[static_cast<std::size_t>(w) * len + p] = stream_.tokens[s + static_cast<std::size_t>(p)];
        targets_[static_cast<std::size_t>(w) * len + p] = stream_.tokens[s + static_cast<std::size_t>(p) + 1];
      }
    }
    nll_.resize(ids_.size());
    if (slot_) {
      model_.forward_hidden(ids_.data(), b, len);
      slot_->fit_and_score(model_, batch, len, targets_.data(), nll_.data());
    } else {
      model_.forward(ids_.data(), targets_.data(), b, len, nll_.data());
    }
    for (int w = 0; w < b; ++w) {
      const Window& win = batch[static_cast<std::size_t>(w)];
      for (int p = win.score_from; p < win.length; ++p) {
        const std::size_t i = static_cast<std::size_t>(win.start + p);  // target index
        const double v = nll_[static_cast<std::size_t>(w) * len + p];
        if (!std::isfinite(v))
          fail(ErrorKind::diverged, "eval ", eval_label(o_), ": target ", i, " has NLL ", v,
               o_.slot.variant != config::SlotVariant::none ? " (lower eval.slot.lr)"
               : o_.ttt.enabled                             ? " (lower eval.ttt.lr)"
                                                            : " (the weights are not finite)");
        sums.add(stream_.tokens[i], stream_.tokens[i + 1], v, tables_);
        if (counts_[i] < 255) ++counts_[i];
        if (!nll_out_.empty()) nll_out_[i] = v;
      }
    }
  }

  model::Model<float>& model_;
  const ValStream& stream_;
  const data::ByteTables& tables_;
  const EvalOptions& o_;
  std::unique_ptr<SlotHead> slot_;
  std::vector<std::int32_t> ids_, targets_;
  std::vector<float> nll_;
};

}  // namespace

EvalResult evaluate(model::Model<float>& model, const ValStream& stream, const data::ByteTables& tables,
                    const EvalOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  dist::LocalCommunicator local;
  dist::Communicator& comm = o.comm != nullptr ? *o.comm : local;
  const int W = comm.world_size(), rank = comm.rank();
  if (W > 1 && (!o.nll_out.empty() || o.keep_nll))
    fail(ErrorKind::usage, "eval: per-token NLLs (--nll-out, audits) need a single rank; run them without mpirun");
  const std::int64_t N = stream.targets();
  const int T = static_cast<int>(model.config().seq_len);
  if (model.max_batch() < eval_model_batch(o) || model.max_seq() < T)
    fail(ErrorKind::internal, "eval: the model holds ", model.max_batch(), " x ", model.max_seq(), ", the options need ",
         eval_model_batch(o), " x ", T);
  if (o.slot.variant != config::SlotVariant::none && o.slot.steps < 0)
    fail(ErrorKind::internal, "eval: SLOT with ", o.slot.steps, " steps");

  const std::vector<Window> plan = o.mode == Mode::nonoverlap ? nonoverlapping_windows(N, T)
                                                               : sliding_windows(N, T, o.stride, o.record_rescore);
  // Chunks (SPEC 6.3): each window belongs to the chunk holding its first scored target;
  // the plan's first scored targets never decrease, so a chunk's windows are contiguous.
  const std::int64_t C = o.ttt.enabled ? o.ttt.chunk_tokens : N;
  const std::int64_t n_chunks = (N + C - 1) / C;
  std::vector<std::size_t> chunk_begin(static_cast<std::size_t>(n_chunks) + 1, plan.size());
  {
    std::int64_t prev = 0;
    for (std::size_t i = plan.size(); i-- > 0;) {
      const std::int64_t c = (plan[i].start + plan[i].score_from) / C;
      chunk_begin[static_cast<std::size_t>(c)] = i;
    }
    for (std::int64_t c = n_chunks; c-- > 0;)  // empty chunks start where the next one does
      chunk_begin[static_cast<std::size_t>(c)] =
          std::min(chunk_begin[static_cast<std::size_t>(c)], chunk_begin[static_cast<std::size_t>(c) + 1]);
    for (const Window& w : plan) {
      const std::int64_t first = w.start + w.score_from;
      if (first < prev) fail(ErrorKind::internal, "eval: the window plan's first scored targets decrease");
      prev = first;
    }
  }

  WindowScorer scorer(model, stream, tables, o);
  std::unique_ptr<TttTrainer> ttt;
  if (o.ttt.enabled) ttt = std::make_unique<TttTrainer>(model, o.ttt, comm);
  const std::string label = eval_label(o);
  Progress progress(cat("eval ", label));
  EvalResult r;
  std::size_t windows_done = 0;  // plan windows this rank has passed (its own and the other ranks')
  std::int64_t chunk = 0;
  auto report = [&] {
    if (!o.progress) return;
    const double secs = progress.elapsed_s();
    const double rate = static_cast<double>(windows_done) / std::max(secs, 1e-9);
    progress.update(cat(o.ttt.enabled ? cat("chunk ", chunk + 1, "/", n_chunks, ", ") : std::string(), windows_done, "/",
                        plan.size(), " windows, ", fixed(rate, 1), " windows/s, ETA ",
                        fixed(static_cast<double>(plan.size() - windows_done) / std::max(rate, 1e-9), 0),
                        " s, running bpb ", fixed(scorer.sums.bpb(), 4)));
  };
  for (std::int64_t c = 0; c < n_chunks; ++c) {
    chunk = c;
    const std::size_t cb = chunk_begin[static_cast<std::size_t>(c)], ce = chunk_begin[static_cast<std::size_t>(c) + 1];
    const std::size_t count = ce - cb;
    const std::size_t lo = cb + count * static_cast<std::size_t>(rank) / static_cast<std::size_t>(W);
    const std::size_t hi = cb + count * static_cast<std::size_t>(rank + 1) / static_cast<std::size_t>(W);

    const std::uint64_t before = weights_fingerprint(model);
    windows_done = cb;
    scorer.score(std::span<const Window>(plan).subspan(lo, hi - lo), [&](std::size_t b) {
      windows_done += b * static_cast<std::size_t>(W);
      report();
    });
    if (weights_fingerprint(model) != before)
      fail(ErrorKind::internal, "eval: the weights changed while chunk ", c, " was being scored");
    windows_done = ce;

    if (ttt && c + 1 < n_chunks) {
      const auto t0 = std::chrono::steady_clock::now();
      const std::int64_t begin = c * C, end = std::min(N, (c + 1) * C);
      r.ttt_steps += ttt->train_chunk(stream, begin, end, ttt_chunk_lr(o.ttt.lr, c, n_chunks));
      r.ttt_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    report();
  }

  data::BpbSums sums = scorer.sums;
  if (W > 1) {
    sums.nll_nats = comm.all_reduce_sum(sums.nll_nats);
    sums.bytes = static_cast<std::int64_t>(comm.all_reduce_sum(static_cast<double>(sums.bytes)));
    sums.scored = static_cast<std::int64_t>(comm.all_reduce_sum(static_cast<double>(sums.scored)));
  }
  if (!o.record_rescore && o.check_exactly_once) {
    // C4: every target scored exactly once (on one rank the counts say which one is not).
    if (sums.scored != N) fail(ErrorKind::internal, "eval: scored ", sums.scored, " targets of ", N, " (every target must be scored once)");
    if (W == 1)
      for (std::size_t i = 0; i < scorer.counts_.size(); ++i)
        if (scorer.counts_[i] != 1)
          fail(ErrorKind::internal, "eval: target ", i, " was scored ", static_cast<int>(scorer.counts_[i]), " times");
  }

  r.mode = label;
  r.compliant = eval_compliant(o);
  r.val_loss = sums.mean_loss();
  r.val_bpb = sums.bpb();
  r.scored = sums.scored;
  r.targets = N;
  r.bytes = sums.bytes;
  r.windows = static_cast<std::int64_t>(plan.size());
  r.chunks = n_chunks;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.tokens_per_s = static_cast<double>(r.scored) / std::max(r.seconds, 1e-9);
  if (o.progress)
    progress.finish(cat(plan.size(), " windows", o.ttt.enabled ? cat(" in ", n_chunks, " chunks") : std::string(), ", ",
                        with_commas(static_cast<std::uint64_t>(r.scored)), " targets scored in ", fixed(r.seconds, 1),
                        " s (", with_commas(static_cast<std::uint64_t>(r.tokens_per_s)), " tokens/s",
                        o.ttt.enabled ? cat(", TTT ", fixed(r.ttt_seconds, 1), " s") : std::string(), ")",
                        r.compliant ? std::string() : "; NON-COMPLIANT mode (SPEC 7)"));
  if (o.progress && o.wallclock_budget_s > 0 && r.seconds > o.wallclock_budget_s)
    std::fprintf(stderr, "eval %s: took %.1f s, over eval.wallclock_budget_s = %.0f s (the challenge's eval limit)\n",
                 label.c_str(), r.seconds, o.wallclock_budget_s);
  if (!o.nll_out.empty()) {
    AtomicFileWriter w(o.nll_out);
    w.write(std::as_bytes(std::span<const double>(scorer.nll_out_)));
    w.commit();
  }
  if (o.keep_nll) {
    r.nll = std::move(scorer.nll_out_);
    r.counts = std::move(scorer.counts_);
  }
  return r;
}

}  // namespace pgolf::eval
