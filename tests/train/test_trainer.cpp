#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "fort/flows/flow.hpp"
#include "fort/flows/repeat.hpp"
#include "fort/flows/sequential.hpp"
#include "fort/layers/affine_coupling.hpp"
#include "fort/train.hpp"

using namespace fort;

namespace {

using AC = AffineCoupling<double, 2>;
using Block = Sequential<AC, AC>;

auto make_flow(Index blocks = 2, Index width = 16, std::uint64_t seed = 1) {
  const MLPConfig cfg{width, 2, Activation::silu, false};
  Repeat<Block> rep(blocks, [&](Index) { return Block(AC(Mask::half(2), cfg), AC(Mask::half(2, true), cfg)); });
  return Flow(StandardNormal<double, 2>(), rep, seed);
}

Batch<double, 2> noise(Index n, std::uint64_t seed) {
  Batch<double, 2> x(n, 2);
  Random(seed).fill_normal(std::span<double>(x.data(), std::size_t(x.size())));
  return x;
}

// x1 = A x0 + b with A lower-triangular, positive diagonal: an invertible affine transport map.
Batch<double, 2> affine_target(const Batch<double, 2>& x0) {
  Eigen::Matrix2d A;
  A << 1.5, 0.0,  //
      0.5, 0.8;
  const Eigen::RowVector2d b(0.3, -0.2);
  Batch<double, 2> x1 = x0 * A.transpose();
  x1.rowwise() += b;
  return x1;
}

TrainOptions quiet_options() {
  TrainOptions o;
  o.quiet = true;
  o.threads = 1;
  return o;
}

}  // namespace

TEST_CASE("FORT learns an affine transport map; forward maps x0 to x1 and inverse maps back",
          "[train][trainer]") {
  auto flow = make_flow();
  const Batch<double, 2> x0 = noise(512, 11), x1 = affine_target(x0);
  TrainOptions o = quiet_options();
  o.optimizer = AdamOptions::adamw(1e-2, 0.0);
  o.warmup_steps = 20;
  o.min_lr = 1e-4;
  o.batch_size = 128;
  o.epochs = 250;
  o.eval_every = 50;
  o.loss.lambda_log_det = 1e-6;
  const auto before = training_loss(flow, x0, x1, o.loss).regression;
  const auto r = train_fort(flow, x0, x1, o);
  CHECK(r.steps == 1000);
  CHECK(r.history.size() == 20);
  CHECK(r.history.back().step == 1000);
  CHECK(r.final_params == FinalParams::last);
  CHECK(r.ema_params.size() == 0);
  CHECK(r.best_params.size() == 0);
  CHECK(std::isnan(r.history.back().val_loss));
  CHECK(r.history.front().lr > r.history.back().lr);  // cosine decay
  const double after = training_loss(flow, x0, x1, o.loss).regression;
  INFO("regression loss before " << before << " after " << after);
  CHECK(after < 1e-3 * before);
  CHECK(after < 1e-4);

  // Generalises to fresh noise: forward ≈ target, inverse ≈ the noise.
  const Batch<double, 2> z = noise(200, 99), target = affine_target(z);
  const auto [y, ld] = flow.forward(z);
  CHECK((y - target).cwiseAbs().maxCoeff() < 0.05);
  CHECK((y - target).rowwise().squaredNorm().mean() < 1e-4);
  const auto [zb, ldi] = flow.inverse(target);
  CHECK((zb - z).cwiseAbs().maxCoeff() < 0.05);
  // The learned log-det approaches log det A = log(1.5·0.8).
  CHECK(std::abs(ld.mean() - std::log(1.2)) < 0.01);
}

