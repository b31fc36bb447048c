#include <fort/fort.hpp>

#include <iostream>

int main() {
  using Coupling = fort::AffineCoupling<float>;
  fort::Repeat<Coupling> layers(4, [](fort::Index i) { return Coupling(fort::Mask::alternating(3, i % 2), fort::MLPConfig{}); });
  fort::Flow flow(fort::StandardNormal<float>(3), layers, 1);
  auto [x, log_p] = flow.sample_and_log_prob(4, fort::Random(2));
  const auto again = flow.log_prob(x);
  const float err = (log_p - again).cwiseAbs().maxCoeff();
  std::cout << "consumer: " << flow.num_params() << " parameters, log-density round-trip error " << err << "\n";
  return err < 1e-4f ? 0 : 1;
}
