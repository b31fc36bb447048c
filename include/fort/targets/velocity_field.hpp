#pragma once
/// \file
/// Time-dependent velocity field v(x, t): R^D × [0, 1] → R^D for continuous normalizing flows
/// (the CNF "teacher" whose integrated pairs become FORT targets).
///
/// Network. `VelocityMLP` is a fort::MLP applied to a time-augmented input
///
///   in(x, t) = [x_1 … x_D, t, sin(2π·1·t), cos(2π·1·t), …, sin(2π·K·t), cos(2π·K·t)]
///
/// with K = `VelocityConfig::time_frequencies` (K = 0, the default, feeds plain [x, t]; a few
/// frequencies help fields that change quickly in t). The MLP output is v (D columns). Its last
/// layer starts at zero (fort::MLP's initialisation), so an untrained field is v ≡ 0, the identity
/// flow. Parameters are one flat span of `num_params()` scalars, exactly fort::MLP's layout
/// (layer by layer, W row-major [out, in] then b); forward/backward are fort::MLP's.
///
/// Shapes: x [N, D] row-major, t a scalar (all rows at the same time: ODE use) or a vector [N]
/// (one time per row: flow-matching training), v [N, D], divergence [N].
///
/// Exact divergence ∇·v = tr(∂v/∂x) (the x-block of the Jacobian; t is not differentiated).
/// Write a_k = act'(z_k) for the pre-activations z_k of hidden layer k (k = 0 … L−1, L = depth),
/// W_k the dense weights, W_0x the columns of W_0 that multiply x, r_k = 1 when hidden layer k is
/// a residual block (h_{k+1} = h_k + act(z_k)). Then ∂v/∂x = W_L T_L with T_0 = [I_D; 0] and
/// T_{k+1} = diag(a_k) W_k T_k + r_k T_k. Two exact evaluation schemes:
///
///  * closed form (depth ≤ 2; the cyclic trace identity folds first and last layer together):
///      depth 0:  div = Σ_{i<D} W_0[i,i]                                          (constant)
///      depth 1:  div = a_0·c + r_0 Σ_{i<D} W_1[i,i],      c_j = Σ_{i<D} W_1[i,j] W_0[j,i]
///      depth 2:  div = a_1ᵀ Q a_0 + r_1 a_0·diag(P) + r_0 a_1·c' + r_0 r_1 Σ_{i<D} W_2[i,i]
///                with P = W_0x W_2 [w, w], Q[k,j] = W_1[k,j] P[j,k], c'_k = Σ_{i<D} W_2[i,k] W_1[k,i].
///    Cost per call: O(w²·D) once for P and Q, then 2·N·w² flops (a matrix product and a dot
///    per row) — about the cost of one forward pass, independent of D.
///  * forward mode (any depth; the default for depth ≥ 3): D tangents per point propagated
///    through the hidden layers as one [B·D, w] × [w, w] product per layer on chunks of B rows.
///    Cost: 2·N·D·w²·(depth − 1) + O(N·D·w) flops, i.e. about D times the hidden-layer cost of a
///    forward pass; memory O(B·D·w) with B chosen so that a chunk's tangents stay ≈ 2 MB.
///  Both are exact (no stochastic trace estimator); they agree to rounding. Example: D = 66,
///  width 256: depth 2 costs ≈ 0.13 Mflop per point (closed form), depth 3 ≈ 8.7 Mflop per point.
///
/// Errors (fort::Error, "VelocityMLP: …"): dim < 1, time_frequencies < 0, invalid MLP sizes,
/// a parameter span of the wrong length, inputs with the wrong number of columns, a time vector
/// whose length differs from the batch, the closed-form divergence requested for depth > 2.
/// Values are not checked for finiteness here (the integrators and trainers check their own).

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/random.hpp"
#include "fort/core/types.hpp"
#include "fort/nn/mlp.hpp"

namespace fort {

struct VelocityConfig {
  MLPConfig mlp{128, 2, Activation::silu, false};  ///< hidden layers of the network
  Index time_frequencies = 0;                      ///< K: Fourier features of t (0 = plain t)
};

/// How `forward_and_divergence` evaluates the exact trace.
enum class DivergenceMethod {
  automatic,    ///< closed form for depth ≤ 2, forward mode otherwise
  closed_form,  ///< depth ≤ 2 only
  forward_mode, ///< any depth; D tangents per point
};

template <class S>
class VelocityMLP {
 public:
  using Scalar = S;

  /// What `forward` records for `backward`.
  struct Cache {
    typename MLP<S>::Cache mlp;
    Vector<S> t;  ///< the per-row times (for dL/dt)
  };