TEST_CASE("training is bit-identical at 1 and 2 threads", "[train][trainer]") {
  const Batch<double, 2> x0 = noise(300, 12), x1 = affine_target(x0);
  TrainOptions o = quiet_options();
  o.batch_size = 100;       // two chunks of 40 and one of 20 per batch
  o.chunk_rows = 40;
  o.epochs = 8;
  o.validation_fraction = 0.2;
  o.eval_every = 5;
  o.ema_decay = 0.9;
  o.clip_norm = 1.0;
  o.loss.lambda_log_det = 1e-3;
  o.loss.lambda_fb = 1e-2;
  o.loss.beta_nll = 1e-2;
  o.loss.target_noise = 0.05;
  o.warmup_steps = 3;
  std::vector<TrainResult<double>> results;
  std::vector<Vector<double>> finals;
  for (unsigned threads : {1u, 2u, 3u}) {
    auto flow = make_flow(2, 8, 3);
    o.threads = threads;
    results.push_back(train_fort(flow, x0, x1, o));
    finals.push_back(flow.params());
  }
  for (std::size_t k = 1; k < results.size(); ++k) {
    const auto& a = results[0];
    const auto& b = results[k];
    REQUIRE(a.last_params.size() == b.last_params.size());
    CHECK(std::memcmp(a.last_params.data(), b.last_params.data(), sizeof(double) * std::size_t(a.last_params.size())) == 0);
    CHECK(std::memcmp(a.ema_params.data(), b.ema_params.data(), sizeof(double) * std::size_t(a.ema_params.size())) == 0);
    CHECK(std::memcmp(finals[0].data(), finals[k].data(), sizeof(double) * std::size_t(finals[0].size())) == 0);
    REQUIRE(a.history.size() == b.history.size());
    for (std::size_t i = 0; i < a.history.size(); ++i) {
      CHECK(std::memcmp(&a.history[i].train_loss, &b.history[i].train_loss, sizeof(double)) == 0);
      CHECK(std::memcmp(&a.history[i].val_loss, &b.history[i].val_loss, sizeof(double)) == 0);
    }
  }
  CHECK(results[0].steps == 24);
  CHECK(results[0].final_params == FinalParams::best);  // automatic with a validation split
  CHECK(std::memcmp(finals[0].data(), results[0].best_params.data(), sizeof(double) * std::size_t(finals[0].size())) == 0);

  // A different seed shuffles differently.
  auto other = make_flow(2, 8, 3);
  o.seed = 1;
  train_fort(other, x0, x1, o);
  CHECK(other.params() != finals[0]);
}

TEST_CASE("early stopping triggers after `patience` evaluations without improvement", "[train][trainer]") {
  auto flow = make_flow(1, 8);
  const Batch<double, 2> x0 = noise(200, 13), x1 = affine_target(x0);
  TrainOptions o = quiet_options();
  o.batch_size = 50;
  o.epochs = 100;
  o.validation_fraction = 0.2;
  o.eval_every = 1;
  o.patience = 2;
  o.min_delta = 1e9;  // nothing counts as an improvement after the first evaluation
  std::vector<Index> checkpoints;
  const auto r = train_fort(flow, x0, x1, o, [&](const auto& f, Index step) {
    CHECK(f.num_params() == flow.num_params());
    checkpoints.push_back(step);
  });
  CHECK(r.stopped_early);
  CHECK(r.steps == 3);
  CHECK(r.best_step == 1);
  REQUIRE(r.history.size() == 3);
  CHECK(r.history[0].val_loss == r.best_val_loss);
  CHECK(r.final_params == FinalParams::best);
  CHECK(flow.params() == r.best_params);
  CHECK(flow.params() != r.last_params);
  CHECK(checkpoints.empty());  // checkpoint_every = 0

  SECTION("validation improves and patience is not reached on an easy run") {
    auto g = make_flow(1, 8);
    o.min_delta = 0;
    o.patience = 50;
    o.epochs = 5;
    o.optimizer.lr = 5e-3;
    o.checkpoint_every = 4;
    checkpoints.clear();
    const auto s = train_fort(g, x0, x1, o, [&](const auto&, Index step) { checkpoints.push_back(step); });
    CHECK_FALSE(s.stopped_early);
    CHECK(s.steps == 20);
    CHECK(s.history.front().val_loss > s.best_val_loss);
    CHECK(checkpoints == std::vector<Index>{4, 8, 12, 16, 20});
  }
}

