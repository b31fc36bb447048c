#pragma once
/// \file
/// The training loss of FORT (forward-only regression training) and of maximum likelihood, as
/// one function over any `Flow` whose transform is a `FlowLayer`.
///
/// Given pairs (x0_i, x1_i), i = 1..N (x0 in noise space, x1 = f*(x0) its target in data space)
/// and y_i = f(x0_i) with log-determinant ld_i = log|det ∂f/∂x0 (x0_i)|:
///
///   L =   w_reg  · R_reg   with R_reg = (1/N) Σ_i ‖y_i − x1_i‖²        (sum over D, mean over N)
///       + λ_ld   · R_ld    with R_ld  = (1/N) Σ_i ld_i²
///       + λ_fb   · R_fb    with R_fb  = (1/N) Σ_i ‖f⁻¹(y_i) − x0_i‖²   (one extra inverse pass)
///       + β      · NLL     with NLL   = −(1/N) Σ_i log p(x1_i),
///                               log p(x1) = log p_base(f⁻¹(x1)) + log|det ∂f⁻¹/∂x1|
///
/// Every term is a *mean over the batch* and a *sum over coordinates*: the regression term of a
/// D-dimensional problem is D times a per-coordinate mean squared error. w_reg defaults to 1.
///
/// Target noise (a stabiliser from the paper): with λ_n > 0 every use of x1 above (regression
/// and NLL) sees x1_i + λ_n ε_i, where ε_i[j] is the normal draw number `(row_offset + i)·D + j`
/// of the key `Random(noise_seed, 1).child(step)`. The noise therefore depends only on
/// (noise_seed, step, row within the batch): fresh at every step, reproducible, and the same
/// however the batch is split into chunks or threads. Callers that evaluate several times at the
/// same `step` get the same noise.
///
/// Entry points: `training_loss` (any weights) and `nll_loss` (maximum likelihood: the same
/// function with only β = 1, `LossOptions::mle()`);
/// then x0 is not used and may be empty.
///
/// Gradient: by the layers' hand-written backward passes, never by finite differences.
///   regression / log-det: forward with a cache, then backward_forward with
///     dL/dy = 2 w_reg (y − x1)/N (+ the forward–backward contribution) and dL/dld = 2 λ_ld ld/N;
///   forward–backward: inverse of y with its own cache, backward_inverse with
///     dL/dx0' = 2 λ_fb (x0' − x0)/N, dL/dld' = 0, which yields a dL/dy that adds to the above;
///   NLL: inverse of x1 with a cache and backward_inverse with dL/dz = −β/N ∇log p_base(z)
///     (= β z/N for a standard normal) and dL/dld = −β/N.
/// Parameter gradients of all passes accumulate into one flat vector the size of the params.
///
/// Errors: `LossOptions::validate` rejects negative, non-finite or all-zero weights; the loss
/// rejects batches whose shapes disagree with the flow or each other, or that contain NaN/Inf,
/// with `fort::Error` messages starting "training_loss:".

#include <cmath>
#include <cstdint>
#include <limits>

#include "fort/core/error.hpp"
#include "fort/core/random.hpp"
#include "fort/core/types.hpp"
#include "fort/flows/flow.hpp"

namespace fort {

/// Weights of the loss terms and the target-noise setting. Defaults: plain FORT regression.
struct LossOptions {
  double regression = 1.0;      ///< w_reg: weight of (1/N) Σ ‖f(x0) − x1‖²
  double lambda_log_det = 0.0;  ///< λ_ld: weight of (1/N) Σ ld²  (paper: 1e-6 … 1e-5)
  double lambda_fb = 0.0;       ///< λ_fb: weight of (1/N) Σ ‖f⁻¹(f(x0)) − x0‖²
  double beta_nll = 0.0;        ///< β: weight of −(1/N) Σ log p(x1)
  double target_noise = 0.0;    ///< λ_n: x1 ← x1 + λ_n ε, ε ~ N(0, I) drawn per step
  std::uint64_t noise_seed = 0; ///< key of the target noise stream

  /// Plain maximum likelihood: β = 1 and nothing else.
  static LossOptions mle() {
    LossOptions o;
    o.regression = 0.0;
    o.beta_nll = 1.0;
    return o;
  }

  /// Whether the terms that need x0 (regression, log-det, forward–backward) are on.
  bool uses_pairs() const { return regression > 0 || lambda_log_det > 0 || lambda_fb > 0; }

