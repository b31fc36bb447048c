// Writing a new layer the short way: a new element transform plugged into fort::Coupling.
// The transform supplies forward, inverse and its local derivatives; the coupling derives both
// backward passes, the per-point path and the shape checks. This file is compiled and run by CI.
//
//   y = x · exp(θ₀)     (a scale-only coupling), log|dy/dx| = θ₀
#include <fort/fort.hpp>

#include <iostream>

template <class S>
struct ScaleTransform {
  using Scalar = S;
  struct Partials {
    S dy_dx, dlog_det_dx;
  };
  fort::Index params_per_dim() const { return 1; }
  std::string name() const { return "Scale"; }
  std::string signature() const { return "scale"; }

  void forward(S x, const S* theta, S& y, S& log_det) const {
    y = x * std::exp(theta[0]);
    log_det += theta[0];
  }
  void inverse(S y, const S* theta, S& x, S& log_det) const {
    x = y * std::exp(-theta[0]);
    log_det -= theta[0];
  }
  Partials partials(S, const S* theta) const { return {std::exp(theta[0]), S(0)}; }
  // dL/dθ += a·∂y/∂θ + b·∂(log|dy/dx|)/∂θ
  void pullback(S x, const S* theta, const Partials&, S a, S b, S* dL_dtheta) const {
    dL_dtheta[0] += a * x * std::exp(theta[0]) + b;
  }
};

static_assert(fort::ElementwiseTransform<ScaleTransform<double>>);

int main() {
  using ScaleCoupling = fort::Coupling<ScaleTransform<double>, 2>;
  static_assert(fort::FlowLayer<ScaleCoupling>);  // gets the whole layer contract for free
  fort::Repeat<ScaleCoupling> layers(4, [](fort::Index i) { return ScaleCoupling(fort::Mask::half(2, i % 2), fort::MLPConfig{16, 1}); });
  fort::Flow flow(fort::StandardNormal<double, 2>(), layers, 7);
  fort::Random(3).fill_normal(std::span<double>(flow.params().data(), flow.params().size()), 0, 0.3);
  auto [x, log_p] = flow.sample_and_log_prob(1000, fort::Random(1));
  const double err = (flow.log_prob(x) - log_p).cwiseAbs().maxCoeff();
  std::cout << "custom scale coupling: max |log p(sample) - log p(inverse)| = " << err << "\n";
  return err < 1e-10 ? 0 : 1;
}
