#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "fort/flows/flow.hpp"
#include "fort/flows/repeat.hpp"
#include "fort/flows/sequential.hpp"
#include "fort/layers/affine_coupling.hpp"
#include "fort/layers/spline_coupling.hpp"
#include "fort/train/loss.hpp"
#include "fort/train/trainer.hpp"

using namespace fort;

namespace {

using AC2 = AffineCoupling<double, 2>;
using AC3 = AffineCoupling<double, 3>;

Batch<double> normal_batch(Index n, Index d, std::uint64_t stream, double scale = 1.0) {
  Batch<double> x(n, d);
  Random(77, stream).fill_normal(std::span<double>(x.data(), std::size_t(x.size())), 0, scale);
  return x;
}

// A test-only layer whose inverse is deliberately *not* the inverse of its forward map:
//   forward y = x·exp(a) + b,   inverse x = (y − b)·exp(−c)     (params a, b, c, each [D])
// Coupling flows invert exactly, so their forward–backward penalty is identically ~0 and its
// gradient check would be vacuous; with a ≠ c the round trip errs and the penalty has a real
// gradient through both passes.
class Mismatched {
 public:
  using Scalar = double;
  static constexpr int Dim = 2;
  struct Cache {
    Batch<double, 2> input, output;
  };
  Index dim() const { return 2; }
  Index num_params() const { return 6; }
  void init_params(Grads<double> p, const Random&) const { std::fill(p.begin(), p.end(), 0.0); }
  void forward(Params<double> p, ConstBatchRef<double, 2> x, BatchRef<double, 2> y, VectorRef<double> ld,
               Cache* cache = nullptr) const {
    for (Index i = 0; i < x.rows(); ++i)
      for (Index j = 0; j < 2; ++j) {
        y(i, j) = x(i, j) * std::exp(p[j]) + p[2 + j];
        ld[i] += p[j];
      }
    if (cache) *cache = {x, y};
  }
  void inverse(Params<double> p, ConstBatchRef<double, 2> y, BatchRef<double, 2> x, VectorRef<double> ld,
               Cache* cache = nullptr) const {
    for (Index i = 0; i < y.rows(); ++i)
      for (Index j = 0; j < 2; ++j) {
        x(i, j) = (y(i, j) - p[2 + j]) * std::exp(-p[4 + j]);
        ld[i] -= p[4 + j];
      }
    if (cache) *cache = {y, x};
  }
  void backward_forward(Params<double> p, const Cache& c, ConstBatchRef<double, 2> gy, ConstVectorRef<double> gld,
                        BatchRef<double, 2> gx, Grads<double> gp) const {
    for (Index i = 0; i < gy.rows(); ++i)
      for (Index j = 0; j < 2; ++j) {
        gx(i, j) = gy(i, j) * std::exp(p[j]);
        gp[j] += gy(i, j) * c.input(i, j) * std::exp(p[j]) + gld[i];
        gp[2 + j] += gy(i, j);
      }
  }
  void backward_inverse(Params<double> p, const Cache& c, ConstBatchRef<double, 2> gx, ConstVectorRef<double> gld,
                        BatchRef<double, 2> gy, Grads<double> gp) const {
    for (Index i = 0; i < gx.rows(); ++i)
      for (Index j = 0; j < 2; ++j) {
        gy(i, j) = gx(i, j) * std::exp(-p[4 + j]);
        gp[2 + j] -= gx(i, j) * std::exp(-p[4 + j]);
        gp[4 + j] += -gx(i, j) * c.output(i, j) - gld[i];
      }
  }
  Index point_scratch_size() const { return 0; }
  void forward_point(Params<double> p, const double* x, double* y, double& ld, double*) const {
    for (Index j = 0; j < 2; ++j) {
      y[j] = x[j] * std::exp(p[j]) + p[2 + j];
      ld += p[j];
    }
  }
  void inverse_point(Params<double> p, const double* y, double* x, double& ld, double*) const {
    for (Index j = 0; j < 2; ++j) {
      x[j] = (y[j] - p[2 + j]) * std::exp(-p[4 + j]);
      ld -= p[4 + j];
    }
  }
  State state() const { return {}; }
  void set_state(std::span<const std::int64_t>) {}
  std::string signature() const { return "Mismatched"; }
};
static_assert(FlowLayer<Mismatched>);

// Random (non-identity) parameters so that every term and every parameter gradient is non-trivial.
template <class F>
void randomize(F& flow, double scale = 0.3) {
  Random(5, 9).fill_normal(std::span<double>(flow.params().data(), std::size_t(flow.params().size())), 0, scale);
}

// Whole-loss gradient against central differences (Richardson extrapolated), parameter by
// parameter: each component within 1e-6 relative (floor 1), and the whole vector within 1e-6.
template <class F>
void check_loss_gradient(F& flow, const Batch<double>& x0, const Batch<double>& x1, const LossOptions& opt,
                         std::uint64_t step) {
  constexpr double tol = 1e-6;
  Vector<double> grad;
  const LossTerms at = training_loss(flow, x0, x1, opt, &grad, step);
  REQUIRE(grad.size() == flow.num_params());
  REQUIRE(std::isfinite(at.total));
  const Vector<double> p0 = flow.params();
  auto f = [&](Index k, double delta) {
    flow.params() = p0;
    flow.params()[k] += delta;
    const double v = training_loss(flow, x0, x1, opt, nullptr, step).total;
    flow.params() = p0;
    return v;
  };
  const double h = 1e-4;
  Vector<double> fd(flow.num_params());
  for (Index k = 0; k < flow.num_params(); ++k) {
    const double d1 = (f(k, h) - f(k, -h)) / (2 * h);
    const double d2 = (f(k, h / 2) - f(k, -h / 2)) / h;
    fd[k] = d2 + (d2 - d1) / 3.0;
    INFO("param " << k << " analytic " << grad[k] << " finite difference " << fd[k]);
    CHECK(std::abs(grad[k] - fd[k]) <= tol * std::max(1.0, std::abs(fd[k])));
  }
  INFO("relative error of the whole gradient " << (grad - fd).norm() / fd.norm());
  CHECK((grad - fd).norm() <= tol * fd.norm());
  CHECK(fd.norm() > 1e-3);  // the check is not vacuous
}

std::vector<std::pair<std::string, LossOptions>> loss_settings() {
  std::vector<std::pair<std::string, LossOptions>> s;
  LossOptions o;
  s.push_back({"regression only", o});
  o.lambda_log_det = 0.3;
  s.push_back({"regression + log-det", o});
  o = LossOptions{};
  o.lambda_fb = 0.7;
  s.push_back({"regression + forward-backward", o});
  s.push_back({"maximum likelihood", LossOptions::mle()});
  o = LossOptions{};
  o.regression = 0.5;
  o.lambda_log_det = 0.2;
  o.lambda_fb = 0.4;
  o.beta_nll = 0.3;
  o.target_noise = 0.1;
  o.noise_seed = 3;
  s.push_back({"all terms and target noise", o});
  return s;
}

}  // namespace

