#pragma once
/// \file
/// Model files: a `fort::Flow`'s parameters, state and architecture signature in one
/// safetensors file, readable by the `safetensors` package and by numpy alone.
///
/// Layout (https://github.com/huggingface/safetensors):
///
///     [8 bytes]  N, little-endian u64: length of the header
///     [N bytes]  JSON header, UTF-8, padded with spaces to a multiple of 8
///     [rest]     data buffer: the tensors' raw little-endian bytes
///
/// The header holds exactly two tensors and the metadata map:
///
///     "__metadata__": {"dim": "2", "format": "fort-model", "format_version": "1",
///                      "num_params": "P", "num_state": "S", "scalar": "float64",
///                      "signature": "<flow.signature()>", ...extra string pairs...},
///     "params": {"dtype": "F64" (double) or "F32" (float), "shape": [P], "data_offsets": [8S, 8S + P*size]},
///     "state":  {"dtype": "I64", "shape": [S], "data_offsets": [0, 8S]}
///
/// The state comes first in the buffer so that both tensors are naturally aligned. A flow without
/// state (or without parameters) still gets its tensor, with shape [0] and empty offsets [b, b];
/// safetensors accepts zero-size tensors. Metadata values are strings (safetensors requires a
/// str -> str map). Saving the same flow twice gives byte-identical files (keys are sorted).
///
/// Precision: a file is loaded only into a flow of the same scalar type. No conversion is done:
/// a float32 file into a double flow (or the reverse) is an error that says so.
///
/// Loading validates everything before touching the flow, and a failed load leaves it unchanged:
/// file size and header length, UTF-8 and JSON syntax, the keys present, dtypes, shapes, offsets
/// (in range, not overlapping, covering the data buffer exactly), format and format_version,
/// scalar, dim, the architecture signature (the message shows both signatures and the first
/// difference), the state (validated by the flow's own layers), and finiteness of the parameters.
/// The signature is compared after the file's state is applied to a copy of the flow, since
/// coupling masks are state and appear in the signature.
///
/// Writes are atomic (`fort/io/atomic_file.hpp`).
/// Cost: O(file size) time; loading holds the data buffer once beside the flow.

#include <algorithm>
#include <concepts>
#include <span>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/types.hpp"
#include "fort/flows/flow.hpp"
#include "fort/io/atomic_file.hpp"

