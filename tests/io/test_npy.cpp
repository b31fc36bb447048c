#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

#include "fort/io/npy.hpp"

#include "support/temp_files.hpp"

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

/// The I/O tests' temporary directory (tests/support/temp_files.hpp), with this file's prefix.
struct TempDir : fort::testing::TempDir {
  TempDir() : fort::testing::TempDir("fort_test_npy_") {}
};
using fort::testing::read_bytes;
using fort::testing::write_bytes;

template <std::size_t N>
std::string bytes_of(const char (&literal)[N]) {
  return std::string(literal, N - 1);
}

/// A .npy file with an arbitrary header dictionary text (padded to 64 bytes like numpy) and
/// arbitrary payload, for the error paths.
std::string npy_with_header(const std::string& dict, const std::string& payload, int major = 1) {
  const std::size_t prefix = major == 1 ? 10 : 12;
  std::string h = dict;
  h.append(64 - (prefix + h.size() + 1) % 64, ' ');
  h += '\n';
  std::string out("\x93NUMPY", 6);
  out += char(major);
  out += '\0';
  for (std::size_t b = 0; b < prefix - 8; ++b) out += char((h.size() >> (8 * b)) & 0xFF);
  return out + h + payload;
}

std::string doubles(std::initializer_list<double> values) {
  std::string s;
  for (double v : values) {
    char b[8];
    std::memcpy(b, &v, 8);  // the test machine is little-endian, like every numpy fixture here
    s.append(b, 8);
  }
  return s;
}

std::vector<std::string> list_dir(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Bytes produced by numpy's own writer (numpy >= 1.24 layout: 64-byte alignment, 21-digit
// growth room) for np.save(f, np.array([[1.5, -2.25, 3.0], [1e-300, -0.0, 6.02e23]])).
const char numpy_f8_2x3[] =
    "\x93\x4e\x55\x4d\x50\x59\x01\x00\x76\x00\x7b\x27\x64\x65\x73\x63"
    "\x72\x27\x3a\x20\x27\x3c\x66\x38\x27\x2c\x20\x27\x66\x6f\x72\x74"
    "\x72\x61\x6e\x5f\x6f\x72\x64\x65\x72\x27\x3a\x20\x46\x61\x6c\x73"
    "\x65\x2c\x20\x27\x73\x68\x61\x70\x65\x27\x3a\x20\x28\x32\x2c\x20"
    "\x33\x29\x2c\x20\x7d\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20"
    "\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20"
    "\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20"
    "\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x0a"
    "\x00\x00\x00\x00\x00\x00\xf8\x3f\x00\x00\x00\x00\x00\x00\x02\xc0"
    "\x00\x00\x00\x00\x00\x00\x08\x40\x59\xf3\xf8\xc2\x1f\x6e\xa5\x01"
    "\x00\x00\x00\x00\x00\x00\x00\x80\x61\xd3\xa8\x10\x9f\xde\xdf\x44";

// Older numpy (< 1.14): 16-byte alignment, no growth room. np.float32([1, -0.5, 3.25, 100]).
const char numpy_old_f4_4[] =
    "\x93\x4e\x55\x4d\x50\x59\x01\x00\x46\x00\x7b\x27\x64\x65\x73\x63"
    "\x72\x27\x3a\x20\x27\x3c\x66\x34\x27\x2c\x20\x27\x66\x6f\x72\x74"
    "\x72\x61\x6e\x5f\x6f\x72\x64\x65\x72\x27\x3a\x20\x46\x61\x6c\x73"
    "\x65\x2c\x20\x27\x73\x68\x61\x70\x65\x27\x3a\x20\x28\x34\x2c\x29"
    "\x2c\x20\x7d\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x0a"
    "\x00\x00\x80\x3f\x00\x00\x00\xbf\x00\x00\x50\x40\x00\x00\xc8\x42";

// Format version 2.0 (4-byte header length), shape (3, 1), float64 [7, 8, 9].
const char numpy_v2_f8_3x1[] =
    "\x93\x4e\x55\x4d\x50\x59\x02\x00\x74\x00\x00\x00\x7b\x27\x64\x65"
    "\x73\x63\x72\x27\x3a\x20\x27\x3c\x66\x38\x27\x2c\x20\x27\x66\x6f"
    "\x72\x74\x72\x61\x6e\x5f\x6f\x72\x64\x65\x72\x27\x3a\x20\x46\x61"
    "\x6c\x73\x65\x2c\x20\x27\x73\x68\x61\x70\x65\x27\x3a\x20\x28\x33"
    "\x2c\x20\x31\x29\x2c\x20\x7d\x20\x20\x20\x20\x20\x20\x20\x20\x20"
    "\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20"
    "\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20"
    "\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x0a"
    "\x00\x00\x00\x00\x00\x00\x1c\x40\x00\x00\x00\x00\x00\x00\x20\x40"
    "\x00\x00\x00\x00\x00\x00\x22\x40";

template <class S>
bool bitwise_equal(const fort::Matrix<S>& a, const fort::Matrix<S>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(S) * std::size_t(a.size())) == 0;
}

}  // namespace

