// result.h: Result<T>, a value of type T or a non-OK Status (header-only).
//
// C++20 has no std::expected; this is the project's. A Result built from a Status must be built
// from a non-OK one (asserted). Accessing value() of a failed Result is a programmer error and
// aborts.
//
// Thread safety: a value type, as Status.
#pragma once

#include <optional>
#include <type_traits>
#include <utility>

#include "engine/assert.h"
#include "engine/status.h"

namespace cascadefs {

template <typename T>
class [[nodiscard]] Result {
 public:
  static_assert(!std::is_same_v<std::remove_cv_t<T>, Status>, "use Status, not Result<Status>");

  Result(T value) : value_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    CFS_ASSERT(!status_.ok());
  }

  bool ok() const { return value_.has_value(); }
  // OK when this Result holds a value.
  const Status& status() const& { return status_; }
  Status status() && { return std::move(status_); }

  T& value() & {
    CFS_ASSERT(ok());
    return *value_;
  }
  const T& value() const& {
    CFS_ASSERT(ok());
    return *value_;
  }
  T&& value() && {
    CFS_ASSERT(ok());
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::optional<T> value_;
  Status status_;  // OK exactly when value_ holds a value
};

}  // namespace cascadefs
