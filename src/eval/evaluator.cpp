#include "eval/evaluator.hpp"

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/error.hpp"
#include "common/progress.hpp"
#include "common/strings.hpp"
#include "data/shard.hpp"

namespace pgolf::eval {

ValStream load_val_stream(const config::Config& c) {
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

EvalResult evaluate(model::Model<float>& model, const ValStream& stream, const data::ByteTables& tables,
                    const EvalOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const std::int64_t N = stream.targets();
  const int T = static_cast<int>(model.config().seq_len);
  const std::vector<Window> plan = o.mode == Mode::nonoverlap ? nonoverlapping_windows(N, T)
                                                               : sliding_windows(N, T, o.stride, o.record_rescore);
  std::vector<double> nll_out;
  if (!o.nll_out.empty()) nll_out.assign(static_cast<std::size_t>(N), std::numeric_limits<double>::quiet_NaN());

  data::BpbSums sums;
  std::vector<std::int32_t> ids, targets;
  std::vector<float> nll;
  Progress progress(cat("eval ", mode_name(o.mode)));
  std::size_t done = 0;
  while (done < plan.size()) {
    // A batch: consecutive windows of the same length.
    const int len = plan[done].length;
    std::size_t end = done;
    while (end < plan.size() && plan[end].length == len && static_cast<int>(end - done) < o.batch_windows) ++end;
    const int b = static_cast<int>(end - done);
    ids.resize(static_cast<std::size_t>(b) * len);
    targets.resize(ids.size());
    for (int w = 0; w < b; ++w) {
      const auto s = static_cast<std::size_t>(plan[done + static_cast<std::size_t>(w)].start);
      for (int p = 0; p < len; ++p) {
        ids[static_cast<std::size_t>(w) * len + p] = stream.tokens[s + static_cast<std::size_t>(p)];
        targets[static_cast<std::size_t>(w) * len + p] = stream.tokens[s + static_cast<std::size_t>(p) + 1];
      }
    }
    nll.resize(ids.size());
    model.forward(ids.data(), targets.data(), b, len, nll.data());
    for (int w = 0; w < b; ++w) {
      const Window& win = plan[done + static_cast<std::size_t>(w)];
      for (int p = win.score_from; p < win.length; ++p) {
        const std::size_t i = static_cast<std::size_t>(win.start + p);  // target index
        const double v = nll[static_cast<std::size_t>(w) * len + p];
        sums.add(stream.tokens[i], stream.tokens[i + 1], v, tables);
        if (!nll_out.empty()) nll_out[i] = v;
      }
    }
    done = end;
    const double secs = progress.elapsed_s();
    const double rate = static_cast<double>(done) / std::max(secs, 1e-9);
    if (o.progress)
      progress.update(cat(done, "/", plan.size(), " windows, ", fixed(rate, 1), " windows/s, ETA ",
                        fixed(static_cast<double>(plan.size() - done) / std::max(rate, 1e-9), 0), " s, running bpb ",
                        fixed(sums.bpb(), 4)));
  }
  if (!o.record_rescore && sums.scored != N)
    fail(ErrorKind::internal, "eval: scored ", sums.scored, " targets of ", N, " (every target must be scored once)");

  EvalResult r;
  r.mode = mode_name(o.mode);
  r.val_loss = sums.mean_loss();
  r.val_bpb = sums.bpb();
  r.scored = sums.scored;
  r.targets = N;
  r.bytes = sums.bytes;
  r.windows = static_cast<std::int64_t>(plan.size());
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (o.progress)
    progress.finish(cat(plan.size(), " windows, ", with_commas(static_cast<std::uint64_t>(r.scored)), " targets scored in ",
                        fixed(r.seconds, 1), " s"));
  if (!nll_out.empty()) {
    AtomicFileWriter w(o.nll_out);
    w.write(std::as_bytes(std::span<const double>(nll_out)));
    w.commit();
  }
  return r;
}

}  // namespace pgolf::eval
