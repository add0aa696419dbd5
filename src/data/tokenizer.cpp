#include "data/tokenizer.hpp"

#include <sentencepiece_processor.h>

#include <bit>
#include <cstring>

#include "common/error.hpp"

namespace pgolf::data {

namespace {

// A minimal protobuf wire-format reader: enough to walk ModelProto's fields.
class ProtoReader {
 public:
  ProtoReader(std::string_view data, const std::string& origin) : data_(data), origin_(origin) {}
  bool done() const { return pos_ >= data_.size(); }

  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) malformed("truncated varint");
      auto b = static_cast<std::uint8_t>(data_[pos_++]);
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    malformed("varint longer than 10 bytes");
  }

  // Reads a field key; returns {field number, wire type}.
  std::pair<std::uint32_t, int> key() {
    std::uint64_t k = varint();
    return {static_cast<std::uint32_t>(k >> 3), static_cast<int>(k & 7)};
  }

  std::string_view bytes() {
    std::uint64_t n = varint();
    if (n > data_.size() - pos_) malformed("length-delimited field runs past the end");
    std::string_view out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }

  std::uint32_t fixed32() {
    if (data_.size() - pos_ < 4) malformed("truncated fixed32");
    std::uint32_t v;
    std::memcpy(&v, data_.data() + pos_, 4);
    pos_ += 4;
    return v;
  }

  void skip(int wire_type) {
    switch (wire_type) {
      case 0: varint(); break;
      case 1:
        if (data_.size() - pos_ < 8) malformed("truncated fixed64");
        pos_ += 8;
        break;
      case 2: bytes(); break;
      case 5: fixed32(); break;
      default: malformed("unsupported wire type " + std::to_string(wire_type));
    }
  }

  [[noreturn]] void malformed(const std::string& what) const {
    fail(ErrorKind::data, origin_, ": not a SentencePiece model (", what, ")");
  }

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
  const std::string& origin_;
};

// Field numbers from sentencepiece_model.proto.
namespace field {
constexpr std::uint32_t model_trainer_spec = 2, model_normalizer_spec = 3;
constexpr std::uint32_t trainer_model_type = 3, trainer_vocab_size = 4, trainer_character_coverage = 10,
                        trainer_split_digits = 25, trainer_byte_fallback = 35, trainer_unk_id = 40,
                        trainer_bos_id = 41, trainer_eos_id = 42, trainer_pad_id = 43;
constexpr std::uint32_t normalizer_name = 1, normalizer_add_dummy_prefix = 3, normalizer_remove_extra_whitespaces = 4;
}  // namespace field

void parse_trainer_spec(std::string_view data, ModelSettings& s, const std::string& origin) {
  ProtoReader r(data, origin);
  while (!r.done()) {
    auto [num, wire] = r.key();
    auto as_int = [&] { return static_cast<int>(static_cast<std::int32_t>(r.varint())); };
    if (wire == 0 && num == field::trainer_model_type) s.model_type = as_int();
    else if (wire == 0 && num == field::trainer_vocab_size) s.trainer_vocab_size = as_int();
    else if (wire == 0 && num == field::trainer_split_digits) s.split_digits = r.varint() != 0;
    else if (wire == 0 && num == field::trainer_byte_fallback) s.byte_fallback = r.varint() != 0;
    else if (wire == 0 && num == field::trainer_unk_id) s.unk_id = as_int();
    else if (wire == 0 && num == field::trainer_bos_id) s.bos_id = as_int();
    else if (wire == 0 && num == field::trainer_eos_id) s.eos_id = as_int();
    else if (wire == 0 && num == field::trainer_pad_id) s.pad_id = as_int();
    else if (wire == 5 && num == field::trainer_character_coverage) s.character_coverage = std::bit_cast<float>(r.fixed32());
    else r.skip(wire);
  }
}

void parse_normalizer_spec(std::string_view data, ModelSettings& s, const std::string& origin) {
  ProtoReader r(data, origin);
  while (!r.done()) {
    auto [num, wire] = r.key();
    if (wire == 2 && num == field::normalizer_name) s.normalizer_name = std::string(r.bytes());
    else if (wire == 0 && num == field::normalizer_add_dummy_prefix) s.add_dummy_prefix = r.varint() != 0;
    else if (wire == 0 && num == field::normalizer_remove_extra_whitespaces) s.remove_extra_whitespaces = r.varint() != 0;
    else r.skip(wire);
  }
}

}  // namespace

