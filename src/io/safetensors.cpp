#include "io/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "common/error.hpp"
#include "common/json.hpp"

namespace pgolf::io {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace {

constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit

struct DTypeInfo {
  DType dtype;
  const char* name;
  std::size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2},   {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2},   {DType::I8, "I8", 1},
    {DType::U64, "U64", 8}, {DType::U32, "U32", 4}, {DType::U16, "U16", 2},   {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1}};

// numel of a shape, or nullopt on overflow past 2^62.
std::optional<std::uint64_t> checked_numel(const std::vector<std::int64_t>& shape) {
  std::uint64_t n = 1;
  for (auto d : shape) {
    if (d < 0) return std::nullopt;
    if (d != 0 && n > (std::uint64_t{1} << 62) / static_cast<std::uint64_t>(d)) return std::nullopt;
    n *= static_cast<std::uint64_t>(d);
  }
  return n;
}

}  // namespace

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

bool is_floating(DType d) { return d == DType::F64 || d == DType::F32 || d == DType::F16 || d == DType::BF16; }

std::size_t dtype_size(DType d) {
  for (const auto& i : kDTypes)
    if (i.dtype == d) return i.size;
  return 0;
}

const char* dtype_name(DType d) {
  for (const auto& i : kDTypes)
    if (i.dtype == d) return i.name;
  return "?";
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& i : kDTypes)
    if (name == i.name) return i.dtype;
  return std::nullopt;
}

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

SafetensorsFile SafetensorsFile::open(const fs::path& path) {
  SafetensorsFile f;
  f.file_ = MappedFile(path);
  f.origin_ = path.string();
  f.parse_image(f.file_.bytes());
  return f;
}

SafetensorsFile SafetensorsFile::parse(std::span<const std::byte> bytes, const std::string& origin) {
  SafetensorsFile f;
  f.origin_ = origin;
  f.parse_image(bytes);
  return f;
}

void SafetensorsFile::parse_image(std::span<const std::byte> bytes) {
  const std::string& o = origin_;
  if (bytes.size() < 8) fail(ErrorKind::format, o, ": not a safetensors file: ", bytes.size(), " bytes is too small");
  // The one wrong file a user is likely to pass: pgolf's own artifact (its magic is fixed by
  // export/artifact.cpp, which this reader must not depend on).
  if (std::memcmp(bytes.data(), "PGOLFART", 8) == 0)
    fail(ErrorKind::format, o,
         ": this is a pgolf artifact, not a safetensors checkpoint: use --artifact (pgolf inspect artifact lists it)");
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > kMaxHeaderBytes) fail(ErrorKind::format, o, ": header length ", n, " exceeds the limit of ", kMaxHeaderBytes);
  if (n > bytes.size() - 8)
    fail(ErrorKind::format, o, ": header length ", n, " runs past the end of the file (", bytes.size(), " bytes)");
  header_bytes_ = n;
  std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + 8), n);
  json header = parse_json_strict(header_text, o + ": header", ErrorKind::format);
  if (!header.is_object()) fail(ErrorKind::format, o, ": header is not a JSON object");

  const std::span<const std::byte> data = bytes.subspan(8 + n);
  for (const auto& item : header.items()) {
    const std::string& name = item.key();
    const json& v = item.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(ErrorKind::format, o, ": __metadata__ must be an object of strings");
      for (const auto& m : v.items()) {
        if (!m.value().is_string())
          fail(ErrorKind::format, o, ": __metadata__.", m.key(), ": metadata values must be strings");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& what) { fail(ErrorKind::format, o, ": tensor \"", name, "\": ", what); };
    if (!v.is_object()) bad("entry is not an object");
    for (const auto& field : v.items())
      if (field.key() != "dtype" && field.key() != "shape" && field.key() != "data_offsets")
        bad("unknown field \"" + field.key() + "\"");
    if (!v.contains("dtype") || !v["dtype"].is_string()) bad("missing or non-string dtype");
    auto dtype = dtype_from_name(v["dtype"].get<std::string>());
    if (!dtype) bad("unknown dtype \"" + v["dtype"].get<std::string>() + "\"");
    if (!v.contains("shape") || !v["shape"].is_array()) bad("missing or non-list shape");
    std::vector<std::int64_t> shape;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<std::int64_t>() >= 0))
        bad("shape entries must be non-negative integers");
      if (d.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        bad("shape entry too large");
      shape.push_back(d.get<std::int64_t>());
    }
    auto numel = checked_numel(shape);
    if (!numel) bad("shape " + shape_text(shape) + " has more than 2^62 elements");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2 ||
        !v["data_offsets"][0].is_number_unsigned() || !v["data_offsets"][1].is_number_unsigned())
      bad("data_offsets must be two non-negative integers [begin, end]");
    auto begin = v["data_offsets"][0].get<std::uint64_t>();
    auto end = v["data_offsets"][1].get<std::uint64_t>();
    if (begin > end) bad(cat("data_offsets [", begin, ", ", end, "] are reversed"));
    if (end > data.size()) bad(cat("data_offsets end ", end, " is past the data section (", data.size(), " bytes)"));
    // Compare without forming numel * size, which can wrap around for huge shapes.
    const std::size_t item_bytes = dtype_size(*dtype);
    if (*numel > (end - begin) / item_bytes || *numel * item_bytes != end - begin)
      bad(cat("holds ", end - begin, " bytes but ", dtype_name(*dtype), " ", shape_text(shape), " needs ", *numel,
              " x ", item_bytes));
    tensors_.push_back(TensorView{name, *dtype, std::move(shape),
                                  data.subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(end - begin))});
  }
  // The tensors must tile the data section exactly: no gaps, no overlaps, nothing left over.
  std::sort(tensors_.begin(), tensors_.end(), [&](const TensorView& a, const TensorView& b) {
    if (a.data.data() != b.data.data()) return a.data.data() < b.data.data();
    return a.data.size() < b.data.size();
  });
  std::uint64_t cursor = 0;
  for (const auto& t : tensors_) {
    auto begin = static_cast<std::uint64_t>(t.data.data() - data.data());
    if (begin != cursor)
      fail(ErrorKind::format, o, ": tensor \"", t.name, "\" starts at data offset ", begin, " but the previous tensor ends at ",
           cursor, begin < cursor ? " (overlap)" : " (gap)");
    cursor = begin + t.data.size();
  }
  if (cursor != data.size())
    fail(ErrorKind::format, o, ": tensors cover ", cursor, " bytes of a ", data.size(), "-byte data section (trailing bytes)");
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorView& SafetensorsFile::at(std::string_view name) const {
  const TensorView* t = find(name);
  if (t == nullptr) fail(ErrorKind::format, origin_, ": no tensor named \"", name, "\"");
  return *t;
}

