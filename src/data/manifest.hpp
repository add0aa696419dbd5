#pragma once
// Shards and their tokenizer must belong together: token ids from one vocabulary scored with
// another's byte tables give a wrong bits-per-byte without any error. `pgolf prepare` records
// the tokenizer's SHA-256 in the manifest.json beside the shards; readers check it here.
#include <string>

#include "common/files.hpp"

namespace pgolf::data {

// When a manifest.json sits in the directory of the first shard matching `glob`, checks that the
// tokenizer it names is `tokenizer` (by content hash, or by vocab size for manifests without a
// hash): Error(data) naming both tokenizers and `what` (the config key of the shards, e.g.
// "data.train_files") otherwise, and for a manifest that is not valid JSON. Without a manifest
// (shards made by other tools) there is nothing to check.
void check_shard_tokenizer(const std::string& glob, const fs::path& tokenizer, const std::string& what);

}  // namespace pgolf::data
