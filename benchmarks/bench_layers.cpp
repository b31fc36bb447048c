// Per-layer and whole-flow throughput (Google Benchmark). See docs/benchmarks.md for figures.
//
// Layers: <Layer>/<scalar>/<pass>/D:<d>/batch:<n>, D ∈ {2, 66}, batch ∈ {1, 256, 4096}.
//   forward           y = f(x) with log-det (sampling direction)
//   inverse           x = f⁻¹(y) with log-det (density direction)
//   backward_forward  Layer::backward_forward alone (FORT training direction); the recording
//                     forward pass runs once before the timed loop
//   backward_inverse  Layer::backward_inverse alone (MLE direction), likewise
// Flows: Flow<Affine|Spline>/<scalar>/<op>/D:66[/batch:<n>], 8 × (coupling, random permutation).
// Reference: GEMM/<scalar>/in:<k>/out:<m>/batch:<n>, the conditioner's dense-layer products.
//
// items_per_second = samples/s. Coupling layers, flows and GEMM also report GFLOP/s, counting
// only the conditioner's dense products, 2·in·out flops per dense layer per sample:
//   F = 2·(in·w + (depth − 1)·w·w + w·out)   (depth ≥ 1; in = |passed|, out = |transformed|·k)
// forward and inverse cost F per sample; a backward pass costs 2F (dL/dW and dL/dh per layer).
// Bias, activation, gather/scatter and the element transforms are not counted.
#include <benchmark/benchmark.h>

#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fort/fort.hpp"

using namespace fort;