std::vector<float> SafetensorsFile::to_float32(const TensorView& t) const {
  const auto n = static_cast<std::size_t>(t.numel());
  std::vector<float> out(n);
  const std::byte* p = t.data.data();
  switch (t.dtype) {
    case DType::F32: std::memcpy(out.data(), p, n * 4); break;
    case DType::F64:
      for (std::size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out[i] = static_cast<float>(d);
      }
      break;
    case DType::F16:
    case DType::BF16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = t.dtype == DType::F16 ? half_to_float(h) : bf16_to_float(h);
      }
      break;
    default:
      fail(ErrorKind::format, origin_, ": tensor \"", t.name, "\" has dtype ", dtype_name(t.dtype),
           ", expected a floating-point dtype");
  }
  return out;
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                            std::span<const std::byte> data) {
  if (name.empty() || name == "__metadata__") fail(ErrorKind::format, "safetensors: invalid tensor name \"", name, "\"");
  for (const auto& e : entries_)
    if (e.name == name) fail(ErrorKind::format, "safetensors: tensor \"", name, "\" added twice");
  auto numel = checked_numel(shape);
  if (!numel || *numel > data.size() / std::max<std::size_t>(dtype_size(dtype), 1) ||
      *numel * dtype_size(dtype) != data.size())
    fail(ErrorKind::format, "safetensors: tensor \"", name, "\": ", data.size(), " bytes do not match ",
         dtype_name(dtype), " ", shape_text(shape));
  entries_.push_back(Entry{name, dtype, std::move(shape), std::vector<std::byte>(data.begin(), data.end())});
}

void SafetensorsWriter::add_f32(const std::string& name, std::vector<std::int64_t> shape, std::span<const float> values) {
  add(name, DType::F32, std::move(shape), std::as_bytes(values));
}

std::vector<std::byte> SafetensorsWriter::serialize() const {
  json header = json::object();
  if (!metadata_.empty()) {
    json meta = json::object();
    for (const auto& [k, v] : metadata_) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::uint64_t offset = 0;
  for (const auto& e : entries_) {
    header[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.data.size()}}};
    offset += e.data.size();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    fail(ErrorKind::format, "safetensors: cannot write the header: ", json_error_text(e));
  }
  while (text.size() % 8 != 0) text.push_back(' ');  // keeps the data section 8-byte aligned
  std::vector<std::byte> out(8 + text.size() + offset);
  std::uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::byte* p = out.data() + 8 + text.size();
  for (const auto& e : entries_) {
    if (!e.data.empty()) std::memcpy(p, e.data.data(), e.data.size());
    p += e.data.size();
  }
  return out;
}

void SafetensorsWriter::write(const fs::path& path) const { write_file_atomic(path, serialize()); }

std::vector<std::pair<std::string, NonFinite>> non_finite_tensors(const SafetensorsFile& file) {
  std::vector<std::pair<std::string, NonFinite>> out;
  for (const auto& t : file.tensors())
    if (is_floating(t.dtype))
      if (const auto bad = find_non_finite(file.to_float32(t))) out.emplace_back(t.name, *bad);
  return out;
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = (h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1f;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do {
        mant <<= 1;
        ++e;
      } while ((mant & 0x400u) == 0);
      bits = sign | static_cast<std::uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  return std::bit_cast<float>(bits);
}

float bf16_to_float(std::uint16_t b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16); }

std::uint16_t float_to_bf16(float f) {
  std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  if (std::isnan(f)) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
  return static_cast<std::uint16_t>(bits >> 16);
}

std::uint16_t float_to_half(float f) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (abs < 0x33000000u) return sign;  // < 2^-25 rounds to zero
    const std::uint32_t exp = abs >> 23;
    const std::uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126 - exp;  // 14..24
    std::uint32_t h = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1);
    const std::uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  std::uint32_t h = ((abs >> 13) - (112u << 10));
  const std::uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

}  // namespace pgolf::io