  /// Throws fort::Error unless every weight is finite and >= 0 and at least one term is on.
  void validate() const {
    auto check = [](double v, const char* name) {
      detail::require(std::isfinite(v) && v >= 0.0, "LossOptions", name, " must be finite and >= 0, got ", v);
    };
    check(regression, "regression");
    check(lambda_log_det, "lambda_log_det");
    check(lambda_fb, "lambda_fb");
    check(beta_nll, "beta_nll");
    check(target_noise, "target_noise");
    detail::require(uses_pairs() || beta_nll > 0, "LossOptions",
                    "all loss weights are zero (regression, lambda_log_det, lambda_fb, beta_nll); "
                    "expected at least one > 0");
  }
};

/// Value of the loss: the weighted total and every term *unweighted* (each a mean over the
/// batch). A term that was not evaluated is 0: `log_det` is evaluated whenever pairs are used
/// (it costs nothing), `forward_backward` only when λ_fb > 0, `nll` only when β > 0.
struct LossTerms {
  double total = 0.0;
  double regression = 0.0;
  double log_det = 0.0;
  double forward_backward = 0.0;
  double nll = 0.0;

  LossTerms& operator+=(const LossTerms& o) {
    total += o.total;
    regression += o.regression;
    log_det += o.log_det;
    forward_backward += o.forward_backward;
    nll += o.nll;
    return *this;
  }
};

namespace detail {

/// Checks batch shapes and values against the flow and the options (shared by loss and trainer).
template <class FlowT, class X0, class X1>
void check_loss_inputs(const FlowT& flow, const X0& x0, const X1& x1, const LossOptions& opt,
                       std::string_view where) {
  require(x1.cols() == flow.dim(), where, "x1 has ", x1.cols(), " columns, expected the flow's dim ", flow.dim());
  require(x1.rows() >= 1, where, "x1 has no rows; expected a batch of at least 1");
  if (opt.uses_pairs() || x0.rows() != 0) {
    require(x0.cols() == flow.dim(), where, "x0 has ", x0.cols(), " columns, expected the flow's dim ",
            flow.dim());
    require(x0.rows() == x1.rows(), where, "x0 has ", x0.rows(), " rows but x1 has ", x1.rows(),
            "; expected one x0 row per x1 row");
    require_finite(x0.reshaped(), where, "x0");
  }
  require_finite(x1.reshaped(), where, "x1");
}

/// Buffers of one loss evaluation. Passing the same workspace to successive `accumulate_loss`
/// calls (one per worker thread) reuses its caches and batches instead of reallocating them.
template <class Transform>
struct LossWorkspace {
  using S = typename Transform::Scalar;
  static constexpr int D = Transform::Dim;
  typename Transform::Cache fwd_cache, inv_cache, nll_cache;
  Batch<S, D> x1, y, diff, dL_dy, dL_dx, round_trip, dL_dy_fb;
  Vector<S> ld, ld_inv, dL_dld;
};

/// Evaluates the loss terms of the rows `x0`, `x1` as contributions to means over `norm` rows,
/// i.e. sums divided by `norm`, and *accumulates* their parameter gradient into `grad` (when not
/// empty). Splitting a batch of N rows into chunks and calling this on each with norm = N gives
/// the loss of the whole batch as the sum of the chunk results. `row_offset` is the index of the
/// chunk's first row inside the batch (it selects the target-noise draws). No input checks:
/// callers check once per batch. `workspace` (optional) holds the buffers between calls.
template <class Base, class Transform>
LossTerms accumulate_loss(const Flow<Base, Transform>& flow, Params<typename Transform::Scalar> p,
                          ConstBatchRef<typename Transform::Scalar, Transform::Dim> x0,
                          ConstBatchRef<typename Transform::Scalar, Transform::Dim> x1_clean,
                          const LossOptions& opt, double norm, std::uint64_t step, Index row_offset,
                          Grads<typename Transform::Scalar> grad, LossWorkspace<Transform>* workspace = nullptr) {
  using S = typename Transform::Scalar;
  const Transform& tr = flow.transform();
  const Index n = x1_clean.rows(), d = flow.dim();
  const bool with_grad = !grad.empty();
  LossTerms terms;
  LossWorkspace<Transform> local;
  LossWorkspace<Transform>& ws = workspace ? *workspace : local;

  // Targets, with the per-step noise when asked for.
  auto& x1 = ws.x1;
  x1 = x1_clean;
  if (opt.target_noise > 0) {
    const Random key = Random(opt.noise_seed, 1).child(step);
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < d; ++j)
        x1(i, j) += S(opt.target_noise * key.normal(std::uint64_t(row_offset + i) * std::uint64_t(d) + std::uint64_t(j)));
  }