TEST_CASE("max_steps caps the run; final params by choice", "[train][trainer]") {
  const Batch<double, 2> x0 = noise(100, 14), x1 = affine_target(x0);
  TrainOptions o = quiet_options();
  o.batch_size = 10;
  o.max_steps = 7;
  o.eval_every = 3;
  o.ema_decay = 0.5;
  auto flow = make_flow(1, 4);
  const auto r = train_fort(flow, x0, x1, o);
  CHECK(r.steps == 7);
  REQUIRE(r.history.size() == 3);
  CHECK(r.history[2].step == 7);
  CHECK(r.final_params == FinalParams::ema);
  CHECK(flow.params() == r.ema_params);
  o.final_params = FinalParams::last;
  auto flow2 = make_flow(1, 4);
  const auto r2 = train_fort(flow2, x0, x1, o);
  CHECK(flow2.params() == r2.last_params);
  CHECK(r2.last_params == r.last_params);
}

TEST_CASE("maximum-likelihood training lowers the held-out NLL", "[train][trainer]") {
  // Data: a correlated Gaussian, the image of noise under the affine map.
  const Batch<double, 2> data = affine_target(noise(600, 15));
  const Batch<double, 2> test = affine_target(noise(300, 16));
  auto flow = make_flow(1, 8);
  const Batch<double, 2> none(0, 2);
  const double before = evaluate_loss(flow, none, test, LossOptions::mle()).total;
  TrainOptions o = quiet_options();
  o.optimizer = AdamOptions::adamw(5e-3, 0.0);
  o.batch_size = 100;
  o.epochs = 30;
  o.validation_fraction = 0.1;
  o.eval_every = 20;
  const auto r = train_mle(flow, data, o);
  const double after = evaluate_loss(flow, none, test, LossOptions::mle()).total;
  // Exact NLL of the true density: log 2π + 1 + log det A = 2.8378770664093453 + log 1.2.
  const double truth = 2.8378770664093453 + std::log(1.2);
  INFO("held-out NLL before " << before << " after " << after << " truth " << truth);
  CHECK(after < before - 0.3);
  CHECK(after < truth + 0.1);
  CHECK(std::isfinite(r.history.back().val_loss));
  CHECK(nll_loss(flow, test).total == Approx(after).epsilon(1e-12));
}

