#include <catch2/catch.hpp>

#include <cmath>

#include "fort/train/optimizer.hpp"

using namespace fort;

TEST_CASE("Adam converges on an ill-conditioned quadratic", "[train][optimizer]") {
  // f(θ) = ½ Σ a_k (θ_k − c_k)², curvatures spanning 1e-2 .. 1e2.
  Vector<double> a(4), c(4), theta = Vector<double>::Zero(4);
  a << 1e-2, 1.0, 10.0, 100.0;
  c << 1.0, -2.0, 0.5, 3.0;
  AdamOptions o;
  o.lr = 0.05;
  Adam<double> adam(4, o);
  for (int t = 0; t < 3000; ++t) {
    const Vector<double> g = a.cwiseProduct(theta - c);
    adam.step(theta, g);
  }
  CHECK(adam.steps() == 3000);
  INFO("theta " << theta.transpose());
  CHECK((theta - c).cwiseAbs().maxCoeff() < 1e-3);

  Vector<float> tf = Vector<float>::Zero(4);
  Adam<float> adam_f(4, o);
  for (int t = 0; t < 3000; ++t) adam_f.step(tf, (a.cast<float>().cwiseProduct(tf - c.cast<float>())).eval());
  CHECK((tf.cast<double>() - c).cwiseAbs().maxCoeff() < 1e-2);
}

TEST_CASE("one AdamW step and one Adam+L2 step match a hand computation", "[train][optimizer]") {
  Vector<double> theta(2), g(2);
  theta << 1.0, -2.0;
  g << 0.5, -0.1;
  SECTION("AdamW (decoupled)") {
    Adam<double> opt(2, AdamOptions::adamw(0.1, 0.01));
    opt.step(theta, g);
    // t = 1: m = 0.1 g, v = 0.001 g², m̂ = g, v̂ = g²; θ ← θ(1 − 0.1·0.01) − 0.1 g/(|g| + 1e-8).
    CHECK(theta[0] == Approx(1.0 * 0.999 - 0.1 * 0.5 / (0.5 + 1e-8)).epsilon(1e-14));
    CHECK(theta[1] == Approx(-2.0 * 0.999 + 0.1 * 0.1 / (0.1 + 1e-8)).epsilon(1e-14));
    CHECK(opt.first_moment()[0] == Approx(0.05).epsilon(1e-15));
    CHECK(opt.second_moment()[1] == Approx(0.001 * 0.01).epsilon(1e-15));
    // t = 2 with the same gradient at lr 0.05: m = 0.19 g, v = 0.001999 g²,
    // m̂ = 0.19/0.19 g = g, v̂ = 0.001999/0.001999 g² → again a sign step.
    const double before = theta[0];
    opt.step(theta, g, 0.05);
    CHECK(theta[0] == Approx(before * (1 - 0.05 * 0.01) - 0.05 * 0.5 / (0.5 + 1e-8)).epsilon(1e-14));
  }
  SECTION("Adam with coupled L2 weight decay") {
    AdamOptions o;
    o.lr = 0.1;
    o.weight_decay = 0.5;
    Adam<double> opt(2, o);
    opt.step(theta, g);
    // g' = g + 0.5 θ = (1.0, −1.1); one bias-corrected step is a sign step of size lr.
    CHECK(theta[0] == Approx(1.0 - 0.1 * 1.0 / (1.0 + 1e-8)).epsilon(1e-14));
    CHECK(theta[1] == Approx(-2.0 + 0.1 * 1.1 / (1.1 + 1e-8)).epsilon(1e-14));
  }
}

TEST_CASE("gradient clipping scales by the global norm", "[train][optimizer]") {
  Vector<double> g(2);
  g << 3.0, 4.0;
  CHECK(clip_grad_norm<double>(g, 10.0) == 5.0);
  CHECK(g[0] == 3.0);
  CHECK(clip_grad_norm<double>(g, 1.0) == 5.0);
  CHECK(g[0] == Approx(0.6).epsilon(1e-15));
  CHECK(g[1] == Approx(0.8).epsilon(1e-15));
  CHECK(g.norm() == Approx(1.0).epsilon(1e-15));
  CHECK(clip_grad_norm<double>(g, INFINITY) == Approx(1.0));
  g << NAN, 1.0;
  CHECK(std::isnan(clip_grad_norm<double>(g, 1.0)));
  CHECK(g[1] == 1.0);  // left as it is for the caller to report
  CHECK_THROWS_WITH(clip_grad_norm<double>(g, 0.0), Catch::Contains("clip_grad_norm") && Catch::Contains("max_norm must be > 0"));
}