ModelSettings parse_model_settings(std::string_view serialized, const std::string& origin) {
  ModelSettings s;
  ProtoReader r(serialized, origin);
  while (!r.done()) {
    auto [num, wire] = r.key();
    if (wire == 2 && num == field::model_trainer_spec) parse_trainer_spec(r.bytes(), s, origin);
    else if (wire == 2 && num == field::model_normalizer_spec) parse_normalizer_spec(r.bytes(), s, origin);
    else r.skip(wire);
  }
  return s;
}

const char* model_type_name(int model_type) {
  switch (model_type) {
    case 1: return "unigram";
    case 2: return "bpe";
    case 3: return "word";
    case 4: return "char";
    default: return "unknown";
  }
}

Tokenizer::Tokenizer(const fs::path& model_path) : path_(model_path) {
  std::string serialized = read_file(model_path, std::size_t{1} << 30);
  sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  auto status = sp_->LoadFromSerializedProto(serialized);
  if (!status.ok())
    fail(ErrorKind::data, model_path.string(), ": not a SentencePiece model: ", status.ToString());
  settings_ = parse_model_settings(serialized, model_path.string());
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int Tokenizer::bos_id() const { return sp_->bos_id(); }
int Tokenizer::eos_id() const { return sp_->eos_id(); }
int Tokenizer::pad_id() const { return sp_->pad_id(); }
int Tokenizer::unk_id() const { return sp_->unk_id(); }
bool Tokenizer::is_control(int id) const { return sp_->IsControl(id); }
bool Tokenizer::is_unknown(int id) const { return sp_->IsUnknown(id); }
bool Tokenizer::is_unused(int id) const { return sp_->IsUnused(id); }
bool Tokenizer::is_byte(int id) const { return sp_->IsByte(id); }
std::string Tokenizer::piece(int id) const { return sp_->IdToPiece(id); }

std::vector<int> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  auto status = sp_->Encode(text, &ids);
  if (!status.ok()) fail(ErrorKind::data, path_.string(), ": encoding failed: ", status.ToString());
  return ids;
}

std::string Tokenizer::decode(std::span<const std::uint16_t> ids) const {
  std::vector<int> v(ids.begin(), ids.end());
  for (int id : v)
    if (id >= vocab_size()) fail(ErrorKind::data, path_.string(), ": cannot decode id ", id, " >= vocab size ", vocab_size());
  std::string out;
  auto status = sp_->Decode(v, &out);
  if (!status.ok()) fail(ErrorKind::data, path_.string(), ": decoding failed: ", status.ToString());
  return out;
}

std::vector<std::string> convention_deviations(const Tokenizer& tok) {
  using C = ChallengeTokenizerSettings;
  std::vector<std::string> out;
  const ModelSettings& s = tok.settings();
  auto on_off = [](bool b) { return b ? "on" : "off"; };
  if (s.model_type != C::model_type)
    out.push_back(cat("model type is ", model_type_name(s.model_type), ", expected ", model_type_name(C::model_type)));
  if (s.byte_fallback != C::byte_fallback)
    out.push_back(cat("byte_fallback is ", on_off(s.byte_fallback), ", expected ", on_off(C::byte_fallback)));
  if (s.split_digits != C::split_digits)
    out.push_back(cat("split_digits is ", on_off(s.split_digits), ", expected ", on_off(C::split_digits)));
  if (tok.pad_id() != C::pad_id || tok.bos_id() != C::bos_id || tok.eos_id() != C::eos_id || tok.unk_id() != C::unk_id)
    out.push_back(cat("special ids are pad=", tok.pad_id(), " bos=", tok.bos_id(), " eos=", tok.eos_id(), " unk=",
                      tok.unk_id(), ", expected pad=", C::pad_id, " bos=", C::bos_id, " eos=", C::eos_id, " unk=", C::unk_id));
  if (s.add_dummy_prefix != C::add_dummy_prefix)
    out.push_back(cat("add_dummy_prefix is ", on_off(s.add_dummy_prefix), ", expected ", on_off(C::add_dummy_prefix)));
  if (s.normalizer_name != C::normalizer)
    out.push_back(cat("normalizer is \"", s.normalizer_name, "\", expected ", C::normalizer));
  return out;
}

}  // namespace pgolf::data
