// Per-layer and whole-flow throughput (Google Benchmark). See docs/benchmarks.md for figures.
//
// Layers: <Layer>/<scalar>/<pass>/D:<d>/batch:<n>, D ∈ {2, 66}, batch ∈ {1, 256, 4096}.
//   forward           y = f(x) with log-det (sampling direction)
//   inverse           x = f⁻¹(y) with log-det (density direction)
//   backward_forward  Layer::backward_forward alone (FORT training direction); the recording
//                     forward pass runs once before the timed loop
//   backward_inverse  Layer::backward_inverse alone (MLE direction), likewise
// Flows: Flow<Affine|Spline>/<scalar>/<op>/D:66[/batch:<n>], 8 × (coupling, random permutation).
// Training: TrainStep/<Affine|Spline>/<scalar>/D:66/batch:<n>, one FORT step (regression loss,
//   forward with cache, backward, AdamW) on the flows above, one thread, chunk_rows = batch.
// CNF targets: CNFTargets/<scalar>/D:66/N:<n>, cnf_transport with a VelocityMLP (width 128,
//   depth 2, SiLU) and RK4 with 20 steps (80 velocity evaluations per row).
// Reference: GEMM/<scalar>/in:<k>/out:<m>/batch:<n>, the conditioner's dense-layer products, and
//   GEMMStep/<scalar>/out:<m>/batch:<n>, the products of one conditioner's forward + backward
//   (Z = H·Wᵀ, dW += Gᵀ·H, dH = G·W per layer): the ceiling for a training step.
//
// items_per_second = samples/s. Coupling layers, flows and GEMM also report GFLOP/s, counting
// only the conditioner's dense products, 2·in·out flops per dense layer per sample:
//   F = 2·(in·w + (depth − 1)·w·w + w·out)   (depth ≥ 1; in = |passed|, out = |transformed|·k)
// forward and inverse cost F per sample; a backward pass costs 2F (dL/dW and dL/dh per layer); a
// training step 3F.
// Bias, activation, gather/scatter and the element transforms are not counted.
#include <benchmark/benchmark.h>

#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fort/fort.hpp"
#include "fort/targets.hpp"

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

// ---- training step and CNF targets -------------------------------------------------------------

/// One FORT step as the trainer does it (detail::BatchEvaluator + AdamW), one thread, one chunk.
template <class MakeFlow>
void register_train_step(const std::string& name, MakeFlow make) {
  using F = decltype(make());
  using S = typename F::Scalar;
  auto* b = benchmark::RegisterBenchmark((std::string("TrainStep/") + name + "/" + scalar_name<S>()).c_str(),
                                         [make](benchmark::State& st) {
    F flow = make();
    const Index n = st.range(1);
    const Batch<S> x0 = flow.sample_base(n, Random(12));
    Batch<S> x1(n, flow.dim());
    Random(13).fill_normal(span_of(x1));
    detail::BatchEvaluator evaluate(flow, 1, n, n);
    Adam<S> adam(flow.num_params(), AdamOptions::adamw());
    Vector<S> grad(flow.num_params());
    std::uint64_t step = 0;
    for (auto _ : st) {
      const LossTerms t = evaluate(flow.param_span(), x0, x1, LossOptions{}, step++, &grad);
      adam.step(flow.params(), grad);
      benchmark::DoNotOptimize(t.total);
    }
    set_rates(st, n, 3.0 * double(n) * flow_flops(flow));
  });
  for (long n : {256L, 1024L}) b->Args({kFlowDim, n});
  b->ArgNames({"D", "batch"});
}

template <class S>
void register_train_steps() {
  register_train_step("Affine", [] { return make_flow<AffineCoupling<S>>(); });
  register_train_step("Spline", [] { return make_flow<SplineCoupling<S>>(kSplineBins); });
}

/// CNF target generation: x1 = x0 + ∫ v dt with RK4 (20 steps), one thread.
template <class S>
void register_cnf_targets() {
  auto* b = benchmark::RegisterBenchmark((std::string("CNFTargets/") + scalar_name<S>()).c_str(),
                                         [](benchmark::State& st) {
    const Index d = st.range(0), n = st.range(1);
    const VelocityMLP<S> field(d);
    Vector<S> p(field.num_params());
    field.init_params(span_of(p), Random(1));
    const Batch<S> x0 = sample_standard_normal<S>(n, d, 2);
    const CnfOptions opt;  // RK4, 20 steps, batch 1024, 1 thread
    for (auto _ : st) {
      const Batch<S> x1 = cnf_transport(field.bind(p), x0, opt);
      benchmark::DoNotOptimize(x1.data());
    }
    // 80 velocity evaluations per row, each 2·(in·w + w·w + w·d) flops (in = d + 1, w = 128).
    const double w = 128, in = double(d + 1);
    set_rates(st, n, 80.0 * double(n) * 2.0 * (in * w + w * w + w * double(d)));
  });
  b->Args({kFlowDim, 4096});
  b->ArgNames({"D", "N"});
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

/// One conditioner's forward and backward products (width 64, depth 2, in = 33): the practical
/// ceiling for a training step (3F flops per sample).
template <class S>
void register_gemm_step() {
  auto* b = benchmark::RegisterBenchmark((std::string("GEMMStep/") + scalar_name<S>()).c_str(), [](benchmark::State& st) {
    const Index out = st.range(0), n = st.range(1), w = kConditioner.width, in = 33;
    const Index ins[3] = {in, w, w}, outs[3] = {w, w, out};
    std::vector<Matrix<S>> H, W, Z, G, dW, dH;
    for (int k = 0; k < 3; ++k) {
      H.emplace_back(Matrix<S>::Random(n, ins[k]));
      W.emplace_back(Matrix<S>::Random(outs[k], ins[k]));
      Z.emplace_back(n, outs[k]);
      G.emplace_back(Matrix<S>::Random(n, outs[k]));
      dW.emplace_back(Matrix<S>::Zero(outs[k], ins[k]));
      dH.emplace_back(n, ins[k]);
    }
    double flops = 0;
    for (int k = 0; k < 3; ++k) flops += 6.0 * double(n * ins[k] * outs[k]);
    for (auto _ : st) {
      for (int k = 0; k < 3; ++k) Z[k].noalias() = H[k] * W[k].transpose();
      for (int k = 2; k >= 0; --k) {
        dW[k].noalias() += G[k].transpose() * H[k];
        dH[k].noalias() = G[k] * W[k];
      }
      benchmark::DoNotOptimize(dH[0].data());
      benchmark::ClobberMemory();
    }
    set_rates(st, n, flops);
  });
  for (long n : {256L, 1024L})
    for (long out : {66L, 33L * (3 * long(kSplineBins) - 1)}) b->Args({out, n});
  b->ArgNames({"out", "batch"});
}

}  // namespace

int main(int argc, char** argv) {
  register_layers<float>();
  register_layers<double>();
  register_flows<float>();
  register_flows<double>();
  register_train_steps<float>();
  register_train_steps<double>();
  register_cnf_targets<float>();
  register_cnf_targets<double>();
  register_gemm<float>();
  register_gemm<double>();
  register_gemm_step<float>();
  register_gemm_step<double>();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
