#pragma once
/// \file
/// Permutation layer: reorders coordinates so that successive couplings transform different
/// parts of the vector (Dinh et al. 2017, RealNVP; Kingma & Dhariwal 2018, Glow, "shuffle" and
/// "reverse" variants).
///
///   forward (noise → data):  y_i = x_{π(i)}            log|det ∂y/∂x| = 0
///   inverse (data → noise):  x_{π(i)} = y_i            log|det ∂x/∂y| = 0
///
/// Shapes: x, y [N, D]; log_det [N] (left unchanged: the map preserves volume). No trainable
/// parameters (`num_params() == 0`).
///
/// State: π itself, D integers (π(0), ..., π(D−1)), so a reloaded model gets the permutation it
/// was trained with even if it was drawn at random. `set_state` validates that the state is a
/// permutation of 0..D−1. The signature names the architecture only ("Permutation(dim=D)"); the
/// permutation itself is state.
///
/// Construction: `Permutation<S, D>(indices)` from an explicit π (validated), or the factories
/// `identity(d)`, `reverse(d)` (π(i) = D−1−i, its own inverse) and `random(d, rng)` (a seeded
/// Fisher–Yates permutation, fort::random_permutation). `Reverse<S, D>(d)` is a shorthand type
/// for `Permutation<S, D>::reverse(d)`.
///
/// Input and output buffers may be the same (in-place application is handled) but must not
/// partially overlap.

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "fort/core/concepts.hpp"
#include "fort/core/error.hpp"

namespace fort {

namespace detail {

/// Checks that `perm` (of length `expected_size`) is a permutation of 0..n−1, naming the first
/// problem found (wrong length, entry out of range, repeated value).
template <class Int>
void require_permutation(std::span<const Int> perm, Index expected_size, std::string_view where,
                         std::string_view what) {
  require(Index(perm.size()) == expected_size, where, what, " has ", perm.size(), " entries, expected ",
          expected_size);
  const Index n = expected_size;
  std::vector<Index> seen_at(std::size_t(n), -1);
  for (Index i = 0; i < n; ++i) {
    const auto v = static_cast<long long>(perm[std::size_t(i)]);
    require(v >= 0 && v < n, where, what, " entry ", i, " is ", v, ", expected a value in [0, ", n,
            ") (a permutation of 0..", n - 1, ")");
    Index& first = seen_at[std::size_t(v)];
    require(first < 0, where, what, " is not a permutation: value ", v, " appears at entries ", first, " and ", i,
            ", expected each of 0..", n - 1, " exactly once");
    first = i;
  }
}

}  // namespace detail

template <class S, int D = Dynamic>
class Permutation {
  static_assert(std::floating_point<S>, "fort::Permutation: Scalar must be float or double");
  static_assert(detail::valid_dim<D>, "fort::Permutation: Dim must be >= 1 or fort::Dynamic");

 public:
  using Scalar = S;
  static constexpr int Dim = D;

  /// Nothing to record but the batch size (the map is linear and parameter-free); the row count
  /// lets backward detect a missing forward pass.
  struct Cache {
    Index rows = -1;
  };

  /// From an explicit π: `indices[i]` is the input coordinate that becomes output coordinate i.
  explicit Permutation(std::vector<Index> indices) : perm_(std::move(indices)) {
    check_dim(Index(perm_.size()));
    detail::require_permutation(std::span<const Index>(perm_), Index(perm_.size()), where(), "permutation");
  }

  static Permutation identity(Index d) {
    check_dim(d);
    std::vector<Index> p(static_cast<std::size_t>(d));
    for (Index i = 0; i < d; ++i) p[std::size_t(i)] = i;
    return Permutation(std::move(p));
  }

  /// π(i) = d−1−i: its own inverse.
  static Permutation reverse(Index d) {
    check_dim(d);
    std::vector<Index> p(static_cast<std::size_t>(d));
    for (Index i = 0; i < d; ++i) p[std::size_t(i)] = d - 1 - i;
    return Permutation(std::move(p));
  }

  /// A permutation drawn from `rng` (Fisher–Yates, fort::random_permutation): the same key gives
  /// the same permutation on every platform.
  static Permutation random(Index d, const Random& rng) {
    check_dim(d);
    std::vector<Index> p(static_cast<std::size_t>(d));
    random_permutation(std::span<Index>(p), rng);
    return Permutation(std::move(p));
  }

  Index dim() const { return Index(perm_.size()); }
  Index num_params() const { return 0; }
  /// π: output coordinate i takes input coordinate `indices()[i]` (forward direction).
  const std::vector<Index>& indices() const { return perm_; }

  std::string signature() const { return detail::concat("Permutation(dim=", dim(), ")"); }

  State state() const { return State(perm_.begin(), perm_.end()); }
  void set_state(std::span<const std::int64_t> s) {
    detail::require_permutation(s, dim(), where(), "state");
    perm_.assign(s.begin(), s.end());
  }

  void init_params(Grads<Scalar> p, const Random&) const { check_params(p.size()); }

  void forward(Params<Scalar> p, ConstBatchRef<Scalar, Dim> x, BatchRef<Scalar, Dim> y, VectorRef<Scalar> log_det,
               Cache* cache = nullptr) const {
    check_io(p.size(), x, y, log_det);
    gather(x, y);
    if (cache) cache->rows = x.rows();
  }

  void inverse(Params<Scalar> p, ConstBatchRef<Scalar, Dim> y, BatchRef<Scalar, Dim> x, VectorRef<Scalar> log_det,
               Cache* cache = nullptr) const {
    check_io(p.size(), y, x, log_det);
    scatter(y, x);
    if (cache) cache->rows = y.rows();
  }

