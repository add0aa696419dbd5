#pragma once
// Line-oriented reading of text files that may be xz-compressed (detected by the xz magic,
// not the file name), so bundled corpora can stay small in the repository.
#include <cstdint>
#include <memory>
#include <string>

#include "common/files.hpp"

namespace pgolf {

class LineReader {
 public:
  explicit LineReader(const fs::path& path);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Next line without its '\n' (a trailing '\r' is kept: text is passed through unchanged).
  // Returns false at end of input. Errors (I/O, corrupt xz) are Error(io/data) naming the file.
  bool next(std::string& line);
  std::int64_t line_number() const { return line_number_; }     // 1-based number of the last line read
  std::uint64_t compressed_bytes_read() const { return raw_read_; }
  std::uint64_t file_size() const { return file_size_; }
  bool compressed() const;

 private:
  bool fill();  // refills decoded_ ; false at end of input
  struct Xz;
  fs::path path_;
  int fd_ = -1;
  std::uint64_t file_size_ = 0;
  std::uint64_t raw_read_ = 0;
  std::unique_ptr<Xz> xz_;
  std::string raw_;
  std::string decoded_;
  std::size_t decoded_pos_ = 0;
  std::size_t scan_pos_ = 0;
  bool eof_ = false;
  std::int64_t line_number_ = 0;
};

}  // namespace pgolf
