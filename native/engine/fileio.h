// fileio.h: the small file-system layer under every engine file format.
//
// Read-only memory maps, whole-file reads, durable writes (fsync of the file
// and of its directory), atomic replace (temp file + rename), SHA-256, and a
// test hook that makes writes fail after N bytes so that the crash-safety of
// checkpoints can be tested without killing a process. Every call throws
// fw::Error (kIo) with the path and the errno text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fw {

// A read-only mapping of a whole file. Empty files map to data()==nullptr.
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

bool path_exists(const std::string& path);
bool is_directory(const std::string& path);
std::string path_join(const std::string& a, const std::string& b);
std::string read_file_text(const std::string& path);
// Creates the directory and its parents (mkdir -p); fine when it exists.
void make_dirs(const std::string& path);
// rm -rf; fine when it does not exist.
void remove_all(const std::string& path);
// Names of the entries of a directory (no "." / ".."), sorted.
std::vector<std::string> list_dir(const std::string& path);

// A file opened for writing; every write goes through the fault-injection
// counter. close() fsyncs before closing. The destructor closes without
// fsync (on the error path) and never throws.
class FileWriter {
 public:
  explicit FileWriter(const std::string& path);
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;
  void write(const void* data, size_t n);
  void close();  // fsync + close; throws on failure
  uint64_t bytes_written() const { return written_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t written_ = 0;
};

// Writes a whole file durably: write, fsync, close (no rename).
void write_file_durable(const std::string& path, const void* data, size_t n);
// Atomic replace: writes path + ".tmp-<pid>", fsyncs, renames over path and
// fsyncs the directory. A failure leaves the old file untouched.
void write_file_atomic(const std::string& path, const void* data, size_t n);
void write_file_atomic(const std::string& path, const std::string& text);
void fsync_dir(const std::string& dir);
// rename(2) that throws.
void rename_path(const std::string& from, const std::string& to);

// Fault injection for tests: after `n` more bytes written through FileWriter
// (across all files), the next write throws kIo as a disk-full would.
// Negative disables (the default).
void io_set_fail_after_bytes(int64_t n);

// SHA-256, as lowercase hex.
std::string sha256_hex(const void* data, size_t n);
std::string sha256_file(const std::string& path);

}  // namespace fw