  /// dL/dx_{π(i)} = dL/dy_i; the log-det does not depend on anything.
  void backward_forward(Params<Scalar> p, const Cache& cache, ConstBatchRef<Scalar, Dim> dL_dy,
                        ConstVectorRef<Scalar> dL_dlog_det, BatchRef<Scalar, Dim> dL_dx, Grads<Scalar> dL_dp) const {
    check_backward(p, cache, dL_dy, dL_dlog_det, dL_dx, dL_dp);
    scatter(dL_dy, dL_dx);
  }

  /// dL/dy_i = dL/dx_{π(i)}.
  void backward_inverse(Params<Scalar> p, const Cache& cache, ConstBatchRef<Scalar, Dim> dL_dx,
                        ConstVectorRef<Scalar> dL_dlog_det, BatchRef<Scalar, Dim> dL_dy, Grads<Scalar> dL_dp) const {
    check_backward(p, cache, dL_dx, dL_dlog_det, dL_dy, dL_dp);
    gather(dL_dx, dL_dy);
  }

  /// One copy of the point, so that `x` and `y` may be the same buffer.
  Index point_scratch_size() const { return dim(); }

  void forward_point(Params<Scalar>, const Scalar* x, Scalar* y, Scalar&, Scalar* scratch) const {
    const Index d = dim();
    std::copy(x, x + d, scratch);
    for (Index i = 0; i < d; ++i) y[i] = scratch[perm_[std::size_t(i)]];
  }

  void inverse_point(Params<Scalar>, const Scalar* y, Scalar* x, Scalar&, Scalar* scratch) const {
    const Index d = dim();
    std::copy(y, y + d, scratch);
    for (Index i = 0; i < d; ++i) x[perm_[std::size_t(i)]] = scratch[i];
  }

 private:
  static std::string where() { return "Permutation"; }

  static void check_dim(Index d) {
    detail::require(d >= 1, where(), "dim must be >= 1, got ", d);
    detail::require(Dim == Dynamic || d == Dim, where(), "dim is ", d, ", expected ", Dim,
                    " (the compile-time Dim)");
  }

  void check_params(std::size_t size) const {
    detail::require(size == 0, where(), "parameter span has ", size, " values, expected 0");
  }

  template <class In, class Out, class LD>
  void check_io(std::size_t np, const In& in, const Out& out, const LD& log_det) const {
    check_params(np);
    detail::require_cols(in, dim(), where(), "input");
    detail::require_shape(out, in.rows(), dim(), where(), "output");
    detail::require(log_det.size() == in.rows(), where(), "log_det has ", log_det.size(), " entries, expected ",
                    in.rows());
  }

  template <class G, class LD, class GOut>
  void check_backward(const Params<Scalar>& p, const Cache& cache, const G& dL_dout, const LD& dL_dld,
                      const GOut& dL_din, const Grads<Scalar>& dL_dp) const {
    check_params(p.size());
    check_params(dL_dp.size());
    const Index n = dL_dout.rows();
    detail::require(cache.rows == n, where(), "backward called without a recorded forward pass on a batch of ", n,
                    " rows (the cache holds ", cache.rows < 0 ? std::string("none") : std::to_string(cache.rows),
                    ")");
    detail::require_shape(dL_dout, n, dim(), where(), "dL/d(output)");
    detail::require_shape(dL_din, n, dim(), where(), "dL/d(input)");
    detail::require(dL_dld.size() == n, where(), "dL/dlog_det has ", dL_dld.size(), " entries, expected ", n);
  }

  /// out(r, i) = in(r, π(i)).
  void gather(const ConstBatchRef<Scalar, Dim>& in, BatchRef<Scalar, Dim>& out) const {
    if (in.data() == out.data() && in.size() > 0) {
      const Batch<Scalar, Dim> copy = in;
      gather_rows(copy, out);
    } else {
      gather_rows(in, out);
    }
  }
  /// out(r, π(i)) = in(r, i).
  void scatter(const ConstBatchRef<Scalar, Dim>& in, BatchRef<Scalar, Dim>& out) const {
    if (in.data() == out.data() && in.size() > 0) {
      const Batch<Scalar, Dim> copy = in;
      scatter_rows(copy, out);
    } else {
      scatter_rows(in, out);
    }
  }
  template <class In>
  void gather_rows(const In& in, BatchRef<Scalar, Dim>& out) const {
    const Index d = dim();
    for (Index r = 0; r < in.rows(); ++r)
      for (Index i = 0; i < d; ++i) out(r, i) = in(r, perm_[std::size_t(i)]);
  }
  template <class In>
  void scatter_rows(const In& in, BatchRef<Scalar, Dim>& out) const {
    const Index d = dim();
    for (Index r = 0; r < in.rows(); ++r)
      for (Index i = 0; i < d; ++i) out(r, perm_[std::size_t(i)]) = in(r, i);
  }

  std::vector<Index> perm_;
};

/// Shorthand for `Permutation<S, D>::reverse(dim)`: π(i) = D−1−i. Same layer type semantics
/// (and signature, state) as Permutation; `set_state` may load any permutation.
template <class S, int D = Dynamic>
class Reverse : public Permutation<S, D> {
 public:
  explicit Reverse(Index dim = (D == Dynamic ? 0 : D)) : Permutation<S, D>(Permutation<S, D>::reverse(dim)) {}
};

}  // namespace fort
