// GPU against CPU on the same weights and inputs (tests tagged [gpu]; they need a CUDA device)
// and error reporting without one ([nogpu]).
//
// Float32 tolerances, and why. The GPU and the CPU run the same element transforms
// (the FORT_HOST_DEVICE functions) but sum the conditioner GEMMs in different orders (cuBLAS
// tiles and FMA contraction against Eigen's kernels), so each conditioner output differs by a
// few ulps (float ulp 6e-8 relative), and the spline maps amplify that by their local slope
// ratios (≤ 1e3 by construction, far less for these parameters) through L couplings. Rather than
// a bare number, the main checks compare both float results with a double CPU computation on
// the same (float-rounded) weights: the GPU's error must be within 4x the CPU float error plus a
// floor of 2e-5·(1 + |value|) (a few hundred ulps, for entries where the CPU happens to be exact).
// Gradients are sums over the batch in different orders; they are compared by norm:
// ‖g_gpu − g_cpu‖ ≤ 1e-3 ‖g_cpu‖ (float sums over N = 512 rows, ~sqrt(N)·eps·cond).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "fort/cuda.hpp"
#include "fort/train/loss.hpp"
#include "fort/train/optimizer.hpp"
#include "test_flows.hpp"

using namespace fort;
using fort::testing::CouplingFlow;
using fort::testing::make_coupling_flow;
using fort::testing::normal_batch;

