// Host-side checks of the CUDA backend's code (built into fort_tests; no CUDA needed).
//
// The GPU pipeline (fort/cuda/engine.hpp) is written once over an executor; here it runs on
// HostExec (plain loops, BLAS semantics) and must agree with the CPU layers. The per-sample
// device view (fort/cuda/flow_view.hpp) runs on host pointers and must agree with
// Flow::forward_point / inverse_point. Both call the same FORT_HOST_DEVICE element transforms
// as the CPU coupling layer, so these tests check everything the GPU runs except the CUDA
// executor itself (kernel launches, cuBLAS calls), which tests/cuda/*.cu check on a GPU.
//
// Tolerances (double): the engine's dense layers sum in a different order from Eigen's, so
// results agree to rounding, not bit for bit: 1e-11 relative (plus 1e-11 absolute for values
// near 0). The element transforms and the per-row log-det sums are the same code in the same
// order.

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "fort/cuda/engine.hpp"
#include "fort/train/loss.hpp"
#include "fort/train/optimizer.hpp"
#include "test_flows.hpp"

using namespace fort;
using fort::testing::make_coupling_flow;
using fort::testing::normal_batch;

namespace {

constexpr double tol = 1e-11;

template <class A, class B>
void check_close(const A& got, const B& want, double t = tol) {
  REQUIRE(got.size() == want.size());
  for (Index i = 0; i < Index(want.size()); ++i) {
    const double g = double(got.data()[i]), w = double(want.data()[i]);
    INFO("entry " << i << ": got " << g << ", want " << w);
    CHECK(std::abs(g - w) <= t * (1 + std::abs(w)));
  }
}

template <class Transform>
void check_engine(const testing::CouplingFlow<Transform>& flow, double input_scale) {
  using S = double;
  const Index d = flow.dim(), n = 37;
  cuda::FlowEngine<Transform, cuda::HostExec> eng(cuda::FlowLayout<Transform>(flow), cuda::HostExec{});
  eng.set_params(flow.params().data());
  const Batch<S> z = normal_batch<S>(n, d, 11, input_scale);

  SECTION("forward and inverse with log-dets equal the CPU flow") {
    auto [x_cpu, ld_cpu] = flow.forward(z);
    Batch<S> x(n, d);
    Vector<S> ld(n);
    eng.forward(z.data(), x.data(), ld.data(), n);
    check_close(x, x_cpu);
    check_close(ld, ld_cpu);
    auto [zi_cpu, ldi_cpu] = flow.inverse(x_cpu);
    Batch<S> zi(n, d);
    Vector<S> ldi(n);
    eng.inverse(x_cpu.data(), zi.data(), ldi.data(), n, /*record=*/true);
    check_close(zi, zi_cpu);
    check_close(ldi, ldi_cpu);
    check_close(zi, z, 1e-9);  // round trip
  }

  SECTION("sample_and_log_prob and log_prob equal the CPU flow") {
    const Random rng(5);
    auto [xs_cpu, lp_cpu] = flow.sample_and_log_prob(n, rng, 3);
    Batch<S> xs(n, d);
    Vector<S> lp(n), lq(n);
    eng.sample_and_log_prob(rng, 3, n, xs.data(), lp.data());
    check_close(xs, xs_cpu);
    check_close(lp, lp_cpu);
    eng.log_prob(xs_cpu.data(), n, lq.data());
    check_close(lq, flow.log_prob(xs_cpu));
  }

  SECTION("regression loss and its gradient equal training_loss") {
    const Batch<S> x1 = normal_batch<S>(n, d, 12);
    LossOptions opt;
    opt.lambda_log_det = 0.3;
    Vector<S> g_cpu;
    const LossTerms t_cpu = training_loss(flow, z, x1, opt, &g_cpu);
    Vector<S> g(flow.num_params());
    const LossTerms t = eng.regression_loss(z.data(), x1.data(), n, opt, g.data());
    CHECK(t.total == Approx(t_cpu.total).epsilon(tol));
    CHECK(t.regression == Approx(t_cpu.regression).epsilon(tol));
    CHECK(t.log_det == Approx(t_cpu.log_det).epsilon(tol));
    check_close(g, g_cpu, 1e-10);
    // The loss without a gradient is the same number.
    CHECK(eng.regression_loss(z.data(), x1.data(), n, opt, nullptr).total == Approx(t.total).epsilon(1e-14));
  }

  SECTION("backward passes of forward and inverse equal the CPU layers'") {
    const Batch<S> gx = normal_batch<S>(n, d, 13);
    const Vector<S> gld = normal_batch<S>(n, 1, 14).col(0);
    const auto& layers = flow.transform();
    for (bool forward : {true, false}) {
      INFO((forward ? "backward of forward" : "backward of inverse"));
      typename std::decay_t<decltype(layers)>::Cache cache;
      Batch<S> out(n, d), gin_cpu(n, d), out_e(n, d), gin(n, d);
      Vector<S> ld = Vector<S>::Zero(n), ld_e(n);
      Vector<S> gp_cpu = Vector<S>::Zero(flow.num_params()), gp = Vector<S>::Zero(flow.num_params());
      if (forward) {
        layers.forward(flow.param_span(), z, out, ld, &cache);
        layers.backward_forward(flow.param_span(), cache, gx, gld, gin_cpu, Grads<S>(gp_cpu.data(), gp_cpu.size()));
        eng.forward(z.data(), out_e.data(), ld_e.data(), n, true);
        eng.backward_forward(gx.data(), gld.data(), gin.data(), gp.data(), n);
      } else {
        layers.inverse(flow.param_span(), z, out, ld, &cache);
        layers.backward_inverse(flow.param_span(), cache, gx, gld, gin_cpu, Grads<S>(gp_cpu.data(), gp_cpu.size()));
        eng.inverse(z.data(), out_e.data(), ld_e.data(), n, true);
        eng.backward_inverse(gx.data(), gld.data(), gin.data(), gp.data(), n);
      }
      check_close(out_e, out);
      check_close(gin, gin_cpu, 1e-10);
      check_close(gp, gp_cpu, 1e-10);
    }
  }

  SECTION("the per-sample view equals Flow's per-point functions") {
    const cuda::FlowLayout<Transform> layout(flow);
    const auto view = layout.host_view(flow.params().data());
    std::vector<S> scratch(std::size_t(view.scratch_size)), cpu_scratch(std::size_t(flow.point_scratch_size()));
    const Random rng(21);
    for (Index i = 0; i < n; ++i) {
      const auto du = static_cast<std::size_t>(d);
      std::vector<S> x(du), x_cpu(du), zz(du), zz_cpu(du);
      S ld = 0, ld_cpu = 0;
      view.forward_point(z.row(i).data(), x.data(), ld, scratch.data());
      flow.forward_point(z.row(i).data(), x_cpu.data(), ld_cpu, cpu_scratch.data());
      check_close(x, x_cpu);
      CHECK(ld == Approx(ld_cpu).epsilon(tol).margin(tol));
      view.inverse_point(x_cpu.data(), zz.data(), ld, scratch.data());
      flow.inverse_point(x_cpu.data(), zz_cpu.data(), ld_cpu, cpu_scratch.data());
      check_close(zz, zz_cpu);
      CHECK(ld == Approx(ld_cpu).epsilon(tol).margin(tol));
      const S lp = view.sample_point(rng, std::uint64_t(i), x.data(), scratch.data());
      CHECK(lp == Approx(flow.sample_point(rng, std::uint64_t(i), x_cpu.data(), cpu_scratch.data())).epsilon(tol));
      check_close(x, x_cpu);
      CHECK(view.log_prob_point(x_cpu.data(), scratch.data()) ==
            Approx(flow.log_prob_point(x_cpu.data(), cpu_scratch.data())).epsilon(tol));
    }
  }
}

}  // namespace

