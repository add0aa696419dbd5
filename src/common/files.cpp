#include "common/files.hpp"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/error.hpp"

namespace pgolf {

namespace {

std::string errno_text() { return std::strerror(errno); }

// Opens read-only and checks that the path is a regular file (not a directory or device).
int open_regular_file(const fs::path& path, std::size_t& size_out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(ErrorKind::io, path.string(), ": cannot open: ", errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(ErrorKind::io, path.string(), ": cannot stat: ", errno_text());
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorKind::io, path.string(), ": not a regular file");
  }
  size_out = static_cast<std::size_t>(st.st_size);
  return fd;
}

}  // namespace

std::string read_file(const fs::path& path, std::size_t max_bytes) {
  std::size_t size = 0;
  int fd = open_regular_file(path, size);
  if (size > max_bytes) {
    ::close(fd);
    fail(ErrorKind::io, path.string(), ": file is ", size, " bytes, more than the limit of ", max_bytes);
  }
  std::string out(size, '\0');
  std::size_t done = 0;
  while (done < size) {
    ssize_t n = ::read(fd, out.data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      fail(ErrorKind::io, path.string(), ": read failed after ", done, " bytes: ",
           n == 0 ? "unexpected end of file" : errno_text());
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return out;
}

MappedFile::MappedFile(const fs::path& path) : path_(path) {
  int fd = open_regular_file(path, size_);
  if (size_ > 0) {
    data_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data_ == MAP_FAILED) {
      data_ = nullptr;
      ::close(fd);
      fail(ErrorKind::io, path.string(), ": mmap failed: ", errno_text());
    }
  }
  ::close(fd);
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void MappedFile::release() {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

AtomicFileWriter::AtomicFileWriter(fs::path path) : path_(std::move(path)) {
  std::error_code ec;
  if (path_.has_parent_path()) {
    fs::create_directories(path_.parent_path(), ec);
    if (ec) fail(ErrorKind::io, path_.parent_path().string(), ": cannot create directory: ", ec.message());
  }
  tmp_ = path_;
  tmp_ += cat(".tmp.", ::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(ErrorKind::io, tmp_.string(), ": cannot create: ", errno_text());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFileWriter::write(std::span<const std::byte> data) {
  const auto* p = reinterpret_cast<const char*>(data.data());
  std::size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(ErrorKind::io, tmp_.string(), ": write failed: ", errno_text());
    p += n;
    left -= static_cast<std::size_t>(n);
    written_ += static_cast<std::uint64_t>(n);
  }
}

void AtomicFileWriter::commit() {
  if (committed_) return;
  if (::fsync(fd_) != 0) fail(ErrorKind::io, tmp_.string(), ": fsync failed: ", errno_text());
  if (::close(fd_) != 0) {
    fd_ = -1;
    fail(ErrorKind::io, tmp_.string(), ": close failed: ", errno_text());
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0)
    fail(ErrorKind::io, path_.string(), ": cannot rename ", tmp_.string(), " into place: ", errno_text());
  committed_ = true;
}

void write_file_atomic(const fs::path& path, std::span<const std::byte> data) {
  AtomicFileWriter writer(path);
  writer.write(data);
  writer.commit();
}

void write_file_atomic(const fs::path& path, std::string_view text) {
  write_file_atomic(path, std::as_bytes(std::span(text.data(), text.size())));
}

void fsync_directory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail(ErrorKind::io, dir.string(), ": cannot open directory: ", errno_text());
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail(ErrorKind::io, dir.string(), ": fsync failed: ", errno_text());
}

std::vector<fs::path> glob_sorted(const std::string& pattern) {
  glob_t g{};
  int rc = ::glob(pattern.c_str(), GLOB_ERR, nullptr, &g);
  std::vector<fs::path> out;
  if (rc == 0) {
    for (std::size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  if (rc != 0 && rc != GLOB_NOMATCH) fail(ErrorKind::io, pattern, ": glob failed (code ", rc, ")");
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) { return a.native() < b.native(); });
  return out;
}

}  // namespace pgolf