TEST_CASE("loss gradient matches finite differences: affine-coupling flow", "[train][loss]") {
  using Block = Sequential<AC3, AC3>;
  Flow flow(StandardNormal<double, 3>(),
            Block(AC3(Mask::half(3), MLPConfig{6, 2, Activation::silu, false}),
                  AC3(Mask::half(3, true), MLPConfig{6, 1, Activation::tanh, false})),
            1);
  randomize(flow);
  const Batch<double> x0 = normal_batch(5, 3, 1);
  const Batch<double> x1 = normal_batch(5, 3, 2, 1.5);
  for (const auto& [name, opt] : loss_settings()) {
    SECTION(name) { check_loss_gradient(flow, x0, x1, opt, 4); }
  }
}

TEST_CASE("loss gradient matches finite differences: Repeat of Sequential blocks", "[train][loss]") {
  using Block = Sequential<AC2, AC2>;
  const MLPConfig cfg{5, 2, Activation::silu, true};
  Repeat<Block> rep(3, [&](Index) { return Block(AC2(Mask::half(2), cfg), AC2(Mask::half(2, true), cfg)); });
  Flow flow(StandardNormal<double, 2>(), rep, 2);
  randomize(flow, 0.25);
  const Batch<double> x0 = normal_batch(4, 2, 3);
  const Batch<double> x1 = normal_batch(4, 2, 4, 1.5);
  for (const auto& [name, opt] : loss_settings()) {
    SECTION(name) { check_loss_gradient(flow, x0, x1, opt, 9); }
  }
}

