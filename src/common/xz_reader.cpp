#include "common/xz_reader.hpp"

#include <fcntl.h>
#include <lzma.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.hpp"

namespace pgolf {

namespace {
constexpr std::size_t kChunk = 1 << 20;
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
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    fail(ErrorKind::io, path.string(), ": not a regular file");
  }
  file_size_ = static_cast<std::uint64_t>(st.st_size);
  raw_.resize(kChunk);
  ssize_t n = ::read(fd_, raw_.data(), raw_.size());
  if (n < 0) fail(ErrorKind::io, path.string(), ": read failed: ", std::strerror(errno));
  raw_.resize(static_cast<std::size_t>(n));
  raw_read_ = static_cast<std::uint64_t>(n);
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
}

LineReader::~LineReader() {
  if (fd_ >= 0) ::close(fd_);
}

bool LineReader::compressed() const { return xz_ != nullptr; }

bool LineReader::fill() {
  if (eof_) return false;
  decoded_.erase(0, decoded_pos_);
  decoded_pos_ = 0;
  if (!xz_) {
    std::string buf(kChunk, '\0');
    ssize_t n;
    do n = ::read(fd_, buf.data(), buf.size());
    while (n < 0 && errno == EINTR);
    if (n < 0) fail(ErrorKind::io, path_.string(), ": read failed: ", std::strerror(errno));
    if (n == 0) {
      eof_ = true;
      return false;
    }
    raw_read_ += static_cast<std::uint64_t>(n);
    decoded_.append(buf.data(), static_cast<std::size_t>(n));
    return true;
  }
  if (xz_->finished) {
    eof_ = true;
    return false;
  }
  std::string out(kChunk, '\0');
  lzma_stream& s = xz_->stream;
  s.next_out = reinterpret_cast<std::uint8_t*>(out.data());
  s.avail_out = out.size();
  while (s.avail_out == out.size()) {  // loop until some output is produced or the stream ends
    lzma_action action = LZMA_RUN;
    if (s.avail_in == 0) {
      raw_.resize(kChunk);
      ssize_t n;
      do n = ::read(fd_, raw_.data(), raw_.size());
      while (n < 0 && errno == EINTR);
      if (n < 0) fail(ErrorKind::io, path_.string(), ": read failed: ", std::strerror(errno));
      raw_.resize(static_cast<std::size_t>(n));
      raw_read_ += static_cast<std::uint64_t>(n);
      s.next_in = reinterpret_cast<const std::uint8_t*>(raw_.data());
      s.avail_in = raw_.size();
      if (n == 0) action = LZMA_FINISH;
    }
    lzma_ret rc = lzma_code(&s, action);
    if (rc == LZMA_STREAM_END) {
      xz_->finished = true;
      break;
    }
    if (rc != LZMA_OK)
      fail(ErrorKind::data, path_.string(), ": corrupt or truncated xz data (liblzma error ", static_cast<int>(rc), ")");
  }
  decoded_.append(out.data(), out.size() - s.avail_out);
  if (out.size() == s.avail_out && xz_->finished) {
    eof_ = true;
    return !decoded_.empty();
  }
  return true;
}

bool LineReader::next(std::string& line) {
  while (true) {
    auto nl = decoded_.find('\n', decoded_pos_);
    if (nl != std::string::npos) {
      line.assign(decoded_, decoded_pos_, nl - decoded_pos_);
      decoded_pos_ = nl + 1;
      ++line_number_;
      return true;
    }
    if (!fill()) {
      if (decoded_pos_ < decoded_.size()) {  // last line without a newline
        line.assign(decoded_, decoded_pos_, std::string::npos);
        decoded_pos_ = decoded_.size();
        ++line_number_;
        return true;
      }
      return false;
    }
  }
}

}  // namespace pgolf