TEMPLATE_TEST_CASE("npy: write then read round-trips every bit", "[io][npy]", float, double) {
  using S = TestType;
  TempDir dir;
  fort::Matrix<S> m(5, 3);
  std::mt19937 gen(42);
  std::normal_distribution<double> normal(0.0, 10.0);
  for (fort::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<S>(normal(gen));
  m(0, 0) = std::numeric_limits<S>::denorm_min();
  m(0, 1) = -std::numeric_limits<S>::infinity();
  m(0, 2) = std::numeric_limits<S>::quiet_NaN();
  m(1, 0) = -S(0);
  m(1, 1) = std::numeric_limits<S>::max();

  const auto file = dir / "m.npy";
  fort::write_npy(file, m);
  const auto back = fort::read_npy<S>(file);
  CHECK(bitwise_equal(m, back));

  const auto info = fort::read_npy_info(file);
  CHECK(info.dtype == (std::is_same_v<S, float> ? "<f4" : "<f8"));
  CHECK(info.shape == std::vector<fort::Index>{5, 3});
  CHECK(info.data_offset % 64 == 0);
  CHECK(info.major_version == 1);

  SECTION("reading converts between float and double") {
    const auto as_double = fort::read_npy<double>(file);
    for (fort::Index i = 2; i < m.rows(); ++i)
      for (fort::Index j = 0; j < m.cols(); ++j) CHECK(as_double(i, j) == static_cast<double>(m(i, j)));
  }
  SECTION("a 1-D vector is written with shape (N,) and read back as N x 1") {
    fort::Vector<S> v = m.col(1).tail(4);
    fort::write_npy(dir / "v.npy", v);
    CHECK(fort::read_npy_info(dir / "v.npy").shape == std::vector<fort::Index>{4});
    const auto vb = fort::read_npy<S>(dir / "v.npy");
    REQUIRE(vb.rows() == 4);
    REQUIRE(vb.cols() == 1);
    CHECK(vb.col(0) == v);
  }
  SECTION("expressions, maps and empty arrays") {
    fort::write_npy(dir / "t.npy", (m.bottomRows(3).transpose() * S(2)).eval());
    const auto t = fort::read_npy<S>(dir / "t.npy");
    CHECK(t == (m.bottomRows(3).transpose() * S(2)).eval());
    fort::write_npy(dir / "expr.npy", m.bottomRows(2).array().abs());
    CHECK(fort::read_npy<S>(dir / "expr.npy") == m.bottomRows(2).cwiseAbs());

    fort::Matrix<S> empty(0, 7);
    fort::write_npy(dir / "e.npy", empty);
    const auto e = fort::read_npy<S>(dir / "e.npy");
    CHECK(e.rows() == 0);
    CHECK(e.cols() == 7);
  }
  SECTION("writing leaves no temporary files and overwrites an existing file") {
    fort::write_npy(file, m.topRows(2));
    CHECK(fort::read_npy<S>(file).rows() == 2);
    CHECK(list_dir(dir.path) == std::vector<std::string>{"m.npy"});
  }
}

TEST_CASE("npy: writer output is byte-identical to numpy.save", "[io][npy]") {
  TempDir dir;
  fort::Matrix<double> m(2, 3);
  m << 1.5, -2.25, 3.0, 1e-300, -0.0, 6.02e23;
  fort::write_npy(dir / "a.npy", m);
  CHECK(read_bytes(dir / "a.npy") == bytes_of(numpy_f8_2x3));

  fort::Vector<float> v(4);
  v << 1.0f, -0.5f, 3.25f, 100.0f;
  fort::write_npy(dir / "v.npy", v);
  const std::string ours = read_bytes(dir / "v.npy");
  CHECK(ours.size() == 128 + 16);
  CHECK(ours.substr(128) == bytes_of(numpy_old_f4_4).substr(80));  // same payload
}

TEST_CASE("npy: reads files written by numpy", "[io][npy]") {
  TempDir dir;
  SECTION("current numpy, float64, 2-D") {
    write_bytes(dir / "a.npy", bytes_of(numpy_f8_2x3));
    const auto a = fort::read_npy<double>(dir / "a.npy");
    fort::Matrix<double> expected(2, 3);
    expected << 1.5, -2.25, 3.0, 1e-300, -0.0, 6.02e23;
    CHECK(bitwise_equal(a, expected));
    const auto info = fort::read_npy_info(dir / "a.npy");
    CHECK(info.data_offset == 128);
    CHECK(info.item_size == 8);
  }
  SECTION("old numpy, float32, 1-D, 16-byte alignment") {
    write_bytes(dir / "b.npy", bytes_of(numpy_old_f4_4));
    const auto b = fort::read_npy<float>(dir / "b.npy");
    REQUIRE(b.rows() == 4);
    REQUIRE(b.cols() == 1);
    CHECK(b(0, 0) == 1.0f);
    CHECK(b(1, 0) == -0.5f);
    CHECK(b(2, 0) == 3.25f);
    CHECK(b(3, 0) == 100.0f);
    CHECK(fort::read_npy_info(dir / "b.npy").data_offset == 80);
  }
  SECTION("format version 2.0") {
    write_bytes(dir / "c.npy", bytes_of(numpy_v2_f8_3x1));
    const auto c = fort::read_npy<float>(dir / "c.npy");
    REQUIRE(c.rows() == 3);
    REQUIRE(c.cols() == 1);
    CHECK(c(2, 0) == 9.0f);
    CHECK(fort::read_npy_info(dir / "c.npy").major_version == 2);
  }
  SECTION("other spellings of a valid header: key order, double quotes, Python 2 longs") {
    write_bytes(dir / "d.npy",
                npy_with_header("{\"shape\": (1L, 2L), \"fortran_order\": False, \"descr\": \"<f8\"}",
                                doubles({4.0, 5.0})));
    const auto d = fort::read_npy<double>(dir / "d.npy");
    REQUIRE(d.rows() == 1);
    REQUIRE(d.cols() == 2);
    CHECK(d(0, 1) == 5.0);
  }
  SECTION("bytes after the data are ignored, as numpy.load ignores them") {
    write_bytes(dir / "e.npy", bytes_of(numpy_f8_2x3) + "trailing garbage");
    CHECK(fort::read_npy<double>(dir / "e.npy")(0, 0) == 1.5);
  }
}

TEST_CASE("npy: every malformed file is rejected with a message naming the problem", "[io][npy]") {
  TempDir dir;
  const auto file = dir / "bad.npy";
  const std::string good_dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";

  SECTION("missing file") {
    REQUIRE_THROWS_AS(fort::read_npy<double>(dir / "nope.npy"), fort::Error);
    REQUIRE_THROWS_WITH(fort::read_npy<double>(dir / "nope.npy"),
                        Contains("nope.npy") && Contains("does not exist"));
    REQUIRE_THROWS_WITH(fort::read_npy_info(dir / "nope.npy"), Contains("does not exist"));
  }
  SECTION("a directory") {
    REQUIRE_THROWS_WITH(fort::read_npy<double>(dir.path), Contains("is a directory"));
  }
  SECTION("bad magic") {
    write_bytes(file, "PK\x03\x04 this is a zip, not npy");
    REQUIRE_THROWS_WITH(fort::read_npy<double>(file), Contains("bad.npy") && Contains("bad magic") &&
                                                          Contains("\\x93NUMPY"));
    write_bytes(file, "");
    REQUIRE_THROWS_WITH(fort::read_npy<double>(file), Contains("bad magic"));
  }
  SECTION("unsupported version") {
    std::string bytes = npy_with_header(good_dict, doubles({1, 2}));
    bytes[6] = 4;
    write_bytes(file, bytes);
    REQUIRE_THROWS_WITH(fort::read_npy<double>(file),
                        Contains("unsupported .npy format version 4.0") && Contains("expected 1.0, 2.0 or 3.0"));
    bytes[6] = 1;
    bytes[7] = 1;
    write_bytes(file, bytes);
    REQUIRE_THROWS_WITH(fort::read_npy<double>(file), Contains("version 1.1"));
  }
  SECTION("file ends inside the header") {
    write_bytes(file, npy_with_header(good_dict, "").substr(0, 40));
    REQUIRE_THROWS_WITH(fort::read_npy<double>(file), Contains("ends inside the header"));
    write_bytes(file, std::string("\x93NUMPY\x01", 7));
    REQUIRE_THROWS_WITH(fort::read_npy<double>(file), Contains("ends inside the header"));
  }
  SECTION("malformed header dictionary") {
    const char* bad_dicts[] = {
        "not a dict",
        "{'descr': '<f8', 'fortran_order': False}",                                   // missing shape
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'extra': 1}",        // unknown key
        "{'descr': '<f8', 'fortran_order': Maybe, 'shape': (2,)}",                    // bad bool
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2.5,)}",                  // non-integer
        "{'descr': '<f8', 'fortran_order': False, 'shape': (-2,)}",                   // negative
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,) 'x'}",                // missing comma
        "{'descr: '<f8', 'fortran_order': False, 'shape': (2,)}",                     // quote
        "{'descr': [('x', '<f8')], 'fortran_order': False, 'shape': (2,)}",           // structured
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)} trailing",
    };
    for (const char* dict : bad_dicts) {
      INFO(dict);
      write_bytes(file, npy_with_header(dict, doubles({1, 2})));
      REQUIRE_THROWS_WITH(fort::read_npy<double>(file),
                          Contains("bad.npy") && Contains("malformed header dictionary"));
    }
  }
  SECTION("fortran_order True") {
    write_bytes(file, npy_with_header("{'descr': '<f8', 'fortran_order': True, 'shape': (1, 2), }", doubles({1, 2})));
    REQUIRE_THROWS_WITH(fort::read_npy<double>(file), Contains("fortran_order is True") && Contains("C-order"));
  }
  SECTION("unsupported dtypes") {
    for (const char* descr : {"<i8", ">f8", "<f2", "<c16", "|u1", "=f8"}) {
      INFO(descr);
      write_bytes(file, npy_with_header(std::string("{'descr': '") + descr +
                                            "', 'fortran_order': False, 'shape': (2,), }",
                                        doubles({1, 2})));
      REQUIRE_THROWS_WITH(fort::read_npy<double>(file), Contains(std::string("unsupported dtype '") + descr + "'") &&
                                                            Contains("'<f4' or float64 '<f8'"));
    }
  }
  SECTION("shapes other than 1-D or 2-D") {
    write_bytes(file, npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 2), }",
                                      doubles({1, 2})));
    REQUIRE_THROWS_WITH(fort::read_npy<double>(file), Contains("3 dimensions") && Contains("1-D or 2-D"));
    write_bytes(file, npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", doubles({1})));
    REQUIRE_THROWS_WITH(fort::read_npy<double>(file), Contains("0 dimensions"));
  }
  SECTION("truncated data") {
    write_bytes(file, npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }",
                                      doubles({1, 2, 3, 4, 5}) + "abc"));
    REQUIRE_THROWS_WITH(fort::read_npy<double>(file), Contains("truncated data") && Contains("(3, 2)") &&
                                                          Contains("needs 48 bytes") && Contains("has 43"));
    // The header alone stays readable.
    CHECK(fort::read_npy_info(file).shape == std::vector<fort::Index>{3, 2});
  }
  SECTION("shapes whose byte count overflows") {
    write_bytes(file, npy_with_header(
                          "{'descr': '<f8', 'fortran_order': False, 'shape': (9223372036854775807, 4), }", ""));
    REQUIRE_THROWS_WITH(fort::read_npy<double>(file), Contains("too large"));
  }
}