namespace {

/// The same flow in float and in double; the double one has the float weights exactly.
template <class TF, class TD>
auto make_twin(Index dim, Index layers, MLPConfig mlp, TF tf, TD td, std::uint64_t seed, double scale) {
  auto f = make_coupling_flow(dim, layers, mlp, tf, seed, scale);
  auto d = make_coupling_flow(dim, layers, mlp, td, seed, scale);
  d.set_params(f.params().template cast<double>());
  return std::make_pair(std::move(f), std::move(d));
}

template <class G, class F, class D>
void check_vs_double(const G& gpu, const F& cpu_f, const D& cpu_d, const char* what) {
  REQUIRE(gpu.size() == cpu_d.size());
  double err_gpu = 0, err_cpu = 0, worst_excess = 0;
  for (Index i = 0; i < Index(cpu_d.size()); ++i) {
    const double ref = double(cpu_d.data()[i]);
    const double eg = std::abs(double(gpu.data()[i]) - ref), ec = std::abs(double(cpu_f.data()[i]) - ref);
    err_gpu = std::max(err_gpu, eg);
    err_cpu = std::max(err_cpu, ec);
    worst_excess = std::max(worst_excess, eg - (4 * ec + 2e-5 * (1 + std::abs(ref))));
  }
  INFO(what << ": max |gpu - double| = " << err_gpu << ", max |cpu float - double| = " << err_cpu);
  CHECK(worst_excess <= 0);
}

/// fort::training_loss with explicit template arguments (nvcc's front end does not deduce them
/// through the ConstBatchRef alias parameters).
template <class F>
LossTerms cpu_training_loss(const F& flow, const Batch<float>& x0, const Batch<float>& x1, const LossOptions& opt,
                            Vector<float>* grad) {
  using B = std::decay_t<decltype(flow.base())>;
  using T = std::decay_t<decltype(flow.transform())>;
  return training_loss<B, T>(flow, x0, x1, opt, grad);
}

double rel_norm_diff(const Vector<float>& a, const Vector<float>& b) {
  return double((a - b).norm()) / std::max(1e-30, double(b.norm()));
}

/// One thread per sample: the device-callable per-sample path a user's kernel would use.
template <class Transform>
__global__ void sample_with_view(cuda::FlowView<Transform> view, Random rng, float* x, float* log_p, float* scratch,
                                 int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float* s = scratch + std::int64_t(i) * view.scratch_size;
  log_p[i] = view.sample_point(rng, std::uint64_t(i), x + std::int64_t(i) * view.dim, s);
}

template <class Transform>
__global__ void log_prob_with_view(cuda::FlowView<Transform> view, const float* x, float* log_p, float* scratch,
                                   int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  log_p[i] = view.log_prob_point(x + std::int64_t(i) * view.dim, scratch + std::int64_t(i) * view.scratch_size);
}

template <class FlowF, class FlowD>
void check_flow_on_gpu(const FlowF& cpu_f, const FlowD& cpu_d, double input_scale) {
  const Index d = cpu_f.dim(), n = 512;
  cuda::GpuFlow gpu(cpu_f);
  const Batch<float> z = normal_batch<float>(n, d, 31, input_scale);
  const Batch<double> zd = z.template cast<double>();

  SECTION("parameter copies host -> device -> host are exact") {
    CHECK(gpu.params() == cpu_f.params());
    auto other = cpu_f;
    Vector<float> p = cpu_f.params() * 0.5f;
    gpu.set_params(p);
    gpu.copy_params_to(other);
    CHECK(other.params() == p);
    gpu.copy_params_from(cpu_f);
    CHECK(gpu.params() == cpu_f.params());
  }

  SECTION("forward, inverse and log-dets agree with the CPU") {
    auto [xg, ldg] = gpu.forward(z);
    auto [xf, ldf] = cpu_f.forward(z);
    auto [xd, ldd] = cpu_d.forward(zd);
    check_vs_double(xg, xf, xd, "forward x");
    check_vs_double(ldg, ldf, ldd, "forward log-det");
    auto [zg, lig] = gpu.inverse(xf);
    auto [zf, lif] = cpu_f.inverse(xf);
    auto [zdd, lid] = cpu_d.inverse(xf.template cast<double>());
    check_vs_double(zg, zf, zdd, "inverse z");
    check_vs_double(lig, lif, lid, "inverse log-det");
  }

  SECTION("sample_and_log_prob and log_prob agree with the CPU (same draws)") {
    const Random rng(8);
    auto [xg, lpg] = gpu.sample_and_log_prob(n, rng, 5);
    auto [xf, lpf] = cpu_f.sample_and_log_prob(n, rng, 5);
    // The double reference: the float base draws, pushed through the double flow.
    const Batch<double> zb = cpu_f.sample_base(n, rng, 5).template cast<double>();
    auto [xd, ldd] = cpu_d.forward(zb);
    Vector<double> lpd(n);
    for (Index i = 0; i < n; ++i) lpd[i] = cpu_d.base().log_prob_point(zb.row(i).data()) - ldd[i];
    check_vs_double(xg, xf, xd, "sample x");
    check_vs_double(lpg, lpf, lpd, "sample log p");
    check_vs_double(gpu.log_prob(xf), cpu_f.log_prob(xf), cpu_d.log_prob(xf.template cast<double>()), "log_prob");
  }

  SECTION("regression loss and gradient agree with training_loss") {
    const Batch<float> x1 = normal_batch<float>(n, d, 32);
    LossOptions opt;
    opt.lambda_log_det = 1e-2;
    Vector<float> gg, gc;
    const LossTerms tg = gpu.training_loss(z, x1, opt, &gg);
    const LossTerms tc = cpu_training_loss(cpu_f, z, x1, opt, &gc);
    CHECK(tg.total == Approx(tc.total).epsilon(1e-4));
    CHECK(tg.log_det == Approx(tc.log_det).epsilon(1e-3));
    INFO("relative gradient difference " << rel_norm_diff(gg, gc));
    CHECK(rel_norm_diff(gg, gc) <= 1e-3);
  }

  SECTION("backward of the inverse pass agrees with the CPU layers") {
    const Batch<float> gx = normal_batch<float>(n, d, 33);
    const Vector<float> gld = normal_batch<float>(n, 1, 34).col(0);
    typename std::decay_t<decltype(cpu_f.transform())>::Cache cache;
    Batch<float> out(n, d), gin(n, d);
    Vector<float> ld = Vector<float>::Zero(n), gp = Vector<float>::Zero(cpu_f.num_params());
    cpu_f.transform().inverse(cpu_f.param_span(), z, out, ld, &cache);
    cpu_f.transform().backward_inverse(cpu_f.param_span(), cache, gx, gld, gin, Grads<float>(gp.data(), gp.size()));
    cuda::DeviceBuffer<float> dz(std::span<const float>(z.data(), z.size())), dout{std::size_t(z.size())}, dld{std::size_t(n)};
    cuda::DeviceBuffer<float> dgx(std::span<const float>(gx.data(), gx.size()));
    cuda::DeviceBuffer<float> dgld(std::span<const float>(gld.data(), gld.size())), dgin{std::size_t(z.size())};
    std::vector<float> zeros(std::size_t(cpu_f.num_params()), 0.f);
    cuda::DeviceBuffer<float> dgp{std::span<const float>(zeros)};
    gpu.inverse_device(dz.data(), dout.data(), dld.data(), n, /*record=*/true);
    gpu.engine().backward_inverse(dgx.data(), dgld.data(), dgin.data(), dgp.data(), n);
    Batch<float> gin_g(n, d);
    dgin.copy_to_host(gin_g.data(), std::size_t(gin_g.size()));
    Vector<float> gp_g(cpu_f.num_params());
    dgp.copy_to_host(gp_g.data(), std::size_t(gp_g.size()));
    const Vector<float> a = Eigen::Map<const Vector<float>>(gin_g.data(), gin_g.size());
    const Vector<float> b = Eigen::Map<const Vector<float>>(gin.data(), gin.size());
    CHECK(rel_norm_diff(a, b) <= 1e-3);
    CHECK(rel_norm_diff(gp_g, gp) <= 1e-3);
  }

  SECTION("the device view samples and evaluates per thread like the CPU per-point path") {
    using T = std::decay_t<decltype(cpu_f.transform().block(0).transform())>;
    const auto view = gpu.view();
    cuda::DeviceBuffer<float> x{std::size_t(n * d)}, lp{std::size_t(n)}, lq{std::size_t(n)};
    cuda::DeviceBuffer<float> scratch{std::size_t(n * gpu.point_scratch_size())};
    const Random rng(12);
    sample_with_view<T><<<(n + 127) / 128, 128>>>(view, rng, x.data(), lp.data(), scratch.data(), int(n));
    cuda::check(cudaGetLastError(), "test", "sample_with_view launch");
    log_prob_with_view<T><<<(n + 127) / 128, 128>>>(view, x.data(), lq.data(), scratch.data(), int(n));
    cuda::check(cudaDeviceSynchronize(), "test", "view kernels");
    Batch<float> xg(n, d);
    x.copy_to_host(xg.data(), std::size_t(xg.size()));
    Vector<float> lpg(n), lqg(n);
    lp.copy_to_host(lpg.data(), std::size_t(n));
    lq.copy_to_host(lqg.data(), std::size_t(n));
    auto [xf, lpf] = cpu_f.sample_and_log_prob(n, rng);
    const Batch<double> zb = cpu_f.sample_base(n, rng).template cast<double>();
    auto [xd, ldd] = cpu_d.forward(zb);
    Vector<double> lpd(n);
    for (Index i = 0; i < n; ++i) lpd[i] = cpu_d.base().log_prob_point(zb.row(i).data()) - ldd[i];
    check_vs_double(xg, xf, xd, "view sample x");
    check_vs_double(lpg, lpf, lpd, "view sample log p");
    check_vs_double(lqg, cpu_f.log_prob(xg), cpu_d.log_prob(xg.template cast<double>()), "view log_prob");
  }

  SECTION("AdamW on the GPU makes the CPU optimizer's update") {
    // The same gradient into both optimizers: the update is the same arithmetic per parameter
    // (nvcc may contract a·b + c into one FMA), so three steps agree to ~1e-7 relative.
    const Batch<float> x1 = normal_batch<float>(n, d, 35);
    const LossOptions opt;
    Vector<float> g;
    cpu_training_loss(cpu_f, z, x1, opt, &g);
    cuda::DeviceBuffer<float> dg(std::span<const float>(g.data(), std::size_t(g.size())));
    auto cpu = cpu_f;
    Adam<float> cadam(cpu.num_params(), AdamOptions::adamw(1e-3));
    cuda::GpuAdam adam(gpu, AdamOptions::adamw(1e-3));
    for (int s = 0; s < 3; ++s) {
      cadam.step(cpu.params(), g, 1e-3);
      adam.step(dg.data(), 1e-3);
    }
    const Vector<float> pg = gpu.params();
    double worst = 0;
    for (Index k = 0; k < pg.size(); ++k)
      worst = std::max(worst, std::abs(double(pg[k]) - double(cpu.params()[k])) / (1e-3 + std::abs(double(cpu.params()[k]))));
    INFO("worst relative parameter difference " << worst);
    CHECK(worst <= 1e-5);
    // A full device training step runs and lowers the loss on this batch at a small rate.
    cuda::DeviceBuffer<float> d0(std::span<const float>(z.data(), std::size_t(z.size())));
    cuda::DeviceBuffer<float> d1(std::span<const float>(x1.data(), std::size_t(x1.size())));
    gpu.copy_params_from(cpu_f);
    cuda::GpuAdam trainer(gpu, AdamOptions::adamw(1e-3));
    const double first = trainer.step_device(d0.data(), d1.data(), n, opt, 1e-3).total;
    double last = first;
    for (int s = 0; s < 20; ++s) last = trainer.step_device(d0.data(), d1.data(), n, opt, 1e-3).total;
    CHECK(std::isfinite(last));
    CHECK(last < first);
  }
}

}  // namespace

