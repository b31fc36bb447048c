#pragma once
/// \file
/// NumPy `.npy` files for real matrices, with nothing beyond the standard library and Eigen.
///
/// Reads: 1-D arrays (returned as N x 1) and 2-D arrays, C order, dtype `'<f4'` or `'<f8'`,
/// converted to the requested scalar; format versions 1.0, 2.0 and 3.0.
/// Writes: version 1.0, header padded so the data starts at a multiple of 64 bytes, dtype `'<f4'`
/// for float and `'<f8'` for double; 2-D shape `(N, D)` for matrices, `(N,)` for `Vector<S>`.
/// The bytes are identical to what `numpy.save` (numpy >= 1.24) writes for the same array.
///
/// Writes are atomic (`fort/io/atomic_file.hpp`): the bytes go to a temporary file in the
/// target's directory (`<path>.tmp.<random>`), which is renamed over the target only when
/// complete. A failed write removes the temporary and throws, leaving any previous file untouched.
///
/// Errors: every problem throws `fort::Error` naming the file, what was wrong and what was
/// expected: missing file, bad magic string, unsupported format version, malformed header
/// dictionary, `fortran_order: True`, dtypes other than `'<f4'`/`'<f8'` (integers, big-endian,
/// complex, structured), 0-d or more than 2-D shapes, and data shorter than the shape says.
/// Bytes after the data are ignored, as `numpy.load` ignores them.
///
/// Cost: O(file size) time; reading holds the raw data once in addition to the result.

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/types.hpp"
#include "fort/io/atomic_file.hpp"

namespace fort {

/// What a `.npy` header declares.
struct NpyInfo {
  std::string dtype;          ///< the `descr` string, e.g. "<f8"
  std::vector<Index> shape;   ///< 1 or 2 entries
  int major_version = 1;      ///< format version (1, 2 or 3)
  int minor_version = 0;
  std::size_t data_offset = 0;  ///< byte offset of the first element
  std::size_t item_size = 0;    ///< 4 or 8

  Index rows() const { return shape.empty() ? 0 : shape[0]; }
  Index cols() const { return shape.size() == 2 ? shape[1] : 1; }
};

namespace detail {

inline constexpr std::string_view npy_where = "read_npy";
inline constexpr char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/// Throws a read error that names the file.
[[noreturn]] inline void npy_fail(const std::filesystem::path& path, std::string_view what) {
  throw Error(npy_where, concat("'", path.string(), "': ", what));
}

/// Parser for the Python-literal dictionary in a .npy header, e.g.
/// `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }`. Accepts exactly the three
/// keys numpy writes, in any order, with either quote style and any whitespace.
class NpyHeaderParser {
 public:
  NpyHeaderParser(std::string_view text, const std::filesystem::path& path) : s_(text), path_(path) {}

  void parse(std::string& descr, bool& fortran_order, std::vector<Index>& shape) {
    bool have_descr = false, have_order = false, have_shape = false;
    skip_space();
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = parse_string("a quoted key");
      skip_space();
      expect(':');
      skip_space();
      if (key == "descr") {
        if (peek() != '\'' && peek() != '"')
          malformed("'descr' is not a dtype string (structured dtypes are not supported); expected '<f4' or '<f8'");
        descr = parse_string("a dtype string");
        have_descr = true;
      } else if (key == "fortran_order") {
        fortran_order = parse_bool();
        have_order = true;
      } else if (key == "shape") {
        shape = parse_shape();
        have_shape = true;
      } else {
        malformed(concat("unexpected key '", key, "'; expected only 'descr', 'fortran_order' and 'shape'"));
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_space();
      if (peek() != '}') malformed("expected ',' or '}' after a value");
    }
    ++pos_;  // '}'
    skip_space();
    if (pos_ != s_.size()) malformed("unexpected text after the closing '}'");
    if (!have_descr || !have_order || !have_shape)
      malformed("missing key; expected 'descr', 'fortran_order' and 'shape'");
  }

 private:
  [[noreturn]] void malformed(std::string_view what) const {
    npy_fail(path_, concat("malformed header dictionary at character ", pos_, " (", what, "); header was \"",
                           s_, "\""));
  }

  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  void expect(char c) {
    if (peek() != c) malformed(concat("expected '", c, "'"));
    ++pos_;
  }

  std::string parse_string(std::string_view what) {
    const char quote = peek();
    if (quote != '\'' && quote != '"') malformed(concat("expected ", what));
    const std::size_t end = s_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) malformed("unterminated string");
    std::string out(s_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return out;
  }

  bool parse_bool() {
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    malformed("'fortran_order' must be True or False");
  }

  /// A Python tuple of non-negative integers: `()`, `(3,)`, `(3, 4)`; Python 2's `3L` accepted.
  std::vector<Index> parse_shape() {
    std::vector<Index> shape;
    expect('(');
    while (true) {
      skip_space();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') malformed("shape entries must be non-negative integers");
      Index value = 0;
      while (peek() >= '0' && peek() <= '9') {
        const int digit = peek() - '0';
        if (value > (std::numeric_limits<Index>::max() - digit) / 10) malformed("shape entry too large");
        value = value * 10 + digit;
        ++pos_;
      }
      if (peek() == 'L') ++pos_;
      shape.push_back(value);
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_space();
      if (peek() != ')') malformed("expected ',' or ')' in shape");
    }
    ++pos_;  // ')'
    return shape;
  }

