// OT targets: wall time of the exact assignment (ot_assignment) at N ∈ {1000, 5000, 10000},
// D ∈ {2, 66}, with a minibatch and a Sinkhorn reference. x0 ~ N(0, I); x1 is a two-mode
// Gaussian mixture for D = 2 and a random anisotropic Gaussian (scales 0.1 … 3, random
// rotation) for D = 66. Names: OT/<method>/D:<D>/N:<N>. The large solves run once
// (Iterations(1)): a single exact solve at N = 10000 takes seconds.
// Counters: rows = cost rows evaluated by the solver (N per full pass over the cost matrix),
// cost = Σ_i ‖x0_i − x1_σ(i)‖² / N.
#include <benchmark/benchmark.h>

#include <Eigen/QR>
#include <cmath>
#include <span>
#include <string>

#include "fort/targets.hpp"

using namespace fort;

namespace {

Batch<double> prior(Index n, Index d) {
  Batch<double> x(n, d);
  Random(1).fill_normal(std::span<double>(x.data(), std::size_t(x.size())));
  return x;
}

Batch<double> data(Index n, Index d) {
  const Random rng(2);
  Batch<double> x(n, d);
  if (d == 2) {  // 30 % in a narrow mode at (−3, 0), 70 % in a tilted mode at (3, 0)
    for (Index i = 0; i < n; ++i) {
      const double a = rng.normal(std::uint64_t(3 * i)), b = rng.normal(std::uint64_t(3 * i + 1));
      if (rng.uniform(std::uint64_t(3 * i + 2)) < 0.3) {
        x(i, 0) = -3.0 + 0.4 * a, x(i, 1) = 1.5 * b;
      } else {
        x(i, 0) = 3.0 + a, x(i, 1) = 0.3 * a + 0.5 * b;
      }
    }
    return x;
  }
  Matrix<double> q(d, d);
  Random(3).fill_normal(std::span<double>(q.data(), std::size_t(q.size())));
  const Matrix<double> rot = Eigen::HouseholderQR<Matrix<double>>(q).householderQ();
  Eigen::VectorXd s(d);
  for (Index k = 0; k < d; ++k) s[k] = 0.1 * std::pow(30.0, double(k) / double(d - 1));
  rng.fill_normal(std::span<double>(x.data(), std::size_t(x.size())));
  return (x * s.asDiagonal()) * rot;
}

void run(benchmark::State& st, int method) {
  const Index d = st.range(0), n = st.range(1);
  const Batch<double> x0 = prior(n, d), x1 = data(n, d);
  double cost = 0.0, rows = 0.0, iterations = 0.0;
  for (auto _ : st) {
    if (method == 0) {
      const AssignmentResult r = ot_assignment(x0, x1);
      cost = r.total_cost / double(n), rows = double(r.rows_evaluated);
    } else if (method == 1) {
      const AssignmentResult r = minibatch_ot_assignment(x0, x1, 256, Random(4));
      cost = r.total_cost / double(n), rows = double(r.rows_evaluated);
    } else {
      SinkhornOptions o;
      o.epsilon = 0.01;  // relative to the mean cost
      o.tolerance = 1e-4;
      const SinkhornResult r = sinkhorn(x0, x1, o);
      cost = r.transport_cost, iterations = double(r.iterations);
    }
    benchmark::ClobberMemory();
  }
  st.counters["cost"] = cost;
  if (method < 2) st.counters["rows"] = rows;
  if (method == 2) st.counters["iterations"] = iterations;
}

void add(const char* name, int method, long d, long n, int iterations) {
  benchmark::RegisterBenchmark(name, [method](benchmark::State& st) { run(st, method); })
      ->Args({d, n})
      ->ArgNames({"D", "N"})
      ->Iterations(iterations)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  for (long d : {2L, 66L}) {
    add("OT/exact", 0, d, 1000, 3);
    add("OT/exact", 0, d, 5000, 1);
    add("OT/exact", 0, d, 10000, 1);
    add("OT/minibatch256", 1, d, 10000, 1);
    add("OT/sinkhorn", 2, d, 1000, 1);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
