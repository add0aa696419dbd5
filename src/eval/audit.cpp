#include "eval/audit.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>

#include "common/error.hpp"
#include "common/strings.hpp"

namespace pgolf::eval {

std::vector<AuditPosition> default_audit_positions(const EvalOptions& o, std::int64_t targets, int seq_len) {
  const std::int64_t N = targets;
  std::map<std::int64_t, std::string> chosen;  // token -> first reason given
  auto add = [&](std::int64_t token, std::string where) {
    if (token >= 1 && token <= N) chosen.emplace(token, std::move(where));
  };
  add(1, "stream start");
  add(N / 2, "stream middle");
  add(N, "stream end");
  const std::vector<Window> plan =
      o.mode == Mode::nonoverlap ? nonoverlapping_windows(N, seq_len) : sliding_windows(N, seq_len, o.stride, o.record_rescore);
  auto window_edges = [&](std::size_t i, const std::string& name) {
    if (i >= plan.size()) return;
    const Window& w = plan[i];
    // Target t is token t + 1.
    add(w.start, cat(name, " first input"));
    add(w.start + w.score_from + 1, cat(name, " first scored"));
    add(w.start + w.length, cat(name, " last scored"));
  };
  window_edges(1, "window 1");
  const std::size_t mid = plan.size() / 2;
  window_edges(mid, cat("window ", mid));
  for (std::size_t k = 1; k <= 3 && mid + k < plan.size(); ++k) add(plan[mid + k].start, cat("window ", mid + k, " first input"));
  if (o.ttt.enabled) {
    const std::int64_t C = o.ttt.chunk_tokens;
    add(C, "chunk 0 last token");
    add(C + 1, "chunk 1 first token");
    add(C + C / 2 + 1, "chunk 1 middle");
  }
  std::vector<AuditPosition> out;
  for (auto& [token, where] : chosen) out.push_back(AuditPosition{token, where});
  return out;
}

std::int64_t AuditReport::violations() const {
  std::int64_t v = base_miscounted > 0 ? 1 : 0;
  for (const auto& p : probes) v += p.violation() ? 1 : 0;
  return v;
}

namespace {

std::int64_t miscounted(const std::vector<std::uint8_t>& counts) {
  return static_cast<std::int64_t>(std::count_if(counts.begin(), counts.end(), [](std::uint8_t c) { return c != 1; }));
}

}  // namespace

AuditReport audit_eval(model::Model<float>& model, const std::vector<float>& weights, const ValStream& stream,
                       const data::ByteTables& tables, EvalOptions o, const std::vector<AuditPosition>& positions,
                       const std::function<void(const AuditProbe&, std::size_t, std::size_t)>& on_probe) {
  const auto start = std::chrono::steady_clock::now();
  const std::int64_t N = stream.targets();
  const auto V = static_cast<std::uint32_t>(model.config().vocab_size);  // up to 65,536
  o.keep_nll = true;
  o.nll_out.clear();
  o.progress = false;
  o.check_exactly_once = false;  // the audit counts and reports instead
  AuditReport report;
  report.mode = eval_label(o);
  report.compliant_by_construction = eval_compliant(o);
  report.targets = N;

  model.set_params(weights);
  const EvalResult base = evaluate(model, stream, tables, o);
  report.base_val_bpb = base.val_bpb;
  report.base_miscounted = miscounted(base.counts);

  ValStream perturbed = stream;
  for (std::size_t k = 0; k < positions.size(); ++k) {
    const AuditPosition& pos = positions[k];
    if (pos.token < 1 || pos.token > N)
      fail(ErrorKind::usage, "audit position ", pos.token, " is outside [1, ", N, "] (the val stream's last token is ", N,
           ")");
    const auto q = static_cast<std::size_t>(pos.token);
    perturbed.tokens[q] = static_cast<std::uint16_t>((stream.tokens[q] + 1u) % V);  // another valid id
    model.set_params(weights);
    const EvalResult run = evaluate(model, perturbed, tables, o);
    perturbed.tokens[q] = stream.tokens[q];

    AuditProbe p;
    p.position = pos;
    p.miscounted = miscounted(run.counts);
    // Targets t < q - 1, i.e. tokens before q, must be bit-identical.
    const std::int64_t compare_end = std::max<std::int64_t>(0, pos.token - 1);
    for (std::int64_t t = 0; t < compare_end; ++t) {
      const double a = base.nll[static_cast<std::size_t>(t)], b = run.nll[static_cast<std::size_t>(t)];
      ++p.compared;
      if (std::memcmp(&a, &b, sizeof a) != 0) {
        ++p.changed;
        if (p.first_changed < 0) p.first_changed = t;
        const double d = std::fabs(a - b);
        p.max_abs_delta = std::max(p.max_abs_delta, std::isnan(d) ? INFINITY : d);
      }
    }
    report.probes.push_back(p);
    if (on_probe) on_probe(p, k + 1, positions.size());
  }
  model.set_params(weights);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace pgolf::eval
