// status.h: Status, the result of an operation that returns no value (header-only).
//
// A Status is OK, or a code and a message. An OK Status holds no allocation (a null pointer), so
// returning one on the success path costs a pointer copy; a failed Status owns one heap block with
// its code, the errno it came from (0 when none) and the message. Modeled on LevelDB's
// include/leveldb/status.h.
//
// Context is added as a Status travels up: the layer that knows the path prepends it, the layer
// that knows the offset prepends that (see WithContext), giving messages such as
// "store/000123.sst: block at offset 40960: checksum mismatch".
//
// Thread safety: a Status is a value; distinct objects may be used from distinct threads, and
// const methods may be called concurrently on one object.
#pragma once

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace cascadefs {

class [[nodiscard]] Status {
 public:
  enum class Code : unsigned char {
    kOk = 0,
    kNotFound = 1,
    kCorruption = 2,
    kIOError = 3,
    kInvalidArgument = 4,
    kNotSupported = 5,
    kNoSpace = 6,
    kCancelled = 7,
    kBusy = 8,
  };

  Status() noexcept = default;
  Status(const Status& other) : rep_(other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr) {}
  Status& operator=(const Status& other) {
    if (this != &other) rep_ = other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr;
    return *this;
  }
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;
  ~Status() = default;

  static Status OK() { return Status(); }
  static Status NotFound(std::string_view msg) { return Status(Code::kNotFound, 0, msg); }
  static Status Corruption(std::string_view msg) { return Status(Code::kCorruption, 0, msg); }
  static Status IOError(std::string_view msg) { return Status(Code::kIOError, 0, msg); }
  static Status InvalidArgument(std::string_view msg) {
    return Status(Code::kInvalidArgument, 0, msg);
  }
  static Status NotSupported(std::string_view msg) { return Status(Code::kNotSupported, 0, msg); }
  static Status NoSpace(std::string_view msg) { return Status(Code::kNoSpace, 0, msg); }
  static Status Cancelled(std::string_view msg) { return Status(Code::kCancelled, 0, msg); }
  static Status Busy(std::string_view msg) { return Status(Code::kBusy, 0, msg); }

  // A Status for a failed system call. `errno_value` > 0. The code follows the errno: ENOENT is
  // NotFound, ENOSPC and EDQUOT NoSpace, ECANCELED Cancelled, EINVAL InvalidArgument, EOPNOTSUPP
  // and ENOSYS NotSupported, EBUSY Busy, anything else IOError. The message is
  // "<context>: <strerror>".
  static Status FromErrno(int errno_value, std::string_view context) {
    Code code = CodeForErrno(errno_value);
    std::string msg(context);
    msg += ": ";
    char buf[128];
    msg += strerror_r(errno_value, buf, sizeof(buf));
    return Status(code, errno_value, msg);
  }

  bool ok() const { return rep_ == nullptr; }
  Code code() const { return rep_ ? rep_->code : Code::kOk; }
  // The errno this Status came from, or 0 when it did not come from a system call.
  int errno_value() const { return rep_ ? rep_->errno_value : 0; }
  std::string_view message() const { return rep_ ? std::string_view(rep_->message) : ""; }

  bool IsNotFound() const { return code() == Code::kNotFound; }
  bool IsCorruption() const { return code() == Code::kCorruption; }
  bool IsIOError() const { return code() == Code::kIOError; }
  bool IsInvalidArgument() const { return code() == Code::kInvalidArgument; }
  bool IsNotSupported() const { return code() == Code::kNotSupported; }
  bool IsNoSpace() const { return code() == Code::kNoSpace; }
  bool IsCancelled() const { return code() == Code::kCancelled; }
  bool IsBusy() const { return code() == Code::kBusy; }

  // Returns this Status with "<context>: " prepended to its message; OK stays OK.
  Status WithContext(std::string_view context) const& {
    Status copy(*this);
    return std::move(copy).WithContext(context);
  }
  Status WithContext(std::string_view context) && {
    if (rep_) {
      std::string msg(context);
      msg += ": ";
      msg += rep_->message;
      rep_->message = std::move(msg);
    }
    return std::move(*this);
  }

  // "OK", or "<code name>: <message>".
  std::string ToString() const {
    if (!rep_) return "OK";
    std::string out(CodeName(rep_->code));
    out += ": ";
    out += rep_->message;
    return out;
  }

  static const char* CodeName(Code code) {
    switch (code) {
      case Code::kOk:
        return "OK";
      case Code::kNotFound:
        return "NotFound";
      case Code::kCorruption:
        return "Corruption";
      case Code::kIOError:
        return "IO error";
      case Code::kInvalidArgument:
        return "Invalid argument";
      case Code::kNotSupported:
        return "Not supported";
      case Code::kNoSpace:
        return "No space";
      case Code::kCancelled:
        return "Cancelled";
      case Code::kBusy:
        return "Busy";
    }
    return "Unknown";
  }

  static Code CodeForErrno(int errno_value) {
    switch (errno_value) {
      case ENOENT:
        return Code::kNotFound;
      case ENOSPC:
      case EDQUOT:
        return Code::kNoSpace;
      case ECANCELED:
        return Code::kCancelled;
      case EINVAL:
        return Code::kInvalidArgument;
      case EOPNOTSUPP:
      case ENOSYS:
        return Code::kNotSupported;
      case EBUSY:
        return Code::kBusy;
      default:
        return Code::kIOError;
    }
  }

 private:
  struct Rep {
    Code code;
    int errno_value;
    std::string message;
  };

  Status(Code code, int errno_value, std::string_view msg)
      : rep_(std::make_unique<Rep>(Rep{code, errno_value, std::string(msg)})) {}

  std::unique_ptr<Rep> rep_;  // null when OK
};

}  // namespace cascadefs

// Returns from the enclosing function (not coroutine) if `expr` yields a non-OK Status.
#define CFS_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::cascadefs::Status cfs_status_ = (expr);  \
    if (!cfs_status_.ok()) return cfs_status_; \
  } while (0)

// The same inside a coroutine.
#define CFS_CO_RETURN_IF_ERROR(expr)              \
  do {                                            \
    ::cascadefs::Status cfs_status_ = (expr);     \
    if (!cfs_status_.ok()) co_return cfs_status_; \
  } while (0)
