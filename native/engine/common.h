// common.h: error type and checking macros shared by every engine file.
//
// The engine also runs inside the serving process (Node-API addon), so library
// code never exits: every fallible call throws fw::Error carrying the file,
// line, what failed and a hint for the user. Only the worker's main() turns an
// error into an exit code.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace fw {

// Broad classes of failure; the worker maps them to exit codes.
enum class ErrorKind {
  kInvalidArgument,  // bad config, bad job spec, shape mismatch
  kIo,               // missing / unreadable / unwritable file
  kCorrupt,          // truncated or corrupt file, checksum mismatch
  kUnsupported,      // unknown architecture, dtype, feature
  kInternal,         // a bug
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void throw_error(ErrorKind kind, const char* file, int line, const std::string& msg,
                                     const std::string& hint = "") {
  std::ostringstream os;
  os << msg << " (" << file << ":" << line << ")";
  if (!hint.empty()) os << "\n---> HINT: " << hint;
  throw Error(kind, os.str());
}

}  // namespace fw

// FW_CHECK(cond, kind, msg-stream-expr): throw fw::Error with file and line.
#define FW_CHECK(cond, kind, msg)                                        \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::ostringstream fw_check_os_;                                   \
      fw_check_os_ << msg;                                               \
      ::fw::throw_error(::fw::ErrorKind::kind, __FILE__, __LINE__, fw_check_os_.str()); \
    }                                                                    \
  } while (0)

#define FW_CHECK_HINT(cond, kind, msg, hint)                             \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::ostringstream fw_check_os_;                                   \
      fw_check_os_ << msg;                                               \
      ::fw::throw_error(::fw::ErrorKind::kind, __FILE__, __LINE__, fw_check_os_.str(), hint); \
    }                                                                    \
  } while (0)
