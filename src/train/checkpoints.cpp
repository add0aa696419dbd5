#include "train/checkpoints.hpp"

#include <algorithm>
#include <charconv>

#include "common/error.hpp"
#include "common/finite.hpp"
#include "common/strings.hpp"
#include "io/safetensors.hpp"

namespace pgolf::train {

std::int64_t checkpoint_step(std::string_view name) {
  constexpr std::string_view prefix = "step_";
  if (name.substr(0, prefix.size()) != prefix || name.size() == prefix.size() || name.size() > prefix.size() + 18) return -1;
  std::int64_t step = -1;
  const char* end = name.data() + name.size();
  const auto [ptr, ec] = std::from_chars(name.data() + prefix.size(), end, step);
  return ec == std::errc() && ptr == end && step >= 0 ? step : -1;
}

std::string newest_intact_hint(const fs::path& root, std::int64_t before_step) {
  const auto all = list_checkpoints(root);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (before_step >= 0 && it->step >= before_step) continue;
    if (checkpoint_problem(it->path).empty())
      return cat("; the newest intact checkpoint", before_step >= 0 ? " before it" : "", " is ", it->name,
                 ": pass --resume-from ", it->name, " to continue from step ", it->step);
  }
  return cat("; no intact", before_step >= 0 ? " older" : "", " checkpoint is left in ", root.string(),
             " (start over with --force)");
}

std::vector<CheckpointDir> list_checkpoints(const fs::path& root) {
  std::vector<CheckpointDir> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    const std::int64_t step = checkpoint_step(name);
    if (step >= 0 && e.is_directory(ec)) out.push_back({name, step, e.path()});
  }
  std::sort(out.begin(), out.end(), [](const CheckpointDir& a, const CheckpointDir& b) { return a.step < b.step; });
  return out;
}

std::string checkpoint_problem(const fs::path& dir) {
  std::string steps[2];
  int i = 0;
  for (const char* file : {"model.safetensors", "state.safetensors"}) {
    const fs::path p = dir / file;
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) return cat(p.string(), " is missing");
    try {
      const auto f = io::SafetensorsFile::open(p);  // validates the whole layout: a cut file fails here
      const auto it = f.metadata().find("step");
      steps[i] = it == f.metadata().end() ? "(none)" : it->second;
      if (const auto bad = io::non_finite_tensors(f); !bad.empty())
        return cat(p.string(), ": \"", bad.front().first, "\" holds ", describe(bad.front().second));
    } catch (const Error& e) {
      return e.what();
    }
    ++i;
  }
  if (steps[0] != steps[1])
    return cat(dir.string(), ": model.safetensors is of step ", steps[0], " but state.safetensors of step ", steps[1]);
  return {};
}

fs::path resume_checkpoint(const fs::path& root, const std::string& resume_from) {
  if (!resume_from.empty()) {
    if (checkpoint_step(resume_from) < 0)
      fail(ErrorKind::usage, "--resume-from ", resume_from, ": expected the name of a checkpoint directory such as step_0000040",
           " (see ", root.string(), ")");
    const fs::path dir = root / resume_from;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      std::string names;
      for (const auto& c : list_checkpoints(root)) names += (names.empty() ? "" : ", ") + c.name;
      fail(ErrorKind::usage, "--resume-from ", resume_from, ": ", dir.string(), " does not exist (checkpoints here: ",
           names.empty() ? std::string("none") : names, ")");
    }
    if (const std::string why = checkpoint_problem(dir); !why.empty())
      fail(ErrorKind::format, "--resume-from ", resume_from, ": the checkpoint is damaged: ", why, newest_intact_hint(root, checkpoint_step(resume_from)));
    return dir;
  }
  const fs::path latest = root / "latest";
  std::error_code ec;
  if (!fs::exists(latest, ec)) {
    if (list_checkpoints(root).empty())
      fail(ErrorKind::usage, "--resume: ", root.parent_path().string(), " has no checkpoint to resume (", latest.string(),
           " is missing)");
    fail(ErrorKind::format, latest.string(), ": is missing", newest_intact_hint(root));
  }
  if (!fs::is_regular_file(latest, ec) || fs::file_size(latest, ec) > 4096)
    fail(ErrorKind::format, latest.string(), ": is not a small file naming a checkpoint", newest_intact_hint(root));
  const std::string name(trim(read_file(latest, 4096)));
  if (name.empty()) fail(ErrorKind::format, latest.string(), ": is empty", newest_intact_hint(root));
  if (checkpoint_step(name) < 0)
    fail(ErrorKind::format, latest.string(), ": names \"", utf8_prefix(name, 200), "\", which is not a step_N checkpoint directory of ",
         root.string(), newest_intact_hint(root));
  const fs::path dir = root / name;
  if (!fs::is_directory(dir, ec))
    fail(ErrorKind::format, latest.string(), ": names ", name, ", which does not exist", newest_intact_hint(root, checkpoint_step(name)));
  if (const std::string why = checkpoint_problem(dir); !why.empty())
    fail(ErrorKind::format, latest.string(), ": names ", name, ", which is damaged: ", why, newest_intact_hint(root, checkpoint_step(name)));
  return dir;
}

}  // namespace pgolf::train
