#pragma once
/// \file
/// CNF targets for FORT ("reflow"): pairs (x0, x1) with x1 = x0 + ∫₀¹ v(x_t, t) dt for prior
/// samples x0 ~ N(0, I), and the CNF teacher's own log-likelihood, so that the teacher and the
/// FORT student can be compared on the same points.
///
///   cnf_transport(v, x0, opt)                  x1 [N, D]: integrate x0 from t = 0 to t = 1
///   cnf_generate_pairs(v, x0, opt)             {x0, x1}
///   cnf_generate_pairs<S>(v, n, dim, seed, opt) draws x0 [n, dim] ~ N(0, I) first
///   cnf_log_prob(vd, x1, opt)                  log p1(x1) [N]
///
/// `v` is any velocity callable v(x, t, out) and `vd` any callable that also returns the
/// divergence, vd(x, t, out, div) (see targets/ode.hpp); `VelocityMLP::bind(params)` is both.
///
/// Log-likelihood: integrate (x, ℓ) backwards from (x1, 0) at t = 1 to t = 0 with
/// dx/dt = v, dℓ/dt = ∇ₓ·v; then x(0) = x0 is the latent and
///
///   log p1(x1) = log N(x0; 0, I) − ∫₀¹ ∇·v(x_t, t) dt = log N(x0; 0, I) + ℓ(0).
///
/// Batching: rows are processed in blocks of `batch_size`, each integrated independently (with
/// Dopri5 the shared step size makes a row's result depend on its block, always within
/// tolerance; RK4 rows are independent). Blocks are the same for any thread count, so results
/// are bit-identical at 1, 2, … threads. With threads > 1 the callable is invoked concurrently
/// from several threads on different blocks; it must be thread-safe (VelocityMLP's is).
///
/// Prior samples: row i, coordinate j = Random(seed).normal(i·dim + j) — the convention of
/// fort::StandardNormal::sample_point, so a flow's base distribution with the same key draws the
/// same points.
///
/// Cost: (evaluations per integration) × (one velocity call per block); for cnf_log_prob each
/// call also computes the exact divergence (VelocityMLP: about one more forward pass for
/// depth ≤ 2, about D forward passes for deeper networks; see velocity_field.hpp).
/// RK4 with `steps` steps costs 4·steps evaluations.
///
/// Errors (fort::Error): invalid options (batch_size < 1, ODE options), empty or non-finite
/// inputs, n < 1 or dim < 1, and integration failures (Dopri5 max_steps / underflow, a non-finite
/// velocity) — thrown from the lowest failing block, or with ode.throw_on_failure = false
/// merged into the returned report (success = false, the first failing block's message).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <span>
#include <thread>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/random.hpp"
#include "fort/core/types.hpp"
#include "fort/flows/distributions.hpp"
#include "fort/targets/ode.hpp"

namespace fort {

struct CnfOptions {
  OdeOptions ode{};        ///< integrator (default RK4, 20 steps)
  Index batch_size = 1024; ///< rows integrated together
  unsigned threads = 1;    ///< blocks in parallel (0 = all hardware threads)