namespace fort {

/// String metadata of a model file (safetensors `__metadata__`), sorted by key.
using ModelMetadata = std::map<std::string, std::string>;

/// The `format` and `format_version` values this version of fort writes and reads.
inline constexpr std::string_view model_format = "fort-model";
inline constexpr std::string_view model_format_version = "1";

namespace detail {

/// safetensors refuses headers above 100 MB; so do we (protects against absurd lengths).
inline constexpr std::uint64_t model_max_header = 100'000'000;

/// Metadata keys fort writes itself; `extra_metadata` may not use them.
inline constexpr std::string_view model_reserved_keys[] = {"format", "format_version", "signature", "scalar",
                                                           "dim",    "num_params",     "num_state"};

[[noreturn]] inline void model_fail(std::string_view where, const std::filesystem::path& path, std::string_view what) {
  throw Error(where, concat("'", path.string(), "': ", what));
}

/// Validates UTF-8 (no overlong forms, no surrogates, <= U+10FFFF). Returns the offset of the
/// first bad byte, or npos.
inline std::size_t utf8_error(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0, min = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + len > s.size()) return i;
    for (std::size_t k = 1; k < len; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (d & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

// ---- minimal JSON ------------------------------------------------------------------------------

/// A parsed JSON value. Objects keep their members in file order (`keys[i]` names `items[i]`);
/// numbers keep their text.
struct JsonValue {
  enum class Kind { null, boolean, number, string, array, object };
  Kind kind = Kind::null;
  bool flag = false;
  std::string text;               ///< string contents (decoded) or number text
  std::vector<JsonValue> items;   ///< array elements or object values
  std::vector<std::string> keys;  ///< object keys

  const JsonValue* find(std::string_view key) const {
    for (std::size_t k = 0; k < keys.size(); ++k)
      if (keys[k] == key) return &items[k];
    return nullptr;
  }
  /// "a string", "an object", ... for messages.
  std::string_view kind_name() const {
    switch (kind) {
      case Kind::null: return "null";
      case Kind::boolean: return "a boolean";
      case Kind::number: return "a number";
      case Kind::string: return "a string";
      case Kind::array: return "an array";
      case Kind::object: return "an object";
    }
    return "?";
  }
};

/// Strict RFC 8259 parser for the header (duplicate keys rejected, nesting capped at 64).
/// Errors: fort::Error naming the file and the byte offset in the header.
class JsonParser {
 public:
  JsonParser(std::string_view text, std::string_view where, const std::filesystem::path& path)
      : s_(text), where_(where), path_(path) {}

  JsonValue parse_document() {
    skip_space();
    JsonValue v = parse_value(0);
    skip_space();
    if (pos_ != s_.size()) fail("unexpected text after the JSON object");
    return v;
  }

 private:
  [[noreturn]] void fail(std::string_view what) const {
    model_fail(where_, path_, concat("header is not valid JSON: ", what, " at byte ", pos_, " of the header"));
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool at_end() const { return pos_ >= s_.size(); }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  void expect(char c) {
    if (at_end() || peek() != c) fail(concat("expected '", c, "'"));
    ++pos_;
  }

  JsonValue parse_value(int depth) {
    if (depth > 64) fail("nesting deeper than 64 levels");
    if (at_end()) fail("unexpected end of header");
    JsonValue v;
    const char c = peek();
    if (c == '{') {
      v.kind = JsonValue::Kind::object;
      ++pos_;
      skip_space();
      if (peek() == '}' && !at_end()) {
        ++pos_;
        return v;
      }
      while (true) {
        skip_space();
        if (peek() != '"' || at_end()) fail("expected a quoted key");
        std::string key = parse_string();
        if (v.find(key)) fail(concat("duplicate key \"", key, "\""));
        skip_space();
        expect(':');
        skip_space();
        v.keys.push_back(std::move(key));
        v.items.push_back(parse_value(depth + 1));
        skip_space();
        if (!at_end() && peek() == ',') {
          ++pos_;
          continue;
        }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.kind = JsonValue::Kind::array;
      ++pos_;
      skip_space();
      if (!at_end() && peek() == ']') {
        ++pos_;
        return v;
      }
      while (true) {
        skip_space();
        v.items.push_back(parse_value(depth + 1));
        skip_space();
        if (!at_end() && peek() == ',') {
          ++pos_;
          continue;
        }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.kind = JsonValue::Kind::string;
      v.text = parse_string();
      return v;
    }
    if (s_.substr(pos_, 4) == "true" || s_.substr(pos_, 5) == "false") {
      v.kind = JsonValue::Kind::boolean;
      v.flag = c == 't';
      pos_ += v.flag ? 4 : 5;
      return v;
    }
    if (s_.substr(pos_, 4) == "null") {
      pos_ += 4;
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = JsonValue::Kind::number;
      const std::size_t start = pos_;
      if (peek() == '-') ++pos_;
      if (!digit()) fail("expected a digit");
      if (peek() == '0') {
        ++pos_;
      } else {
        while (digit()) ++pos_;
      }
      if (!at_end() && peek() == '.') {
        ++pos_;
        if (!digit()) fail("expected a digit after '.'");
        while (digit()) ++pos_;
      }
      if (!at_end() && (peek() == 'e' || peek() == 'E')) {
        ++pos_;
        if (!at_end() && (peek() == '+' || peek() == '-')) ++pos_;
        if (!digit()) fail("expected a digit in the exponent");
        while (digit()) ++pos_;
      }
      v.text = std::string(s_.substr(start, pos_ - start));
      return v;
    }
    fail(concat("unexpected character '", c, "'"));
  }

  bool digit() const { return !at_end() && peek() >= '0' && peek() <= '9'; }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned u = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[pos_++];
      u <<= 4;
      if (h >= '0' && h <= '9')
        u |= unsigned(h - '0');
      else if (h >= 'a' && h <= 'f')
        u |= unsigned(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        u |= unsigned(h - 'A' + 10);
      else
        fail("bad hex digit in \\u escape");
    }
    return u;
  }

  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  /// A JSON string at pos_ (which is '"'); the header is already known to be valid UTF-8.
  std::string parse_string() {
    ++pos_;
    std::string out;
    while (true) {
      if (at_end()) fail("unterminated string");
      const char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("unescaped control character in a string");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      if (at_end()) fail("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(pos_, 2) != "\\u") fail("unpaired surrogate in \\u escape");
            pos_ += 2;
            const std::uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired surrogate in \\u escape");
          }
          append_utf8(out, cp);
          break;
        }
        default: fail(concat("bad escape '\\", e, "'"));
      }
    }
  }

  std::string_view s_;
  std::string_view where_;
  const std::filesystem::path& path_;
  std::size_t pos_ = 0;
};

/// JSON string literal: quotes, backslashes and control characters escaped; UTF-8 passed through.
inline std::string json_quote(std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (const char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (u < 0x20) {
      out += "\\u00";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// ---- header ------------------------------------------------------------------------------------

struct ModelTensor {
  std::string dtype;
  std::uint64_t count = 0;  ///< shape[0]
  std::uint64_t begin = 0, end = 0;
};

/// What read_model_header established about a file (all of it already validated).
struct ModelHeader {
  ModelMetadata metadata;
  ModelTensor params, state;
  std::uint64_t data_begin = 0;  ///< 8 + N
  std::uint64_t data_size = 0;   ///< bytes of the data buffer
  std::uint64_t dim = 0, num_params = 0, num_state = 0;
};

template <class S>
constexpr std::string_view model_dtype() {
  static_assert(std::is_same_v<S, float> || std::is_same_v<S, double>, "model files support float and double flows");
  return std::is_same_v<S, float> ? "F32" : "F64";
}
template <class S>
constexpr std::string_view model_scalar_name() {
  return std::is_same_v<S, float> ? "float32" : "float64";
}

/// Strict decimal u64 ("0", "12"; no sign, no leading zeros, no spaces); false if not one.
inline bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0')) return false;
  std::uint64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
    const std::uint64_t d = std::uint64_t(c - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

inline std::string shorten(std::string_view s, std::size_t max = 60) {
  return s.size() <= max ? std::string(s) : std::string(s.substr(0, max)) + "...";
}

/// Reads and validates everything but the tensor bytes: see the file comment.
inline ModelHeader read_model_header(const std::filesystem::path& path, std::ifstream& in, std::string_view where) {
  namespace fs = std::filesystem;
  auto fail = [&](std::string_view what) { model_fail(where, path, what); };
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("file does not exist");
  if (fs::is_directory(path, ec)) fail("is a directory, expected a model file");
  const std::uintmax_t file_size = fs::file_size(path, ec);
  if (ec) fail(concat("cannot determine the file size (", ec.message(), ")"));
  in.open(path, std::ios::binary);
  if (!in) fail("cannot open file for reading");

  if (file_size < 8)
    fail(concat("truncated file: it has ", file_size,
                " bytes, but a safetensors file starts with an 8-byte header length"));
  unsigned char prefix[8];
  in.read(reinterpret_cast<char*>(prefix), 8);
  if (in.gcount() != 8) fail("truncated file: cannot read the 8-byte header length");
  std::uint64_t n = 0;
  for (int b = 0; b < 8; ++b) n |= std::uint64_t(prefix[b]) << (8 * b);
  if (n == 0) fail("header length is 0; expected a JSON header after the 8-byte length");
  if (n > file_size - 8)
    fail(concat("header length ", n, " is larger than the rest of the file (", file_size - 8,
                " bytes after the 8-byte length): truncated file, or not a safetensors file"));
  if (n > model_max_header)
    fail(concat("header length ", n, " exceeds the safetensors limit of ", model_max_header, " bytes"));

  std::string text(std::size_t(n), '\0');
  in.read(text.data(), std::streamsize(n));
  if (std::uint64_t(in.gcount()) != n) fail(concat("truncated file: header says ", n, " bytes, read ", in.gcount()));
  if (const std::size_t bad = utf8_error(text); bad != std::string::npos)
    fail(concat("header is not valid UTF-8 (byte ", bad, " of the header)"));
  if (text[0] != '{') fail("header does not start with '{'; not a safetensors file");
  const JsonValue root = JsonParser(text, where, path).parse_document();

  ModelHeader h;
  h.data_begin = 8 + n;
  h.data_size = file_size - 8 - n;

  // Top-level keys: exactly __metadata__, params, state.
  for (const std::string& key : root.keys)
    if (key != "__metadata__" && key != "params" && key != "state")
      fail(concat("unexpected header entry \"", shorten(key),
                  "\"; a fort model file holds exactly \"__metadata__\", \"params\" and \"state\""));

  // Metadata: object of strings; format first, so that foreign files get the clearest message.
  const JsonValue* meta = root.find("__metadata__");
  if (!meta) fail("missing \"__metadata__\" in the header; not a fort model file (expected format 'fort-model')");
  if (meta->kind != JsonValue::Kind::object)
    fail(concat("\"__metadata__\" is ", meta->kind_name(), ", expected an object of strings"));
  for (std::size_t k = 0; k < meta->keys.size(); ++k) {
    if (meta->items[k].kind != JsonValue::Kind::string)
      fail(concat("metadata value of \"", shorten(meta->keys[k]), "\" is ", meta->items[k].kind_name(),
                  "; safetensors metadata values must be strings"));
    h.metadata.emplace(meta->keys[k], meta->items[k].text);
  }
  auto meta_get = [&](std::string_view key) -> const std::string& {
    const auto it = h.metadata.find(std::string(key));
    if (it == h.metadata.end()) fail(concat("missing metadata key \"", key, "\""));
    return it->second;
  };
  if (const auto it = h.metadata.find("format"); it == h.metadata.end())
    fail("missing metadata key \"format\"; not a fort model file (expected format 'fort-model')");
  else if (it->second != model_format)
    fail(concat("format is '", shorten(it->second), "', expected '", model_format, "'; not a fort model file"));
  if (const std::string& v = meta_get("format_version"); v != model_format_version)
    fail(concat("format_version is '", shorten(v), "', expected '", model_format_version,
                "' (written by a different version of fort?)"));
  if (const std::string& v = meta_get("scalar"); v != "float32" && v != "float64")
    fail(concat("metadata scalar is '", shorten(v), "', expected 'float32' or 'float64'"));
  meta_get("signature");
  auto meta_count = [&](std::string_view key) {
    std::uint64_t v = 0;
    if (const std::string& s = meta_get(key); !parse_u64(s, v))
      fail(concat("metadata ", key, " is '", shorten(s), "', expected a non-negative decimal integer"));
    return v;
  };
  h.dim = meta_count("dim");
  h.num_params = meta_count("num_params");
  h.num_state = meta_count("num_state");

  // Tensors.
  auto tensor = [&](std::string_view name, std::string_view expected_dtype, std::uint64_t expected_count,
                    std::string_view count_key) {
    const JsonValue* t = root.find(name);
    if (!t) fail(concat("missing tensor \"", name, "\" in the header"));
    if (t->kind != JsonValue::Kind::object)
      fail(concat("tensor \"", name, "\" is ", t->kind_name(), ", expected an object"));
    for (const std::string& key : t->keys)
      if (key != "dtype" && key != "shape" && key != "data_offsets")
        fail(concat("tensor \"", name, "\" has unexpected key \"", shorten(key),
                    "\"; expected only \"dtype\", \"shape\" and \"data_offsets\""));
    auto field = [&](std::string_view key, JsonValue::Kind kind) -> const JsonValue& {
      const JsonValue* v = t->find(key);
      if (!v) fail(concat("tensor \"", name, "\" is missing \"", key, "\""));
      if (v->kind != kind)
        fail(concat("tensor \"", name, "\" field \"", key, "\" is ", v->kind_name(), ", expected ",
                    kind == JsonValue::Kind::string ? "a string" : "an array"));
      return *v;
    };
    auto integer = [&](const JsonValue& v, std::string_view what) {
      std::uint64_t out = 0;
      if (v.kind != JsonValue::Kind::number || !parse_u64(v.text, out))
        fail(concat("tensor \"", name, "\" ", what, " is ", v.kind == JsonValue::Kind::number ? v.text : v.kind_name(),
                    ", expected a non-negative integer"));
      return out;
    };
    ModelTensor out;
    out.dtype = field("dtype", JsonValue::Kind::string).text;
    if (out.dtype != expected_dtype)
      fail(concat("tensor \"", name, "\" has dtype ", shorten(out.dtype), ", expected ", expected_dtype,
                  name == "params" ? " (from metadata scalar)" : ""));
    const JsonValue& shape = field("shape", JsonValue::Kind::array);
    if (shape.items.size() != 1)
      fail(concat("tensor \"", name, "\" has ", shape.items.size(), " dimensions, expected a 1-D shape [", expected_count,
                  "]"));
    out.count = integer(shape.items[0], "shape[0]");
    if (out.count != expected_count)
      fail(concat("tensor \"", name, "\" has shape [", out.count, "], but metadata ", count_key, " is ",
                  expected_count));
    const JsonValue& offsets = field("data_offsets", JsonValue::Kind::array);
    if (offsets.items.size() != 2)
      fail(concat("tensor \"", name, "\" data_offsets has ", offsets.items.size(), " entries, expected [begin, end]"));
    out.begin = integer(offsets.items[0], "data_offsets[0]");
    out.end = integer(offsets.items[1], "data_offsets[1]");
    if (out.end < out.begin)
      fail(concat("tensor \"", name, "\" data_offsets [", out.begin, ", ", out.end, "] end before they begin"));
    const std::uint64_t item = expected_dtype == "F32" ? 4 : 8;
    if (out.count > std::numeric_limits<std::uint64_t>::max() / item || out.end - out.begin != out.count * item)
      fail(concat("tensor \"", name, "\" data_offsets [", out.begin, ", ", out.end, "] span ", out.end - out.begin,
                  " bytes, but shape [", out.count, "] of ", expected_dtype, " needs ", out.count * item, " bytes"));
    if (out.end > h.data_size)
      fail(concat("tensor \"", name, "\" data_offsets [", out.begin, ", ", out.end, "] run past the end of the ",
                  h.data_size, "-byte data buffer (truncated file?)"));
    return out;
  };
  const std::string& scalar = h.metadata.at("scalar");
  h.params = tensor("params", scalar == "float32" ? "F32" : "F64", h.num_params, "num_params");
  h.state = tensor("state", "I64", h.num_state, "num_state");

  // The two tensors must tile the data buffer: no overlap, no gap, nothing left over.
  const bool state_first = std::pair(h.state.begin, h.state.end) <= std::pair(h.params.begin, h.params.end);
  const ModelTensor& a = state_first ? h.state : h.params;
  const ModelTensor& b = state_first ? h.params : h.state;
  const char* a_name = state_first ? "state" : "params";
  const char* b_name = state_first ? "params" : "state";
  if (a.begin != 0)
    fail(concat("data buffer bytes [0, ", a.begin, ") belong to no tensor (first tensor \"", a_name,
                "\" starts at ", a.begin, "); expected the tensors to cover the buffer exactly"));
  if (b.begin < a.end)
    fail(concat("tensors overlap: \"", a_name, "\" [", a.begin, ", ", a.end, "] and \"", b_name, "\" [", b.begin, ", ",
                b.end, "]"));
  if (b.begin > a.end)
    fail(concat("data buffer bytes [", a.end, ", ", b.begin, ") between \"", a_name, "\" and \"", b_name,
                "\" belong to no tensor; expected the tensors to cover the buffer exactly"));
  if (b.end != h.data_size)
    fail(concat("the tensors cover ", b.end, " bytes, but the data buffer has ", h.data_size, " bytes (",
                h.data_size - b.end, " unused bytes at the end); expected the tensors to cover the buffer exactly"));
  return h;
}

/// "first difference at character K ('width=8' in the file vs 'width=16' in the flow), in
/// transform layer i". Tokens are split at ( ) , ; [ ] >.
inline std::string signature_difference(std::string_view file_sig, std::string_view flow_sig) {
  std::size_t k = 0;
  while (k < file_sig.size() && k < flow_sig.size() && file_sig[k] == flow_sig[k]) ++k;
  constexpr std::string_view delims = "(),;[]>";
  auto token = [&](std::string_view s) -> std::string {
    if (k >= s.size()) return "(end)";
    std::size_t a = k;
    while (a > 0 && delims.find(s[a - 1]) == std::string_view::npos) --a;
    std::size_t b = k;
    while (b < s.size() && delims.find(s[b]) == std::string_view::npos) ++b;
    if (a == b) {  // the difference is a delimiter: show it with the token after it
      b = a + 1;
      while (b < s.size() && delims.find(s[b]) == std::string_view::npos) ++b;
    }
    return concat("'", shorten(s.substr(a, b - a), 40), "'");
  };
  std::string out = concat("first difference at character ", k, " (", token(file_sig), " in the file vs ",
                           token(flow_sig), " in the flow)");
  // Which part: the base (before the first '>'), or the top-level layer of the transform.
  const std::size_t arrow = file_sig.find('>');
  if (arrow != std::string_view::npos && k <= arrow) {
    out += ", in the base distribution";
  } else {
    int depth = 0;
    long layer = -1;
    for (std::size_t i = 0; i < k && i < file_sig.size(); ++i) {
      const char c = file_sig[i];
      if (c == '[' && ++depth == 1) layer = 0;
      else if (c == ']') --depth;
      else if (c == ';' && depth == 1) ++layer;
    }
    // A ';' at the difference means one side has a further layer: name that one.
    auto semi = [&](std::string_view s) { return k < s.size() && s[k] == ';'; };
    if (depth == 1 && (semi(file_sig) || semi(flow_sig))) ++layer;
    if (layer >= 0 && depth >= 1) out += concat(", in transform layer ", layer);
  }
  return out;
}

template <class S>
void put_le(std::string& out, S value) {
  using Bits = std::conditional_t<sizeof(S) == 4, std::uint32_t, std::uint64_t>;
  const Bits bits = std::bit_cast<Bits>(value);
  for (std::size_t b = 0; b < sizeof(S); ++b) out += static_cast<char>(static_cast<unsigned char>(bits >> (8 * b)));
}

template <class S>
S get_le(const unsigned char* p) {
  using Bits = std::conditional_t<sizeof(S) == 4, std::uint32_t, std::uint64_t>;
  Bits bits = 0;
  for (std::size_t b = 0; b < sizeof(S); ++b) bits |= Bits(p[b]) << (8 * b);
  return std::bit_cast<S>(bits);
}

}  // namespace detail

/// What a model file stores: anything with a flat parameter vector, integer state, a dimension
/// and an architecture signature. `fort::Flow` is one; so is a velocity network bundled with its
/// parameters. Copyable, so that loading can try the file's state on a copy first.
template <class M>
concept SavableModel = std::copy_constructible<M> &&
    requires(const M& m, M& target, const Vector<typename M::Scalar>& p, std::span<const std::int64_t> s) {
      typename M::Scalar;
      { m.dim() } -> std::convertible_to<Index>;
      { m.signature() } -> std::convertible_to<std::string>;
      { m.params() } -> std::convertible_to<const Vector<typename M::Scalar>&>;
      { m.state() } -> std::convertible_to<State>;
      target.set_params(p);
      target.set_state(s);
    };

/// Saves `flow` to `path` as a safetensors model file (layout in the file comment), atomically.
/// `extra_metadata` is stored beside fort's own keys (e.g. preprocessing settings); its keys may
/// not be one of format, format_version, signature, scalar, dim, num_params, num_state, and keys
/// and values must be valid UTF-8. Throws fort::Error for those, for non-finite parameters (a
/// file that could not be loaded back) and for any write failure, leaving an existing file
/// unchanged.
template <SavableModel Model>
void save_model(const std::filesystem::path& path, const Model& flow,
                const ModelMetadata& extra_metadata = {}) {
  using S = typename Model::Scalar;
  constexpr std::string_view where = "save_model";
  auto fail = [&](std::string_view what) { detail::model_fail(where, path, what); };

  const Vector<S>& params = flow.params();
  for (Index i = 0; i < params.size(); ++i)
    if (!std::isfinite(static_cast<double>(params[i])))
      fail(detail::concat("parameter ", i, " is ", static_cast<double>(params[i]),
                          "; expected finite values (the file could not be loaded back)"));
  const State state = flow.state();

  ModelMetadata meta;
  for (const auto& [key, value] : extra_metadata) {
    for (const std::string_view reserved : detail::model_reserved_keys)
      if (key == reserved)
        fail(detail::concat("extra metadata key \"", key, "\" is reserved (fort writes it itself)"));
    if (detail::utf8_error(key) != std::string::npos || detail::utf8_error(value) != std::string::npos)
      fail(detail::concat("extra metadata \"", detail::shorten(key), "\" is not valid UTF-8"));
    meta.emplace(key, value);
  }
  const std::string signature = flow.signature();
  if (detail::utf8_error(signature) != std::string::npos) fail("flow signature is not valid UTF-8");
  meta["format"] = std::string(model_format);
  meta["format_version"] = std::string(model_format_version);
  meta["signature"] = signature;
  meta["scalar"] = std::string(detail::model_scalar_name<S>());
  meta["dim"] = std::to_string(flow.dim());
  meta["num_params"] = std::to_string(params.size());
  meta["num_state"] = std::to_string(state.size());

  const std::uint64_t state_bytes = 8 * std::uint64_t(state.size());
  const std::uint64_t params_bytes = sizeof(S) * std::uint64_t(params.size());
  std::string header = "{\"__metadata__\":{";
  bool first = true;
  for (const auto& [key, value] : meta) {
    header += detail::concat(first ? "" : ",", detail::json_quote(key), ":", detail::json_quote(value));
    first = false;
  }
  header += detail::concat("},\"params\":{\"dtype\":\"", detail::model_dtype<S>(), "\",\"shape\":[", params.size(),
                           "],\"data_offsets\":[", state_bytes, ",", state_bytes + params_bytes, "]}");
  header += detail::concat(",\"state\":{\"dtype\":\"I64\",\"shape\":[", state.size(), "],\"data_offsets\":[0,",
                           state_bytes, "]}}");
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > detail::model_max_header)
    fail(detail::concat("header would be ", header.size(), " bytes, above the safetensors limit of ",
                        detail::model_max_header));

  std::string bytes;
  bytes.reserve(8 + header.size() + state_bytes + params_bytes);
  detail::put_le(bytes, std::uint64_t(header.size()));
  bytes += header;
  for (const std::int64_t s : state) detail::put_le(bytes, s);
  for (Index i = 0; i < params.size(); ++i) detail::put_le(bytes, params[i]);
  detail::write_file_atomically(path, bytes, where);
}

/// Reads and validates a model file's header (not the tensor bytes) and returns its metadata,
/// fort's keys included: enough to rebuild the architecture before `load_model`.
inline ModelMetadata read_model_metadata(const std::filesystem::path& path) {
  std::ifstream in;
  return detail::read_model_header(path, in, "read_model_metadata").metadata;
}

/// Loads parameters and state from `path` into `flow`, which must have been built with the same
/// architecture (signature), dim and scalar type. Returns the file's metadata. Throws fort::Error
/// naming the file, what was expected and what was found; on any error `flow` is unchanged.
template <SavableModel Model>
ModelMetadata load_model(const std::filesystem::path& path, Model& flow) {
  using FlowT = Model;
  using S = typename FlowT::Scalar;
  constexpr std::string_view where = "load_model";
  auto fail = [&](std::string_view what) { detail::model_fail(where, path, what); };

  std::ifstream in;
  const detail::ModelHeader h = detail::read_model_header(path, in, where);
  const std::string& scalar = h.metadata.at("scalar");
  if (scalar != detail::model_scalar_name<S>())
    fail(detail::concat("file holds ", scalar, " parameters, the flow uses ", detail::model_scalar_name<S>(),
                        "; fort does not convert precision on load: build the flow with ",
                        scalar == "float32" ? "float" : "double", " to load this file"));
  if (h.dim != std::uint64_t(flow.dim()))
    fail(detail::concat("file is for dimension ", h.dim, ", the flow has dimension ", flow.dim()));

  // Tensor bytes.
  std::vector<unsigned char> data(std::size_t(h.data_size));
  in.read(reinterpret_cast<char*>(data.data()), std::streamsize(data.size()));
  if (std::uint64_t(in.gcount()) != h.data_size)
    fail(detail::concat("truncated file: expected ", h.data_size, " data bytes, read ", in.gcount()));
  State state(std::size_t(h.num_state));
  for (std::size_t k = 0; k < state.size(); ++k)
    state[k] = detail::get_le<std::int64_t>(data.data() + h.state.begin + 8 * k);
  Vector<S> params(Index(h.num_params));
  for (Index k = 0; k < params.size(); ++k)
    params[k] = detail::get_le<S>(data.data() + h.params.begin + sizeof(S) * std::size_t(k));

  // Architecture: apply the state to a copy (masks are state and appear in the signature).
  const std::string& file_sig = h.metadata.at("signature");
  const bool state_fits = state.size() == flow.state().size();
  FlowT candidate = flow;
  std::string state_error;
  if (state_fits) {
    try {
      candidate.set_state(state);
    } catch (const Error& e) {
      state_error = e.what();
    }
  }
  const std::string flow_sig = state_fits && state_error.empty() ? candidate.signature() : flow.signature();
  if (file_sig != flow_sig)
    fail(detail::concat("architecture mismatch: ", detail::signature_difference(file_sig, flow_sig),
                        ".\n  file signature: ", file_sig, "\n  flow signature: ", flow_sig));
  if (h.num_params != std::uint64_t(flow.params().size()))
    fail(detail::concat("file has ", h.num_params, " parameters, the flow has ", flow.params().size()));
  if (!state_fits)
    fail(detail::concat("file has ", state.size(), " state entries, the flow has ", flow.state().size()));
  if (!state_error.empty()) fail(detail::concat("the flow rejected the file's state: ", state_error));
  for (Index k = 0; k < params.size(); ++k)
    if (!std::isfinite(static_cast<double>(params[k])))
      fail(detail::concat("parameter ", k, " is ", static_cast<double>(params[k]), "; expected finite values"));

  // Everything checked: these cannot fail now (the same calls succeeded on the copy).
  flow.set_state(state);
  flow.set_params(params);
  return h.metadata;
}

}  // namespace fort
