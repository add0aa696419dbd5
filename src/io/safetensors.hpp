#pragma once
// Safetensors (SPEC 5.4): 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the raw
// little-endian tensor data. Readers validate everything the format promises (known dtypes,
// sizes matching shapes, offsets in bounds, tensors tiling the data section without gaps or
// overlaps) and fail with Error(format) naming the file and the tensor.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/files.hpp"
#include "common/finite.hpp"

namespace pgolf::io {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };

std::size_t dtype_size(DType d);
const char* dtype_name(DType d);
std::optional<DType> dtype_from_name(std::string_view name);
bool is_floating(DType d);
std::string shape_text(const std::vector<std::int64_t>& shape);  // "[2, 3]"

struct TensorView {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> data;  // not necessarily aligned: read through memcpy
  std::int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Memory-maps and validates a file.
  static SafetensorsFile open(const fs::path& path);
  // Validates an in-memory image; the returned object views `bytes`, which must outlive it.
  static SafetensorsFile parse(std::span<const std::byte> bytes, const std::string& origin);

  const std::vector<TensorView>& tensors() const { return tensors_; }  // in data-offset order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& origin() const { return origin_; }
  std::uint64_t header_bytes() const { return header_bytes_; }

  const TensorView* find(std::string_view name) const;
  const TensorView& at(std::string_view name) const;  // Error(format) naming file and tensor
  // Converts F64/F32/F16/BF16 data to float32; other dtypes are an error naming the tensor.
  std::vector<float> to_float32(const TensorView& t) const;

 private:
  void parse_image(std::span<const std::byte> bytes);
  MappedFile file_;
  std::string origin_;
  std::uint64_t header_bytes_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
 public:
  // Copies `data`; its size must be numel(shape) * dtype_size(dtype). Names must be unique.
  void add(const std::string& name, DType dtype, std::vector<std::int64_t> shape, std::span<const std::byte> data);
  void add_f32(const std::string& name, std::vector<std::int64_t> shape, std::span<const float> values);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  std::vector<std::byte> serialize() const;
  void write(const fs::path& path) const;  // atomic

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> data;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// The floating-point tensors of `file` that hold NaN/Inf, each with its first bad value, in
// data order (for diagnosis; loaders that convert anyway scan their own copies).
std::vector<std::pair<std::string, NonFinite>> non_finite_tensors(const SafetensorsFile& file);

// IEEE half / bfloat16 conversions (round to nearest even on the way down).
float half_to_float(std::uint16_t h);
float bf16_to_float(std::uint16_t b);
std::uint16_t float_to_half(float f);
std::uint16_t float_to_bf16(float f);

}  // namespace pgolf::io
