#pragma once
/// \file
/// Atomic file replacement, shared by every writer in `fort/io` (`.npy`, model files).
///
/// The bytes go to a temporary file in the target's directory (`<path>.tmp.<16 hex digits>`),
/// which is flushed, closed, checked and then renamed over the target. Same directory means same
/// file system, so the rename is atomic: readers see either the old file or the complete new one.
/// A failed write removes the temporary and throws `fort::Error`, leaving any previous file
/// untouched. (The standard library has no fsync, so this protects against crashes of the
/// process, not against power loss.)

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <system_error>

#include "fort/core/error.hpp"

namespace fort::detail {

/// Process-unique, hard-to-guess suffix for temporary files, `.tmp.` plus 16 hex digits:
/// random_device mixed with a counter so that two writers in one process never pick the same name.
inline std::string temp_file_suffix() {
  static std::atomic<std::uint64_t> counter{0};
  std::random_device device;
  const std::uint64_t r = (std::uint64_t(device()) << 32) ^ device() ^ (counter.fetch_add(1) * 0x9E3779B97F4A7C15ull);
  static constexpr char hex[] = "0123456789abcdef";
  std::string s = ".tmp.";
  for (int k = 0; k < 16; ++k) s += hex[(r >> (4 * k)) & 15];
  return s;
}

/// Writes `bytes` to `path` atomically (see the file comment). Errors are `fort::Error(where,
/// "'<path>': <what>; any existing file was left unchanged")`.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes, std::string_view where) {
  namespace fs = std::filesystem;
  require(!path.empty(), where, "empty path");
  const fs::path tmp = fs::path(path.string() + temp_file_suffix());

  auto fail = [&](std::string_view what) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw Error(where, concat("'", path.string(), "': ", what, "; any existing file was left unchanged"));
  };
  {
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    if (!file) {
      std::error_code ec;
      const fs::path parent = path.parent_path().empty() ? fs::path(".") : path.parent_path();
      if (!fs::is_directory(parent, ec)) fail(concat("directory '", parent.string(), "' does not exist"));
      fail(concat("cannot create temporary file '", tmp.string(), "' (is the directory writable?)"));
    }
    file.write(bytes.data(), std::streamsize(bytes.size()));
    file.flush();
    if (!file) fail(concat("writing temporary file '", tmp.string(), "' failed (disk full?)"));
    file.close();
    if (file.fail()) fail(concat("closing temporary file '", tmp.string(), "' failed"));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail(concat("cannot rename temporary file over the target (", ec.message(), ")"));
}

}  // namespace fort::detail