namespace {

const MLPConfig kConditioner{64, 2, Activation::relu, false};  // width 64, depth 2 (the defaults)
constexpr Index kSplineBins = 8;
constexpr Index kFlowDim = 66;
constexpr Index kFlowBlocks = 8;

template <class S>
const char* scalar_name() {
  return std::is_same_v<S, float> ? "float" : "double";
}

template <class S>
std::span<S> span_of(std::vector<S>& v) {
  return {v.data(), v.size()};
}

template <class M>
std::span<typename M::Scalar> span_of(M& m) {
  return {m.data(), std::size_t(m.size())};
}

/// Conditioner flops per sample for one forward pass (formula in the file comment).
template <class S>
double mlp_flops(const MLP<S>& mlp) {
  const auto& c = mlp.config();
  if (c.depth == 0) return 2.0 * double(mlp.in() * mlp.out());
  const double in = double(mlp.in()), w = double(c.width), out = double(mlp.out());
  return 2.0 * (in * w + double(c.depth - 1) * w * w + w * out);
}

/// F for a coupling layer (anything with a conditioner), 0 for the others.
template <class Layer>
double layer_flops(const Layer& layer) {
  if constexpr (requires { layer.conditioner(); }) return mlp_flops(layer.conditioner());
  else return 0;
}

void set_rates(benchmark::State& st, Index samples_per_iter, double flops_per_iter) {
  st.SetItemsProcessed(st.iterations() * samples_per_iter);
  if (flops_per_iter > 0)
    st.counters["GFLOP/s"] = benchmark::Counter(double(st.iterations()) * flops_per_iter * 1e-9,
                                                benchmark::Counter::kIsRate);
}

// ---- per-layer benchmarks ---------------------------------------------------------------------

enum class Pass { forward, inverse, backward_forward, backward_inverse };
constexpr Pass kPasses[] = {Pass::forward, Pass::inverse, Pass::backward_forward, Pass::backward_inverse};

const char* pass_name(Pass pass) {
  switch (pass) {
    case Pass::forward: return "forward";
    case Pass::inverse: return "inverse";
    case Pass::backward_forward: return "backward_forward";
    case Pass::backward_inverse: return "backward_inverse";
  }
  return "?";
}

/// One generic loop for every FlowLayer: random parameters (scale 0.05), x ~ N(0, I), y = f(x).
template <FlowLayer Layer>
void run_pass(benchmark::State& st, const Layer& layer, Pass pass) {
  using S = typename Layer::Scalar;
  const Index n = st.range(1), d = layer.dim();
  std::vector<S> p(std::size_t(layer.num_params())), g(p.size());
  Random(1).fill_normal(span_of(p), 0, 0.05);
  const Params<S> ps(p);
  Batch<S> x(n, d), y(n, d), xr(n, d), gx(n, d), gy(n, d);
  Random(2).fill_normal(span_of(x));
  Random(3).fill_normal(span_of(gy));
  Vector<S> ld = Vector<S>::Zero(n), gld = Vector<S>::Ones(n);
  layer.forward(ps, x, y, ld);
  typename Layer::Cache cache;
  if (pass == Pass::backward_forward) layer.forward(ps, x, y, ld, &cache);
  if (pass == Pass::backward_inverse) layer.inverse(ps, y, xr, ld, &cache);
  for (auto _ : st) {
    switch (pass) {
      case Pass::forward: layer.forward(ps, x, y, ld); break;
      case Pass::inverse: layer.inverse(ps, y, xr, ld); break;
      case Pass::backward_forward: layer.backward_forward(ps, cache, gy, gld, gx, Grads<S>(g)); break;
      case Pass::backward_inverse: layer.backward_inverse(ps, cache, gy, gld, gx, Grads<S>(g)); break;
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(xr.data());
    benchmark::DoNotOptimize(gx.data());
    benchmark::DoNotOptimize(g.data());
    benchmark::ClobberMemory();
  }
  const double f = layer_flops(layer);
  const bool backward = pass == Pass::backward_forward || pass == Pass::backward_inverse;
  set_rates(st, n, double(n) * f * (backward ? 2 : 1));
}

/// Registers every pass × D × batch for one layer and scalar. `make(d)` builds the layer.
template <class S, class Make>
void register_layer(const std::string& name, Make make) {
  for (Pass pass : kPasses) {
    const std::string full = name + "/" + scalar_name<S>() + "/" + pass_name(pass);
    auto* b = benchmark::RegisterBenchmark(full.c_str(), [make, pass](benchmark::State& st) {
      run_pass(st, make(st.range(0)), pass);
    });
    for (long d : {2L, 66L})
      for (long n : {1L, 256L, 4096L}) b->Args({d, n});
    b->ArgNames({"D", "batch"});
  }
}

template <class S>
void register_layers() {
  register_layer<S>("AffineCoupling", [](Index d) { return AffineCoupling<S>(Mask::half(d), kConditioner); });
  register_layer<S>("AdditiveCoupling", [](Index d) { return AdditiveCoupling<S>(Mask::half(d), kConditioner); });
  register_layer<S>("SplineCoupling", [](Index d) {
    return SplineCoupling<S>(Mask::half(d), kConditioner, RationalQuadraticTransform<S>(kSplineBins));
  });
  register_layer<S>("ActNorm", [](Index d) { return ActNorm<S>(d); });
  register_layer<S>("LULinear", [](Index d) { return LULinear<S>(d, Random(4)); });
  register_layer<S>("Permutation", [](Index d) { return Permutation<S>::random(d, Random(5)); });
}

// ---- whole-flow benchmarks --------------------------------------------------------------------

/// StandardNormal base, kFlowBlocks × (coupling with alternating half mask, random permutation),
/// parameters perturbed (scale 0.05) so the conditioners' outputs are not zero.
template <class Coupling, class... TransformArgs>
auto make_flow(TransformArgs... args) {
  using S = typename Coupling::Scalar;
  using Transform = std::remove_cvref_t<decltype(std::declval<const Coupling&>().transform())>;
  using Block = Sequential<Coupling, Permutation<S>>;
  Repeat<Block> blocks(kFlowBlocks, [&](Index i) {
    return Block(Coupling(Mask::half(kFlowDim, i % 2 == 1), kConditioner, Transform(args...)),
                 Permutation<S>::random(kFlowDim, Random(6).child(std::uint64_t(i))));
  });
  Flow flow(StandardNormal<S>(kFlowDim), std::move(blocks), 7);
  Random(8).fill_normal(span_of(flow.params()), 0, 0.05);
  return flow;
}

template <class F>
double flow_flops(const F& flow) {
  double f = 0;
  for (Index i = 0; i < flow.transform().size(); ++i)
    f += mlp_flops(flow.transform().block(i).template layer<0>().conditioner());
  return f;
}

template <class MakeFlow>
void register_flow(const std::string& name, MakeFlow make) {
  using F = decltype(make());
  using S = typename F::Scalar;
  const std::string prefix = name + "/" + scalar_name<S>() + "/";

  // Batched: samples and log-densities from one forward pass (noise draws included).
  benchmark::RegisterBenchmark((prefix + "sample_and_log_prob").c_str(), [make](benchmark::State& st) {
    const F flow = make();
    const Index n = st.range(1);
    const Random rng(9);
    std::uint64_t offset = 0;
    for (auto _ : st) {
      auto out = flow.sample_and_log_prob(n, rng, offset);
      offset += std::uint64_t(n);
      benchmark::DoNotOptimize(out.first.data());
      benchmark::DoNotOptimize(out.second.data());
    }
    set_rates(st, n, double(n) * flow_flops(flow));
  })
      ->Args({kFlowDim, 1})
      ->Args({kFlowDim, 4096})
      ->ArgNames({"D", "batch"});

  // Batched density (inverse direction), for comparison with sampling.
  benchmark::RegisterBenchmark((prefix + "log_prob").c_str(), [make](benchmark::State& st) {
    const F flow = make();
    const Index n = st.range(1);
    const Batch<S> x = flow.sample(n, Random(10));
    for (auto _ : st) {
      auto lp = flow.log_prob(x);
      benchmark::DoNotOptimize(lp.data());
    }
    set_rates(st, n, double(n) * flow_flops(flow));
  })
      ->Args({kFlowDim, 1})
      ->Args({kFlowDim, 4096})
      ->ArgNames({"D", "batch"});

  // Per-point path: one sample per call, caller scratch, no heap allocation.
  benchmark::RegisterBenchmark((prefix + "sample_point").c_str(), [make](benchmark::State& st) {
    const F flow = make();
    const Random rng(9);
    std::vector<S> x(std::size_t(flow.dim())), scratch(std::size_t(flow.point_scratch_size()));
    std::uint64_t index = 0;
    for (auto _ : st) {
      S lp = flow.sample_point(rng, index++, x.data(), scratch.data());
      benchmark::DoNotOptimize(lp);
      benchmark::DoNotOptimize(x.data());
      benchmark::ClobberMemory();
    }
    set_rates(st, 1, flow_flops(flow));
  })
      ->Arg(kFlowDim)
      ->ArgName("D");

  benchmark::RegisterBenchmark((prefix + "forward_point").c_str(), [make](benchmark::State& st) {
    const F flow = make();
    const Batch<S> z = flow.sample_base(1, Random(9));
    std::vector<S> x(std::size_t(flow.dim())), scratch(std::size_t(flow.point_scratch_size()));
    for (auto _ : st) {
      S ld;
      flow.forward_point(z.data(), x.data(), ld, scratch.data());
      benchmark::DoNotOptimize(ld);
      benchmark::DoNotOptimize(x.data());
      benchmark::ClobberMemory();
    }
    set_rates(st, 1, flow_flops(flow));
  })
      ->Arg(kFlowDim)
      ->ArgName("D");
}

template <class S>
void register_flows() {
  register_flow("FlowAffine", [] { return make_flow<AffineCoupling<S>>(); });
  register_flow("FlowSpline", [] { return make_flow<SplineCoupling<S>>(kSplineBins); });
}

// ---- GEMM reference ---------------------------------------------------------------------------

/// The conditioner's product exactly as MLP::forward computes it: Z[n, out] = H[n, in] · Wᵀ with
/// row-major H and W[out, in] (Eigen, single thread). The practical ceiling for the couplings.
template <class S>
void register_gemm() {
  auto* b = benchmark::RegisterBenchmark((std::string("GEMM/") + scalar_name<S>()).c_str(), [](benchmark::State& st) {
    const Index in = st.range(0), out = st.range(1), n = st.range(2);
    Matrix<S> h(n, in), w(out, in), z(n, out);
    Random(1).fill_normal(span_of(h));
    Random(2).fill_normal(span_of(w));
    for (auto _ : st) {
      z.noalias() = h * w.transpose();
      benchmark::DoNotOptimize(z.data());
      benchmark::ClobberMemory();
    }
    set_rates(st, n, 2.0 * double(n * in * out));
  });
  // D = 66, half mask: in = 33; hidden 64 × 64; output 64 → 33·2 (affine) and 64 → 33·23 (spline, 8 bins).
  const long spline_out = 33 * (3 * long(kSplineBins) - 1);
  for (long n : {256L, 4096L})
    for (auto [in, out] : std::initializer_list<std::pair<long, long>>{{33, 64}, {64, 64}, {64, 66}, {64, spline_out}})
      b->Args({in, out, n});
  b->ArgNames({"in", "out", "batch"});
}

}  // namespace

int main(int argc, char** argv) {
  register_layers<float>();
  register_layers<double>();
  register_flows<float>();
  register_flows<double>();
  register_gemm<float>();
  register_gemm<double>();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
