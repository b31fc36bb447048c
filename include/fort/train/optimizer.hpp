#pragma once
/// \file
/// Optimisation pieces that work on the flat parameter vector of a flow (`Vector<S>`, [P]):
/// Adam / AdamW, global gradient-norm clipping, a warm-up + cosine learning-rate schedule and an
/// exponential moving average (EMA) of the parameters.
///
/// Adam (Kingma & Ba 2015), step t = 1, 2, … with gradient g and learning rate η_t:
///   (coupled weight decay, "Adam + L2")   g ← g + wd·θ
///   m ← β1 m + (1 − β1) g,   v ← β2 v + (1 − β2) g²
///   m̂ = m / (1 − β1^t),     v̂ = v / (1 − β2^t)
///   (decoupled weight decay, AdamW, Loshchilov & Hutter 2019)   θ ← θ − η_t·wd·θ
///   θ ← θ − η_t m̂ / (√v̂ + ε)
/// AdamW applies the decay to the parameters before the Adam update and scales it by the
/// scheduled learning rate (as PyTorch does). The paper's reported setting: AdamW, lr 5e-4,
/// weight decay 0.01, EMA 0.999 (`AdamOptions::adamw()`).
///
/// Clipping: if ‖g‖₂ > c the whole vector is scaled by c/‖g‖₂ (one global norm over all params).
///
/// Schedule: η(s) for the step s = 0, 1, … (the number of updates already made):
///   s < W:            η_peak · (s + 1)/W                       (linear warm-up, never 0)
///   W ≤ s < T:        η_min + ½(η_peak − η_min)(1 + cos(π (s − W)/(T − W)))
///   s ≥ T:            η_min
/// With T = 0 there is no decay: η_peak after the warm-up.
///
/// EMA: e ← d·e + (1 − d)·θ after every update, starting from e = θ_initial (no bias
/// correction, so early averages stay close to the initial parameters).
///
/// Errors: options are validated on construction (finite, in range) and vector sizes are
/// checked at every call; all throw fort::Error naming the component.

#include <cmath>
#include <numbers>

#include "fort/core/error.hpp"
#include "fort/core/types.hpp"

namespace fort {

struct AdamOptions {
  double lr = 1e-3;             ///< learning rate η (the peak rate when a schedule is used)
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;    ///< wd; coupled (L2 in the gradient) or decoupled (AdamW)
  bool decoupled_weight_decay = false;

  /// AdamW with the settings reported for FORT.
  static AdamOptions adamw(double lr = 5e-4, double weight_decay = 0.01) {
    AdamOptions o;
    o.lr = lr;
    o.weight_decay = weight_decay;
    o.decoupled_weight_decay = true;
    return o;
  }

  void validate() const {
    detail::require(std::isfinite(lr) && lr > 0, "Adam", "lr must be finite and > 0, got ", lr);
    detail::require(std::isfinite(beta1) && beta1 >= 0 && beta1 < 1, "Adam", "beta1 must be in [0, 1), got ", beta1);
    detail::require(std::isfinite(beta2) && beta2 >= 0 && beta2 < 1, "Adam", "beta2 must be in [0, 1), got ", beta2);
    detail::require(std::isfinite(eps) && eps > 0, "Adam", "eps must be finite and > 0, got ", eps);
    detail::require(std::isfinite(weight_decay) && weight_decay >= 0, "Adam",
                    "weight_decay must be finite and >= 0, got ", weight_decay);
  }
};

/// Adam, or AdamW when `decoupled_weight_decay` is set. Holds the moment vectors for P params.
template <class S>
class Adam {
 public:
  Adam(Index num_params, AdamOptions options = {}) : opt_(options) {
    opt_.validate();
    detail::require(num_params >= 0, "Adam", "parameter count must be >= 0, got ", num_params);
    m_ = Vector<S>::Zero(num_params);
    v_ = Vector<S>::Zero(num_params);
  }

  const AdamOptions& options() const { return opt_; }
  /// Number of updates made so far (t of the bias correction).
  Index steps() const { return t_; }
  const Vector<S>& first_moment() const { return m_; }
  const Vector<S>& second_moment() const { return v_; }

  /// One update of `params` from `grad` at the options' learning rate.
  void step(VectorRef<S> params, ConstVectorRef<S> grad) { step(params, grad, opt_.lr); }

