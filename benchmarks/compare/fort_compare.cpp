// fort side of the comparison harness (benchmarks/compare/run.sh). Not part of the build or the
// tests; run.sh compiles it directly with the library's include path.
//
// The flows: D = 66, 8 × (coupling with alternating half mask, random permutation), conditioner
// MLP width 256, depth 2, ReLU; affine transform (log-scale bound 3) or rational-quadratic spline
// (8 bins, bound 3). float32. Parameters: the library's init, then N(0, 0.05²) noise so that the
// conditioners do not output zeros.
//
//   fort_compare export DIR                      weights + a test batch for the agreement check
//   fort_compare train  affine|spline B T REPS [CHUNK]   FORT step (MSE + backward + AdamW), T threads,
//                                                chunk_rows CHUNK (default B / T)
//   fort_compare sample affine|spline B T REPS   sample_and_log_prob(B) (T threads: row chunks)
//   fort_compare point  affine|spline REPS       Flow::sample_point, one sample per call
//   fort_compare ceiling affine|spline B REPS    Eigen GEMMs of the same shapes (1 thread)
//   fort_compare ot X0.npy X1.npy REPS           ot_assignment on points, and linear_assignment
//                                                on the precomputed cost matrix
// Every timing prints one JSON line: {"median_s":…, "times":[…], …}. Each repetition times a
// block of calls (at least ~0.2 s) and reports seconds per call.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "fort/fort.hpp"
#include "fort/io/npy.hpp"
#include "fort/targets.hpp"

using namespace fort;
using S = float;

namespace {

constexpr Index kDim = 66, kBlocks = 8, kBins = 8;
const MLPConfig kConditioner{256, 2, Activation::relu, false};

template <class Coupling, class... Args>
auto make_flow(Args... args) {
  using Transform = std::remove_cvref_t<decltype(std::declval<const Coupling&>().transform())>;
  using Block = Sequential<Coupling, Permutation<S>>;
  Repeat<Block> blocks(kBlocks, [&](Index i) {
    return Block(Coupling(Mask::half(kDim, i % 2 == 1), kConditioner, Transform(args...)),
                 Permutation<S>::random(kDim, Random(6).child(std::uint64_t(i))));
  });
  Flow flow(StandardNormal<S>(kDim), std::move(blocks), 7);
  Vector<S> noise(flow.num_params());
  Random(8).fill_normal(std::span<S>(noise.data(), std::size_t(noise.size())), 0, 0.05);
  flow.params() += noise;
  return flow;
}

auto affine_flow() { return make_flow<AffineCoupling<S>>(3.0); }
auto spline_flow() { return make_flow<SplineCoupling<S>>(kBins); }

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

/// Times `f` in blocks of calls: one calibration call, then `reps` blocks of ~0.2 s each.
template <class F>
void time_it(int reps, F&& f, const std::string& extra = "") {
  f();  // warm-up
  double t0 = now();
  f();
  const double one = std::max(now() - t0, 1e-7);
  const long calls = std::max(1L, long(0.2 / one));
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    t0 = now();
    for (long c = 0; c < calls; ++c) f();
    times.push_back((now() - t0) / double(calls));
  }
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  std::printf("{\"median_s\":%.9g,\"calls\":%ld,\"times\":[", sorted[sorted.size() / 2], calls);
  for (std::size_t i = 0; i < times.size(); ++i) std::printf("%s%.9g", i ? "," : "", times[i]);
  std::printf("]%s}\n", extra.c_str());
}

// ---- export for the agreement check ------------------------------------------------------------