TEST_CASE("npy: writes are atomic and failures leave the old file intact", "[io][npy]") {
  TempDir dir;
  fort::Matrix<double> old_m = fort::Matrix<double>::Constant(2, 2, 1.0);
  fort::Matrix<double> new_m = fort::Matrix<double>::Constant(3, 3, 2.0);

  SECTION("parent directory does not exist") {
    const auto target = dir / "missing_dir" / "x.npy";
    REQUIRE_THROWS_AS(fort::write_npy(target, new_m), fort::Error);
    REQUIRE_THROWS_WITH(fort::write_npy(target, new_m),
                        Contains("write_npy") && Contains("missing_dir") && Contains("does not exist"));
    CHECK(!fs::exists(dir / "missing_dir"));
  }
  SECTION("the rename fails (target is a non-empty directory): temp removed, directory untouched") {
    fs::create_directories(dir / "target.npy" / "inside");
    REQUIRE_THROWS_WITH(fort::write_npy(dir / "target.npy", new_m),
                        Contains("cannot rename") && Contains("left unchanged"));
    CHECK(fs::is_directory(dir / "target.npy" / "inside"));
    CHECK(list_dir(dir.path) == std::vector<std::string>{"target.npy"});
  }
  SECTION("the temporary cannot be created: an existing file keeps its old content") {
    // A name near the file-system limit: the target exists, but `<name>.tmp.<suffix>` is too long
    // to create, so the write fails after the target was found. Portable wherever names are
    // limited to 255 bytes (Linux, macOS, Windows); skipped where longer names are allowed.
    const std::string name = std::string(246, 'a') + ".npy";
    const auto target = dir / name;
    fort::write_npy(dir / "short.npy", old_m);  // writing under the long name would fail too
    fs::rename(dir / "short.npy", target);
    const std::string before = read_bytes(target);
    bool long_names_rejected = false;
    {
      std::ofstream probe(dir / (name + ".tmp.0123456789abcdef"));
      long_names_rejected = !probe;
    }
    if (!long_names_rejected) {
      WARN("file system accepts names over 255 bytes; failure-injection check skipped");
    } else {
      REQUIRE_THROWS_WITH(fort::write_npy(target, new_m),
                          Contains("cannot create temporary file") && Contains("left unchanged"));
      CHECK(read_bytes(target) == before);
      CHECK(fort::read_npy<double>(target) == old_m);
      CHECK(list_dir(dir.path) == std::vector<std::string>{name});
    }
  }
  SECTION("read-only directory: an existing file keeps its old content") {
    const auto target = dir / "ro.npy";
    fort::write_npy(target, old_m);
    fs::permissions(dir.path, fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write,
                    fs::perm_options::remove);
    bool can_still_create = false;
    {
      std::ofstream probe(dir / "probe");
      can_still_create = bool(probe);
    }
    if (can_still_create) {
      // Running as root (or on a file system without permissions): nothing to check here.
      std::error_code ec;
      fs::remove(dir / "probe", ec);
      WARN("directory permissions are not enforced for this user; read-only check skipped");
    } else {
      REQUIRE_THROWS_WITH(fort::write_npy(target, new_m), Contains("cannot create temporary file"));
      CHECK(fort::read_npy<double>(target) == old_m);
    }
    fs::permissions(dir.path, fs::perms::owner_all, fs::perm_options::add);
  }
}
