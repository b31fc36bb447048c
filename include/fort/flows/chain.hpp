#pragma once
/// \file
/// The composition mechanism shared by Sequential (a compile-time list of different layers) and
/// Repeat (N copies of one block type). A chain applies its layers in order going forward and
/// in reverse going back; log-determinants add up; parameters are the layers' spans laid end to
/// end; state is the layers' states laid end to end.
///
/// A derived chain provides `size()` and `visit(i, cache, f)`, which calls
/// `f(layer_i, cache_i*)` for run-time index i.

#include <string>
#include <vector>

#include "fort/core/concepts.hpp"
#include "fort/core/error.hpp"

namespace fort::detail {

template <class Derived, class S, int D, class CacheT>
class Chain {
 public:
  using Scalar = S;
  static constexpr int Dim = D;
  using Cache = CacheT;

  Index dim() const { return dim_; }
  Index num_params() const { return offsets_.back(); }

  void init_params(Grads<Scalar> p, const Random& rng) const {
    check_params(p.size());
    for (Index i = 0; i < size(); ++i)
      self().visit(i, no_cache(), [&](const auto& layer, auto*) { layer.init_params(slice(p, i), rng.child(i)); });
  }

  void forward(Params<Scalar> p, ConstBatchRef<Scalar, Dim> x, BatchRef<Scalar, Dim> y, VectorRef<Scalar> log_det,
               Cache* cache = nullptr) const {
    check_io(p.size(), x, y, log_det);
    Batch<Scalar, Dim> cur = x, next(x.rows(), dim_);
    for (Index i = 0; i < size(); ++i) {
      self().visit(i, cache, [&](const auto& layer, auto* c) { layer.forward(slice(p, i), cur, next, log_det, c); });
      cur.swap(next);
    }
    y = cur;
  }

  void inverse(Params<Scalar> p, ConstBatchRef<Scalar, Dim> y, BatchRef<Scalar, Dim> x, VectorRef<Scalar> log_det,
               Cache* cache = nullptr) const {
    check_io(p.size(), y, x, log_det);
    Batch<Scalar, Dim> cur = y, next(y.rows(), dim_);
    for (Index i = size() - 1; i >= 0; --i) {
      self().visit(i, cache, [&](const auto& layer, auto* c) { layer.inverse(slice(p, i), cur, next, log_det, c); });
      cur.swap(next);
    }
    x = cur;
  }

  void backward_forward(Params<Scalar> p, const Cache& cache, ConstBatchRef<Scalar, Dim> dL_dy,
                        ConstVectorRef<Scalar> dL_dlog_det, BatchRef<Scalar, Dim> dL_dx, Grads<Scalar> dL_dp) const {
    check_params(p.size());
    check_params(dL_dp.size());
    Batch<Scalar, Dim> g = dL_dy, prev(dL_dy.rows(), dim_);
    for (Index i = size() - 1; i >= 0; --i) {
      self().visit(i, &cache, [&](const auto& layer, const auto* c) {
        layer.backward_forward(slice(p, i), *c, g, dL_dlog_det, prev, slice(dL_dp, i));
      });
      g.swap(prev);
    }
    dL_dx = g;
  }

  void backward_inverse(Params<Scalar> p, const Cache& cache, ConstBatchRef<Scalar, Dim> dL_dx,
                        ConstVectorRef<Scalar> dL_dlog_det, BatchRef<Scalar, Dim> dL_dy, Grads<Scalar> dL_dp) const {
    check_params(p.size());
    check_params(dL_dp.size());
    Batch<Scalar, Dim> g = dL_dx, prev(dL_dx.rows(), dim_);
    for (Index i = 0; i < size(); ++i) {
      self().visit(i, &cache, [&](const auto& layer, const auto* c) {
        layer.backward_inverse(slice(p, i), *c, g, dL_dlog_det, prev, slice(dL_dp, i));
      });
      g.swap(prev);
    }
    dL_dy = g;
  }

  Index point_scratch_size() const {
    Index most = 0;
    for (Index i = 0; i < size(); ++i)
      self().visit(i, no_cache(), [&](const auto& layer, auto*) { most = std::max(most, layer.point_scratch_size()); });
    return 2 * dim_ + most;
  }

  void forward_point(Params<Scalar> p, const Scalar* x, Scalar* y, Scalar& log_det, Scalar* scratch) const {
    point<true>(p, x, y, log_det, scratch);
  }
  void inverse_point(Params<Scalar> p, const Scalar* y, Scalar* x, Scalar& log_det, Scalar* scratch) const {
    point<false>(p, y, x, log_det, scratch);
  }

  State state() const {
    State all;
    for (Index i = 0; i < size(); ++i)
      self().visit(i, no_cache(), [&](const auto& layer, auto*) {
        const State s = layer.state();
        all.insert(all.end(), s.begin(), s.end());
      });
    return all;
  }