TEST_CASE("cuda engine on the host executor: affine couplings", "[cuda][host]") {
  const auto flow = make_coupling_flow(6, 4, MLPConfig{16, 2, Activation::tanh, true}, AffineTransform<double>(3.0),
                                       1, 0.3);
  check_engine(flow, 1.0);
}

TEST_CASE("cuda engine on the host executor: unclamped affine, relu, one hidden layer", "[cuda][host]") {
  const auto flow = make_coupling_flow(5, 3, MLPConfig{8, 1, Activation::relu, false}, AffineTransform<double>(0.0),
                                       2, 0.3);
  check_engine(flow, 1.0);
}

TEST_CASE("cuda engine on the host executor: additive couplings, linear conditioner", "[cuda][host]") {
  const auto flow = make_coupling_flow(4, 3, MLPConfig{8, 0, Activation::relu, false}, AdditiveTransform<double>(),
                                       3, 0.5);
  check_engine(flow, 1.0);
}

TEST_CASE("cuda engine on the host executor: spline couplings, inputs partly in the tails", "[cuda][host]") {
  // Parameter scale 0.2: at 0.5 this flow's log-dets reach ~80 and it is so ill-conditioned that
  // the CPU flow's own per-point and batched paths differ by 2e-4 (rounding, amplified).
  const auto flow = make_coupling_flow(7, 4, MLPConfig{16, 2, Activation::silu, true},
                                       RationalQuadraticTransform<double>(6, 2.0), 4, 0.2);
  check_engine(flow, 1.5);
}

TEST_CASE("cuda engine on the host executor: Adam equals the CPU optimizer", "[cuda][host]") {
  for (bool decoupled : {false, true}) {
    AdamOptions o;
    o.weight_decay = 0.01;
    o.decoupled_weight_decay = decoupled;
    const Index n = 50;
    Vector<double> p_cpu = normal_batch<double>(n, 1, 1).col(0), p = p_cpu;
    Adam<double> cpu(n, o);
    cuda::EngineAdam<double, cuda::HostExec> dev(cuda::HostExec{}, n, o);
    for (int s = 0; s < 5; ++s) {
      const Vector<double> g = normal_batch<double>(n, 1, 10 + s).col(0);
      cpu.step(p_cpu, g, 1e-2);
      dev.step(p.data(), g.data(), 1e-2);
    }
    for (Index k = 0; k < n; ++k) CHECK(p[k] == p_cpu[k]);  // same arithmetic, bit for bit
  }
}

TEST_CASE("cuda engine: GPU loss rejects terms it does not implement", "[cuda][host][errors]") {
  const auto flow = make_coupling_flow(4, 2, MLPConfig{8, 1}, AffineTransform<double>(), 1, 0.1);
  cuda::FlowEngine<AffineTransform<double>, cuda::HostExec> eng(cuda::FlowLayout<AffineTransform<double>>(flow),
                                                                cuda::HostExec{});
  const Batch<double> z = normal_batch<double>(3, 4, 1);
  LossOptions o;
  o.lambda_fb = 1e-3;
  CHECK_THROWS_WITH(eng.regression_loss(z.data(), z.data(), 3, o, nullptr), Catch::Contains("lambda_fb"));
  Batch<double> gx(3, 4);
  Vector<double> gl(3), gp(flow.num_params());
  CHECK_THROWS_WITH(eng.backward_forward(gx.data(), gl.data(), gx.data(), gp.data(), 3),
                    Catch::Contains("without a recorded pass"));
}
