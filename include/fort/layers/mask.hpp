#pragma once
/// \file
/// Which coordinates a coupling layer passes through (and feeds to its conditioner) and which it
/// transforms. Saved with the model as part of the layer state.

#include <string>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/types.hpp"

namespace fort {

class Mask {
 public:
  Mask() = default;
  /// `pass[i]` true: coordinate i is passed through and conditions the rest.
  explicit Mask(std::vector<bool> pass) : pass_(std::move(pass)) { validate(); }

  /// First ⌊d/2⌋ coordinates pass through (or the last ⌈d/2⌉ when `flipped`).
  static Mask half(Index d, bool flipped = false) {
    detail::require(d >= 2, "Mask", "a coupling needs dim >= 2, got ", d);
    std::vector<bool> pass(d);
    for (Index i = 0; i < d; ++i) pass[i] = (i < d / 2) != flipped;
    return Mask(std::move(pass));
  }

  /// Even coordinates pass through (odd ones when `flipped`).
  static Mask alternating(Index d, bool flipped = false) {
    detail::require(d >= 2, "Mask", "a coupling needs dim >= 2, got ", d);
    std::vector<bool> pass(d);
    for (Index i = 0; i < d; ++i) pass[i] = ((i % 2) == 0) != flipped;
    return Mask(std::move(pass));
  }

  Index dim() const { return Index(pass_.size()); }
  bool passes(Index i) const { return pass_[i]; }
  const std::vector<Index>& passed() const { return passed_; }
  const std::vector<Index>& transformed() const { return transformed_; }

  State state() const { return State(pass_.begin(), pass_.end()); }
  static Mask from_state(std::span<const std::int64_t> s) {
    std::vector<bool> pass(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
      detail::require(s[i] == 0 || s[i] == 1, "Mask", "state entry ", i, " is ", s[i], ", expected 0 or 1");
      pass[i] = s[i] == 1;
    }
    return Mask(std::move(pass));
  }

  std::string to_string() const {
    std::string s;
    for (bool b : pass_) s += b ? '1' : '0';
    return s;
  }

 private:
  void validate() {
    passed_.clear();
    transformed_.clear();
    for (Index i = 0; i < Index(pass_.size()); ++i) (pass_[i] ? passed_ : transformed_).push_back(i);
    detail::require(!passed_.empty() && !transformed_.empty(), "Mask",
                    "mask must pass at least one coordinate and transform at least one, got '",
                    to_string(), "'");
  }

  std::vector<bool> pass_;
  std::vector<Index> passed_, transformed_;
};

}  // namespace fort
