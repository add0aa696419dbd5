#include "common/xz_reader.hpp"

#include <fcntl.h>
#include <lzma.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.hpp"

namespace pgolf {

namespace {
constexpr std::size_t kChunk = 1 << 20;

// read(2) that retries on EINTR; fails naming the file.
std::size_t read_some(int fd, char* buf, std::size_t n, const fs::path& path) {
  while (true) {
    ssize_t got = ::read(fd, buf, n);
    if (got >= 0) return static_cast<std::size_t>(got);
    if (errno != EINTR) fail(ErrorKind::io, path.string(), ": read failed: ", std::strerror(errno));
  }
}
constexpr unsigned char kXzMagic[6] = {0xFD, '7', 'z', 'X', 'Z', 0x00};
}  // namespace

struct LineReader::Xz {
  lzma_stream stream = LZMA_STREAM_INIT;
  bool finished = false;
  ~Xz() { lzma_end(&stream); }
};

LineReader::LineReader(const fs::path& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail(ErrorKind::io, path.string(), ": cannot open: ", std::strerror(errno));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) fail(ErrorKind::io, path.string(), ": not a regular file");
    file_size_ = static_cast<std::uint64_t>(st.st_size);
    raw_.resize(kChunk);
    raw_.resize(read_some(fd_, raw_.data(), raw_.size(), path_));
    raw_read_ = raw_.size();
    if (raw_.size() >= sizeof kXzMagic && std::memcmp(raw_.data(), kXzMagic, sizeof kXzMagic) == 0) {
      xz_ = std::make_unique<Xz>();
      if (lzma_stream_decoder(&xz_->stream, UINT64_MAX, LZMA_CONCATENATED) != LZMA_OK)
        fail(ErrorKind::internal, path.string(), ": cannot initialise the xz decoder");
      xz_->stream.next_in = reinterpret_cast<const std::uint8_t*>(raw_.data());
      xz_->stream.avail_in = raw_.size();
    } else {
      decoded_ = std::move(raw_);
      raw_.clear();
    }
  } catch (...) {
    ::close(fd_);  // the destructor does not run when the constructor throws
    fd_ = -1;
    throw;
  }
}

LineReader::~LineReader() {
  if (fd_ >= 0) ::close(fd_);
}

bool LineReader::compressed() const { return xz_ != nullptr; }

bool LineReader::fill() {
  if (eof_) return false;
  decoded_.erase(0, decoded_pos_);
  scan_pos_ -= decoded_pos_;
  decoded_pos_ = 0;
  const std::size_t before = decoded_.size();
  if (!xz_) {
    decoded_.resize(before + kChunk);
    std::size_t n = read_some(fd_, decoded_.data() + before, kChunk, path_);
    decoded_.resize(before + n);
    raw_read_ += n;
    if (n == 0) eof_ = true;
    return n > 0;
  }
  lzma_stream& s = xz_->stream;
  decoded_.resize(before + kChunk);
  s.next_out = reinterpret_cast<std::uint8_t*>(decoded_.data() + before);
  s.avail_out = kChunk;
  while (s.avail_out == kChunk && !xz_->finished) {  // until some output or the end of the stream
    lzma_action action = LZMA_RUN;
    if (s.avail_in == 0) {
      raw_.resize(kChunk);
      raw_.resize(read_some(fd_, raw_.data(), raw_.size(), path_));
      raw_read_ += raw_.size();
      s.next_in = reinterpret_cast<const std::uint8_t*>(raw_.data());
      s.avail_in = raw_.size();
      if (raw_.empty()) action = LZMA_FINISH;
    }
    lzma_ret rc = lzma_code(&s, action);
    if (rc == LZMA_STREAM_END) xz_->finished = true;
    else if (rc != LZMA_OK)
      fail(ErrorKind::data, path_.string(), ": corrupt or truncated xz data (liblzma error ", static_cast<int>(rc), ")");
  }
  const std::size_t produced = kChunk - s.avail_out;
  decoded_.resize(before + produced);
  if (produced == 0) eof_ = true;
  return produced > 0;
}

bool LineReader::next(std::string& line) {
  while (true) {
    // scan_pos_ remembers how far a long line was already searched, so refills stay linear.
    auto nl = decoded_.find('\n', std::max(scan_pos_, decoded_pos_));
    if (nl != std::string::npos) {
      line.assign(decoded_, decoded_pos_, nl - decoded_pos_);
      decoded_pos_ = nl + 1;
      scan_pos_ = decoded_pos_;
      ++line_number_;
      return true;
    }
    scan_pos_ = decoded_.size();
    if (!fill()) {
      if (decoded_pos_ < decoded_.size()) {  // last line without a newline
        line.assign(decoded_, decoded_pos_, std::string::npos);
        decoded_pos_ = decoded_.size();
        scan_pos_ = decoded_pos_;
        ++line_number_;
        return true;
      }
      return false;
    }
  }
}

}  // namespace pgolf
