#include "export/artifact.hpp"

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <lzma.h>

#include <array>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "common/error.hpp"
#include "common/finite.hpp"
#include "export/code_bundle.hpp"

namespace pgolf::exporter {

namespace {

constexpr char kContainerMagic[8] = {'P', 'G', 'O', 'L', 'F', 'M', 'D', 'L'};
constexpr char kArtifactMagic[8] = {'P', 'G', 'O', 'L', 'F', 'A', 'R', 'T'};
constexpr std::uint32_t kVersion = 1;
// magic, version, compressor, shuffle, reserved (2), container size, model size, code size,
// CRC-32 of every other byte of the file, reserved (4).
constexpr std::size_t kArtifactHeader = 8 + 4 + 4 + 3 * 8 + 4 + 4;
constexpr std::size_t kArtifactCrcAt = 40;

// CRC-32 of the artifact except its own CRC field and the reserved word after it.
std::uint32_t artifact_crc(std::span<const std::byte> b) {
  return crc32(b.subspan(kArtifactHeader), crc32(b.first(kArtifactCrcAt)));
}
constexpr std::uint8_t kLzma = 1, kBrotli = 2;

template <class T>
void put(std::vector<std::byte>& out, T v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

template <class T>
T get(std::span<const std::byte> b, std::size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof(T));
  return v;
}

void append(std::vector<std::byte>& out, const void* data, std::size_t bytes) {
  const auto* p = static_cast<const std::byte*>(data);
  out.insert(out.end(), p, p + bytes);
}

// The element count, saturating at 2^63 (no real tensor comes near; a corrupt shape must not wrap).
std::uint64_t numel_of(const std::vector<std::int64_t>& shape) {
  constexpr std::uint64_t kLimit = std::uint64_t{1} << 63;
  std::uint64_t n = 1;
  for (auto d : shape) {
    const auto u = static_cast<std::uint64_t>(d);
    if (u != 0 && n > kLimit / u) return kLimit;
    n *= u;
  }
  return n;
}

}  // namespace

std::uint32_t crc32(std::span<const std::byte> bytes, std::uint32_t seed) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t c = ~seed;
  for (std::byte b : bytes) c = table[(c ^ static_cast<std::uint8_t>(b)) & 0xffu] ^ (c >> 8);
  return ~c;
}

std::vector<std::byte> encode_container(const std::vector<QuantizedTensor>& tensors, const json& metadata,
                                        std::vector<std::size_t>* q_offsets) {
  // Data grouped by kind (quantised values, then scales, then passthrough values): similar
  // bytes next to each other compress better.
  std::vector<std::byte> data;
  json table = json::array();
  std::vector<json> entries(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    entries[i] = {{"name", t.name}, {"shape", t.shape}, {"scheme", scheme_name(t.scheme)}};
    if (t.scheme == Scheme::int6 || t.scheme == Scheme::int8) entries[i]["clip_percentile"] = t.clip_percentile;
  }
  for (std::size_t i = 0; i < tensors.size(); ++i)
    if (!tensors[i].q.empty()) {
      entries[i]["q"] = {data.size(), tensors[i].q.size()};
      append(data, tensors[i].q.data(), tensors[i].q.size());
    }
  for (std::size_t i = 0; i < tensors.size(); ++i)
    if (!tensors[i].scales.empty()) {
      entries[i]["half"] = {data.size(), tensors[i].scales.size() * 2};
      append(data, tensors[i].scales.data(), tensors[i].scales.size() * 2);
    }
  for (std::size_t i = 0; i < tensors.size(); ++i)
    if (!tensors[i].values.empty()) {
      entries[i]["f32"] = {data.size(), tensors[i].values.size() * 4};
      append(data, tensors[i].values.data(), tensors[i].values.size() * 4);
    }
  for (auto& e : entries) table.push_back(std::move(e));
  const std::string header = dump_json({{"metadata", metadata}, {"tensors", table}});
  std::vector<std::byte> out;
  append(out, kContainerMagic, 8);
  put<std::uint32_t>(out, kVersion);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(header.size()));
  append(out, header.data(), header.size());
  if (q_offsets != nullptr) {
    q_offsets->assign(tensors.size(), SIZE_MAX);
    for (std::size_t i = 0; i < tensors.size(); ++i)
      if (table[i].contains("q")) (*q_offsets)[i] = out.size() + table[i]["q"][0].get<std::size_t>();
  }
  out.insert(out.end(), data.begin(), data.end());
  put<std::uint32_t>(out, crc32(out));
  return out;
}

