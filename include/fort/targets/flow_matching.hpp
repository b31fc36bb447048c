#pragma once
/// \file
/// Conditional flow matching (Lipman et al. 2023; Liu et al. 2023 "rectified flow"; Tong et al.
/// 2024 for minibatch-OT couplings): trains the velocity field of the CNF teacher whose
/// integrated pairs become FORT's CNF targets.
///
/// Each step s draws a minibatch of B pairs (x0_i, x1_i) with x0 ~ N(0, I) (prior noise) and
/// x1 from the data, times t_i ~ U(0, 1), and minimises
///
///   L(θ) = (1/B) Σ_i ‖v_θ(x_t,i, t_i) − u_i‖²,   x_t = (1 − t) x0 + t x1,   u = x1 − x0
///
/// (squared norm summed over the D coordinates, mean over the batch). The minimiser is the
/// marginal velocity E[x1 − x0 | x_t = x], whose flow carries N(0, I) at t = 0 to the data
/// distribution at t = 1.
///
/// Couplings:
///  * independent: the data rows of the minibatch are paired with fresh noise in order — a
///    random pairing, since the data rows come from a seeded shuffle.
///  * minibatch_ot: within each minibatch, the noise and the data are paired by the exact
///    squared-Euclidean OT assignment (fort::ot_assignment): straighter paths, so fewer ODE
///    steps are needed later. Costs an O(B³)-worst-case assignment per step (for B = 256 about
///    a millisecond or two in practice).
///
/// Randomness (no global RNG; everything is a pure function of `seed` and the step number):
///   Random(seed, 0)            parameter initialisation (unless initial parameters are given)
///   Random(seed, 1).child(e)   shuffle of the data rows for epoch e (epochs run back to back:
///                              a minibatch may straddle two epochs)
///   Random(seed, 2).child(s)   prior noise of step s: row i, coordinate j = normal(i·D + j)
///   Random(seed, 3).child(s)   times of step s: t_i = uniform(i)
/// Training is single-threaded, so reruns with the same inputs are bit-identical.
///
/// Optimiser: fort::Adam (train/optimizer.hpp) with `optimizer` options (AdamW by setting
/// decoupled weight decay), optional warm-up + cosine schedule, global gradient-norm clipping
/// and a parameter EMA, as in the FORT trainer.
///
/// Cost per step: one forward and one backward pass of the network on B rows
/// (≈ 6·B·(in·w + (depth − 1)·w² + w·D) flops), plus the assignment for minibatch_ot.
///
/// Errors (fort::Error, "train_flow_matching: …"): data with the wrong number of columns, no
/// rows, NaN/Inf; options out of range (steps < 1, batch_size < 1, invalid Adam options,
/// warmup_steps < 0, min_lr outside [0, lr], clip_norm < 0, ema_decay outside [0, 1));
/// initial parameters of the wrong length; a loss or gradient that becomes non-finite (reported
/// with the step number).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/random.hpp"
#include "fort/core/types.hpp"
#include "fort/targets/assignment.hpp"
#include "fort/targets/velocity_field.hpp"
#include "fort/train/optimizer.hpp"

namespace fort {

enum class PairCoupling { independent, minibatch_ot };

inline std::string to_string(PairCoupling c) { return c == PairCoupling::independent ? "independent" : "minibatch_ot"; }

inline PairCoupling parse_coupling(std::string_view name) {
  if (name == "independent") return PairCoupling::independent;
  if (name == "minibatch_ot" || name == "ot") return PairCoupling::minibatch_ot;
  throw Error("parse_coupling", detail::concat("unknown coupling '", name, "', expected independent or minibatch_ot"));
}

struct FlowMatchingOptions {
  Index steps = 2000;             ///< optimiser updates
  Index batch_size = 256;         ///< B pairs per update
  AdamOptions optimizer{};        ///< Adam, lr 1e-3 (set decoupled_weight_decay for AdamW)
  Index warmup_steps = 0;         ///< linear warm-up of the learning rate
  bool cosine_decay = false;      ///< cosine decay to min_lr over `steps`
  double min_lr = 0.0;
  double clip_norm = 0.0;         ///< global gradient-norm clip (0 = off)
  double ema_decay = 0.0;         ///< parameter EMA (0 = off); the result then holds the EMA
  PairCoupling coupling = PairCoupling::independent;
  std::uint64_t seed = 0;

  void validate() const {
    constexpr const char* w = "train_flow_matching";
    detail::require(steps >= 1, w, "steps must be >= 1, got ", steps);
    detail::require(batch_size >= 1, w, "batch_size must be >= 1, got ", batch_size);
    optimizer.validate();
    detail::require(warmup_steps >= 0, w, "warmup_steps must be >= 0, got ", warmup_steps);
    detail::require(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= optimizer.lr, w,
                    "min_lr must be in [0, lr = ", optimizer.lr, "], got ", min_lr);
    detail::require(std::isfinite(clip_norm) && clip_norm >= 0, w, "clip_norm must be finite and >= 0, got ",
                    clip_norm);
    detail::require(std::isfinite(ema_decay) && ema_decay >= 0 && ema_decay < 1, w,
                    "ema_decay must be in [0, 1), got ", ema_decay);
  }
};

template <class S>
struct FlowMatchingResult {
  Vector<S> params;            ///< what to use: the EMA when ema_decay > 0, else last_params
  Vector<S> last_params;       ///< after the last update
  std::vector<double> loss;    ///< minibatch loss of every step (before its update)
  Index steps = 0;
  double seconds = 0.0;