  void validate() const {
    detail::require(batch_size >= 1, "CnfOptions", "batch_size must be >= 1, got ", batch_size);
    ode.validate();
  }
};

template <class S>
struct CnfPairs {
  Batch<S> x0;        ///< prior samples [N, D]
  Batch<S> x1;        ///< their images at t = 1 [N, D]
  OdeReport report;   ///< merged over blocks
};

template <class S>
struct CnfLogProb {
  Vector<S> log_prob;      ///< log p1(x1) [N]
  Batch<S> x0;             ///< latents x(0) [N, D]
  Vector<S> integral_div;  ///< ∫₀¹ ∇·v dt along each path [N]
  OdeReport report;        ///< merged over blocks
};

/// N(0, I) samples [n, dim]: row i, coordinate j = Random(seed).normal(i·dim + j).
template <class S>
Batch<S> sample_standard_normal(Index n, Index dim, std::uint64_t seed) {
  detail::require(n >= 1 && dim >= 1, "sample_standard_normal", "n and dim must be >= 1, got n = ", n,
                  ", dim = ", dim);
  Batch<S> x(n, dim);
  const StandardNormal<S> prior(dim);
  const Random rng(seed);
  for (Index i = 0; i < n; ++i) prior.sample_point(rng, std::uint64_t(i), &x(i, 0));
  return x;
}

namespace detail {

template <class Derived>
void require_points(const Eigen::MatrixBase<Derived>& x, const char* where, const char* name) {
  require(x.rows() >= 1 && x.cols() >= 1, where, name, " has shape [", x.rows(), ", ", x.cols(),
          "], expected at least one row and one column");
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < x.cols(); ++j)
      require(std::isfinite(double(x(i, j))), where, name, " row ", i, " column ", j, " is ", double(x(i, j)),
              "; expected finite values");
}

/// Runs block(b) for b = 0..blocks−1 on `threads` threads; rethrows the exception of the
/// lowest-numbered failing block, so the error does not depend on timing.
template <class Block>
void for_each_block(Index blocks, unsigned threads, const Block& block) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = unsigned(std::min<Index>(Index(threads), blocks));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(blocks));
  std::atomic<Index> next{0};
  auto work = [&] {
    for (Index b = next++; b < blocks; b = next++) {
      try {
        block(b);
      } catch (...) {
        errors[std::size_t(b)] = std::current_exception();
      }
    }
  };
  if (threads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (unsigned k = 1; k < threads; ++k) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace detail

/// x1 = x0 transported from t = 0 to t = 1 by dx/dt = v(x, t). `report` (optional) receives the
/// merged integration report.
template <class V, class Derived>
Batch<typename Derived::Scalar> cnf_transport(V&& v, const Eigen::MatrixBase<Derived>& x0, const CnfOptions& options,
                                              OdeReport* report = nullptr) {
  using S = typename Derived::Scalar;
  constexpr const char* where = "cnf_transport";
  options.validate();
  detail::require_points(x0, where, "x0");
  const Index n = x0.rows(), d = x0.cols(), bs = options.batch_size;
  const Index blocks = (n + bs - 1) / bs;
  Batch<S> x1(n, d);
  std::vector<OdeReport> reports(static_cast<std::size_t>(blocks));
  detail::for_each_block(blocks, options.threads, [&](Index b) {
    const Index r0 = b * bs, len = std::min(bs, n - r0);
    Batch<S> x = x0.middleRows(r0, len);
    reports[std::size_t(b)] = integrate(v, x, 0.0, 1.0, options.ode);
    x1.middleRows(r0, len) = x;
  });
  if (report) {
    *report = OdeReport{};
    for (const auto& r : reports) report->merge(r);
    if (report->success) report->t_reached = 1.0;
  }
  return x1;
}

/// FORT pairs from given prior samples x0 [N, D].
template <class V, class Derived>
CnfPairs<typename Derived::Scalar> cnf_generate_pairs(V&& v, const Eigen::MatrixBase<Derived>& x0,
                                                      const CnfOptions& options) {
  CnfPairs<typename Derived::Scalar> pairs;
  pairs.x0 = x0;
  pairs.x1 = cnf_transport(v, pairs.x0, options, &pairs.report);
  return pairs;
}

/// FORT pairs from n fresh prior samples in `dim` dimensions (see sample_standard_normal).
template <class S, class V>
CnfPairs<S> cnf_generate_pairs(V&& v, Index n, Index dim, std::uint64_t seed, const CnfOptions& options) {
  options.validate();
  CnfPairs<S> pairs;
  pairs.x0 = sample_standard_normal<S>(n, dim, seed);
  pairs.x1 = cnf_transport(v, pairs.x0, options, &pairs.report);
  return pairs;
}

/// The CNF's log-density log p1(x1) of each row of `x1` [N, D], with the latents and the
/// integrated divergence (see the file comment).
template <class VD, class Derived>
CnfLogProb<typename Derived::Scalar> cnf_log_prob_details(VD&& vd, const Eigen::MatrixBase<Derived>& x1,
                                                          const CnfOptions& options) {
  using S = typename Derived::Scalar;
  constexpr const char* where = "cnf_log_prob";
  options.validate();
  detail::require_points(x1, where, "x1");
  const Index n = x1.rows(), d = x1.cols(), bs = options.batch_size;
  const Index blocks = (n + bs - 1) / bs;
  CnfLogProb<S> out;
  out.x0.resize(n, d);
  out.integral_div.resize(n);
  out.log_prob.resize(n);
  std::vector<OdeReport> reports(static_cast<std::size_t>(blocks));
  const StandardNormal<S> prior(d);
  detail::for_each_block(blocks, options.threads, [&](Index b) {
    const Index r0 = b * bs, len = std::min(bs, n - r0);
    Batch<S> x = x1.middleRows(r0, len);
    Vector<S> ell;
    reports[std::size_t(b)] = integrate_with_divergence(vd, x, ell, 1.0, 0.0, options.ode);
    out.x0.middleRows(r0, len) = x;
    for (Index i = 0; i < len; ++i) {
      // ℓ = ∫₁⁰ ∇·v dt = −∫₀¹ ∇·v dt.
      out.integral_div[r0 + i] = -ell[i];
      out.log_prob[r0 + i] = prior.log_prob_point(&x(i, 0)) + ell[i];
    }
  });
  for (const auto& r : reports) out.report.merge(r);
  if (out.report.success) out.report.t_reached = 0.0;
  return out;
}

/// log p1(x1) [N] of the CNF defined by `vd`.
template <class VD, class Derived>
Vector<typename Derived::Scalar> cnf_log_prob(VD&& vd, const Eigen::MatrixBase<Derived>& x1,
                                              const CnfOptions& options) {
  return cnf_log_prob_details(vd, x1, options).log_prob;
}

}  // namespace fort