TEST_CASE("loss gradient matches finite differences: inexact inverse (forward-backward term live)",
          "[train][loss]") {
  using Block = Sequential<AC2, Mismatched, AC2>;
  const MLPConfig cfg{5, 2, Activation::silu, false};
  Flow flow(StandardNormal<double, 2>(), Block(AC2(Mask::half(2), cfg), Mismatched(), AC2(Mask::half(2, true), cfg)), 2);
  randomize(flow, 0.3);
  const Batch<double> x0 = normal_batch(4, 2, 3);
  const Batch<double> x1 = normal_batch(4, 2, 4, 1.5);
  LossOptions opt;
  opt.lambda_fb = 0.7;
  const LossTerms t = training_loss(flow, x0, x1, opt);
  REQUIRE(t.forward_backward > 1e-2);  // the round trip really errs
  for (const auto& [name, o] : loss_settings()) {
    SECTION(name) { check_loss_gradient(flow, x0, x1, o, 9); }
  }
  SECTION("forward-backward only") {
    LossOptions fb;
    fb.regression = 0;
    fb.lambda_fb = 1.0;
    check_loss_gradient(flow, x0, x1, fb, 0);
  }
}

TEST_CASE("loss of the identity flow equals the hand-computed value", "[train][loss]") {
  using Block = Sequential<AC2, AC2>;
  const MLPConfig cfg{8, 2, Activation::silu, false};
  Flow flow(StandardNormal<double, 2>(), Block(AC2(Mask::half(2), cfg), AC2(Mask::half(2, true), cfg)), 3);
  Batch<double> x0(2, 2), x1(2, 2);
  x0 << 0, 0,  //
      1, 2;
  x1 << 1, 0,  //
      0, 1;
  // f = id: regression = ((1² + 0²) + (1² + 1²)) / 2 = 1.5; log-det = 0; round trip exact.
  // NLL: −log N(x1) = ½‖x1‖² + log 2π = 0.5 + 1.8378770664093453 for both rows.
  LossOptions opt;
  opt.lambda_log_det = 0.3;
  opt.lambda_fb = 0.2;
  opt.beta_nll = 0.5;
  Vector<double> grad;
  const LossTerms t = training_loss(flow, x0, x1, opt, &grad);
  CHECK(t.regression == Approx(1.5).epsilon(1e-15));
  CHECK(t.log_det == 0.0);
  CHECK(t.forward_backward == 0.0);
  CHECK(t.nll == Approx(2.3378770664093453).epsilon(1e-15));
  CHECK(t.total == Approx(1.5 + 0.5 * 2.3378770664093453).epsilon(1e-15));
  CHECK(grad.allFinite());

  const LossTerms m = nll_loss(flow, x1);
  CHECK(m.total == Approx(2.3378770664093453).epsilon(1e-15));
  CHECK(m.regression == 0.0);
  CHECK(m.nll == Approx(-flow.log_prob(x1).mean()).epsilon(1e-15));
}