void reseal_container(std::vector<std::byte>& c) {
  if (c.size() < 4) fail(ErrorKind::internal, "reseal_container: not a container");
  const std::uint32_t crc = crc32(std::span(c).first(c.size() - 4));
  std::memcpy(c.data() + c.size() - 4, &crc, sizeof crc);
}

Container decode_container(std::span<const std::byte> b, const std::string& origin) {
  auto bad = [&](const std::string& what) { fail(ErrorKind::format, origin, ": model container: ", what); };
  if (b.size() < 8 + 4 + 4 + 4) bad("too short");
  if (std::memcmp(b.data(), kContainerMagic, 8) != 0) bad("bad magic");
  const auto version = get<std::uint32_t>(b, 8);
  if (version != kVersion) bad(cat("unsupported version ", version, " (this build reads ", kVersion, ")"));
  if (get<std::uint32_t>(b, b.size() - 4) != crc32(b.first(b.size() - 4))) bad("checksum mismatch (corrupted data)");
  const auto header_len = get<std::uint32_t>(b, 12);
  if (16ull + header_len + 4 > b.size()) bad("header runs past the end");
  json header = parse_json_strict(std::string_view(reinterpret_cast<const char*>(b.data() + 16), header_len),
                                  origin + ": model container header", ErrorKind::format);
  const std::span<const std::byte> data = b.subspan(16 + header_len, b.size() - 16 - header_len - 4);
  Container c;
  try {
    c.metadata = header.at("metadata");
    for (const auto& e : header.at("tensors")) {
      QuantizedTensor t;
      t.name = e.at("name").get<std::string>();
      const json& shape = e.at("shape");
      if (!shape.is_array()) bad(cat("tensor \"", t.name, "\": the shape is not an array"));
      for (const auto& d : shape) {
        const auto v = json_unsigned(d);
        if (!v || *v > (std::uint64_t{1} << 40)) bad(cat("tensor \"", t.name, "\": bad shape ", shape.dump()));
        t.shape.push_back(static_cast<std::int64_t>(*v));
      }
      const std::string scheme = e.at("scheme").get<std::string>();
      if (scheme == "fp16") t.scheme = Scheme::fp16;
      else if (scheme == "fp32") t.scheme = Scheme::fp32;
      else if (scheme == "int6") t.scheme = Scheme::int6;
      else if (scheme == "int8") t.scheme = Scheme::int8;
      else bad(cat("tensor \"", t.name, "\": unknown scheme \"", scheme, "\""));
      const std::uint64_t n = numel_of(t.shape);
      if (n > data.size()) bad(cat("tensor \"", t.name, "\": ", n, " elements do not fit in ", data.size(), " bytes of data"));
      auto span_of = [&](const char* key, std::uint64_t want) -> std::span<const std::byte> {
        if (!e.contains(key)) bad(cat("tensor \"", t.name, "\": no \"", key, "\" data"));
        const auto off = json_unsigned(e.at(key).at(0)), len = json_unsigned(e.at(key).at(1));
        if (!off || !len) bad(cat("tensor \"", t.name, "\": \"", key, "\" is not [offset, length]"));
        if (*len != want) bad(cat("tensor \"", t.name, "\": \"", key, "\" holds ", *len, " bytes, expected ", want));
        if (*off > data.size() || *len > data.size() - *off) bad(cat("tensor \"", t.name, "\": data past the end"));
        return data.subspan(*off, *len);
      };
      if (t.scheme == Scheme::int6 || t.scheme == Scheme::int8) {
        t.clip_percentile = e.value("clip_percentile", 0.0);
        auto q = span_of("q", n);
        t.q.resize(n);
        std::memcpy(t.q.data(), q.data(), n);
        const std::int8_t lim = t.scheme == Scheme::int6 ? 31 : 127;
        for (auto v : t.q)
          if (v < -lim || v > lim) bad(cat("tensor \"", t.name, "\": value ", int(v), " outside [-", int(lim), ", ", int(lim), "]"));
        const auto rows = static_cast<std::uint64_t>(t.rows());
        auto s = span_of("half", rows * 2);
        t.scales.resize(rows);
        std::memcpy(t.scales.data(), s.data(), rows * 2);
        if (const auto f = find_non_finite_half(t.scales))
          bad(cat("tensor \"", t.name, "\": non-finite float16 row scale, ", describe(*f)));
      } else if (t.scheme == Scheme::fp16) {
        auto s = span_of("half", n * 2);
        t.scales.resize(n);
        std::memcpy(t.scales.data(), s.data(), n * 2);
        if (const auto f = find_non_finite_half(t.scales))
          bad(cat("tensor \"", t.name, "\": non-finite float16 value, ", describe(*f)));
      } else {
        auto v = span_of("f32", n * 4);
        t.values.resize(n);
        std::memcpy(t.values.data(), v.data(), n * 4);
        if (const auto f = find_non_finite(t.values))
          bad(cat("tensor \"", t.name, "\": non-finite float32 value, ", describe(*f)));
      }
      c.tensors.push_back(std::move(t));
    }
  } catch (const json::exception& e) {
    bad(cat("malformed tensor table: ", json_error_text(e)));
  }
  return c;
}