TEST_CASE("warm-up + cosine schedule values at known steps", "[train][optimizer]") {
  const WarmupCosineSchedule s(ScheduleOptions{1e-3, 10, 110, 1e-5});
  CHECK(s(0) == Approx(1e-4).epsilon(1e-14));
  CHECK(s(4) == Approx(5e-4).epsilon(1e-14));
  CHECK(s(9) == Approx(1e-3).epsilon(1e-14));
  CHECK(s(10) == Approx(1e-3).epsilon(1e-14));
  CHECK(s(60) == Approx(1e-5 + 0.5 * (1e-3 - 1e-5)).epsilon(1e-14));  // half-way: cos = 0
  CHECK(s(35) == Approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + std::cos(M_PI / 4))).epsilon(1e-14));
  CHECK(s(110) == 1e-5);
  CHECK(s(100000) == 1e-5);
  for (Index t = 10; t < 110; ++t) CHECK(s(t + 1) <= s(t));

  const WarmupCosineSchedule constant(ScheduleOptions{2e-3, 0, 0, 0});
  CHECK(constant(0) == 2e-3);
  CHECK(constant(123456) == 2e-3);
  const WarmupCosineSchedule no_warmup(ScheduleOptions{1.0, 0, 4, 0});
  CHECK(no_warmup(0) == 1.0);
  CHECK(no_warmup(2) == Approx(0.5).epsilon(1e-14));
  CHECK(no_warmup(4) == 0.0);
}

TEST_CASE("EMA starts at the initial parameters and averages", "[train][optimizer]") {
  Vector<double> p0(2);
  p0 << 0.0, 10.0;
  EMA<double> ema(p0, 0.9);
  CHECK(ema.params() == p0);
  const Vector<double> one = Vector<double>::Ones(2);
  ema.update(one);
  CHECK(ema.params()[0] == Approx(0.1).epsilon(1e-15));
  CHECK(ema.params()[1] == Approx(9.1).epsilon(1e-15));
  ema.update(one);
  CHECK(ema.params()[0] == Approx(0.19).epsilon(1e-15));
  for (int i = 0; i < 500; ++i) ema.update(one);
  CHECK((ema.params() - one).cwiseAbs().maxCoeff() < 1e-12);
  EMA<double> frozen(p0, 0.0);  // decay 0: follows the parameters exactly
  frozen.update(one);
  CHECK(frozen.params() == one);
}

TEST_CASE("optimizer options and sizes are validated", "[train][optimizer][errors]") {
  AdamOptions o;
  o.lr = 0;
  CHECK_THROWS_WITH(Adam<double>(3, o), Catch::Contains("Adam") && Catch::Contains("lr must be finite and > 0, got 0"));
  o = AdamOptions{};
  o.beta1 = 1.0;
  CHECK_THROWS_WITH(Adam<double>(3, o), Catch::Contains("beta1 must be in [0, 1)"));
  o = AdamOptions{};
  o.beta2 = NAN;
  CHECK_THROWS_WITH(Adam<double>(3, o), Catch::Contains("beta2 must be in [0, 1)"));
  o = AdamOptions{};
  o.eps = -1;
  CHECK_THROWS_WITH(Adam<double>(3, o), Catch::Contains("eps must be finite and > 0"));
  o = AdamOptions{};
  o.weight_decay = -0.1;
  CHECK_THROWS_WITH(Adam<double>(3, o), Catch::Contains("weight_decay must be finite and >= 0"));

  Adam<double> adam(3);
  Vector<double> p = Vector<double>::Zero(3), g2 = Vector<double>::Zero(2), g3 = Vector<double>::Zero(3);
  CHECK_THROWS_WITH(adam.step(p, g2), Catch::Contains("gradient has 2 values, expected 3"));
  Vector<double> p4 = Vector<double>::Zero(4);
  CHECK_THROWS_WITH(adam.step(p4, g3), Catch::Contains("parameter vector has 4 values, expected 3"));
  CHECK_THROWS_WITH(adam.step(p, g3, NAN), Catch::Contains("learning rate must be finite"));

  CHECK_THROWS_WITH(WarmupCosineSchedule(ScheduleOptions{0.0, 0, 0, 0}), Catch::Contains("peak_lr must be finite and > 0"));
  CHECK_THROWS_WITH(WarmupCosineSchedule(ScheduleOptions{1e-3, 0, 0, 1e-2}), Catch::Contains("min_lr must be in [0, peak_lr"));
  CHECK_THROWS_WITH(WarmupCosineSchedule(ScheduleOptions{1e-3, -1, 0, 0}), Catch::Contains("warmup_steps must be >= 0"));
  CHECK_THROWS_WITH(WarmupCosineSchedule(ScheduleOptions{1e-3, 10, 5, 0}),
                    Catch::Contains("total_steps (5) must be 0 (no decay) or >= warmup_steps (10)"));
  const WarmupCosineSchedule s(ScheduleOptions{});
  CHECK_THROWS_WITH(s(-1), Catch::Contains("step must be >= 0"));

  CHECK_THROWS_WITH(EMA<double>(p, 1.0), Catch::Contains("EMA") && Catch::Contains("decay must be in [0, 1), got 1"));
  CHECK_THROWS_WITH(EMA<double>(p, -0.5), Catch::Contains("decay must be in [0, 1)"));
  EMA<double> ema(p, 0.5);
  CHECK_THROWS_WITH(ema.update(p4), Catch::Contains("parameter vector has 4 values, expected 3"));
}