  VelocityMLP() = default;
  explicit VelocityMLP(Index dim, VelocityConfig config = {}) : dim_(dim), config_(config) {
    detail::require(dim >= 1, where, "dim must be >= 1, got ", dim);
    detail::require(config.time_frequencies >= 0, where, "time_frequencies must be >= 0, got ",
                    config.time_frequencies);
    mlp_ = MLP<S>(input_dim(), dim, config.mlp);
    // fort::MLP's documented layout: hidden layers in→w→…→w, then w→D (or in→D at depth 0).
    Index prev = input_dim(), offset = 0;
    for (Index k = 0; k <= config.mlp.depth; ++k) {
      const Index out = k < config.mlp.depth ? config.mlp.width : dim;
      layers_.push_back({prev, out, offset});
      offset += prev * out + out;
      prev = out;
    }
    detail::require(offset == mlp_.num_params(), where,
                    "internal error: MLP parameter layout changed (please report)");
  }

  Index dim() const { return dim_; }
  /// Columns of the network input: D + 1 + 2K.
  Index input_dim() const { return dim_ + 1 + 2 * config_.time_frequencies; }
  const VelocityConfig& config() const { return config_; }
  const MLP<S>& mlp() const { return mlp_; }
  Index num_params() const { return mlp_.num_params(); }

  std::string signature() const {
    return detail::concat("VelocityMLP(dim=", dim_, ",time_frequencies=", config_.time_frequencies, ",",
                          mlp_.signature(), ")");
  }

  /// fort::MLP initialisation (last layer zero: v ≡ 0 at the start).
  void init_params(Grads<S> p, const Random& rng) const {
    check_params(p.size());
    mlp_.init_params(p, rng);
  }

  /// v = v(x, t) with one time for every row.
  void forward(Params<S> p, ConstBatchRef<S> x, S t, Batch<S>& v) const {
    check_params(p.size());
    detail::require_cols(x, dim_, where, "x");
    Matrix<S> in;
    build_input(x, [t](Index) { return t; }, in);
    mlp_.forward(p, in, v);
  }

  /// v = v(x_i, t_i) row by row; records what `backward` needs when `cache` is given.
  void forward(Params<S> p, ConstBatchRef<S> x, ConstVectorRef<S> t, Batch<S>& v, Cache* cache = nullptr) const {
    check_params(p.size());
    detail::require_cols(x, dim_, where, "x");
    detail::require(t.size() == x.rows(), where, "t has ", t.size(), " entries, expected one per row (", x.rows(), ")");
    Matrix<S> local;
    Matrix<S>& in = cache ? cache->mlp.input() : local;
    build_input(x, [&t](Index i) { return t[i]; }, in);
    if (!cache) return mlp_.forward(p, in, v);
    cache->t = t;
    mlp_.forward_recorded(p, v, cache->mlp);
  }

  /// Given dL/dv [N, D]: accumulates dL/dp into `dL_dp` (+=, like fort::MLP) and writes dL/dx
  /// [N, D] and dL/dt [N] when the pointers are non-null.
  void backward(Params<S> p, const Cache& cache, const Batch<S>& dL_dv, Grads<S> dL_dp, Batch<S>* dL_dx = nullptr,
                Vector<S>* dL_dt = nullptr) const {
    check_params(p.size());
    check_params(dL_dp.size());
    const Index n = cache.t.size();
    detail::require(!cache.mlp.inputs.empty() && cache.mlp.inputs[0].rows() == n, where,
                    "cache does not come from forward(p, x, t-vector, v, &cache)");
    detail::require_shape(dL_dv, n, dim_, where, "dL/dv");
    if (!dL_dx && !dL_dt) {
      mlp_.backward(p, cache.mlp, dL_dv, nullptr, dL_dp);
      return;
    }
    Matrix<S> g_in;
    mlp_.backward(p, cache.mlp, dL_dv, &g_in, dL_dp);
    if (dL_dx) *dL_dx = g_in.leftCols(dim_);
    if (dL_dt) {
      dL_dt->resize(n);
      const double two_pi = 2.0 * std::numbers::pi;
      for (Index i = 0; i < n; ++i) {
        const double t = double(cache.t[i]);
        double g = double(g_in(i, dim_));
        for (Index k = 1; k <= config_.time_frequencies; ++k) {
          const double w = two_pi * double(k);
          g += double(g_in(i, dim_ - 1 + 2 * k)) * w * std::cos(w * t);
          g -= double(g_in(i, dim_ + 2 * k)) * w * std::sin(w * t);
        }
        (*dL_dt)[i] = S(g);
      }
    }
  }