template <class F>
void export_flow(const F& flow, const std::filesystem::path& dir, const std::string& name) {
  std::filesystem::create_directories(dir);
  std::ofstream js(dir / (name + ".json"));
  js << "{\"dim\":" << kDim << ",\"blocks\":[";
  Index offset = 0;
  for (Index b = 0; b < flow.transform().size(); ++b) {
    const auto& blk = flow.transform().block(b);
    const auto& cp = blk.template layer<0>();
    const auto& perm = blk.template layer<1>();
    // Permutation as a gather: y[:, i] = x[:, src[i]] (found by pushing 0..D-1 through it).
    Batch<S> iota(1, kDim), out(1, kDim);
    for (Index j = 0; j < kDim; ++j) iota(0, j) = S(j);
    Vector<S> ld = Vector<S>::Zero(1);
    perm.forward(Params<S>(), iota, out, ld);
    auto list = [&](auto&& v) {
      std::string s = "[";
      for (std::size_t j = 0; j < v.size(); ++j) s += (j ? "," : "") + std::to_string(Index(v[j]));
      return s + "]";
    };
    std::vector<Index> src(kDim);
    for (Index j = 0; j < kDim; ++j) src[std::size_t(j)] = Index(out(0, j));
    js << (b ? "," : "") << "{\"passed\":" << list(cp.mask().passed()) << ",\"transformed\":"
       << list(cp.mask().transformed()) << ",\"perm_src\":" << list(src) << ",\"offset\":" << offset
       << ",\"num_params\":" << cp.num_params() << "}";
    offset += blk.num_params();
  }
  js << "],\"num_params\":" << flow.num_params() << "}\n";
  write_npy(dir / (name + "_params.npy"), flow.params());
  const Batch<S> z = flow.sample_base(16, Random(11));
  auto [x, ld] = flow.forward(z);
  write_npy(dir / (name + "_z.npy"), z);
  write_npy(dir / (name + "_x.npy"), x);
  write_npy(dir / (name + "_ld.npy"), ld);
  // The per-point path must agree with the batched one.
  std::vector<S> xp(kDim), scratch(std::size_t(flow.point_scratch_size()));
  double worst = 0;
  for (Index i = 0; i < z.rows(); ++i) {
    S l;
    flow.forward_point(z.row(i).data(), xp.data(), l, scratch.data());
    for (Index j = 0; j < kDim; ++j) worst = std::max(worst, double(std::abs(xp[j] - x(i, j))));
    worst = std::max(worst, double(std::abs(l - ld[i])));
  }
  std::printf("{\"flow\":\"%s\",\"point_vs_batch_max_abs\":%.3g}\n", name.c_str(), worst);
}

// ---- timings ----------------------------------------------------------------------------------

template <class F>
void bench_train(const F& flow0, Index batch, unsigned threads, int reps, Index chunk) {
  F flow = flow0;
  const Batch<S> x0 = flow.sample_base(batch, Random(12));
  Batch<S> x1(batch, kDim);
  Random(13).fill_normal(std::span<S>(x1.data(), std::size_t(x1.size())));
  LossOptions loss;  // plain regression: (1/N) Σ ‖f(x0) − x1‖²
  // TrainOptions::chunk_rows: one chunk per thread unless given (fewer, larger GEMMs; the
  // trainer's default of 64 rows costs a gradient-buffer pass per chunk and smaller products).
  if (chunk <= 0) chunk = (batch + Index(threads) - 1) / Index(threads);
  detail::BatchEvaluator evaluate(flow, threads, chunk, batch);
  Adam<S> adam(flow.num_params(), AdamOptions::adamw());
  Vector<S> grad(flow.num_params());
  std::uint64_t step = 0;
  double last = 0;
  time_it(reps, [&] {
    const LossTerms t = evaluate(flow.param_span(), x0, x1, loss, step++, &grad);
    adam.step(flow.params(), grad);
    last = t.regression;
  });
  (void)last;
}

template <class F>
void bench_sample(const F& flow, Index batch, unsigned threads, int reps) {
  const Random rng(9);
  std::uint64_t offset = 0;
  if (threads <= 1) {
    time_it(reps, [&] {
      auto out = flow.sample_and_log_prob(batch, rng, offset);
      offset += std::uint64_t(batch);
      if (out.second.size() != batch) std::abort();
    });
    return;
  }
  // Rows split into one contiguous chunk per thread (the counter-based RNG makes this exact).
  detail::WorkerPool pool(threads);
  Batch<S> x(batch, kDim);
  Vector<S> lp(batch);
  time_it(reps, [&] {
    pool.run([&](unsigned w) {
      const Index per = (batch + threads - 1) / threads, r0 = std::min<Index>(batch, w * per),
                  rows = std::min<Index>(batch, r0 + per) - r0;
      if (rows <= 0) return;
      auto out = flow.sample_and_log_prob(rows, rng, offset + std::uint64_t(r0));
      x.middleRows(r0, rows) = out.first;
      lp.segment(r0, rows) = out.second;
    });
    offset += std::uint64_t(batch);
  });
}

template <class F>
void bench_point(const F& flow, int reps) {
  const Random rng(9);
  std::vector<S> x(kDim), scratch(std::size_t(flow.point_scratch_size()));
  std::uint64_t index = 0;
  volatile S sink = 0;
  time_it(reps, [&] { sink = flow.sample_point(rng, index++, x.data(), scratch.data()); });
}

