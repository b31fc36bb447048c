#include "support/conformance.hpp"

#include "fort/layers/permutation.hpp"

using namespace fort;

static_assert(FlowLayer<Permutation<double, 3>> && FlowLayer<Permutation<float>>);
static_assert(FlowLayer<Reverse<double, 3>> && FlowLayer<Reverse<float>>);
static_assert(!DataInitializable<Permutation<double>>);

TEST_CASE("Permutation conformance, fixed dim, reverse", "[layers][permutation]") {
  testing::ConformanceOptions opt;
  opt.identity_at_init = false;  // reversing is not the identity
  testing::check_conformance(
      [](auto tag, int variant) {
        using S = typename decltype(tag)::type;
        // Variant 1 starts from another permutation so that copying the state is visible.
        return variant == 0 ? Permutation<S, 5>::reverse(5) : Permutation<S, 5>::identity(5);
      },
      opt);
}

TEST_CASE("Permutation conformance, dynamic dim, seeded random permutation", "[layers][permutation]") {
  testing::ConformanceOptions opt;
  opt.identity_at_init = false;
  testing::check_conformance(
      [](auto tag, int variant) {
        using S = typename decltype(tag)::type;
        return Permutation<S>::random(7, Random(42).child(std::uint64_t(variant)));
      },
      opt);
}

TEST_CASE("Permutation conformance, identity", "[layers][permutation]") {
  testing::check_conformance([](auto tag, int) {
    using S = typename decltype(tag)::type;
    return Permutation<S, 4>::identity(4);
  });
}

TEST_CASE("Permutation conformance, one dimension", "[layers][permutation]") {
  testing::check_conformance([](auto tag, int) {
    using S = typename decltype(tag)::type;
    return Permutation<S, 1>::reverse(1);
  });
}

TEST_CASE("Reverse shorthand conformance", "[layers][permutation]") {
  testing::ConformanceOptions opt;
  opt.identity_at_init = false;
  testing::check_conformance(
      [](auto tag, int) {
        using S = typename decltype(tag)::type;
        return Reverse<S, 3>();
      },
      opt);
}

TEST_CASE("Permutation maps coordinates as documented", "[layers][permutation]") {
  const Permutation<double> perm(std::vector<Index>{2, 0, 3, 1});
  Batch<double> x(2, 4), y(2, 4), back(2, 4);
  x << 10, 11, 12, 13, 20, 21, 22, 23;
  Vector<double> ld = Vector<double>::Constant(2, 0.5);
  perm.forward(Params<double>(), x, y, ld);
  Batch<double> expected(2, 4);
  expected << 12, 10, 13, 11, 22, 20, 23, 21;  // y_i = x_{π(i)}
  CHECK(y == expected);
  CHECK(ld == Vector<double>::Constant(2, 0.5));  // log-det 0 is added: unchanged
  perm.inverse(Params<double>(), y, back, ld);
  CHECK(back == x);
  CHECK(ld == Vector<double>::Constant(2, 0.5));

  // In place (input and output the same buffer) gives the same result, batched and per point.
  Batch<double> inplace = x;
  perm.forward(Params<double>(), inplace, inplace, ld);
  CHECK(inplace == expected);
  std::vector<double> scratch(std::size_t(perm.point_scratch_size()));
  Batch<double> row = x.row(0);
  double lp = 0;
  perm.forward_point(Params<double>(), row.data(), row.data(), lp, scratch.data());
  CHECK(row == expected.row(0));
  perm.inverse_point(Params<double>(), row.data(), row.data(), lp, scratch.data());
  CHECK(row == x.row(0));
  CHECK(lp == 0.0);
}

TEST_CASE("Reverse permutation is its own inverse", "[layers][permutation]") {
  for (Index d : {1, 2, 5, 8}) {
    const auto rev = Permutation<double>::reverse(d);
    for (Index i = 0; i < d; ++i) CHECK(rev.indices()[std::size_t(i)] == d - 1 - i);
    Batch<double> x = Batch<double>::Random(6, d), y(6, d), z(6, d), w(6, d);
    Vector<double> ld = Vector<double>::Zero(6);
    rev.forward(Params<double>(), x, y, ld);
    rev.forward(Params<double>(), y, z, ld);
    CHECK(z == x);
    rev.inverse(Params<double>(), x, w, ld);
    CHECK(w == y);
  }
  const Reverse<float, 3> r;
  CHECK(r.indices() == std::vector<Index>{2, 1, 0});
}

