// fileio.cpp: mmap, durable and atomic writes, SHA-256 (FIPS 180-4).
#include "fileio.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "common.h"

namespace fw {

static std::string errno_text() { return std::strerror(errno); }

// ----------------------------------------------------------------------------
// MappedFile

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  FW_CHECK_HINT(fd >= 0, kIo, "cannot open " << path << ": " << errno_text(), "check that the file exists and is readable");
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    FW_CHECK(false, kIo, "cannot stat " << path << ": " << std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    FW_CHECK(false, kIo, path << " is not a regular file");
  }
  size_ = (size_t)st.st_size;
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    ::close(fd);
    FW_CHECK(p != MAP_FAILED, kIo, "cannot mmap " << path << ": " << std::strerror(e));
    data_ = (const uint8_t*)p;
  } else {
    ::close(fd);
  }
}

MappedFile::~MappedFile() {
  if (data_) ::munmap((void*)data_, size_);
}

MappedFile::MappedFile(MappedFile&& o) noexcept : path_(std::move(o.path_)), data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap((void*)data_, size_);
    path_ = std::move(o.path_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

// ----------------------------------------------------------------------------
// paths

bool path_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string path_join(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (a.back() == '/') return a + b;
  return a + "/" + b;
}

std::string read_file_text(const std::string& path) {
  MappedFile f(path);
  return std::string((const char*)f.data(), f.size());
}

void make_dirs(const std::string& path) {
  if (path.empty() || is_directory(path)) return;
  size_t slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) make_dirs(path.substr(0, slash));
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    FW_CHECK_HINT(false, kIo, "cannot create directory " << path << ": " << errno_text(), "check permissions and free space");
  }
}

void remove_all(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    for (const std::string& e : list_dir(path)) remove_all(path_join(path, e));
    FW_CHECK(::rmdir(path.c_str()) == 0, kIo, "cannot remove directory " << path << ": " << errno_text());
  } else {
    FW_CHECK(::unlink(path.c_str()) == 0, kIo, "cannot remove " << path << ": " << errno_text());
  }
}

std::vector<std::string> list_dir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  FW_CHECK(d != nullptr, kIo, "cannot list directory " << path << ": " << errno_text());
  std::vector<std::string> out;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// ----------------------------------------------------------------------------
// writes

static std::atomic<int64_t> g_fail_after{-1};

void io_set_fail_after_bytes(int64_t n) { g_fail_after.store(n); }

FileWriter::FileWriter(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  FW_CHECK_HINT(fd_ >= 0, kIo, "cannot create " << path << ": " << errno_text(), "check that the directory exists and is writable");
}

FileWriter::~FileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void FileWriter::write(const void* data, size_t n) {
  FW_CHECK(fd_ >= 0, kInternal, "write to closed file " << path_);
  const uint8_t* p = (const uint8_t*)data;
  size_t left = n;
  while (left > 0) {
    size_t chunk = std::min(left, (size_t)1 << 26);
    int64_t budget = g_fail_after.load();
    if (budget >= 0) {
      if ((int64_t)chunk > budget) {
        // write what the "disk" still takes, then fail like ENOSPC would
        if (budget > 0) (void)!::write(fd_, p, (size_t)budget);
        g_fail_after.store(0);
        FW_CHECK(false, kIo, "injected write failure on " << path_ << " after " << (written_ + budget) << " bytes");
      }
      g_fail_after.store(budget - (int64_t)chunk);
    }
    ssize_t w = ::write(fd_, p, chunk);
    if (w < 0 && errno == EINTR) continue;
    FW_CHECK_HINT(w > 0, kIo, "write to " << path_ << " failed: " << errno_text(), "check free disk space");
    p += w;
    left -= (size_t)w;
    written_ += (uint64_t)w;
  }
}

void FileWriter::close() {
  if (fd_ < 0) return;
  int fd = fd_;
  fd_ = -1;
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    FW_CHECK(false, kIo, "fsync of " << path_ << " failed: " << std::strerror(e));
  }
  FW_CHECK(::close(fd) == 0, kIo, "close of " << path_ << " failed: " << errno_text());
}

void write_file_durable(const std::string& path, const void* data, size_t n) {
  FileWriter w(path);
  w.write(data, n);
  w.close();
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  FW_CHECK(fd >= 0, kIo, "cannot open directory " << dir << ": " << errno_text());
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  FW_CHECK(rc == 0, kIo, "fsync of directory " << dir << " failed: " << std::strerror(e));
}

void rename_path(const std::string& from, const std::string& to) {
  FW_CHECK(::rename(from.c_str(), to.c_str()) == 0, kIo, "cannot rename " << from << " to " << to << ": " << errno_text());
}

static std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void write_file_atomic(const std::string& path, const void* data, size_t n) {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    write_file_durable(tmp, data, n);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  rename_path(tmp, path);
  fsync_dir(parent_dir(path));
}

void write_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

// ----------------------------------------------------------------------------
// SHA-256 (FIPS 180-4)

namespace {

const uint32_t kSha256K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

struct Sha256 {
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  uint8_t buf[64];
  size_t buf_len = 0;
  uint64_t total = 0;

  void block(const uint8_t* p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
      uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kSha256K[i] + w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }

  void update(const uint8_t* p, size_t n) {
    total += n;
    if (buf_len > 0) {
      size_t take = std::min(n, 64 - buf_len);
      std::memcpy(buf + buf_len, p, take);
      buf_len += take; p += take; n -= take;
      if (buf_len == 64) { block(buf); buf_len = 0; }
    }
    while (n >= 64) { block(p); p += 64; n -= 64; }
    if (n > 0) { std::memcpy(buf, p, n); buf_len = n; }
  }

  std::string hex() {
    uint64_t bits = total * 8;
    uint8_t pad = 0x80;
    update(&pad, 1);
    uint8_t zero = 0;
    while (buf_len != 56) update(&zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    update(len, 8);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (int i = 0; i < 8; i++)
      for (int j = 28; j >= 0; j -= 4) out += digits[(h[i] >> j) & 0xf];
    return out;
  }
};

}  // namespace

std::string sha256_hex(const void* data, size_t n) {
  Sha256 s;
  s.update((const uint8_t*)data, n);
  return s.hex();
}

std::string sha256_file(const std::string& path) {
  MappedFile f(path);
  return sha256_hex(f.data(), f.size());
}

}  // namespace fw