/// The dense products of one training step / one forward pass, as Eigen computes them alone.
template <class F>
void bench_ceiling(const F& flow, Index batch, int reps) {
  const auto& mlp = flow.transform().block(0).template layer<0>().conditioner();
  const Index in = mlp.in(), w = mlp.config().width, out = mlp.out();
  const Index ins[3] = {in, w, w}, outs[3] = {w, w, out};
  // Every block has its own matrices, as in the flow: the weights (2.9 MB in float) do not fit
  // in L2, which is what bounds batch 1.
  std::vector<Matrix<S>> H, W, Z, G, dW;
  for (Index b = 0; b < kBlocks; ++b)
    for (int k = 0; k < 3; ++k) {
      H.emplace_back(Matrix<S>::Random(batch, ins[k]));
      W.emplace_back(Matrix<S>::Random(outs[k], ins[k]));
      Z.emplace_back(batch, outs[k]);
      G.emplace_back(Matrix<S>::Random(batch, outs[k]));
      dW.emplace_back(Matrix<S>::Zero(outs[k], ins[k]));
    }
  double fwd_flops = 0;
  for (int k = 0; k < 3; ++k) fwd_flops += 2.0 * double(batch * ins[k] * outs[k]);
  fwd_flops *= double(kBlocks);
  const std::string extra_f = ",\"flops\":" + std::to_string(fwd_flops);
  std::printf("{\"what\":\"forward\"}\n");
  time_it(reps, [&] {
    for (Index b = 0; b < kBlocks; ++b)
      for (int k = 0; k < 3; ++k) {
        const std::size_t i = std::size_t(3 * b + k);
        Z[i].noalias() = H[i] * W[i].transpose();
      }
  }, extra_f);
  const std::string extra_t = ",\"flops\":" + std::to_string(3 * fwd_flops);
  std::printf("{\"what\":\"train\"}\n");
  time_it(reps, [&] {
    for (Index b = 0; b < kBlocks; ++b)
      for (int k = 0; k < 3; ++k) {
        const std::size_t i = std::size_t(3 * b + k);
        Z[i].noalias() = H[i] * W[i].transpose();
      }
    for (Index b = kBlocks - 1; b >= 0; --b)
      for (int k = 2; k >= 0; --k) {
        const std::size_t i = std::size_t(3 * b + k);
        dW[i].noalias() += G[i].transpose() * H[i];
        H[i].noalias() = G[i] * W[i];
      }
  }, extra_t);
}

void bench_ot(const std::string& p0, const std::string& p1, int reps) {
  const Matrix<double> x0 = read_npy<double>(p0), x1 = read_npy<double>(p1);
  const Index n = x0.rows();
  double cost_points = 0, cost_matrix = 0;
  std::vector<double> tp, tm;
  Matrix<double> c(n, n);
  for (int r = 0; r < reps; ++r) {
    double t0 = now();
    const AssignmentResult a = ot_assignment(x0, x1);
    tp.push_back(now() - t0);
    cost_points = a.total_cost;
    // Same cost matrix as POT gets (||a||² + ||b||² − 2ab, clipped at 0 as ot.dist does not; the
    // difference is rounding only). Building it is not timed, as for ot.emd.
    const Eigen::VectorXd n0 = x0.rowwise().squaredNorm(), n1 = x1.rowwise().squaredNorm();
    c.noalias() = -2.0 * x0 * x1.transpose();
    c.colwise() += n0;
    c.rowwise() += n1.transpose();
    t0 = now();
    const AssignmentResult b = linear_assignment(n, [&](Index i, Index j) { return c(i, j); });
    tm.push_back(now() - t0);
    cost_matrix = b.total_cost;
  }
  std::sort(tp.begin(), tp.end());
  std::sort(tm.begin(), tm.end());
  std::printf("{\"points_median_s\":%.9g,\"matrix_median_s\":%.9g,\"cost_points\":%.17g,\"cost_matrix\":%.17g}\n",
              tp[tp.size() / 2], tm[tm.size() / 2], cost_points, cost_matrix);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> a(argv + 1, argv + argc);
  auto arg = [&](std::size_t i) { return std::stol(a.at(i)); };
  try {
    if (a.empty()) throw std::runtime_error("usage: see the file comment");
    const std::string cmd = a[0];
    if (cmd == "export") {
      export_flow(affine_flow(), a.at(1), "affine");
      export_flow(spline_flow(), a.at(1), "spline");
    } else if (cmd == "ot") {
      bench_ot(a.at(1), a.at(2), int(arg(3)));
    } else {
      const bool spline = a.at(1) == "spline";
      auto dispatch = [&](const auto& flow) {
        if (cmd == "train") bench_train(flow, arg(2), unsigned(arg(3)), int(arg(4)), a.size() > 5 ? arg(5) : 0);
        else if (cmd == "sample") bench_sample(flow, arg(2), unsigned(arg(3)), int(arg(4)));
        else if (cmd == "point") bench_point(flow, int(arg(2)));
        else if (cmd == "ceiling") bench_ceiling(flow, arg(2), int(arg(3)));
        else throw std::runtime_error("unknown command " + cmd);
      };
      if (spline) dispatch(spline_flow());
      else dispatch(affine_flow());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fort_compare: %s\n", e.what());
    return 1;
  }
  return 0;
}