TEST_CASE("nll_loss is -mean log p and its gradient is the MLE gradient", "[train][loss]") {
  using Block = Sequential<AC2, AC2>;
  const MLPConfig cfg{6, 1, Activation::tanh, false};
  Flow flow(StandardNormal<double, 2>(), Block(AC2(Mask::half(2), cfg), AC2(Mask::half(2, true), cfg)), 4);
  randomize(flow);
  const Batch<double> data = normal_batch(7, 2, 5, 2.0);
  Vector<double> g1, g2;
  const LossTerms a = nll_loss(flow, data, &g1);
  const LossTerms b = training_loss(flow, Batch<double>(0, 2), data, LossOptions::mle(), &g2);
  CHECK(a.total == Approx(-flow.log_prob(data).mean()).epsilon(1e-13));
  CHECK(a.total == b.total);
  CHECK((g1 - g2).norm() == 0.0);
}

TEST_CASE("target noise is fresh per step, reproducible, and independent of chunking", "[train][loss]") {
  using Block = Sequential<AC2, AC2>;
  const MLPConfig cfg{6, 1, Activation::tanh, false};
  Flow flow(StandardNormal<double, 2>(), Block(AC2(Mask::half(2), cfg), AC2(Mask::half(2, true), cfg)), 4);
  randomize(flow);
  const Batch<double> x0 = normal_batch(10, 2, 6), x1 = normal_batch(10, 2, 7);
  LossOptions opt;
  opt.target_noise = 0.5;
  opt.beta_nll = 0.1;
  const double s1 = training_loss(flow, x0, x1, opt, nullptr, 1).total;
  CHECK(training_loss(flow, x0, x1, opt, nullptr, 1).total == s1);
  CHECK(training_loss(flow, x0, x1, opt, nullptr, 2).total != s1);
  opt.target_noise = 0;
  CHECK(training_loss(flow, x0, x1, opt, nullptr, 1).total != s1);
  // Chunked accumulation (3 + 7 rows) reproduces the whole-batch value.
  opt.target_noise = 0.5;
  Vector<double> g_whole, g_chunks = Vector<double>::Zero(flow.num_params());
  training_loss(flow, x0, x1, opt, &g_whole, 1);
  Grads<double> gs(g_chunks.data(), std::size_t(g_chunks.size()));
  LossTerms sum = detail::accumulate_loss(flow, flow.param_span(), x0.topRows(3), x1.topRows(3), opt, 10.0, 1, 0, gs);
  sum += detail::accumulate_loss(flow, flow.param_span(), x0.bottomRows(7), x1.bottomRows(7), opt, 10.0, 1, 3, gs);
  CHECK(sum.total == Approx(s1).epsilon(1e-13));
  CHECK((g_chunks - g_whole).norm() <= 1e-13 * g_whole.norm());
  // The threaded evaluation (no noise: it evaluates at step 0) agrees with the direct one.
  opt.target_noise = 0;
  CHECK(evaluate_loss(flow, x0, x1, opt, 2, 3).total == Approx(training_loss(flow, x0, x1, opt).total).epsilon(1e-13));
}

TEST_CASE("a workspace reused across calls gives exactly what fresh buffers give", "[train][loss]") {
  // Affine couplings record their partials in the cache; splines recompute them. Calls change
  // batch size, direction (fb and β terms run the inverse) and rows in between.
  using SC2 = SplineCoupling<double, 2>;
  using Block = Sequential<AC2, SC2, AC2>;
  const MLPConfig cfg{6, 2, Activation::silu, false};
  Flow flow(StandardNormal<double, 2>(), Block(AC2(Mask::half(2), cfg), SC2(Mask::half(2, true), cfg, RationalQuadraticTransform<double>(4)),
                                               AC2(Mask::half(2), cfg)), 4);
  randomize(flow, 0.3);
  LossOptions all;
  all.lambda_log_det = 0.1;
  all.lambda_fb = 0.5;
  all.beta_nll = 0.2;
  detail::LossWorkspace<std::remove_cvref_t<decltype(flow.transform())>> ws;
  const std::pair<Index, LossOptions> calls[] = {{9, LossOptions{}}, {4, all}, {9, all}, {9, LossOptions::mle()}, {5, LossOptions{}}};
  std::uint64_t seed = 20;
  for (const auto& [rows, opt] : calls) {
    const Batch<double> x0 = normal_batch(rows, 2, seed++), x1 = normal_batch(rows, 2, seed++, 1.5);
    Vector<double> g_fresh = Vector<double>::Zero(flow.num_params()), g_reused = g_fresh;
    const LossTerms fresh = detail::accumulate_loss(flow, flow.param_span(), x0, x1, opt, double(rows), 0, 0,
                                                    Grads<double>(g_fresh.data(), std::size_t(g_fresh.size())));
    const LossTerms reused = detail::accumulate_loss(flow, flow.param_span(), x0, x1, opt, double(rows), 0, 0,
                                                     Grads<double>(g_reused.data(), std::size_t(g_reused.size())), &ws);
    CHECK(reused.total == fresh.total);
    CHECK(reused.nll == fresh.nll);
    CHECK(g_reused == g_fresh);
    CHECK(g_fresh.norm() > 0);
  }
}