  std::string_view s_;
  const std::filesystem::path& path_;
  std::size_t pos_ = 0;
};

inline std::uint32_t load_le32(const unsigned char* p) {
  return std::uint32_t(p[0]) | (std::uint32_t(p[1]) << 8) | (std::uint32_t(p[2]) << 16) | (std::uint32_t(p[3]) << 24);
}

/// Opens `path` and parses its header, leaving the stream at the first data byte.
inline NpyInfo read_npy_header(const std::filesystem::path& path, std::ifstream& in) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) npy_fail(path, "file does not exist");
  if (std::filesystem::is_directory(path, ec)) npy_fail(path, "is a directory, expected a .npy file");
  in.open(path, std::ios::binary);
  if (!in) npy_fail(path, "cannot open file for reading");

  unsigned char prefix[12];
  in.read(reinterpret_cast<char*>(prefix), 8);
  if (in.gcount() < 6 || std::memcmp(prefix, npy_magic, 6) != 0)
    npy_fail(path, "bad magic string: not a NumPy .npy file (expected the bytes \\x93NUMPY at the start)");
  if (in.gcount() < 8) npy_fail(path, "file ends inside the header (no version bytes)");

  NpyInfo info;
  info.major_version = prefix[6];
  info.minor_version = prefix[7];
  std::size_t length_bytes = 0;
  if (info.major_version == 1 && info.minor_version == 0)
    length_bytes = 2;
  else if ((info.major_version == 2 || info.major_version == 3) && info.minor_version == 0)
    length_bytes = 4;
  else
    npy_fail(path, concat("unsupported .npy format version ", info.major_version, ".", info.minor_version,
                          "; expected 1.0, 2.0 or 3.0"));

  in.read(reinterpret_cast<char*>(prefix + 8), std::streamsize(length_bytes));
  if (std::size_t(in.gcount()) < length_bytes) npy_fail(path, "file ends inside the header (no header length)");
  const std::size_t header_len =
      length_bytes == 2 ? std::size_t(prefix[8]) | (std::size_t(prefix[9]) << 8) : std::size_t(load_le32(prefix + 8));
  // numpy caps headers far below this; a huge value means a corrupt file, not a real header.
  if (header_len > (std::size_t(1) << 24))
    npy_fail(path, concat("header length ", header_len, " is implausibly large; file is corrupt"));

  std::string header(header_len, '\0');
  in.read(header.data(), std::streamsize(header_len));
  if (std::size_t(in.gcount()) < header_len)
    npy_fail(path, concat("file ends inside the header (header length says ", header_len, " bytes, found ",
                          in.gcount(), ")"));
  info.data_offset = 6 + 2 + length_bytes + header_len;

  std::string descr;
  bool fortran_order = false;
  NpyHeaderParser(header, path).parse(descr, fortran_order, info.shape);
  info.dtype = descr;

  if (descr == "<f4")
    info.item_size = 4;
  else if (descr == "<f8")
    info.item_size = 8;
  else
    npy_fail(path, concat("unsupported dtype '", descr,
                          "'; expected little-endian float32 '<f4' or float64 '<f8' (convert with "
                          "arr.astype('<f8') before saving)"));
  if (fortran_order)
    npy_fail(path, "fortran_order is True; expected a C-order array (save np.ascontiguousarray(arr))");
  if (info.shape.empty() || info.shape.size() > 2)
    npy_fail(path, concat("array has ", info.shape.size(), " dimensions; expected a 1-D or 2-D array"));
  return info;
}