  /// v(x, t) and the exact divergence ∇ₓ·v(x, t) [N] (see the file comment for the cost).
  void forward_and_divergence(Params<S> p, ConstBatchRef<S> x, S t, Batch<S>& v, Vector<S>& div,
                              DivergenceMethod method = DivergenceMethod::automatic) const {
    check_params(p.size());
    detail::require_cols(x, dim_, where, "x");
    const Index depth = config_.mlp.depth;
    if (method == DivergenceMethod::automatic)
      method = depth <= 2 ? DivergenceMethod::closed_form : DivergenceMethod::forward_mode;
    detail::require(method == DivergenceMethod::forward_mode || depth <= 2, where,
                    "the closed-form divergence needs depth <= 2, the network has depth ", depth,
                    "; use DivergenceMethod::forward_mode or automatic");
    typename MLP<S>::Cache cache;
    build_input(x, [t](Index) { return t; }, cache.input());
    mlp_.forward_recorded(p, v, cache);
    div.resize(x.rows());
    std::vector<Matrix<S>> a(static_cast<std::size_t>(depth));
    const Activation act = config_.mlp.activation;
    for (Index k = 0; k < depth; ++k)
      a[k] = cache.pre[k].unaryExpr([act](S z) { return detail::activate_derivative(act, z); });
    if (method == DivergenceMethod::closed_form) {
      closed_form_divergence(p, a, div);
    } else {
      forward_mode_divergence(p, a, div);
    }
  }

  /// Divergence only.
  void divergence(Params<S> p, ConstBatchRef<S> x, S t, Vector<S>& div,
                  DivergenceMethod method = DivergenceMethod::automatic) const {
    Batch<S> v;
    forward_and_divergence(p, x, t, v, div, method);
  }

  /// Scalars of scratch that `forward_point` needs.
  Index point_scratch_size() const { return input_dim() + mlp_.point_scratch_size(); }

  /// One point, no allocation: v[D] = v(x[D], t). `scratch` holds point_scratch_size() scalars.
  void forward_point(Params<S> p, const S* x, S t, S* v, S* scratch) const {
    S* in = scratch;
    for (Index j = 0; j < dim_; ++j) in[j] = x[j];
    fill_time_features(t, in + dim_);
    mlp_.forward_point(p, in, v, scratch + input_dim());
  }

  /// One point's divergence (allocates; use the batched call in loops over many points).
  S divergence_point(Params<S> p, const S* x, S t) const {
    Batch<S> xb(1, dim_);
    for (Index j = 0; j < dim_; ++j) xb(0, j) = x[j];
    Vector<S> div;
    divergence(p, xb, t, div);
    return div[0];
  }

  /// A callable bound to parameters for the ODE integrators and CNF functions:
  /// (x, t, v) → velocity, (x, t, v, div) → velocity and exact divergence. Holds a view of `p`:
  /// the parameters must outlive it.
  class Bound {
   public:
    Bound(const VelocityMLP& field, Params<S> p) : field_(&field), p_(p) { field.check_params(p.size()); }
    Index dim() const { return field_->dim(); }
    void operator()(const Batch<S>& x, S t, Batch<S>& v) const { field_->forward(p_, x, t, v); }
    void operator()(const Batch<S>& x, S t, Batch<S>& v, Vector<S>& div) const {
      field_->forward_and_divergence(p_, x, t, v, div);
    }

   private:
    const VelocityMLP* field_;
    Params<S> p_;
  };

  Bound bind(Params<S> p) const { return Bound(*this, p); }
  Bound bind(const Vector<S>& p) const { return Bound(*this, Params<S>(p.data(), std::size_t(p.size()))); }

 private:
  static constexpr const char* where = "VelocityMLP";

  struct Dense {
    Index in, out, offset;
  };

  void check_params(std::size_t size) const {
    detail::require(Index(size) == mlp_.num_params(), where, "parameter span has ", size, " values, expected ",
                    mlp_.num_params());
  }

  void fill_time_features(S t, S* out) const {
    out[0] = t;
    const double two_pi = 2.0 * std::numbers::pi;
    for (Index k = 1; k <= config_.time_frequencies; ++k) {
      const double w = two_pi * double(k) * double(t);
      out[2 * k - 1] = S(std::sin(w));
      out[2 * k] = S(std::cos(w));
    }
  }

  template <class TimeOf>
  void build_input(const ConstBatchRef<S>& x, TimeOf time_of, Matrix<S>& in) const {
    in.resize(x.rows(), input_dim());
    in.leftCols(dim_) = x;
    for (Index i = 0; i < x.rows(); ++i) fill_time_features(time_of(i), &in(i, dim_));
  }

