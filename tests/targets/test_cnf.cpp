#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

#include "fort/targets.hpp"

using namespace fort;

namespace {

Batch<double> normal_batch(Index n, Index d, std::uint64_t stream, double scale = 1.0) {
  Batch<double> x(n, d);
  Random(123, stream).fill_normal(std::span<double>(x.data(), std::size_t(x.size())), 0, scale);
  return x;
}

// Random parameters everywhere (the default initialisation zeroes the last layer, which would
// make every derivative check trivially pass).
Vector<double> random_params(const VelocityMLP<double>& f, std::uint64_t stream, double scale = 0.4) {
  Vector<double> p(f.num_params());
  Random(9, stream).fill_normal(std::span<double>(p.data(), std::size_t(p.size())), 0, scale);
  return p;
}

Params<double> view(const Vector<double>& p) { return Params<double>(p.data(), std::size_t(p.size())); }

// tr(∂v/∂x) by central differences of the batched forward pass.
Vector<double> fd_divergence(const VelocityMLP<double>& f, const Vector<double>& p, const Batch<double>& x, double t) {
  const double h = 1e-5;
  Vector<double> div = Vector<double>::Zero(x.rows());
  Batch<double> vp, vm;
  for (Index j = 0; j < x.cols(); ++j) {
    Batch<double> xp = x, xm = x;
    xp.col(j).array() += h;
    xm.col(j).array() -= h;
    f.forward(view(p), xp, t, vp);
    f.forward(view(p), xm, t, vm);
    div += (vp.col(j) - vm.col(j)) / (2 * h);
  }
  return div;
}

bool bit_identical(const Vector<double>& a, const Vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(double) * std::size_t(a.size())) == 0;
}

}  // namespace

TEST_CASE("VelocityMLP exact divergence matches a finite-difference Jacobian trace", "[targets][cnf]") {
  struct Case {
    Index dim, width, depth, freqs;
    bool residual;
    Activation act;
  };
  const std::vector<Case> cases = {
      {3, 8, 0, 0, false, Activation::tanh}, {3, 8, 1, 0, false, Activation::tanh},
      {3, 8, 1, 1, true, Activation::silu},  {3, 4, 1, 0, true, Activation::tanh},   // in == width: layer 0 residual
      {5, 16, 2, 0, false, Activation::silu}, {5, 16, 2, 2, true, Activation::tanh},
      {3, 4, 2, 0, true, Activation::silu},   // layer 0 and layer 1 residual
      {4, 12, 3, 1, false, Activation::tanh}, {4, 12, 4, 0, true, Activation::silu},
      {4, 5, 3, 0, true, Activation::tanh},   // every hidden layer residual
  };
  for (const Case& c : cases) {
    VelocityConfig cfg;
    cfg.mlp = MLPConfig{c.width, c.depth, c.act, c.residual};
    cfg.time_frequencies = c.freqs;
    const VelocityMLP<double> f(c.dim, cfg);
    const Vector<double> p = random_params(f, std::uint64_t(c.depth * 10 + c.width));
    const Batch<double> x = normal_batch(7, c.dim, 1);
    const double t = 0.37;
    INFO(f.signature());
    const Vector<double> ref = fd_divergence(f, p, x, t);
    Batch<double> v, v_ref;
    Vector<double> div_fm;
    f.forward_and_divergence(view(p), x, t, v, div_fm, DivergenceMethod::forward_mode);
    f.forward(view(p), x, t, v_ref);
    CHECK((v - v_ref).cwiseAbs().maxCoeff() == 0.0);
    const double scale = 1.0 + ref.cwiseAbs().maxCoeff();
    CHECK((div_fm - ref).cwiseAbs().maxCoeff() < 1e-7 * scale);
    if (c.depth <= 2) {
      Vector<double> div_cf;
      f.divergence(view(p), x, t, div_cf, DivergenceMethod::closed_form);
      CHECK((div_cf - ref).cwiseAbs().maxCoeff() < 1e-7 * scale);
      CHECK((div_cf - div_fm).cwiseAbs().maxCoeff() < 1e-12 * scale);
    } else {
      Vector<double> div_cf;
      CHECK_THROWS_WITH(f.divergence(view(p), x, t, div_cf, DivergenceMethod::closed_form),
                        Catch::Contains("closed-form divergence needs depth <= 2"));
    }
    CHECK(f.divergence_point(view(p), &x(2, 0), t) == Approx(ref[2]).epsilon(1e-7));
  }
}