  void set_state(std::span<const std::int64_t> s) {
    Index total = 0;
    for (Index i = 0; i < size(); ++i)
      self().visit(i, no_cache(), [&](const auto& layer, auto*) { total += Index(layer.state().size()); });
    require(Index(s.size()) == total, self().name(), "state has ", s.size(), " entries, expected ", total);
    std::size_t at = 0;
    for (Index i = 0; i < size(); ++i)
      self().visit_mutable(i, [&](auto& layer) {
        const std::size_t k = layer.state().size();
        layer.set_state(s.subspan(at, k));
        at += k;
      });
  }

  std::string signature() const {
    std::string sig = self().name() + "[";
    for (Index i = 0; i < size(); ++i)
      self().visit(i, no_cache(), [&](const auto& layer, auto*) { sig += (i ? ";" : "") + std::string(layer.signature()); });
    return sig + "]";
  }

  /// Data-dependent initialisation: pushes data `y` back through the chain (inverse direction)
  /// and lets every layer that can initialise itself from data do so on what reaches it.
  void initialize_from_data(Grads<Scalar> p, ConstBatchRef<Scalar, Dim> y) {
    check_params(p.size());
    require_cols(y, dim_, self().name(), "data");
    Batch<Scalar, Dim> cur = y, next(y.rows(), dim_);
    Vector<Scalar> ld = Vector<Scalar>::Zero(y.rows());
    for (Index i = size() - 1; i >= 0; --i) {
      self().visit_mutable(i, [&](auto& layer) {
        using L = std::decay_t<decltype(layer)>;
        if constexpr (DataInitializable<L>) layer.initialize_from_data(slice(p, i), cur);
        layer.inverse(Params<Scalar>(slice(p, i)), cur, next, ld);
      });
      cur.swap(next);
    }
  }

  Index size() const { return self().size(); }
  Index param_offset(Index i) const { return offsets_[i]; }

 protected:
  Chain() = default;
  Chain(const Chain&) = default;
  Chain& operator=(const Chain&) = default;

  /// Called by the derived constructor once its layers exist.
  void link() {
    offsets_.assign(1, 0);
    dim_ = -1;
    for (Index i = 0; i < size(); ++i)
      self().visit(i, no_cache(), [&](const auto& layer, auto*) {
        if (dim_ < 0) dim_ = layer.dim();
        require(layer.dim() == dim_, self().name(), "layer ", i, " (", layer.signature(), ") has dim ", layer.dim(),
                ", expected ", dim_, " like layer 0");
        offsets_.push_back(offsets_.back() + layer.num_params());
      });
    require(dim_ >= 1, self().name(), "needs at least one layer");
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
  Derived& self() { return static_cast<Derived&>(*this); }
  static constexpr std::nullptr_t no_cache() { return nullptr; }

  template <class Span>
  Span slice_impl(Span p, Index i) const {
    return p.subspan(std::size_t(offsets_[i]), std::size_t(offsets_[i + 1] - offsets_[i]));
  }
  Params<Scalar> slice(Params<Scalar> p, Index i) const { return slice_impl(p, i); }
  Grads<Scalar> slice(Grads<Scalar> p, Index i) const { return slice_impl(p, i); }

  void check_params(std::size_t size) const {
    require(Index(size) == num_params(), self().name(), "parameter span has ", size, " values, expected ",
            num_params());
  }
  template <class In, class Out, class LD>
  void check_io(std::size_t np, const In& in, const Out& out, const LD& log_det) const {
    check_params(np);
    require_cols(in, dim_, self().name(), "input");
    require_shape(out, in.rows(), dim_, self().name(), "output");
    require(log_det.size() == in.rows(), self().name(), "log_det has ", log_det.size(), " entries, expected ",
            in.rows());
  }

  template <bool Forward>
  void point(Params<Scalar> p, const Scalar* in, Scalar* out, Scalar& log_det, Scalar* scratch) const {
    Scalar* bufs[2] = {scratch, scratch + dim_};
    Scalar* rest = scratch + 2 * dim_;
    const Scalar* cur = in;
    const Index n = size();
    for (Index s = 0; s < n; ++s) {
      const Index i = Forward ? s : n - 1 - s;
      Scalar* next = (s + 1 == n) ? out : bufs[s % 2];
      self().visit(i, no_cache(), [&](const auto& layer, auto*) {
        if constexpr (Forward) layer.forward_point(slice(p, i), cur, next, log_det, rest);
        else layer.inverse_point(slice(p, i), cur, next, log_det, rest);
      });
      cur = next;
    }
  }

  std::vector<Index> offsets_{0};
  Index dim_ = 0;
};

}  // namespace fort::detail