TEST_CASE("GPU affine coupling flow agrees with the CPU", "[gpu][cuda]") {
  auto [f, d] = make_twin(8, 4, MLPConfig{32, 2, Activation::tanh, true}, AffineTransform<float>(3.0),
                          AffineTransform<double>(3.0), 1, 0.2);
  check_flow_on_gpu(f, d, 1.0);
}

TEST_CASE("GPU spline coupling flow agrees with the CPU (inputs partly in the tails)", "[gpu][cuda]") {
  auto [f, d] = make_twin(10, 4, MLPConfig{32, 2, Activation::silu, false}, RationalQuadraticTransform<float>(8, 2.0),
                          RationalQuadraticTransform<double>(8, 2.0), 2, 0.2);
  check_flow_on_gpu(f, d, 1.5);
}

TEST_CASE("GPU spline flow at alanine-dipeptide size (D = 66) agrees on a large batch", "[gpu][cuda]") {
  auto [f, d] = make_twin(66, 4, MLPConfig{128, 2, Activation::relu, false}, RationalQuadraticTransform<float>(8, 4.0),
                          RationalQuadraticTransform<double>(8, 4.0), 3, 0.05);
  cuda::GpuFlow gpu(f);
  const Index n = 65536;
  auto [xg, lpg] = gpu.sample_and_log_prob(n, Random(2));
  // The CPU check on the first 1000 rows (the draws of a row do not depend on the batch size).
  auto [xf, lpf] = f.sample_and_log_prob(1000, Random(2));
  const Batch<double> zb = f.sample_base(1000, Random(2)).template cast<double>();
  auto [xd, ldd] = d.forward(zb);
  Vector<double> lpd(1000);
  for (Index i = 0; i < 1000; ++i) lpd[i] = d.base().log_prob_point(zb.row(i).data()) - ldd[i];
  const Batch<float> xg_top = xg.topRows(1000);
  const Vector<float> lpg_top = lpg.head(1000);
  check_vs_double(xg_top, xf, xd, "D=66 sample x");
  check_vs_double(lpg_top, lpf, lpd, "D=66 sample log p");
  CHECK(lpg.allFinite());
}