/// Python's repr of a shape tuple: (3,) or (3, 4).
inline std::string npy_shape_string(const std::vector<Index>& shape) {
  std::string s = "(";
  for (std::size_t k = 0; k < shape.size(); ++k) s += concat(k ? ", " : "", shape[k]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

/// Element count times item size, or throws when it does not fit in memory sizes.
inline std::size_t npy_data_bytes(const NpyInfo& info, const std::filesystem::path& path) {
  std::size_t bytes = info.item_size;
  for (Index extent : info.shape) {
    if (extent != 0 && bytes > std::numeric_limits<std::size_t>::max() / std::size_t(extent))
      npy_fail(path, "shape is too large to address");
    bytes *= std::size_t(extent);
  }
  return bytes;
}

template <class Source, class S>
void npy_convert(const unsigned char* raw, std::size_t count, S* out) {
  using Bits = std::conditional_t<sizeof(Source) == 4, std::uint32_t, std::uint64_t>;
  for (std::size_t k = 0; k < count; ++k) {
    Bits bits = 0;
    for (std::size_t b = 0; b < sizeof(Source); ++b) bits |= Bits(raw[k * sizeof(Source) + b]) << (8 * b);
    out[k] = static_cast<S>(std::bit_cast<Source>(bits));
  }
}

template <class S>
constexpr const char* npy_descr() {
  static_assert(std::is_same_v<S, float> || std::is_same_v<S, double>, "write_npy supports float and double");
  return std::is_same_v<S, float> ? "<f4" : "<f8";
}

/// Version 1.0 header for a C-order array, byte for byte what numpy >= 1.24 writes: the sorted
/// key dictionary, 21 - digits(shape[0]) spare spaces (numpy's room for growing the first axis in
/// place), then spaces and a final newline so that the data starts at a multiple of 64 bytes.
inline std::string npy_header(const char* descr, const std::vector<Index>& shape) {
  std::string dict = concat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (");
  for (std::size_t k = 0; k < shape.size(); ++k) dict += concat(k ? ", " : "", shape[k]);
  dict += shape.size() == 1 ? ",), }" : "), }";
  dict.append(21 - concat(shape[0]).size(), ' ');
  const std::size_t pad = 64 - (10 + dict.size() + 1) % 64;  // 1..64, as numpy computes it
  dict.append(pad, ' ');
  dict += '\n';
  if (dict.size() > 65535) throw Error("write_npy", "shape too long for a version 1.0 header");
  std::string out(npy_magic, 6);
  out += '\x01';
  out += '\x00';
  out += char(dict.size() & 0xFF);
  out += char((dict.size() >> 8) & 0xFF);
  return out + dict;
}

/// Writes header + row-major data of `m` to `path` atomically (see the file comment).
template <class S, class Derived>
void write_npy_impl(const std::filesystem::path& path, const Eigen::DenseBase<Derived>& m,
                    const std::vector<Index>& shape) {
  std::string bytes = npy_header(npy_descr<S>(), shape);
  const std::size_t header_size = bytes.size();
  bytes.resize(header_size + std::size_t(m.size()) * sizeof(S));
  unsigned char* out = reinterpret_cast<unsigned char*>(bytes.data() + header_size);
  using Bits = std::conditional_t<sizeof(S) == 4, std::uint32_t, std::uint64_t>;
  std::size_t k = 0;
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j, ++k) {
      // Explicit little-endian encoding: correct on any host byte order.
      const Bits bits = std::bit_cast<Bits>(static_cast<S>(m(i, j)));
      for (std::size_t b = 0; b < sizeof(S); ++b) out[k * sizeof(S) + b] = static_cast<unsigned char>(bits >> (8 * b));
    }

  write_file_atomically(path, bytes, "write_npy");
}

}  // namespace detail

/// Reads the header of a `.npy` file: dtype, shape, version and data offset. Throws
/// `fort::Error` for anything `read_npy` would reject except truncated data.
inline NpyInfo read_npy_info(const std::filesystem::path& path) {
  std::ifstream in;
  return detail::read_npy_header(path, in);
}

/// Reads a 1-D (as N x 1) or 2-D C-order float32/float64 array, converting to `S`.
template <class S>
Matrix<S> read_npy(const std::filesystem::path& path) {
  static_assert(std::is_floating_point_v<S>, "read_npy<S>: S must be a floating-point type");
  std::ifstream in;
  const NpyInfo info = detail::read_npy_header(path, in);
  const std::size_t bytes = detail::npy_data_bytes(info, path);

  std::error_code ec;
  const auto file_size = std::filesystem::file_size(path, ec);
  if (!ec && file_size < info.data_offset + bytes)
    detail::npy_fail(path, detail::concat("truncated data: shape ", detail::npy_shape_string(info.shape), " of '",
                                          info.dtype, "' needs ", bytes, " bytes after the header, the file has ",
                                          file_size - std::min<std::uintmax_t>(file_size, info.data_offset)));

  std::vector<unsigned char> raw(bytes);
  in.read(reinterpret_cast<char*>(raw.data()), std::streamsize(bytes));
  if (std::size_t(in.gcount()) != bytes)
    detail::npy_fail(path, detail::concat("truncated data: expected ", bytes, " bytes after the header, read ",
                                          in.gcount()));

  Matrix<S> out(info.rows(), info.cols());
  const std::size_t count = std::size_t(info.rows()) * std::size_t(info.cols());
  if (info.item_size == 4)
    detail::npy_convert<float>(raw.data(), count, out.data());
  else
    detail::npy_convert<double>(raw.data(), count, out.data());
  return out;
}

/// Writes a matrix (any Eigen dense expression of float or double) as a 2-D `.npy` array of
/// shape (rows, cols), dtype `'<f4'` or `'<f8'` from the expression's scalar type. Atomic.
template <class Derived>
void write_npy(const std::filesystem::path& path, const Eigen::DenseBase<Derived>& m) {
  using S = typename Derived::Scalar;
  detail::write_npy_impl<S>(path, m, {m.rows(), m.cols()});
}

/// Writes a vector as a 1-D `.npy` array of shape (N,). Atomic.
/// Note: `Batch<S, 1>` is the same type as `Vector<S>` and is therefore written as 1-D as well;
/// `read_npy` returns it as N x 1 either way.
template <class S>
void write_npy(const std::filesystem::path& path, const Vector<S>& v) {
  detail::write_npy_impl<S>(path, v, {v.size()});
}

}  // namespace fort
