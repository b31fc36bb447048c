#pragma once
/// \file
/// Repeat<Block>: `n` blocks of one type, chosen at run time, built by a factory so each copy can
/// differ in configuration (flipped masks, its own random permutation). One template
/// instantiation however many blocks, which keeps deep flows cheap to compile.
///
///   Repeat<Block> flow(8, [](Index i) { return Block(...i...); });

#include <functional>
#include <vector>

#include "fort/flows/chain.hpp"

namespace fort {

template <FlowLayer Block>
class Repeat : public detail::Chain<Repeat<Block>, typename Block::Scalar, Block::Dim,
                                    std::vector<typename Block::Cache>> {
  using Base = detail::Chain<Repeat<Block>, typename Block::Scalar, Block::Dim, std::vector<typename Block::Cache>>;
  friend Base;

 public:
  using typename Base::Cache;
  using typename Base::Scalar;
  static constexpr int Dim = Base::Dim;

  template <class Factory>
    requires std::is_invocable_r_v<Block, Factory, Index>
  Repeat(Index n, Factory&& make) {
    detail::require(n >= 1, "Repeat", "block count must be >= 1, got ", n);
    blocks_.reserve(std::size_t(n));
    for (Index i = 0; i < n; ++i) blocks_.push_back(make(i));
    this->link();
  }

  static std::string name() { return "Repeat"; }
  Index size() const { return Index(blocks_.size()); }
  const Block& block(Index i) const { return blocks_[std::size_t(i)]; }
  Block& block(Index i) { return blocks_[std::size_t(i)]; }

 private:
  template <class C, class F>
  void visit(Index i, C cache, F&& f) const {
    using Ptr = std::conditional_t<std::is_const_v<std::remove_pointer_t<C>>, const typename Block::Cache*,
                                   typename Block::Cache*>;
    if constexpr (std::is_same_v<C, std::nullptr_t>) {
      f(blocks_[std::size_t(i)], static_cast<typename Block::Cache*>(nullptr));
    } else {
      if constexpr (!std::is_const_v<std::remove_pointer_t<C>>) {
        if (cache && Index(cache->size()) != size()) cache->resize(std::size_t(size()));
      } else {
        detail::require(!cache || Index(cache->size()) == size(), "Repeat",
                        "backward called without a recorded forward pass");
      }
      f(blocks_[std::size_t(i)], cache ? Ptr(&(*cache)[std::size_t(i)]) : Ptr(nullptr));
    }
  }
  template <class F>
  void visit_mutable(Index i, F&& f) {
    f(blocks_[std::size_t(i)]);
  }

  std::vector<Block> blocks_;
};

}  // namespace fort
