#include "support/conformance.hpp"

#include "fort/flows/repeat.hpp"
#include "fort/flows/sequential.hpp"
#include "fort/layers/affine_coupling.hpp"

using namespace fort;

namespace {
MLPConfig mlp() { return MLPConfig{6, 1, Activation::tanh, false}; }

// A FlowLayer-shaped type missing backward passes: must be rejected by the concept.
struct NotALayer {
  using Scalar = double;
  using Cache = int;
  static constexpr int Dim = 2;
  Index dim() const { return 2; }
};
}  // namespace

static_assert(!FlowLayer<NotALayer>, "a type without the layer API must not satisfy FlowLayer");
static_assert(FlowLayer<Sequential<AffineCoupling<double, 2>, AdditiveCoupling<double, 2>>>);
static_assert(FlowLayer<Repeat<Sequential<AffineCoupling<float>, AffineCoupling<float>>>>);
static_assert(FlowLayer<Sequential<Repeat<AffineCoupling<double, 3>>, Sequential<AffineCoupling<double, 3>>>>);

TEST_CASE("Sequential conformance (fixed dim)", "[flows][sequential]") {
  testing::check_conformance([](auto tag, int) {
    using S = typename decltype(tag)::type;
    return Sequential(AffineCoupling<S, 3>(Mask::half(3), mlp()), AdditiveCoupling<S, 3>(Mask::alternating(3), mlp()),
                      AffineCoupling<S, 3>(Mask::half(3, true), mlp()));
  });
}

TEST_CASE("Repeat of Sequential blocks, nested (dynamic dim)", "[flows][repeat]") {
  testing::check_conformance([](auto tag, int) {
    using S = typename decltype(tag)::type;
    using Block = Sequential<AffineCoupling<S>, AffineCoupling<S>>;
    return Repeat<Block>(3, [](Index i) {
      return Block(AffineCoupling<S>(Mask::half(4, i % 2 == 1), mlp()), AffineCoupling<S>(Mask::alternating(4), mlp()));
    });
  });
}

TEST_CASE("Composite parameters are the layers' spans laid end to end", "[flows][sequential]") {
  AffineCoupling<double, 2> a(Mask::half(2), mlp());
  AdditiveCoupling<double, 2> b(Mask::half(2, true), mlp());
  Sequential seq(a, b);
  CHECK(seq.num_params() == a.num_params() + b.num_params());
  CHECK(seq.param_offset(1) == a.num_params());
  CHECK(seq.state().size() == a.state().size() + b.state().size());
  CHECK(seq.signature().find("Sequential[AffineCoupling") == 0);
}

TEST_CASE("Composite errors", "[flows][errors]") {
  using L = AffineCoupling<double>;
  CHECK_THROWS_WITH((Sequential<L, L>(L(Mask::half(2), mlp()), L(Mask::half(3), mlp()))),
                    Catch::Contains("Sequential") && Catch::Contains("has dim 3, expected 2"));
  CHECK_THROWS_WITH(Repeat<L>(0, [](Index) { return L(Mask::half(2), mlp()); }),
                    Catch::Contains("Repeat: block count must be >= 1, got 0"));
  Sequential<L, L> seq(L(Mask::half(2), mlp()), L(Mask::half(2), mlp()));
  CHECK_THROWS_WITH(seq.set_state(State{1, 0}), Catch::Contains("Sequential: state has 2 entries, expected 4"));
  std::vector<double> p(3);
  Batch<double> x = Batch<double>::Zero(2, 2), y(2, 2);
  Vector<double> ld = Vector<double>::Zero(2);
  CHECK_THROWS_WITH(seq.forward(Params<double>(p), x, y, ld), Catch::Contains("Sequential: parameter span has 3 values"));
}