  /// One update at learning rate `lr` (from a schedule).
  void step(VectorRef<S> params, ConstVectorRef<S> grad, double lr) {
    detail::require(params.size() == m_.size(), "Adam", "parameter vector has ", params.size(),
                    " values, expected ", m_.size());
    detail::require(grad.size() == m_.size(), "Adam", "gradient has ", grad.size(), " values, expected ",
                    m_.size());
    detail::require(std::isfinite(lr) && lr >= 0, "Adam", "learning rate must be finite and >= 0, got ", lr);
    ++t_;
    // Bias corrections in double: β^t underflows gracefully and keeps float runs accurate.
    const double c1 = 1.0 - std::pow(opt_.beta1, double(t_));
    const double c2 = 1.0 - std::pow(opt_.beta2, double(t_));
    const S b1 = S(opt_.beta1), b2 = S(opt_.beta2);
    const S wd = S(opt_.weight_decay);
    const bool coupled = opt_.weight_decay > 0 && !opt_.decoupled_weight_decay;
    const bool decoupled = opt_.weight_decay > 0 && opt_.decoupled_weight_decay;
    const S decay = S(1.0 - lr * opt_.weight_decay);
    const S step_size = S(lr / c1);
    const S inv_sqrt_c2 = S(1.0 / std::sqrt(c2));
    const S eps = S(opt_.eps);
    // Array expressions, one per case, so that the update vectorises (same operations, same order).
    auto m = m_.array();
    auto v = v_.array();
    auto th = params.array();
    const auto g = grad.array();
    if (coupled) {
      m = b1 * m + (S(1) - b1) * (g + wd * th);
      v = b2 * v + (S(1) - b2) * (g + wd * th) * (g + wd * th);
    } else {
      m = b1 * m + (S(1) - b1) * g;
      v = b2 * v + (S(1) - b2) * g * g;
    }
    if (decoupled) th *= decay;
    th -= step_size * m / (v.sqrt() * inv_sqrt_c2 + eps);
  }

  /// Forgets the moments and the step count (e.g. after loading new parameters).
  void reset() {
    m_.setZero();
    v_.setZero();
    t_ = 0;
  }

 private:
  AdamOptions opt_;
  Vector<S> m_, v_;
  Index t_ = 0;
};

/// Scales `grad` in place so that its Euclidean norm is at most `max_norm`; returns the norm
/// before clipping (a non-finite norm is returned unchanged and the gradient left as it is, so
/// the caller can report it). `max_norm` must be > 0 (use +inf to only measure).
template <class S>
double clip_grad_norm(VectorRef<S> grad, double max_norm) {
  detail::require(max_norm > 0 && !std::isnan(max_norm), "clip_grad_norm", "max_norm must be > 0, got ", max_norm);
  double sq = 0.0;
  for (Index k = 0; k < grad.size(); ++k) sq += double(grad[k]) * double(grad[k]);
  const double norm = std::sqrt(sq);
  if (std::isfinite(norm) && norm > max_norm) grad *= S(max_norm / norm);
  return norm;
}

struct ScheduleOptions {
  double peak_lr = 1e-3;
  Index warmup_steps = 0;  ///< W: linear warm-up length (0 = start at the peak)
  Index total_steps = 0;   ///< T: end of the cosine decay (0 = no decay)
  double min_lr = 0.0;     ///< floor reached at T and kept after

  void validate() const {
    detail::require(std::isfinite(peak_lr) && peak_lr > 0, "ScheduleOptions", "peak_lr must be finite and > 0, got ",
                    peak_lr);
    detail::require(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= peak_lr, "ScheduleOptions",
                    "min_lr must be in [0, peak_lr = ", peak_lr, "], got ", min_lr);
    detail::require(warmup_steps >= 0, "ScheduleOptions", "warmup_steps must be >= 0, got ", warmup_steps);
    detail::require(total_steps >= 0, "ScheduleOptions", "total_steps must be >= 0, got ", total_steps);
    detail::require(total_steps == 0 || total_steps >= warmup_steps, "ScheduleOptions", "total_steps (",
                    total_steps, ") must be 0 (no decay) or >= warmup_steps (", warmup_steps, ")");
  }
};

/// Linear warm-up, then cosine decay to a floor (see the file comment for the formula).
class WarmupCosineSchedule {
 public:
  explicit WarmupCosineSchedule(ScheduleOptions options) : opt_(options) { opt_.validate(); }

  const ScheduleOptions& options() const { return opt_; }

  /// Learning rate for the update made after `step` earlier updates.
  double operator()(Index step) const {
    detail::require(step >= 0, "WarmupCosineSchedule", "step must be >= 0, got ", step);
    if (step < opt_.warmup_steps) return opt_.peak_lr * double(step + 1) / double(opt_.warmup_steps);
    if (opt_.total_steps == 0) return opt_.peak_lr;
    if (step >= opt_.total_steps) return opt_.min_lr;
    const double span = double(opt_.total_steps - opt_.warmup_steps);
    const double progress = double(step - opt_.warmup_steps) / span;
    return opt_.min_lr + 0.5 * (opt_.peak_lr - opt_.min_lr) * (1.0 + std::cos(std::numbers::pi * progress));
  }

 private:
  ScheduleOptions opt_;
};

/// Exponential moving average of the parameters, started at the initial parameters.
template <class S>
class EMA {
 public:
  EMA(const Vector<S>& initial, double decay) : decay_(decay), avg_(initial) {
    detail::require(std::isfinite(decay) && decay >= 0 && decay < 1, "EMA", "decay must be in [0, 1), got ", decay);
  }

  double decay() const { return decay_; }
  const Vector<S>& params() const { return avg_; }

  /// e ← d·e + (1 − d)·θ.
  void update(ConstVectorRef<S> params) {
    detail::require(params.size() == avg_.size(), "EMA", "parameter vector has ", params.size(),
                    " values, expected ", avg_.size());
    const S d = S(decay_);
    avg_ = d * avg_ + (S(1) - d) * params;
  }

  void reset(const Vector<S>& params) { avg_ = params; }

 private:
  double decay_;
  Vector<S> avg_;
};

}  // namespace fort
