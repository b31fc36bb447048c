#pragma once
/// \file
/// Sequential<L1, L2, ...>: a compile-time list of layers applied in order going forward
/// (noise → data) and in reverse going back. Itself a FlowLayer, so sequences nest.
///
///   auto flow = Sequential(ActNorm<double, 2>(...), AffineCoupling<double, 2>(...), Reverse<double, 2>(2));

#include <tuple>
#include <type_traits>
#include <utility>

#include "fort/flows/chain.hpp"

namespace fort {

template <FlowLayer... Layers>
class Sequential;

namespace detail {

template <FlowLayer First, FlowLayer... Rest>
struct SequentialTraits {
  using Scalar = typename First::Scalar;
  static constexpr int Dim = First::Dim;
  static_assert((std::is_same_v<typename Rest::Scalar, Scalar> && ...),
                "fort::Sequential: all layers must use the same Scalar type");
  static_assert(((Rest::Dim == Dim) && ...), "fort::Sequential: all layers must have the same compile-time Dim");
};

template <class... Layers>
struct SequentialCache {
  std::tuple<typename Layers::Cache...> layers;
};

}  // namespace detail

template <FlowLayer... Layers>
class Sequential
    : public detail::Chain<Sequential<Layers...>, typename detail::SequentialTraits<Layers...>::Scalar,
                           detail::SequentialTraits<Layers...>::Dim, detail::SequentialCache<Layers...>> {
  using Base = detail::Chain<Sequential<Layers...>, typename detail::SequentialTraits<Layers...>::Scalar,
                             detail::SequentialTraits<Layers...>::Dim, detail::SequentialCache<Layers...>>;
  friend Base;

 public:
  using typename Base::Cache;
  using typename Base::Scalar;
  static constexpr int Dim = Base::Dim;

  explicit Sequential(Layers... layers) : layers_(std::move(layers)...) { this->link(); }

  static std::string name() { return "Sequential"; }
  Index size() const { return Index(sizeof...(Layers)); }

  template <std::size_t I>
  const auto& layer() const { return std::get<I>(layers_); }
  template <std::size_t I>
  auto& layer() { return std::get<I>(layers_); }

 private:
  template <std::size_t I, class C>
  static auto* cache_at(C* cache) {
    using LayerCache = typename std::tuple_element_t<I, std::tuple<Layers...>>::Cache;
    using Ptr = std::conditional_t<std::is_const_v<C>, const LayerCache*, LayerCache*>;
    return cache ? Ptr(&std::get<I>(cache->layers)) : Ptr(nullptr);
  }
  template <std::size_t I>
  static auto* cache_at(std::nullptr_t) {
    using LayerCache = typename std::tuple_element_t<I, std::tuple<Layers...>>::Cache;
    return static_cast<LayerCache*>(nullptr);
  }

  template <class C, class F, std::size_t... Is>
  void visit_impl(Index i, C cache, F& f, std::index_sequence<Is...>) const {
    ((i == Index(Is) ? (f(std::get<Is>(layers_), cache_at<Is>(cache)), 0) : 0), ...);
  }
  template <class C, class F>
  void visit(Index i, C cache, F&& f) const {
    visit_impl(i, cache, f, std::index_sequence_for<Layers...>{});
  }
  template <class F, std::size_t... Is>
  void visit_mutable_impl(Index i, F& f, std::index_sequence<Is...>) {
    ((i == Index(Is) ? (f(std::get<Is>(layers_)), 0) : 0), ...);
  }
  template <class F>
  void visit_mutable(Index i, F&& f) {
    visit_mutable_impl(i, f, std::index_sequence_for<Layers...>{});
  }

  std::tuple<Layers...> layers_;
};

}  // namespace fort