std::vector<std::byte> byte_shuffle(std::span<const std::byte> in, int stride) {
  if (stride <= 1) return {in.begin(), in.end()};
  std::vector<std::byte> out;
  out.reserve(in.size());
  for (int phase = 0; phase < stride; ++phase)
    for (std::size_t i = static_cast<std::size_t>(phase); i < in.size(); i += static_cast<std::size_t>(stride))
      out.push_back(in[i]);
  return out;
}

std::vector<std::byte> byte_unshuffle(std::span<const std::byte> in, int stride) {
  if (stride <= 1) return {in.begin(), in.end()};
  std::vector<std::byte> out(in.size());
  std::size_t k = 0;
  for (int phase = 0; phase < stride; ++phase)
    for (std::size_t i = static_cast<std::size_t>(phase); i < in.size(); i += static_cast<std::size_t>(stride))
      out[i] = in[k++];
  return out;
}

std::vector<std::byte> xz_compress(std::span<const std::byte> raw, int preset, bool extreme) {
  lzma_options_lzma opt;
  if (lzma_lzma_preset(&opt, static_cast<std::uint32_t>(preset) | (extreme ? LZMA_PRESET_EXTREME : 0u)))
    fail(ErrorKind::internal, "xz preset ", preset, " unavailable");
  std::uint32_t dict = LZMA_DICT_SIZE_MIN;
  while (dict < raw.size() && dict < opt.dict_size) dict *= 2;
  opt.dict_size = std::min(dict, opt.dict_size);
  lzma_filter filters[] = {{LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, nullptr}};
  std::vector<std::byte> out(lzma_stream_buffer_bound(raw.size()));
  std::size_t pos = 0;
  const lzma_ret rc = lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC64, nullptr,
                                                reinterpret_cast<const std::uint8_t*>(raw.data()), raw.size(),
                                                reinterpret_cast<std::uint8_t*>(out.data()), &pos, out.size());
  if (rc != LZMA_OK) fail(ErrorKind::internal, "xz compression failed (", static_cast<int>(rc), ")");
  out.resize(pos);
  return out;
}

