#include "model/params.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "common/error.hpp"
#include "common/finite.hpp"
#include "common/json.hpp"
#include "common/rng.hpp"
#include "common/strings.hpp"
#include "io/safetensors.hpp"

namespace pgolf::model {

namespace {

constexpr std::int64_t kPassthroughMaxNumel = 65536;  // SPEC 5.1 rule 1 (#549's threshold)

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

}  // namespace

QuantClass quant_class(const std::string& name, std::size_t numel, std::int64_t passthrough_max_numel) {
  if (numel <= static_cast<std::size_t>(passthrough_max_numel)) return QuantClass::fp16;
  for (const char* p : {"attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight", "smear", "ve_layer_scales",
                        "ve_shared.scale", "lane_merge"})
    if (contains(name, p)) return QuantClass::fp32_control;
  for (const char* p : {".attn.c_q.", ".attn.c_k.", ".attn.c_v.", ".attn.proj.", ".mlp.fc.", ".mlp.proj."})
    if (contains(name, p)) return QuantClass::int6;
  return QuantClass::int8;
}

bool qat_covers(const ParamSpec& p, config::QatScope scope, std::int64_t passthrough_max_numel) {
  if (scope == config::QatScope::all_int6) return quant_class(p.name, p.numel(), passthrough_max_numel) == QuantClass::int6;
  return p.name == "bigram.proj.weight" || p.name == "ve_shared.proj.weight";  // [record quirk] #549
}

bool ttt_trainable(const ParamSpec& p, std::int64_t freeze_blocks) { return p.block < 0 || p.block >= freeze_blocks; }

namespace {

std::uint64_t name_hash(const std::string& s) {  // FNV-1a
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace

const char* group_name(ParamGroup g) {
  switch (g) {
    case ParamGroup::matrix: return "matrix";
    case ParamGroup::embed: return "embed";
    case ParamGroup::scalar: return "scalar";
    case ParamGroup::head: return "head";
  }
  return "?";
}

const char* quant_name(QuantClass q) {
  switch (q) {
    case QuantClass::fp16: return "fp16";
    case QuantClass::fp32_control: return "fp32";
    case QuantClass::int6: return "int6";
    case QuantClass::int8: return "int8";
  }
  return "?";
}

std::size_t ParamSpec::numel() const {
  std::size_t n = 1;
  for (auto d : shape) n *= static_cast<std::size_t>(d);
  return n;
}

void ParamTable::add(std::string name, std::vector<std::int64_t> shape, InitKind init, double value, ParamGroup group,
                     int block) {
  ParamSpec p;
  p.name = std::move(name);
  p.shape = std::move(shape);
  p.init = init;
  p.init_value = value;
  p.group = group;
  p.weight_decay = true;  // SPEC 4.2: every group uses decoupled weight decay
  p.quant = quant_class(p.name, p.numel(), kPassthroughMaxNumel);
  p.offset = total_;
  p.block = block;
  total_ += p.numel();
  index_[p.name] = specs_.size();
  specs_.push_back(std::move(p));
}

ParamTable::ParamTable(const config::ModelConfig& m) {
  const std::int64_t L = m.num_layers, d = m.model_dim, kvd = m.num_kv_heads * m.head_dim(), f = m.mlp_hidden();
  const std::int64_t n_skip = std::min(L / 2, L - L / 2);
  using G = ParamGroup;
  using I = InitKind;
  add("tok_emb.weight", {m.vocab_size, d}, I::normal, m.tok_emb_init_std, G::embed);
  if (m.bigram.enabled) {
    add("bigram.embed.weight", {m.bigram.vocab_size, m.bigram.dim}, I::zeros, 0, G::embed);
    add("bigram.proj.weight", {d, m.bigram.dim}, I::orthogonal, 0, G::scalar);
    add("bigram.scale", {}, I::constant, m.bigram.scale_init, G::scalar);
  }
  if (m.smear_gate) add("smear.gate", {d}, I::zeros, 0, G::scalar);
  if (n_skip > 0) {
    add("skip_weights", {n_skip, d}, I::constant, 1.0, G::scalar);
    if (m.sigmoid_skip_gates) add("skip_gates", {n_skip, d}, I::zeros, 0, G::scalar);
  }
  if (m.value_embed.enabled) {
    add("ve_shared.embed.weight", {m.vocab_size, m.value_embed.dim}, I::normal, m.value_embed.init_std, G::embed);
    add("ve_shared.proj.weight", {kvd, m.value_embed.dim}, I::orthogonal, 0, G::scalar);
    add("ve_shared.scale", {}, I::constant, m.value_embed.scale_init, G::scalar);
    for (std::size_t k = 0; k < m.value_embed.layers.size(); ++k)
      add(cat("ve_layer_scales.", k), {1}, I::constant, 1.0, G::scalar);
  }
  if (m.parallel_residual.start_layer >= 0)
    add("lane_merge", {}, I::constant, m.parallel_residual.lane_merge_init, G::scalar);
  if (!m.tie_embeddings) add("lm_head.weight", {m.vocab_size, d}, I::zeros, 0, G::head);
  for (std::int64_t i = 0; i < L; ++i) {
    const std::string b = cat("blocks.", i, ".");
    const int block = static_cast<int>(i);
    add(b + "attn.q_gain", {m.num_heads}, I::constant, m.qk_gain_init, G::scalar, block);
    add(b + "attn_scale", {d}, I::constant, 1.0, G::scalar, block);
    add(b + "mlp_scale", {d}, I::constant, 1.0, G::scalar, block);
    add(b + "resid_mix", {2, d}, I::resid_mix, 0, G::scalar, block);
  }
  // Matrix banks: same-shape matrices of all layers back to back.
  struct BankDef {
    const char* bank;
    std::vector<std::pair<const char*, InitKind>> members;
    std::int64_t rows, cols;
  };
  const BankDef defs[] = {
      {"qo", {{"attn.c_q.weight", I::orthogonal}, {"attn.proj.weight", I::zeros}}, d, d},
      {"kv", {{"attn.c_k.weight", I::orthogonal}, {"attn.c_v.weight", I::orthogonal}}, kvd, d},
      {"mlp_fc", {{"mlp.fc.weight", I::orthogonal}}, f, d},
      {"mlp_proj", {{"mlp.proj.weight", I::zeros}}, d, f},
  };
  for (const auto& def : defs) {
    Bank bank{def.bank, total_, 0, static_cast<int>(def.rows), static_cast<int>(def.cols)};
    for (const auto& [member, init] : def.members)
      for (std::int64_t i = 0; i < L; ++i) {
        add(cat("blocks.", i, ".", member), {def.rows, def.cols}, init, 0, G::matrix, static_cast<int>(i));
        ++bank.count;
      }
    banks_.push_back(bank);
  }
}

const ParamSpec* ParamTable::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &specs_[it->second];
}

const ParamSpec& ParamTable::at(const std::string& name) const {
  const ParamSpec* p = find(name);
  if (p == nullptr) fail(ErrorKind::internal, "parameter table has no tensor named \"", name, "\"");
  return *p;
}

std::map<std::string, std::size_t> ParamTable::group_totals() const {
  std::map<std::string, std::size_t> by_group;
  for (const auto& p : specs_) by_group[group_name(p.group)] += p.numel();
  return by_group;
}

void ParamTable::print(std::FILE* out, bool detailed) const {
  std::fprintf(out, "parameters: %zu tensors, %s values\n", specs_.size(), with_commas(total_).c_str());
  for (const auto& [g, n] : group_totals()) std::fprintf(out, "  %-7s %s\n", g.c_str(), with_commas(n).c_str());
  for (const auto& b : banks_)
    std::fprintf(out, "  bank %-8s %d x %d x %d at %s\n", b.name.c_str(), b.count, b.rows, b.cols,
                 with_commas(b.offset).c_str());
  if (!detailed) return;
  std::fprintf(out, "  %-34s %-14s %-7s %-5s %-12s %12s\n", "tensor", "shape", "group", "decay", "export", "offset");
  for (const auto& p : specs_)
    std::fprintf(out, "  %-34s %-14s %-7s %-5s %-12s %12s\n", p.name.c_str(), json(p.shape).dump().c_str(),
                 group_name(p.group), p.weight_decay ? "yes" : "no", quant_name(p.quant), with_commas(p.offset).c_str());
}

std::string ParamTable::summary() const {
  std::string groups;
  for (const auto& [g, n] : group_totals()) groups += cat(groups.empty() ? "" : ", ", g, " ", with_commas(n));
  return cat(specs_.size(), " tensors, ", with_commas(total_), " parameters (", groups, ")");
}

std::vector<double> random_orthogonal(int rows, int cols, std::uint64_t seed) {
  const bool wide = rows < cols;
  const int m = wide ? cols : rows, n = wide ? rows : cols;  // work on a tall m x n matrix
  Rng rng(seed);
  std::vector<double> a(static_cast<std::size_t>(m) * n);
  for (auto& x : a) x = rng.normal();
  auto at = [&](int i, int j) -> double& { return a[static_cast<std::size_t>(i) * n + j]; };
  // Householder QR: reflections stored in the lower part, R's diagonal kept aside.
  std::vector<std::vector<double>> reflections;
  std::vector<double> r_diag(static_cast<std::size_t>(n));
  for (int k = 0; k < n; ++k) {
    double norm = 0.0;
    for (int i = k; i < m; ++i) norm += at(i, k) * at(i, k);
    norm = std::sqrt(norm);
    const double alpha = at(k, k) > 0 ? -norm : norm;
    std::vector<double> v(static_cast<std::size_t>(m - k));
    for (int i = k; i < m; ++i) v[static_cast<std::size_t>(i - k)] = at(i, k);
    v[0] -= alpha;
    double vnorm = 0.0;
    for (double x : v) vnorm += x * x;
    vnorm = std::sqrt(vnorm);
    if (vnorm > 0)
      for (double& x : v) x /= vnorm;
    for (int j = k; j < n; ++j) {
      double dot = 0.0;
      for (int i = k; i < m; ++i) dot += v[static_cast<std::size_t>(i - k)] * at(i, j);
      for (int i = k; i < m; ++i) at(i, j) -= 2.0 * v[static_cast<std::size_t>(i - k)] * dot;
    }
    r_diag[static_cast<std::size_t>(k)] = at(k, k);
    reflections.push_back(std::move(v));
  }
  // Thin Q = H_0 ... H_{n-1} applied to the first n columns of the identity.
  std::vector<double> q(static_cast<std::size_t>(m) * n, 0.0);
  for (int j = 0; j < n; ++j) q[static_cast<std::size_t>(j) * n + j] = 1.0;
  for (int k = n - 1; k >= 0; --k) {
    const auto& v = reflections[static_cast<std::size_t>(k)];
    for (int j = 0; j < n; ++j) {
      double dot = 0.0;
      for (int i = k; i < m; ++i) dot += v[static_cast<std::size_t>(i - k)] * q[static_cast<std::size_t>(i) * n + j];
      for (int i = k; i < m; ++i) q[static_cast<std::size_t>(i) * n + j] -= 2.0 * v[static_cast<std::size_t>(i - k)] * dot;
    }
  }
  // Sign correction (Q D with D = sign(diag R)) makes the distribution uniform.
  for (int j = 0; j < n; ++j)
    if (r_diag[static_cast<std::size_t>(j)] < 0)
      for (int i = 0; i < m; ++i) q[static_cast<std::size_t>(i) * n + j] = -q[static_cast<std::size_t>(i) * n + j];
  if (!wide) return q;
  std::vector<double> t(static_cast<std::size_t>(rows) * cols);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) t[static_cast<std::size_t>(j) * cols + i] = q[static_cast<std::size_t>(i) * n + j];
  return t;
}

void init_params(const ParamTable& table, std::uint64_t seed, std::vector<float>& values) {
  values.assign(table.total(), 0.0f);
  for (const auto& p : table.specs()) {
    float* v = values.data() + p.offset;
    const std::uint64_t stream = seed * 0x9e3779b97f4a7c15ULL ^ name_hash(p.name);
    switch (p.init) {
      case InitKind::zeros: break;
      case InitKind::constant: std::fill(v, v + p.numel(), static_cast<float>(p.init_value)); break;
      case InitKind::normal: {
        Rng rng(stream);
        for (std::size_t i = 0; i < p.numel(); ++i) v[i] = static_cast<float>(rng.normal() * p.init_value);
        break;
      }
      case InitKind::orthogonal: {
        auto q = random_orthogonal(static_cast<int>(p.shape[0]), static_cast<int>(p.shape[1]), stream);
        for (std::size_t i = 0; i < p.numel(); ++i) v[i] = static_cast<float>(q[i]);
        break;
      }
      case InitKind::resid_mix: {
        const auto dim = static_cast<std::size_t>(p.shape[1]);
        std::fill(v, v + dim, 1.0f);  // row 0 = 1, row 1 = 0
        break;
      }
    }
  }
}

void save_checkpoint(const fs::path& path, const ParamTable& table, const std::vector<float>& values,
                     const std::map<std::string, std::string>& metadata) {
  if (values.size() != table.total())
    fail(ErrorKind::internal, "save_checkpoint: ", values.size(), " values for a table of ", table.total());
  io::SafetensorsWriter w;
  for (const auto& p : table.specs())
    w.add_f32(p.name, p.shape, std::span<const float>(values.data() + p.offset, p.numel()));
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  w.write(path);
}

std::vector<float> load_checkpoint(const fs::path& path, const ParamTable& table, const ModelCheck& check) {
  auto file = io::SafetensorsFile::open(path);
  // The recorded model config first: a different model.model_dim is best named as such, not as
  // the list of tensor shapes it changes (which stay fatal even with allow_mismatch).
  if (check.expected != nullptr) {
    const auto it = file.metadata().find("model_config");
    if (it == file.metadata().end()) {
      if (check.log != nullptr)
        std::fprintf(check.log, "note: %s records no model_config; only its tensor names and shapes are checked\n",
                     path.c_str());
    } else {
      config::check_recorded_model(
          parse_json_strict(it->second, path.string() + ": metadata model_config", ErrorKind::format), *check.expected,
          path.string(), "checkpoint", "trained", check.allow_mismatch, check.log);
    }
  }
  std::vector<float> values(table.total());
  std::vector<std::string> problems, non_finite;
  std::set<std::string> seen;
  for (const auto& p : table.specs()) {
    const io::TensorView* t = file.find(p.name);
    if (t == nullptr) {
      problems.push_back(cat("missing \"", p.name, "\" ", io::shape_text(p.shape)));
      continue;
    }
    seen.insert(p.name);
    if (t->shape != p.shape) {
      problems.push_back(cat("\"", p.name, "\" has shape ", io::shape_text(t->shape), ", the config needs ",
                             io::shape_text(p.shape)));
      continue;
    }
    if (!io::is_floating(t->dtype)) {
      problems.push_back(cat("\"", p.name, "\" has dtype ", io::dtype_name(t->dtype), ", expected a float type"));
      continue;
    }
    auto v = file.to_float32(*t);
    if (const auto bad = find_non_finite(v))
      non_finite.push_back(cat("\"", p.name, "\" ", io::shape_text(p.shape), ": ", describe(*bad)));
    std::copy(v.begin(), v.end(), values.begin() + static_cast<std::ptrdiff_t>(p.offset));
  }
  for (const auto& t : file.tensors())
    if (!seen.count(t.name) && table.find(t.name) == nullptr)
      problems.push_back(cat("unexpected \"", t.name, "\" (not a parameter of this config)"));
  auto listed = [](const std::vector<std::string>& lines) {
    std::string list;
    for (std::size_t i = 0; i < lines.size() && i < 12; ++i) list += "\n  " + lines[i];
    if (lines.size() > 12) list += cat("\n  ... and ", lines.size() - 12, " more");
    return list;
  };
  if (!problems.empty())
    fail(ErrorKind::format, path.string(), ": does not match the config's parameters:", listed(problems));
  // NaN or Inf weights would evaluate into a meaningless number (or pack into a broken
  // artifact): a checkpoint that holds any is damaged or comes from a diverged run.
  if (!non_finite.empty())
    fail(ErrorKind::format, path.string(), ": holds non-finite weights (a damaged checkpoint or a diverged run):",
         listed(non_finite));
  return values;
}

}  // namespace pgolf::model
