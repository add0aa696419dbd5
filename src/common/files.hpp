#pragma once
// File utilities: whole-file reads, read-only memory maps, atomic writes, sorted globs.
// Every failure is an Error(io) whose message starts with the path.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pgolf {

namespace fs = std::filesystem;

// Reads a whole file; fails when it is larger than max_bytes (guards against /dev/zero & co).
std::string read_file(const fs::path& path, std::size_t max_bytes = std::size_t{1} << 32);

// A read-only memory map of a whole file. Empty files map to an empty span.
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const fs::path& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(data_), size_}; }
  std::size_t size() const { return size_; }
  const fs::path& path() const { return path_; }

 private:
  void release();
  fs::path path_;
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

// Writes to "<path>.tmp.<pid>" in the same directory, fsyncs, then renames over `path`,
// so readers never see a half-written file and a crash leaves the old file intact.
// Parent directories are created. Uncommitted temporaries are removed on destruction.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(fs::path path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(std::span<const std::byte> data);
  void write(std::string_view text) { write(std::as_bytes(std::span(text.data(), text.size()))); }
  std::uint64_t bytes_written() const { return written_; }
  void commit();  // flush, fsync, rename into place
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  fs::path tmp_;
  int fd_ = -1;
  std::uint64_t written_ = 0;
  bool committed_ = false;
};

void write_file_atomic(const fs::path& path, std::span<const std::byte> data);
void write_file_atomic(const fs::path& path, std::string_view text);

// fsync of a directory, so that renames and creations inside it survive a crash.
void fsync_directory(const fs::path& dir);

// Files matching a shell glob, sorted bytewise (the challenge reads shards in sorted order).
std::vector<fs::path> glob_sorted(const std::string& pattern);

}  // namespace pgolf