TEST_CASE("forward-mode divergence handles chunking of large batches", "[targets][cnf]") {
  VelocityConfig cfg;
  cfg.mlp = MLPConfig{64, 3, Activation::silu, false};
  const VelocityMLP<double> f(66, cfg);  // chunk = 2 MB / (66·64·8 B) = 62 rows
  const Vector<double> p = random_params(f, 3, 0.1);
  const Batch<double> x = normal_batch(150, 66, 2);
  Vector<double> all, one;
  f.divergence(view(p), x, 0.8, all);
  for (Index i : {0, 61, 62, 149}) CHECK(all[i] == Approx(f.divergence_point(view(p), &x(i, 0), 0.8)).epsilon(1e-12));
  const Vector<double> ref = fd_divergence(f, p, x.topRows(3), 0.8);
  CHECK((all.head(3) - ref).cwiseAbs().maxCoeff() < 1e-6);
}

TEST_CASE("VelocityMLP backward matches central differences", "[targets][cnf]") {
  for (bool residual : {false, true}) {
    VelocityConfig cfg;
    cfg.mlp = MLPConfig{6, 2, Activation::tanh, residual};
    cfg.time_frequencies = 2;
    const VelocityMLP<double> f(3, cfg);
    Vector<double> p = random_params(f, 5);
    const Batch<double> x = normal_batch(5, 3, 3);
    Vector<double> t(5);
    t << 0.1, 0.5, 0.9, 0.33, 0.0;
    const Batch<double> w = normal_batch(5, 3, 4);  // L = Σ w ⊙ v
    auto loss = [&](const Vector<double>& pp, const Batch<double>& xx, const Vector<double>& tt) {
      Batch<double> v;
      f.forward(view(pp), xx, tt, v);
      return (v.array() * w.array()).sum();
    };
    typename VelocityMLP<double>::Cache cache;
    Batch<double> v;
    f.forward(view(p), x, t, v, &cache);
    Vector<double> gp = Vector<double>::Zero(p.size()), gt;
    Batch<double> gx;
    f.backward(view(p), cache, w, Grads<double>(gp.data(), std::size_t(gp.size())), &gx, &gt);

    const double h = 1e-6;
    auto check = [&](double analytic, double numeric) {
      CHECK(std::abs(analytic - numeric) <= 1e-6 * std::max(1.0, std::abs(numeric)));
    };
    for (Index k = 0; k < p.size(); ++k) {
      Vector<double> pp = p, pm = p;
      pp[k] += h;
      pm[k] -= h;
      check(gp[k], (loss(pp, x, t) - loss(pm, x, t)) / (2 * h));
    }
    for (Index i = 0; i < x.rows(); ++i)
      for (Index j = 0; j < x.cols(); ++j) {
        Batch<double> xp = x, xm = x;
        xp(i, j) += h;
        xm(i, j) -= h;
        check(gx(i, j), (loss(p, xp, t) - loss(p, xm, t)) / (2 * h));
      }
    for (Index i = 0; i < t.size(); ++i) {
      Vector<double> tp = t, tm = t;
      tp[i] += h;
      tm[i] -= h;
      check(gt[i], (loss(p, x, tp) - loss(p, x, tm)) / (2 * h));
    }
    // backward accumulates into dL/dp (+=), like fort::MLP.
    Vector<double> gp2 = gp;
    f.backward(view(p), cache, w, Grads<double>(gp2.data(), std::size_t(gp2.size())));
    CHECK((gp2 - 2 * gp).cwiseAbs().maxCoeff() < 1e-12);
  }
}