  if (opt.uses_pairs()) {
    auto& y = ws.y;
    auto& ld = ws.ld;
    auto& diff = ws.diff;
    y.resize(n, d);
    ld.setZero(n);
    tr.forward(p, x0, y, ld, with_grad ? &ws.fwd_cache : nullptr);

    diff = y - x1;
    double reg = 0.0, ld_sq = 0.0;
    for (Index i = 0; i < n; ++i) {
      ld_sq += double(ld[i]) * double(ld[i]);
      for (Index j = 0; j < d; ++j) reg += double(diff(i, j)) * double(diff(i, j));
    }
    terms.regression = reg / norm;
    terms.log_det = ld_sq / norm;

    auto& dL_dy = ws.dL_dy;
    if (with_grad) dL_dy = S(2.0 * opt.regression / norm) * diff;

    if (opt.lambda_fb > 0) {
      auto& x0r = ws.round_trip;
      auto& ld_inv = ws.ld_inv;
      x0r.resize(n, d);
      ld_inv.setZero(n);
      tr.inverse(p, y, x0r, ld_inv, with_grad ? &ws.inv_cache : nullptr);
      const Batch<S, Transform::Dim> err = x0r - x0;
      double fb = 0.0;
      for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < d; ++j) fb += double(err(i, j)) * double(err(i, j));
      terms.forward_backward = fb / norm;
      if (with_grad) {
        // The round trip depends on θ through both passes: the inverse's parameter gradient
        // accumulates here, and its input gradient (w.r.t. y) flows on through the forward pass.
        const Batch<S, Transform::Dim> dL_dx0r = S(2.0 * opt.lambda_fb / norm) * err;
        const Vector<S> zero_ld = Vector<S>::Zero(n);
        auto& dL_dy_fb = ws.dL_dy_fb;
        dL_dy_fb.resize(n, d);
        tr.backward_inverse(p, ws.inv_cache, dL_dx0r, zero_ld, dL_dy_fb, grad);
        dL_dy += dL_dy_fb;
      }
    }

    if (with_grad) {
      ws.dL_dld = S(2.0 * opt.lambda_log_det / norm) * ld;
      ws.dL_dx.resize(n, d);  // x0 is data, not a parameter: discarded
      tr.backward_forward(p, ws.fwd_cache, dL_dy, ws.dL_dld, ws.dL_dx, grad);
    }
  }

  if (opt.beta_nll > 0) {
    auto& z = ws.y;
    auto& ld_inv = ws.ld_inv;
    z.resize(n, d);
    ld_inv.setZero(n);
    tr.inverse(p, x1, z, ld_inv, with_grad ? &ws.nll_cache : nullptr);
    double nll = 0.0;
    for (Index i = 0; i < n; ++i) nll -= double(flow.base().log_prob_point(z.row(i).data())) + double(ld_inv[i]);
    terms.nll = nll / norm;
    if (with_grad) {
      // −log p = −log p_base(z) − ld: dL/dz = −(β/N) ∇log p_base(z), dL/dld = −β/N.
      auto& dL_dz = ws.dL_dy;
      dL_dz.resize(n, d);
      for (Index i = 0; i < n; ++i) flow.base().log_prob_gradient_point(z.row(i).data(), dL_dz.row(i).data());
      dL_dz *= S(-opt.beta_nll / norm);
      ws.dL_dld.setConstant(n, S(-opt.beta_nll / norm));
      ws.dL_dx.resize(n, d);  // data: discarded
      tr.backward_inverse(p, ws.nll_cache, dL_dz, ws.dL_dld, ws.dL_dx, grad);
    }
  }

  terms.total = opt.regression * terms.regression + opt.lambda_log_det * terms.log_det +
                opt.lambda_fb * terms.forward_backward + opt.beta_nll * terms.nll;
  return terms;
}

}  // namespace detail

/// The loss of one batch at the flow's current parameters. x0 and x1 are [N, D]; x0 may have no
/// rows when only β > 0. When `grad` is given it is resized to `num_params()` and set to dL/dθ.
/// `step` selects the target-noise draws (see the file comment).
template <class Base, class Transform>
LossTerms training_loss(const Flow<Base, Transform>& flow, ConstBatchRef<typename Transform::Scalar, Transform::Dim> x0,
               ConstBatchRef<typename Transform::Scalar, Transform::Dim> x1, const LossOptions& opt,
               Vector<typename Transform::Scalar>* grad = nullptr, std::uint64_t step = 0) {
  using S = typename Transform::Scalar;
  opt.validate();
  detail::check_loss_inputs(flow, x0, x1, opt, "training_loss");
  Grads<S> g;
  if (grad) {
    grad->setZero(flow.num_params());
    g = Grads<S>(grad->data(), std::size_t(grad->size()));
  }
  return detail::accumulate_loss(flow, flow.param_span(), x0, x1, opt, double(x1.rows()), step, 0, g);
}

/// Maximum-likelihood loss −(1/N) Σ log p(data_i) (and its gradient): `training_loss` with
/// `LossOptions::mle()`. `data` is [N, D].
template <class Base, class Transform>
LossTerms nll_loss(const Flow<Base, Transform>& flow, ConstBatchRef<typename Transform::Scalar, Transform::Dim> data,
                   Vector<typename Transform::Scalar>* grad = nullptr) {
  using S = typename Transform::Scalar;
  const Batch<S, Transform::Dim> none(0, flow.dim());
  return training_loss(flow, none, data, LossOptions::mle(), grad);
}

}  // namespace fort