TEST_CASE("trainer rejects bad inputs and options with clear messages", "[train][trainer][errors]") {
  auto flow = make_flow(1, 4);
  const Batch<double, 2> x0 = noise(20, 17), x1 = affine_target(x0);
  const TrainOptions ok = quiet_options();
  auto fails = [&](const TrainOptions& o, const char* what) {
    CHECK_THROWS_WITH(train_fort(flow, x0, x1, o), Catch::Contains("train_fort") && Catch::Contains(what));
  };

  CHECK_THROWS_WITH(train_fort(flow, x0, Batch<double, 2>(x1.topRows(10)), ok),
                    Catch::Contains("train_fort") && Catch::Contains("x0 has shape [20, 2] but x1 has shape [10, 2]"));
  CHECK_THROWS_WITH(train_fort(flow, Batch<double, 2>(0, 2), Batch<double, 2>(0, 2), ok),
                    Catch::Contains("no training data"));
  Batch<double, 2> bad = x1;
  bad(3, 0) = NAN;
  CHECK_THROWS_WITH(train_fort(flow, x0, bad, ok), Catch::Contains("x1 contains a non-finite value"));
  bad = x0;
  bad(0, 1) = -INFINITY;
  CHECK_THROWS_WITH(train_fort(flow, bad, x1, ok), Catch::Contains("x0 contains a non-finite value"));
  CHECK_THROWS_WITH(train_mle(flow, bad, ok), Catch::Contains("train_mle") && Catch::Contains("non-finite"));
  using Dyn = AffineCoupling<double>;
  Flow dyn(StandardNormal<double>(3), Sequential<Dyn>(Dyn(Mask::half(3), MLPConfig{4, 1, Activation::tanh, false})));
  CHECK_THROWS_WITH(train_mle(dyn, Batch<double>(noise(5, 1)), ok), Catch::Contains("x1 has 2 columns, expected the flow's dim 3"));

  TrainOptions o = ok;
  o.batch_size = 0;
  fails(o, "batch_size must be >= 1, got 0");
  o = ok;
  o.epochs = 0;
  fails(o, "epochs must be >= 1");
  o = ok;
  o.validation_fraction = 1.0;
  fails(o, "validation_fraction must be in [0, 1)");
  o.validation_fraction = 0.99;
  fails(o, "leaves no training rows");
  o.validation_fraction = 0.01;
  fails(o, "leaves no validation rows");
  o = ok;
  o.patience = 3;
  fails(o, "patience (early stopping) needs a validation split");
  o = ok;
  o.final_params = FinalParams::ema;
  fails(o, "final_params = ema needs ema_decay > 0");
  o = ok;
  o.final_params = FinalParams::best;
  fails(o, "final_params = best needs a validation split");
  o = ok;
  o.ema_decay = 1.0;
  fails(o, "ema_decay must be in [0, 1)");
  o = ok;
  o.clip_norm = -1;
  fails(o, "clip_norm must be finite and >= 0");
  o = ok;
  o.eval_every = 0;
  fails(o, "eval_every must be >= 1");
  o = ok;
  o.chunk_rows = 0;
  fails(o, "chunk_rows must be >= 1");
  o = ok;
  o.min_lr = 1.0;
  fails(o, "min_lr must be in [0, optimizer.lr");
  o = ok;
  o.checkpoint_every = 5;
  fails(o, "no checkpoint callback was given");
  o = ok;
  o.optimizer.lr = -1;
  CHECK_THROWS_WITH(train_fort(flow, x0, x1, o), Catch::Contains("lr must be finite and > 0"));
  o = ok;
  o.loss.regression = 0;
  CHECK_THROWS_WITH(train_fort(flow, x0, x1, o), Catch::Contains("all loss weights are zero"));

  // A loss that overflows stops training with the last finite parameters kept.
  const Vector<double> p0 = flow.params();
  Batch<double, 2> huge = x1;
  huge.array() *= 1e200;
  CHECK_THROWS_WITH(train_fort(flow, x0, huge, ok), Catch::Contains("became non-finite at step 0"));
  CHECK(flow.params() == p0);

  // An exception from the user's checkpoint callback reaches the caller.
  o = ok;
  o.threads = 2;
  o.batch_size = 20;
  o.chunk_rows = 4;
  o.checkpoint_every = 1;
  CHECK_THROWS_WITH(train_fort(flow, x0, x1, o, [](const auto&, Index) { throw Error("checkpoint", "disk full"); }),
                    Catch::Contains("disk full"));
}

TEST_CASE("chunk reduction sums in chunk order and forwards worker exceptions", "[train][trainer]") {
  detail::WorkerPool pool(2);
  std::vector<Vector<double>> ring(4, Vector<double>::Zero(3));
  Vector<double> grad(3);
  // Chunk c contributes c to every gradient entry and 1/(c+1) to the total.
  auto chunk = [](Index c, Grads<double> g) {
    for (double& v : g) v += double(c);
    LossTerms t;
    t.total = 1.0 / double(c + 1);
    return t;
  };
  const LossTerms t = detail::reduce_chunks<double>(pool, 50, true, grad, ring, chunk);
  double expect = 0;
  for (int c = 0; c < 50; ++c) expect += 1.0 / double(c + 1);
  CHECK(t.total == expect);  // bit-exact: the same order as this serial loop
  CHECK(grad[0] == 1225.0);
  for (int rep = 0; rep < 20; ++rep) {
    auto failing = [](Index c, Grads<double>) -> LossTerms {
      if (c == 17) throw Error("layer", "bad chunk 17");
      return {};
    };
    CHECK_THROWS_WITH(detail::reduce_chunks<double>(pool, 40, true, grad, ring, failing), Catch::Contains("bad chunk 17"));
  }
  // The pool is still usable after a failure.
  CHECK(detail::reduce_chunks<double>(pool, 50, false, grad, ring, chunk).total == expect);
}