TEST_CASE("loss options and inputs are validated", "[train][loss][errors]") {
  using Block = Sequential<AC2, AC2>;
  const MLPConfig cfg{4, 1, Activation::tanh, false};
  Flow flow(StandardNormal<double, 2>(), Block(AC2(Mask::half(2), cfg), AC2(Mask::half(2, true), cfg)), 4);
  const Batch<double> x0 = normal_batch(4, 2, 6), x1 = normal_batch(4, 2, 7);

  LossOptions o;
  o.lambda_log_det = -1;
  CHECK_THROWS_WITH(o.validate(), Catch::Contains("LossOptions") && Catch::Contains("lambda_log_det must be finite and >= 0, got -1"));
  o = LossOptions{};
  o.lambda_fb = std::nan("");
  CHECK_THROWS_WITH(o.validate(), Catch::Contains("lambda_fb must be finite"));
  o = LossOptions{};
  o.beta_nll = INFINITY;
  CHECK_THROWS_WITH(training_loss(flow, x0, x1, o), Catch::Contains("beta_nll must be finite"));
  o = LossOptions{};
  o.target_noise = -0.1;
  CHECK_THROWS_WITH(o.validate(), Catch::Contains("target_noise"));
  o = LossOptions{};
  o.regression = 0;
  CHECK_THROWS_WITH(o.validate(), Catch::Contains("all loss weights are zero"));
  o.regression = -2;
  CHECK_THROWS_WITH(o.validate(), Catch::Contains("regression must be finite and >= 0"));

  const LossOptions ok;
  CHECK_THROWS_WITH(training_loss(flow, x0, normal_batch(3, 2, 1), ok),
                    Catch::Contains("training_loss") && Catch::Contains("x0 has 4 rows but x1 has 3"));
  CHECK_THROWS_WITH(training_loss(flow, Batch<double>(0, 2), x1, ok), Catch::Contains("x0 has 0 rows but x1 has 4"));
  CHECK_THROWS_WITH(nll_loss(flow, Batch<double>(0, 2)), Catch::Contains("x1 has no rows"));
  Batch<double> bad = x1;
  bad(2, 1) = std::nan("");
  CHECK_THROWS_WITH(training_loss(flow, x0, bad, ok), Catch::Contains("x1 contains a non-finite value"));
  bad = x0;
  bad(0, 0) = INFINITY;
  CHECK_THROWS_WITH(training_loss(flow, bad, x1, ok), Catch::Contains("x0 contains a non-finite value"));
  using AC = AffineCoupling<double>;
  Flow dyn(StandardNormal<double>(2), Sequential<AC>(AC(Mask::half(2), cfg)), 1);
  CHECK_THROWS_WITH(training_loss(dyn, normal_batch(4, 3, 1), normal_batch(4, 3, 2), ok),
                    Catch::Contains("x1 has 3 columns, expected the flow's dim 2"));
}