std::vector<std::byte> compress(std::span<const std::byte> raw, const config::ExportConfig& e) {
  const std::vector<std::byte> input = byte_shuffle(raw, static_cast<int>(e.byte_shuffle_stride));
  std::vector<std::byte> out;
  if (e.compressor == config::Compressor::lzma) {
    out = xz_compress(input, static_cast<int>(e.lzma_preset), false);
  } else {
    std::size_t size = BrotliEncoderMaxCompressedSize(input.size());
    out.resize(size);
    if (BrotliEncoderCompress(static_cast<int>(e.brotli_quality), BROTLI_MAX_WINDOW_BITS, BROTLI_MODE_GENERIC, input.size(),
                              reinterpret_cast<const std::uint8_t*>(input.data()), &size,
                              reinterpret_cast<std::uint8_t*>(out.data())) == BROTLI_FALSE)
      fail(ErrorKind::internal, "brotli compression failed");
    out.resize(size);
  }
  return out;
}

std::vector<std::byte> xz_decompress(std::span<const std::byte> packed, std::uint64_t max_out, const std::string& what) {
  lzma_stream st = LZMA_STREAM_INIT;
  if (lzma_stream_decoder(&st, std::uint64_t{1} << 30, 0) != LZMA_OK) fail(ErrorKind::internal, "xz decoder init failed");
  std::vector<std::byte> out;
  std::vector<std::uint8_t> buf(std::size_t{1} << 16);
  st.next_in = reinterpret_cast<const std::uint8_t*>(packed.data());
  st.avail_in = packed.size();
  lzma_ret rc;
  do {
    st.next_out = buf.data();
    st.avail_out = buf.size();
    rc = lzma_code(&st, LZMA_FINISH);
    const auto* p = reinterpret_cast<const std::byte*>(buf.data());
    out.insert(out.end(), p, p + (buf.size() - st.avail_out));
  } while (rc == LZMA_OK && out.size() <= max_out);
  const bool all_input = st.avail_in == 0;
  lzma_end(&st);
  if (out.size() > max_out) fail(ErrorKind::format, what, " unpacks to more than ", max_out, " bytes");
  if (rc != LZMA_STREAM_END || !all_input) fail(ErrorKind::format, what, " is corrupted or truncated (xz error ", static_cast<int>(rc), ")");
  return out;
}

// Output grows with what the stream really holds: a corrupt size field cannot make the
// reader allocate more than the data unpacks to.
std::vector<std::byte> decompress(std::span<const std::byte> packed, std::uint8_t compressor, std::uint8_t shuffle,
                                  std::uint64_t raw_size, const std::string& origin) {
  const std::string what = origin + ": the model blob";
  std::vector<std::byte> out;
  if (compressor == kLzma) {
    out = xz_decompress(packed, raw_size, what);
  } else if (compressor == kBrotli) {
    BrotliDecoderState* st = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
    if (st == nullptr) fail(ErrorKind::internal, "brotli decoder init failed");
    std::size_t avail_in = packed.size();
    const auto* next_in = reinterpret_cast<const std::uint8_t*>(packed.data());
    std::vector<std::uint8_t> buf(std::size_t{1} << 16);
    BrotliDecoderResult rc;
    do {
      std::size_t avail_out = buf.size();
      std::uint8_t* next_out = buf.data();
      rc = BrotliDecoderDecompressStream(st, &avail_in, &next_in, &avail_out, &next_out, nullptr);
      const auto* p = reinterpret_cast<const std::byte*>(buf.data());
      out.insert(out.end(), p, p + (buf.size() - avail_out));
    } while (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT && out.size() <= raw_size);
    BrotliDecoderDestroyInstance(st);
    if (rc != BROTLI_DECODER_RESULT_SUCCESS || avail_in != 0 || out.size() > raw_size)
      fail(ErrorKind::format, what, " is corrupted or truncated (brotli)");
  } else {
    fail(ErrorKind::format, origin, ": unknown compressor id ", int(compressor));
  }
  if (out.size() != raw_size)
    fail(ErrorKind::format, what, " unpacks to ", out.size(), " bytes, the header announces ", raw_size);
  return byte_unshuffle(out, shuffle);
}

