// Build a RealNVP flow in 2-D, draw samples with their log-densities, and invert them.
#include <fort/fort.hpp>

#include <iostream>

int main() {
  using Coupling = fort::AffineCoupling<double, 2>;
  const fort::MLPConfig conditioner{64, 2, fort::Activation::silu};
  fort::Repeat<Coupling> layers(8, [&](fort::Index i) { return Coupling(fort::Mask::half(2, i % 2), conditioner); });
  fort::Flow flow(fort::StandardNormal<double, 2>(), layers, /*seed=*/42);

  auto [x, log_p] = flow.sample_and_log_prob(5, fort::Random(/*seed=*/1));  // noise -> data, one pass
  auto [z, log_det] = flow.inverse(x);                                       // data -> noise
  std::cout << "samples:\n" << x << "\nlog p:\n" << log_p.transpose() << "\n"
            << "max |f^-1(f(z)) - z| = " << (z - flow.sample_base(5, fort::Random(1))).cwiseAbs().maxCoeff() << "\n";
}
