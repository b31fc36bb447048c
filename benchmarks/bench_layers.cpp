// Per-layer throughput: forward, inverse and backward (of forward) at D ∈ {2, 66},
// batch ∈ {1, 256, 4096}, float and double. Benchmark names: <Layer>/<scalar>/<pass>/<D>/<batch>.
// Items processed = samples, so Google Benchmark reports samples/s.
#include <benchmark/benchmark.h>

#include <functional>
#include <string>

#include "fort/fort.hpp"

using namespace fort;

namespace {

const MLPConfig kConditioner{128, 2, Activation::relu, false};

template <class Layer>
void run_pass(benchmark::State& st, const Layer& layer, int pass) {
  using S = typename Layer::Scalar;
  const Index n = st.range(1), d = layer.dim();
  std::vector<S> p(std::size_t(layer.num_params())), g(p.size());
  Random(1).fill_normal(std::span<S>(p), 0, 0.05);
  Batch<S> x(n, d), y(n, d), gx(n, d), gy(n, d);
  Random(2).fill_normal(std::span<S>(x.data(), std::size_t(x.size())));
  Random(3).fill_normal(std::span<S>(gy.data(), std::size_t(gy.size())));
  Vector<S> ld = Vector<S>::Zero(n), gld = Vector<S>::Ones(n);
  typename Layer::Cache cache;
  layer.forward(Params<S>(p), x, y, ld, &cache);
  for (auto _ : st) {
    if (pass == 0) {
      layer.forward(Params<S>(p), x, y, ld);
    } else if (pass == 1) {
      layer.inverse(Params<S>(p), y, x, ld);
    } else {
      layer.forward(Params<S>(p), x, y, ld, &cache);
      layer.backward_forward(Params<S>(p), cache, gy, gld, gx, Grads<S>(g));
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(gx.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * n);
}

template <class S, class Make>
void register_layer(const std::string& name, Make make) {
  const char* scalar = std::is_same_v<S, float> ? "float" : "double";
  const char* passes[] = {"forward", "inverse", "forward+backward"};
  for (int pass = 0; pass < 3; ++pass) {
    auto* b = benchmark::RegisterBenchmark((name + "/" + scalar + "/" + passes[pass]).c_str(),
                                           [make, pass](benchmark::State& st) { run_pass(st, make(st.range(0)), pass); });
    for (long d : {2L, 66L})
      for (long n : {1L, 256L, 4096L}) b->Args({d, n});
    b->ArgNames({"D", "batch"});
  }
}

template <class S>
void register_all() {
  register_layer<S>("AffineCoupling", [](Index d) { return AffineCoupling<S>(Mask::half(d), kConditioner); });
  register_layer<S>("AdditiveCoupling", [](Index d) { return AdditiveCoupling<S>(Mask::half(d), kConditioner); });
}

}  // namespace

int main(int argc, char** argv) {
  register_all<float>();
  register_all<double>();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
