#include "data/manifest.hpp"

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/sha256.hpp"
#include "common/strings.hpp"
#include "data/tokenizer.hpp"

namespace pgolf::data {

void check_shard_tokenizer(const std::string& glob, const fs::path& tokenizer, const std::string& what) {
  const std::vector<fs::path> shards = glob_sorted(glob);
  if (shards.empty()) return;  // the shard reader reports that, naming the glob
  const fs::path manifest_path = shards.front().parent_path() / "manifest.json";
  std::error_code ec;
  if (!fs::is_regular_file(manifest_path, ec)) return;
  const json m = parse_json_strict(read_file(manifest_path, std::size_t{1} << 24), manifest_path.string(), ErrorKind::data);
  if (!m.is_object()) fail(ErrorKind::data, manifest_path.string(), ": not a JSON object");
  const std::string named = m.contains("tokenizer") && m["tokenizer"].is_string() ? m["tokenizer"].get<std::string>()
                                                                                  : std::string("(not named)");
  auto mismatch = [&](const std::string& recorded, const std::string& ours) {
    fail(ErrorKind::data, what, " ", glob, ": the shards were made with the tokenizer ", named, " (", recorded,
         ", per ", manifest_path.string(), "), but data.tokenizer is ", tokenizer.string(), " (", ours,
         "); use the tokenizer the shards were made with, or re-run pgolf prepare with this one");
  };
  if (m.contains("tokenizer_sha256")) {
    if (!m["tokenizer_sha256"].is_string())
      fail(ErrorKind::data, manifest_path.string(), ": \"tokenizer_sha256\" is not a string");
    const std::string recorded = m["tokenizer_sha256"].get<std::string>();
    const std::string ours = sha256_file_hex(tokenizer);
    if (recorded != ours) mismatch("sha256 " + recorded, "sha256 " + ours);
    return;
  }
  // An older manifest: the vocabulary size is all there is to compare.
  if (m.contains("vocab_size") && m["vocab_size"].is_number_integer()) {
    const std::int64_t recorded = m["vocab_size"].get<std::int64_t>();
    const std::int64_t ours = Tokenizer(tokenizer).vocab_size();
    if (recorded != ours) mismatch(cat("vocab ", recorded), cat("vocab ", ours));
  }
}

}  // namespace pgolf::data