TEST_CASE("Random permutations are seeded, valid and reloaded from state", "[layers][permutation]") {
  const auto a = Permutation<double>::random(16, Random(7));
  const auto b = Permutation<double>::random(16, Random(7));
  const auto c = Permutation<double>::random(16, Random(8));
  CHECK(a.indices() == b.indices());
  CHECK(a.indices() != c.indices());
  std::vector<Index> sorted = a.indices();
  std::sort(sorted.begin(), sorted.end());
  for (Index i = 0; i < 16; ++i) CHECK(sorted[std::size_t(i)] == i);

  auto reloaded = Permutation<double>::identity(16);
  reloaded.set_state(c.state());
  CHECK(reloaded.indices() == c.indices());
  CHECK(reloaded.signature() == "Permutation(dim=16)");
}

TEST_CASE("Permutation rejects invalid permutations and shapes", "[layers][permutation][errors]") {
  using P = Permutation<double>;
  CHECK_THROWS_WITH(P(std::vector<Index>{0, 2, 2}),
                    Catch::Contains("Permutation") && Catch::Contains("value 2 appears at entries 1 and 2") &&
                        Catch::Contains("exactly once"));
  CHECK_THROWS_WITH(P(std::vector<Index>{0, 3, 1}),
                    Catch::Contains("Permutation") && Catch::Contains("entry 1 is 3, expected a value in [0, 3)"));
  CHECK_THROWS_WITH(P(std::vector<Index>{-1, 0}), Catch::Contains("entry 0 is -1"));
  CHECK_THROWS_WITH(P(std::vector<Index>{}), Catch::Contains("Permutation") && Catch::Contains("dim must be >= 1, got 0"));
  CHECK_THROWS_WITH((Permutation<double, 3>(std::vector<Index>{1, 0})),
                    Catch::Contains("Permutation") && Catch::Contains("dim is 2, expected 3"));
  CHECK_THROWS_WITH((Permutation<double, 3>::reverse(4)), Catch::Contains("dim is 4, expected 3"));
  CHECK_THROWS_WITH(P::random(0, Random(1)), Catch::Contains("dim must be >= 1, got 0"));

  auto perm = P::reverse(3);
  CHECK_THROWS_WITH(perm.set_state(State{0, 1}),
                    Catch::Contains("Permutation") && Catch::Contains("state has 2 entries, expected 3"));
  CHECK_THROWS_WITH(perm.set_state(State{0, 1, 1}), Catch::Contains("state is not a permutation: value 1 appears"));
  CHECK_THROWS_WITH(perm.set_state(State{0, 1, 7}), Catch::Contains("state entry 2 is 7"));
  CHECK(perm.indices() == std::vector<Index>{2, 1, 0});  // a rejected state leaves the layer unchanged

  Batch<double> x = Batch<double>::Zero(4, 3), y(4, 3), wrong(4, 2);
  Vector<double> ld = Vector<double>::Zero(4), short_ld = Vector<double>::Zero(3);
  std::vector<double> one_param(1);
  CHECK_THROWS_WITH(perm.forward(Params<double>(), wrong, y, ld),
                    Catch::Contains("Permutation") && Catch::Contains("input has 2 columns, expected 3"));
  CHECK_THROWS_WITH(perm.inverse(Params<double>(), x, wrong, ld),
                    Catch::Contains("output has shape [4, 2], expected [4, 3]"));
  CHECK_THROWS_WITH(perm.forward(Params<double>(), x, y, short_ld), Catch::Contains("log_det has 3 entries, expected 4"));
  CHECK_THROWS_WITH(perm.forward(Params<double>(one_param), x, y, ld),
                    Catch::Contains("parameter span has 1 values, expected 0"));
  CHECK_THROWS_WITH(perm.init_params(Grads<double>(one_param), Random()),
                    Catch::Contains("parameter span has 1 values, expected 0"));

  P::Cache empty;
  CHECK_THROWS_WITH(perm.backward_forward(Params<double>(), empty, x, ld, y, Grads<double>()),
                    Catch::Contains("Permutation") && Catch::Contains("without a recorded forward pass"));
  P::Cache cache;
  perm.forward(Params<double>(), x, y, ld, &cache);
  Batch<double> g2 = Batch<double>::Zero(2, 3), out2(2, 3);
  Vector<double> ld2 = Vector<double>::Zero(2);
  CHECK_THROWS_WITH(perm.backward_inverse(Params<double>(), cache, g2, ld2, out2, Grads<double>()),
                    Catch::Contains("without a recorded forward pass on a batch of 2 rows"));
  CHECK_THROWS_WITH(perm.backward_forward(Params<double>(), cache, x, ld, wrong, Grads<double>()),
                    Catch::Contains("dL/d(input) has shape [4, 2], expected [4, 3]"));
}