  using MatMap = Eigen::Map<const Matrix<S>>;
  MatMap weight(Params<S> p, Index k) const {
    const auto& L = layers_[std::size_t(k)];
    return MatMap(p.data() + L.offset, L.out, L.in);
  }
  /// Same rule as fort::MLP: a hidden layer with equal in/out widths is a residual block.
  bool residual(Index k) const {
    const auto& L = layers_[std::size_t(k)];
    return config_.mlp.residual && k + 1 < Index(layers_.size()) && L.in == L.out;
  }

  void closed_form_divergence(Params<S> p, const std::vector<Matrix<S>>& a, Vector<S>& div) const {
    const Index depth = config_.mlp.depth, D = dim_;
    // Σ_{i<D} M[i,i] for the first D rows/columns of a weight matrix.
    auto trace_x = [D](const MatMap& m) {
      S s = 0;
      for (Index i = 0; i < D; ++i) s += m(i, i);
      return s;
    };
    if (depth == 0) {
      div.setConstant(trace_x(weight(p, 0)));
      return;
    }
    const MatMap W0 = weight(p, 0);
    const auto W0x = W0.leftCols(D);  // [w, D]
    if (depth == 1) {
      const MatMap W1 = weight(p, 1);  // [D, w]
      const Vector<S> c = (W1.transpose().cwiseProduct(W0x)).rowwise().sum();
      div.noalias() = a[0] * c;
      if (residual(0)) div.array() += trace_x(W1);
      return;
    }
    const MatMap W1 = weight(p, 1), W2 = weight(p, 2);  // [w, w], [D, w]
    Matrix<S> P(W0x.rows(), W2.cols());
    P.noalias() = W0x * W2;
    const Matrix<S> Q = W1.cwiseProduct(P.transpose());
    Matrix<S> aq(a[0].rows(), Q.rows());
    aq.noalias() = a[0] * Q.transpose();
    div = aq.cwiseProduct(a[1]).rowwise().sum();
    if (residual(1)) div.noalias() += a[0] * P.diagonal();
    if (residual(0)) {
      const Vector<S> c1 = (W2.transpose().cwiseProduct(W1.leftCols(D))).rowwise().sum();
      div.noalias() += a[1] * c1;
      if (residual(1)) div.array() += trace_x(W2);
    }
  }

  void forward_mode_divergence(Params<S> p, const std::vector<Matrix<S>>& a, Vector<S>& div) const {
    const Index depth = config_.mlp.depth, D = dim_, n = div.size();
    if (depth == 0) {
      closed_form_divergence(p, a, div);
      return;
    }
    const Index w = config_.mlp.width;
    // Rows per chunk: keeps the [B·D, w] tangent blocks near 2 MB whatever N is.
    const Index chunk = std::max<Index>(1, Index((2u << 20) / sizeof(S)) / std::max<Index>(1, D * w));
    const Matrix<S> W0xT = weight(p, 0).leftCols(D).transpose();  // [D, w]
    const MatMap WL = weight(p, depth);                           // [D, w]
    Matrix<S> T, G;
    for (Index r0 = 0; r0 < n; r0 += chunk) {
      const Index B = std::min(chunk, n - r0);
      // Row (b, i) of T holds ∂h_k/∂x_i for point b: T_1 = diag(a_0) W_0x (+ I when residual).
      T.resize(B * D, w);
      for (Index b = 0; b < B; ++b) {
        auto Tb = T.middleRows(b * D, D);
        Tb = W0xT.array().rowwise() * a[0].row(r0 + b).array();
        if (residual(0))
          for (Index i = 0; i < D; ++i) Tb(i, i) += S(1);
      }
      for (Index k = 1; k < depth; ++k) {
        G.resize(B * D, w);
        G.noalias() = T * weight(p, k).transpose();
        const bool res = residual(k);
        for (Index b = 0; b < B; ++b) {
          auto Gb = G.middleRows(b * D, D);
          Gb = Gb.array().rowwise() * a[k].row(r0 + b).array();
          if (res) Gb += T.middleRows(b * D, D);
        }
        std::swap(T, G);
      }
      for (Index b = 0; b < B; ++b) div[r0 + b] = (T.middleRows(b * D, D).array() * WL.array()).sum();
    }
  }

  Index dim_ = 1;
  VelocityConfig config_{};
  MLP<S> mlp_;
  std::vector<Dense> layers_;
};

}  // namespace fort
