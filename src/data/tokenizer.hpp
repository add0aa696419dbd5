#pragma once
// SentencePiece tokenizers (SPEC 2.2): loading with clear errors, encoding/decoding, and the
// model's own settings read from its protobuf so that `pgolf inspect tokenizer` can say
// whether a model follows the challenge's conventions.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/files.hpp"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace pgolf::data {

// Settings stored in a .model file (sentencepiece_model.proto), as far as pgolf needs them.
struct ModelSettings {
  int model_type = 1;  // 1 unigram, 2 bpe, 3 word, 4 char
  std::int64_t trainer_vocab_size = 0;
  bool byte_fallback = false;
  bool split_digits = false;
  float character_coverage = 0.0f;
  std::string normalizer_name;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  int pad_id = -1, bos_id = 1, eos_id = 2, unk_id = 0;
};
// Parses the fields above from a serialized ModelProto; Error(data) naming `origin` if malformed.
ModelSettings parse_model_settings(std::string_view serialized, const std::string& origin);
const char* model_type_name(int model_type);

class Tokenizer {
 public:
  explicit Tokenizer(const fs::path& model_path);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;
  int pad_id() const;
  int unk_id() const;
  bool is_control(int id) const;
  bool is_unknown(int id) const;
  bool is_unused(int id) const;
  bool is_byte(int id) const;
  std::string piece(int id) const;

  std::vector<int> encode(std::string_view text) const;  // thread-safe
  std::string decode(std::span<const std::uint16_t> ids) const;

  const ModelSettings& settings() const { return settings_; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  ModelSettings settings_;
};

// The challenge's tokenizer settings (SPEC 2.2, as openai/parameter-golf's exporter trains
// them). Tokenizer training uses them and convention_deviations() checks them.
struct ChallengeTokenizerSettings {
  static constexpr int model_type = 2;  // bpe
  static constexpr bool byte_fallback = true;
  static constexpr bool split_digits = true;
  static constexpr bool add_dummy_prefix = false;
  static constexpr const char* normalizer = "nmt_nfkc";
  static constexpr const char* character_coverage = "0.999";
  static constexpr int pad_id = 0, bos_id = 1, eos_id = 2, unk_id = 3;
};

// Differences between a tokenizer and the challenge's conventions (BPE, byte fallback,
// pad=0 bos=1 eos=2 unk=3, add_dummy_prefix=false, nmt_nfkc); empty when it conforms.
std::vector<std::string> convention_deviations(const Tokenizer& tok);

}  // namespace pgolf::data