  /// Mean of the last `k` minibatch losses (a smoother end-of-training figure).
  double final_loss(Index k = 100) const {
    if (loss.empty()) return std::numeric_limits<double>::quiet_NaN();
    const Index n = std::min<Index>(k, Index(loss.size()));
    double s = 0;
    for (Index i = Index(loss.size()) - n; i < Index(loss.size()); ++i) s += loss[std::size_t(i)];
    return s / double(n);
  }
};

/// Trains `field` by conditional flow matching on `data` [N, D] (D = field.dim()). Starts from
/// `initial_params` when given (fine-tuning), else from field.init_params(Random(seed, 0)).
template <class S>
FlowMatchingResult<S> train_flow_matching(const VelocityMLP<S>& field, std::type_identity_t<ConstBatchRef<S>> data,
                                          const FlowMatchingOptions& options,
                                          const Vector<S>* initial_params = nullptr) {
  constexpr const char* where = "train_flow_matching";
  options.validate();
  const Index D = field.dim(), N = data.rows(), B = options.batch_size, P = field.num_params();
  detail::require_cols(data, D, where, "data");
  detail::require(N >= 1, where, "data has no rows; expected N >= 1");
  for (Index i = 0; i < N; ++i)
    for (Index j = 0; j < D; ++j)
      detail::require(std::isfinite(double(data(i, j))), where, "data row ", i, " column ", j, " is ",
                      double(data(i, j)), "; expected finite values");

  const auto start = std::chrono::steady_clock::now();
  FlowMatchingResult<S> result;
  Vector<S> params(P);
  if (initial_params) {
    detail::require(initial_params->size() == P, where, "initial parameters have ", initial_params->size(),
                    " values, expected ", P);
    params = *initial_params;
  } else {
    field.init_params(Grads<S>(params.data(), std::size_t(P)), Random(options.seed, 0));
  }

  Adam<S> adam(P, options.optimizer);
  ScheduleOptions sched;
  sched.peak_lr = options.optimizer.lr;
  sched.warmup_steps = options.warmup_steps;
  sched.total_steps = options.cosine_decay ? std::max(options.steps, options.warmup_steps) : 0;
  sched.min_lr = options.cosine_decay ? options.min_lr : 0.0;
  const WarmupCosineSchedule schedule(sched);
  std::optional<EMA<S>> ema;
  if (options.ema_decay > 0) ema.emplace(params, options.ema_decay);

  // Epoch-wise shuffled stream of data rows.
  std::vector<Index> perm(static_cast<std::size_t>(N));
  Index epoch = 0, pos = 0;
  random_permutation(std::span<Index>(perm), Random(options.seed, 1).child(0));

  Batch<S> x0(B, D), x1(B, D), xt(B, D), u(B, D), v, dv;
  Vector<S> t(B), grad(P);
  std::vector<Index> rows(static_cast<std::size_t>(B));
  typename VelocityMLP<S>::Cache cache;
  const Params<S> pview(params.data(), std::size_t(P));
  result.loss.reserve(std::size_t(options.steps));

  for (Index s = 0; s < options.steps; ++s) {
    for (Index i = 0; i < B; ++i) {
      if (pos == N) {
        ++epoch;
        pos = 0;
        random_permutation(std::span<Index>(perm), Random(options.seed, 1).child(std::uint64_t(epoch)));
      }
      rows[std::size_t(i)] = perm[std::size_t(pos++)];
    }
    const Random noise = Random(options.seed, 2).child(std::uint64_t(s));
    noise.fill_normal(std::span<S>(x0.data(), std::size_t(x0.size())));
    const Random times = Random(options.seed, 3).child(std::uint64_t(s));
    for (Index i = 0; i < B; ++i) t[i] = S(times.uniform(std::uint64_t(i)));

    if (options.coupling == PairCoupling::minibatch_ot && B > 1) {
      for (Index i = 0; i < B; ++i) x1.row(i) = data.row(rows[std::size_t(i)]);
      const AssignmentResult a = ot_assignment(x0, x1);
      Batch<S> paired(B, D);
      for (Index i = 0; i < B; ++i) paired.row(i) = x1.row(a.target_of[std::size_t(i)]);
      x1.swap(paired);
    } else {
      for (Index i = 0; i < B; ++i) x1.row(i) = data.row(rows[std::size_t(i)]);
    }

    for (Index i = 0; i < B; ++i) xt.row(i) = (S(1) - t[i]) * x0.row(i) + t[i] * x1.row(i);
    u = x1 - x0;
    field.forward(pview, xt, t, v, &cache);
    dv = v - u;
    const double loss = double(dv.squaredNorm()) / double(B);
    detail::require(std::isfinite(loss), where, "loss became non-finite (", loss, ") at step ", s,
                    "; lower the learning rate or enable clip_norm");
    result.loss.push_back(loss);
    dv *= S(2.0 / double(B));
    grad.setZero();
    field.backward(pview, cache, dv, Grads<S>(grad.data(), std::size_t(P)));
    const double gnorm = options.clip_norm > 0 ? clip_grad_norm<S>(grad, options.clip_norm)
                                               : std::sqrt(double(grad.squaredNorm()));
    detail::require(std::isfinite(gnorm), where, "gradient became non-finite at step ", s,
                    "; lower the learning rate or enable clip_norm");
    adam.step(params, grad, schedule(s));
    if (ema) ema->update(params);
  }

  result.steps = options.steps;
  result.last_params = params;
  result.params = ema ? ema->params() : params;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace fort
