#pragma once
/// \file
/// The one exception type fort throws, and helpers that build messages naming the component,
/// what was expected and what was given.

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace fort {

/// Thrown for invalid input: wrong shapes, non-finite values, options out of range, bad files.
/// The message always starts with the component that rejected the input.
class Error : public std::invalid_argument {
 public:
  Error(std::string_view where, std::string_view what)
      : std::invalid_argument(std::string(where) + ": " + std::string(what)) {}
};

namespace detail {

template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

/// Throws fort::Error(where, message...) unless `ok`.
template <class... Parts>
void require(bool ok, std::string_view where, const Parts&... message) {
  if (!ok) throw Error(where, concat(message...));
}

/// Checks that a batch has `cols` columns and that `out` (when given) matches `rows x cols`.
template <class In>
void require_cols(const In& in, long long cols, std::string_view where, std::string_view name) {
  require(in.cols() == cols, where, name, " has ", in.cols(), " columns, expected ", cols);
}

template <class Out>
void require_shape(const Out& out, long long rows, long long cols, std::string_view where,
                   std::string_view name) {
  require(out.rows() == rows && out.cols() == cols, where, name, " has shape [", out.rows(), ", ",
          out.cols(), "], expected [", rows, ", ", cols, "]");
}

/// Checks that every entry of an Eigen expression or span is finite.
template <class Range>
void require_finite(const Range& values, std::string_view where, std::string_view name) {
  for (const auto& v : values) {
    if (!std::isfinite(static_cast<double>(v)))
      throw Error(where, concat(name, " contains a non-finite value (", static_cast<double>(v),
                                "); expected finite numbers"));
  }
}

}  // namespace detail
}  // namespace fort
