#pragma once
// `pgolf prepare`: raw text -> token shards with the challenge's conventions (the same as
// openai/parameter-golf data/download_hf_docs_and_tokenize.py): each document becomes
// [BOS] + ids with no EOS; the first `val_docs` documents form the val split and the rest
// the train split; each split is cut into shards of at most `shard_tokens` tokens, with
// documents allowed to cross shard boundaries. Optionally trains the tokenizer first.
#include <cstdint>
#include <string>
#include <vector>

#include "common/files.hpp"
#include "data/text_source.hpp"

namespace pgolf::data {

struct TokenizerTraining {
  std::int64_t vocab_size = 0;  // 0 = do not train; use PrepareOptions::tokenizer
  std::int64_t max_docs = 0;    // 0 = all documents
  fs::path output;              // where the .model goes (".vocab" next to it)
};

struct PrepareOptions {
  fs::path input;
  TextFormat format = TextFormat::automatic;
  TxtDocuments txt_documents = TxtDocuments::line;
  fs::path tokenizer;
  TokenizerTraining training;
  fs::path out_dir;
  std::string prefix = "fineweb";
  std::int64_t val_docs = 50000;
  std::int64_t shard_tokens = 100'000'000;
  std::int64_t max_docs = 0;  // 0 = all
  int threads = 0;            // 0 = all cores
  bool force = false;         // replace existing shards with the same prefix
};

struct SplitStats {
  std::int64_t docs = 0;
  std::int64_t tokens = 0;
  std::vector<std::string> files;
};

struct PrepareResult {
  fs::path tokenizer;
  SplitStats val;
  SplitStats train;
  double seconds = 0.0;
};

// Trains a SentencePiece BPE model with the challenge's settings (SPEC 2.2) on the
// documents of `input`; writes `training.output` atomically.
void train_tokenizer(const fs::path& input, TextFormat format, TxtDocuments txt_documents,
                     const TokenizerTraining& training, int threads);

PrepareResult prepare(const PrepareOptions& options);

}  // namespace pgolf::data