std::vector<std::byte> encode_artifact(std::span<const std::byte> model_blob, const config::ExportConfig& e,
                                       std::uint64_t container_raw_size, std::span<const std::byte> code_bundle,
                                       ArtifactSizes* sizes) {
  std::vector<std::byte> out;
  append(out, kArtifactMagic, 8);
  put<std::uint32_t>(out, kVersion);
  put<std::uint8_t>(out, e.compressor == config::Compressor::lzma ? kLzma : kBrotli);
  put<std::uint8_t>(out, static_cast<std::uint8_t>(e.byte_shuffle_stride > 1 ? e.byte_shuffle_stride : 0));
  put<std::uint16_t>(out, 0);  // reserved
  put<std::uint64_t>(out, container_raw_size);
  put<std::uint64_t>(out, model_blob.size());
  put<std::uint64_t>(out, code_bundle.size());
  put<std::uint32_t>(out, 0);  // CRC, filled in below
  put<std::uint32_t>(out, 0);  // reserved
  out.insert(out.end(), model_blob.begin(), model_blob.end());
  out.insert(out.end(), code_bundle.begin(), code_bundle.end());
  const std::uint32_t crc = artifact_crc(out);
  std::memcpy(out.data() + kArtifactCrcAt, &crc, sizeof crc);
  if (sizes != nullptr) *sizes = {container_raw_size, model_blob.size(), code_bundle.size(), kArtifactHeader};
  return out;
}

Artifact read_artifact(std::span<const std::byte> b, const std::string& origin) {
  if (b.size() < kArtifactHeader) fail(ErrorKind::format, origin, ": not a pgolf artifact (", b.size(), " bytes)");
  if (std::memcmp(b.data(), kArtifactMagic, 8) != 0) {
    // A safetensors file starts with its header length, then the JSON header.
    if (b[8] == std::byte{'{'})
      fail(ErrorKind::format, origin,
           ": this is a safetensors checkpoint, not a pgolf artifact: use --checkpoint (pgolf pack makes an artifact of it)");
    fail(ErrorKind::format, origin, ": not a pgolf artifact (bad magic)");
  }
  const auto version = get<std::uint32_t>(b, 8);
  if (version != kVersion)
    fail(ErrorKind::format, origin, ": artifact version ", version, ", this build reads ", kVersion);
  const auto compressor = get<std::uint8_t>(b, 12), shuffle = get<std::uint8_t>(b, 13);
  if (compressor != kLzma && compressor != kBrotli)
    fail(ErrorKind::format, origin, ": unknown compressor id ", int(compressor), " in the artifact header");
  if (shuffle == 1 || shuffle > 16)
    fail(ErrorKind::format, origin, ": bad byte-shuffle stride ", int(shuffle), " in the artifact header");
  if (get<std::uint16_t>(b, 14) != 0 || get<std::uint32_t>(b, kArtifactCrcAt + 4) != 0)
    fail(ErrorKind::format, origin, ": reserved header bytes are not zero");
  const auto raw = get<std::uint64_t>(b, 16), model = get<std::uint64_t>(b, 24), code = get<std::uint64_t>(b, 32);
  if (model > b.size() || code > b.size() || kArtifactHeader + model + code != b.size())
    fail(ErrorKind::format, origin, ": truncated or padded: the header announces ", kArtifactHeader + model + code,
         " bytes, the file has ", b.size());
  if (get<std::uint32_t>(b, kArtifactCrcAt) != artifact_crc(b))
    fail(ErrorKind::format, origin, ": checksum mismatch: the artifact is corrupted");
  Artifact a;
  a.sizes = {raw, model, code, kArtifactHeader};
  a.compressor = compressor == kLzma ? "lzma" : "brotli";
  a.shuffle_stride = shuffle;
  const auto container = decompress(b.subspan(kArtifactHeader, model), compressor, shuffle, raw, origin);
  a.container = decode_container(container, origin);
  a.code_bundle.assign(b.begin() + static_cast<std::ptrdiff_t>(kArtifactHeader + model), b.end());
  if (!a.code_bundle.empty()) (void)read_code_bundle(a.code_bundle, origin);  // checks its integrity
  return a;
}

Artifact read_artifact_file(const fs::path& path) {
  MappedFile f(path);
  return read_artifact(f.bytes(), path.string());
}

}  // namespace pgolf::exporter