TEST_CASE("VelocityMLP per-point and batched forward agree; fresh init is v = 0", "[targets][cnf]") {
  VelocityConfig cfg;
  cfg.mlp = MLPConfig{10, 2, Activation::silu, true};
  cfg.time_frequencies = 1;
  const VelocityMLP<double> f(4, cfg);
  CHECK(f.input_dim() == 7);
  CHECK_THAT(f.signature(), Catch::Contains("VelocityMLP(dim=4,time_frequencies=1,MLP(in=7,out=4"));
  const Vector<double> p = random_params(f, 8);
  const Batch<double> x = normal_batch(3, 4, 6);
  Batch<double> v;
  f.forward(view(p), x, 0.25, v);
  std::vector<double> scratch(std::size_t(f.point_scratch_size()));
  double out[4];
  f.forward_point(view(p), &x(1, 0), 0.25, out, scratch.data());
  for (int j = 0; j < 4; ++j) CHECK(out[j] == Approx(v(1, j)).epsilon(1e-14));

  Vector<double> p0(f.num_params());
  f.init_params(Grads<double>(p0.data(), std::size_t(p0.size())), Random(1));
  f.forward(view(p0), x, 0.5, v);
  CHECK(v.cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("VelocityMLP rejects bad shapes", "[targets][cnf][errors]") {
  CHECK_THROWS_WITH(VelocityMLP<double>(0), Catch::Contains("VelocityMLP: dim must be >= 1, got 0"));
  VelocityConfig bad;
  bad.time_frequencies = -1;
  CHECK_THROWS_WITH(VelocityMLP<double>(2, bad), Catch::Contains("time_frequencies must be >= 0"));
  const VelocityMLP<double> f(2);
  Vector<double> p(3);
  Batch<double> x(4, 2), v;
  CHECK_THROWS_WITH(f.forward(view(p), x, 0.0, v), Catch::Contains("VelocityMLP: parameter span has 3 values"));
  Vector<double> ok(f.num_params());
  Batch<double> x3(4, 3);
  CHECK_THROWS_WITH(f.forward(view(ok), x3, 0.0, v), Catch::Contains("x has 3 columns, expected 2"));
  Vector<double> t(3);
  CHECK_THROWS_WITH(f.forward(view(ok), x, t, v), Catch::Contains("t has 3 entries"));
  CHECK_THROWS_WITH(f.bind(p), Catch::Contains("parameter span has 3 values"));
}

TEST_CASE("cnf_log_prob is exact for an affine velocity field", "[targets][cnf]") {
  // v(x, t) = a ⊙ x + b·t: x(1) = e^a ⊙ x0 + b (e^a − 1 − a)/a², so x1 ~ N(m, diag e^{2a}).
  const Eigen::Array3d a(0.5, -0.3, 0.2), b(1.0, -2.0, 0.5);
  const Eigen::Array3d m = b * (a.exp() - 1 - a) / (a * a);
  auto vd = [&](const Batch<double>& x, double t, Batch<double>& out, Vector<double>& div) {
    for (Index i = 0; i < x.rows(); ++i) out.row(i) = (a.transpose() * x.row(i).array() + b.transpose() * t).matrix();
    div.setConstant(a.sum());
  };
  auto v = [&](const Batch<double>& x, double t, Batch<double>& out) {
    Vector<double> div(x.rows());
    vd(x, t, out, div);
  };
  const Batch<double> x1 = normal_batch(100, 3, 7, 1.5);
  Vector<double> exact(100);
  for (Index i = 0; i < 100; ++i) {
    double lp = 0;
    for (int j = 0; j < 3; ++j) {
      const double s = std::exp(a[j]), z = (x1(i, j) - m[j]) / s;
      lp += -0.5 * z * z - std::log(s) - 0.5 * std::log(2 * std::numbers::pi);
    }
    exact[i] = lp;
  }
  for (OdeMethod method : {OdeMethod::rk4, OdeMethod::dopri5}) {
    CnfOptions o;
    o.ode.method = method;
    o.ode.steps = 100;
    o.ode.rtol = o.ode.atol = 1e-10;
    o.batch_size = 32;  // several blocks, last one partial
    const CnfLogProb<double> r = cnf_log_prob_details(vd, x1, o);
    CHECK(r.report.success);
    CHECK((r.log_prob - exact).cwiseAbs().maxCoeff() < 1e-6);
    CHECK((r.integral_div.array() - a.sum()).abs().maxCoeff() < 1e-12);
    // The latents map back onto the data.
    const Batch<double> back = cnf_transport(v, r.x0, o);
    CHECK((back - x1).cwiseAbs().maxCoeff() < 1e-7);
  }
}

TEST_CASE("CNF pair generation is deterministic and thread-count independent", "[targets][cnf]") {
  VelocityConfig cfg;
  cfg.mlp = MLPConfig{16, 2, Activation::silu, false};
  const VelocityMLP<double> f(3, cfg);
  const Vector<double> p = random_params(f, 11, 0.3);
  CnfOptions o;
  o.batch_size = 50;
  o.threads = 1;
  const CnfPairs<double> a = cnf_generate_pairs<double>(f.bind(p), 230, 3, 42, o);
  o.threads = 2;
  const CnfPairs<double> b = cnf_generate_pairs<double>(f.bind(p), 230, 3, 42, o);
  CHECK(a.x1.rows() == 230);
  CHECK(a.report.evaluations == 5 * 80);
  CHECK(std::memcmp(a.x1.data(), b.x1.data(), sizeof(double) * std::size_t(a.x1.size())) == 0);
  CHECK((a.x0 - sample_standard_normal<double>(230, 3, 42)).cwiseAbs().maxCoeff() == 0.0);
  // Same prior draws as fort::StandardNormal with the same key.
  double z[3];
  StandardNormal<double>(3).sample_point(Random(42), 17, z);
  CHECK(a.x0(17, 1) == z[1]);
  CHECK((a.x1 - a.x0).cwiseAbs().maxCoeff() > 1e-3);  // the field moved the points
  const CnfPairs<double> c = cnf_generate_pairs(f.bind(p), a.x0, o);
  CHECK((c.x1 - a.x1).cwiseAbs().maxCoeff() == 0.0);
  o.threads = 1;
  const Vector<double> lp1 = cnf_log_prob(f.bind(p), a.x1, o);
  o.threads = 2;
  const Vector<double> lp2 = cnf_log_prob(f.bind(p), a.x1, o);
  CHECK(bit_identical(lp1, lp2));
}

TEST_CASE("CNF functions reject bad input", "[targets][cnf][errors]") {
  const VelocityMLP<double> f(2);
  Vector<double> p(f.num_params());
  f.init_params(Grads<double>(p.data(), std::size_t(p.size())), Random(0));
  CnfOptions o;
  o.batch_size = 0;
  Batch<double> x = normal_batch(4, 2, 1);
  CHECK_THROWS_WITH(cnf_transport(f.bind(p), x, o), Catch::Contains("CnfOptions: batch_size must be >= 1, got 0"));
  o.batch_size = 8;
  x(2, 1) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(cnf_log_prob(f.bind(p), x, o), Catch::Contains("cnf_log_prob: x1 row 2 column 1 is inf"));
  CHECK_THROWS_WITH(cnf_generate_pairs<double>(f.bind(p), 0, 2, 1, o), Catch::Contains("n and dim must be >= 1"));
  Batch<double> x3 = normal_batch(4, 3, 1);
  CHECK_THROWS_WITH(cnf_transport(f.bind(p), x3, o), Catch::Contains("x has 3 columns, expected 2"));
  // Integration failures surface from the block that failed.
  o.ode.method = OdeMethod::dopri5;
  o.ode.max_steps = 1;
  o.ode.rtol = o.ode.atol = 1e-12;
  const Vector<double> q = random_params(f, 2, 1.0);
  CHECK_THROWS_WITH(cnf_transport(f.bind(q), normal_batch(4, 2, 1), o), Catch::Contains("max_steps"));
  o.ode.throw_on_failure = false;
  OdeReport rep;
  cnf_transport(f.bind(q), normal_batch(20, 2, 1), o, &rep);
  CHECK_FALSE(rep.success);
  CHECK_THAT(rep.message, Catch::Contains("max_steps = 1"));
}

TEST_CASE("flow matching options and data are validated", "[targets][cnf][errors]") {
  const VelocityMLP<double> f(2);
  const Batch<double> data = normal_batch(10, 2, 1);
  FlowMatchingOptions o;
  o.steps = 0;
  CHECK_THROWS_WITH(train_flow_matching(f, data, o), Catch::Contains("train_flow_matching: steps must be >= 1"));
  o.steps = 1;
  o.batch_size = 0;
  CHECK_THROWS_WITH(train_flow_matching(f, data, o), Catch::Contains("batch_size must be >= 1"));
  o.batch_size = 4;
  o.optimizer.lr = -1;
  CHECK_THROWS_WITH(train_flow_matching(f, data, o), Catch::Contains("Adam: lr must be finite and > 0"));
  o.optimizer.lr = 1e-3;
  o.ema_decay = 1.0;
  CHECK_THROWS_WITH(train_flow_matching(f, data, o), Catch::Contains("ema_decay must be in [0, 1)"));
  o.ema_decay = 0;
  const Batch<double> wrong = normal_batch(10, 3, 1);
  CHECK_THROWS_WITH(train_flow_matching(f, wrong, o), Catch::Contains("data has 3 columns, expected 2"));
  Batch<double> nan = data;
  nan(4, 0) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(train_flow_matching(f, nan, o), Catch::Contains("data row 4 column 0 is nan"));
  Vector<double> short_init(3);
  CHECK_THROWS_WITH(train_flow_matching(f, data, o, &short_init), Catch::Contains("initial parameters have 3 values"));
  CHECK_THROWS_WITH(parse_coupling("sinkhorn"), Catch::Contains("unknown coupling 'sinkhorn'"));
  o.optimizer.lr = 1e200;  // diverges at once
  o.steps = 50;
  CHECK_THROWS_WITH(train_flow_matching(f, data * 1e150, o), Catch::Contains("non-finite"));
}

TEST_CASE("flow matching is bit-identical for a seed", "[targets][cnf]") {
  VelocityConfig cfg;
  cfg.mlp = MLPConfig{16, 2, Activation::silu, false};
  const VelocityMLP<double> f(2, cfg);
  const Batch<double> data = normal_batch(100, 2, 5);
  for (PairCoupling c : {PairCoupling::independent, PairCoupling::minibatch_ot}) {
    FlowMatchingOptions o;
    o.steps = 30;
    o.batch_size = 32;  // 30·32 rows: several epochs, batches straddling them
    o.coupling = c;
    o.seed = 3;
    o.ema_decay = 0.9;
    const auto r1 = train_flow_matching(f, data, o);
    const auto r2 = train_flow_matching(f, data, o);
    CHECK(bit_identical(r1.params, r2.params));
    CHECK(bit_identical(r1.last_params, r2.last_params));
    CHECK(r1.loss == r2.loss);
    CHECK_FALSE(bit_identical(r1.params, r1.last_params));  // EMA differs from the last iterate
    o.seed = 4;
    const auto r3 = train_flow_matching(f, data, o);
    CHECK_FALSE(bit_identical(r1.params, r3.params));
    // Warm start from a result continues from it.
    o.steps = 1;
    const auto r4 = train_flow_matching(f, data, o, &r1.last_params);
    CHECK((r4.last_params - r1.last_params).cwiseAbs().maxCoeff() < 1e-2);
  }
}

TEST_CASE("minibatch-OT coupling pairs noise and data by exact OT", "[targets][cnf]") {
  // With an untrained field (v = 0) the first loss is the mean squared pair distance; the OT
  // pairing must give a smaller value than the independent pairing of the same draws.
  const VelocityMLP<double> f(2);
  const Batch<double> data = normal_batch(64, 2, 5, 3.0);
  FlowMatchingOptions o;
  o.steps = 1;
  o.batch_size = 64;
  const double independent = train_flow_matching(f, data, o).loss[0];
  o.coupling = PairCoupling::minibatch_ot;
  const double ot = train_flow_matching(f, data, o).loss[0];
  CHECK(ot < 0.5 * independent);
}

TEST_CASE("flow matching learns the map between two Gaussians", "[targets][cnf]") {
  // N(0, I) → N(μ, diag(s²)). Both couplings give the marginal flow x1 = μ + s ⊙ x0 (the
  // monotone, OT map between the two Gaussians) and the density log N(x1; μ, diag s²).
  const Eigen::Array2d mu(2.0, -1.0), s(0.5, 1.5);
  Batch<double> data = normal_batch(4000, 2, 21);
  for (Index i = 0; i < data.rows(); ++i) data.row(i) = (mu + s * data.row(i).transpose().array()).transpose();

  VelocityConfig cfg;
  cfg.mlp = MLPConfig{64, 2, Activation::silu, false};
  const VelocityMLP<double> f(2, cfg);
  FlowMatchingOptions o;
  o.steps = 1500;
  o.batch_size = 128;
  o.optimizer.lr = 3e-3;
  o.cosine_decay = true;
  o.seed = 1;

  const Batch<double> x0 = normal_batch(500, 2, 22).cwiseMax(-2.0).cwiseMin(2.0);
  Batch<double> expected(500, 2);
  for (Index i = 0; i < 500; ++i) expected.row(i) = (mu + s * x0.row(i).transpose().array()).transpose();
  Vector<double> exact_lp(500);
  for (Index i = 0; i < 500; ++i) {
    double lp = 0;
    for (int j = 0; j < 2; ++j) {
      const double z = (expected(i, j) - mu[j]) / s[j];
      lp += -0.5 * z * z - std::log(s[j]) - 0.5 * std::log(2 * std::numbers::pi);
    }
    exact_lp[i] = lp;
  }

  for (PairCoupling c : {PairCoupling::independent, PairCoupling::minibatch_ot}) {
    o.coupling = c;
    const auto r = train_flow_matching(f, data, o);
    INFO("coupling " << to_string(c) << ", final loss " << r.final_loss() << ", " << r.seconds << " s");
    CnfOptions co;
    co.ode.steps = 20;
    const CnfPairs<double> pairs = cnf_generate_pairs(f.bind(r.params), x0, co);
    const double mean_err = (pairs.x1 - expected).rowwise().norm().mean();
    INFO("mean |x1 - (mu + s x0)| = " << mean_err);
    CHECK(mean_err < 0.12);
    const Vector<double> lp = cnf_log_prob(f.bind(r.params), expected, co);
    const double lp_err = (lp - exact_lp).cwiseAbs().mean();
    INFO("mean |log p error| = " << lp_err);
    CHECK(lp_err < 0.15);
  }
}

TEST_CASE("flow matching and CNF targets work in float", "[targets][cnf]") {
  const VelocityMLP<float> f(2, VelocityConfig{MLPConfig{16, 2, Activation::tanh, false}, 0});
  Batch<float> data(64, 2);
  Random(4).fill_normal(std::span<float>(data.data(), std::size_t(data.size())), 0, 0.5);
  data.col(0).array() += 1.0f;
  FlowMatchingOptions o;
  o.steps = 40;
  o.batch_size = 32;
  const auto r = train_flow_matching(f, data, o);
  CHECK(r.final_loss(10) < r.loss.front());
  const CnfPairs<float> pairs = cnf_generate_pairs<float>(f.bind(r.params), 100, 2, 1, CnfOptions{});
  CHECK(pairs.x1.allFinite());
  const Vector<float> lp = cnf_log_prob(f.bind(r.params), pairs.x1, CnfOptions{});
  CHECK(lp.allFinite());
}