TEST_CASE("GpuFlow rejects a CPU flow of another architecture", "[gpu][cuda][errors]") {
  auto a = make_coupling_flow(4, 2, MLPConfig{8, 1}, AffineTransform<float>(), 1, 0.1);
  auto b = make_coupling_flow(4, 3, MLPConfig{8, 1}, AffineTransform<float>(), 1, 0.1);
  cuda::GpuFlow gpu(a);
  CHECK_THROWS_WITH(gpu.copy_params_from(b), Catch::Contains("different architecture"));
}

TEST_CASE("DeviceBuffer copies host -> device -> host exactly", "[gpu][cuda]") {
  std::vector<float> h(1000);
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = float(i) * 0.25f - 7.f;
  cuda::DeviceBuffer<float> b{std::span<const float>(h)};
  CHECK(b.to_host() == h);
  CHECK_THROWS_WITH(b.copy_from_host(h.data(), 1001), Catch::Contains("do not fit"));
}

TEST_CASE("Without a CUDA device, CUDA calls throw fort::Error with the CUDA message", "[nogpu][cuda]") {
  if (cuda::device_count() > 0) {
    WARN("a CUDA device is present: the no-device error path is not exercised");
    return;
  }
  CHECK_THROWS_AS(cuda::DeviceBuffer<float>(16), fort::Error);
  CHECK_THROWS_WITH(cuda::DeviceBuffer<float>(16), Catch::Contains("cuda::DeviceBuffer: cudaMalloc(64 bytes) failed: "));
  auto flow = make_coupling_flow(4, 2, MLPConfig{8, 1}, AffineTransform<float>(), 1, 0.1);
  CHECK_THROWS_AS(cuda::GpuFlow(flow), fort::Error);
  CHECK_FALSE(cuda::no_device_reason().empty());
}
