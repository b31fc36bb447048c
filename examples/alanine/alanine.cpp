// `fort_alanine`: the alanine-dipeptide Boltzmann generator's preprocessing, evaluation and
// embedding, against OpenMM's C++ API. Training is done by the `fort` command on the output of
// `frame` (see scripts/main_job.sh and docs/alanine.md).
//
//   fort_alanine frame --in train_therm_xyz.npy --out train_q.npy
//   fort_alanine eval  --model m.safetensors --system system.xml --test-xyz test_therm_xyz.npy
//                      --test-energy test_therm_energy.npy --n 100000 --label fort-ot
//   fort_alanine mh    --model m.safetensors --system system.xml --init-xyz test_therm_xyz.npy
//
// Any error prints one line ("fort <command>: <what>") and exits with status 1.
#include <fort/fort.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "../cli/args.hpp"
#include "../cli/model_io.hpp"
#include "molecule.hpp"
#include "openmm_energy.hpp"

namespace {

using namespace fort_cli;
using alanine::kCart;
using alanine::kFrame;
using fort::Index;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

unsigned thread_count(const Args& a) {
  const long long t = a.integer("threads", 0, 256);
  return t > 0 ? unsigned(t) : std::max(1u, std::thread::hardware_concurrency());
}

/// Runs f(begin, end, thread) over [0, n) in contiguous chunks, one per thread.
template <class F>
void parallel_chunks(Index n, unsigned threads, F&& f) {
  threads = unsigned(std::max<Index>(1, std::min<Index>(Index(threads), n)));
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(threads);
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      try {
        f(n * Index(t) / Index(threads), n * Index(t + 1) / Index(threads), t);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

/// Reads an [N, cols] .npy with a clear message for a wrong shape or non-finite entries.
fort::Matrix<double> read_checked(const Args& a, const std::string& key, Index cols) {
  const std::string path = a.str(key);
  fort::Matrix<double> x = fort::read_npy<double>(path);
  if (x.cols() != cols)
    a.fail("--" + key + " '" + path + "' has shape [" + std::to_string(x.rows()) + ", " + std::to_string(x.cols()) +
           "]; expected [N, " + std::to_string(cols) + "]" +
           (cols == kCart ? " (22 atoms x 3 nm, from md.py)" : ""));
  if (x.rows() < 1) a.fail("--" + key + " '" + path + "' has no rows");
  if (!x.allFinite()) a.fail("--" + key + " '" + path + "' has non-finite entries");
  return x;
}

std::vector<double> to_std(const fort::Vector<double>& v) { return std::vector<double>(v.data(), v.data() + v.size()); }

void declare_coords(Args& a) {
  a.value("coords", "internal", "chart: internal (bond lengths, angles, dihedrals) or frame (standard-frame Cartesian)")
      .value("offsets", "", "internal chart: dihedral offsets .npy [19] (written by `frame --fit-offsets`)");
}

/// The chart named by --coords, with its dihedral offsets read from --offsets (internal chart).
alanine::Coordinates coords_from(const Args& a) {
  alanine::Coordinates c;
  c.chart = a.choice("coords", {"internal", "frame"}) == "internal" ? alanine::Chart::internal : alanine::Chart::frame;
  if (c.chart == alanine::Chart::internal) {
    if (a.str("offsets").empty()) a.fail("--coords internal needs --offsets (from `fort_alanine frame --fit-offsets`)");
    const fort::Matrix<double> off = fort::read_npy<double>(a.str("offsets"));
    if (off.size() != 19 || !off.allFinite())
      a.fail("--offsets '" + a.str("offsets") + "' has " + std::to_string(off.size()) +
             " entries; expected 19 finite dihedral offsets");
    for (int n = 0; n < 19; ++n) c.offset[std::size_t(n)] = off(n);
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
int cmd_frame(int argc, char** argv) {
  Args a("frame", "Cartesian frames [N, 66] (nm) -> 60 chart coordinates [N, 60] (see molecule.hpp).");
  a.value("in", "", "Cartesian .npy [N, 66]", true).value("out", "", "output .npy [N, 60]", true);
  declare_coords(a);
  a.flag("fit-offsets", "internal chart: fit the dihedral offsets on --in and write them to --offsets");
  if (!a.parse(argc, argv, 2)) return 0;
  const fort::Matrix<double> x = read_checked(a, "in", kCart);
  if (a.flag_set("fit-offsets")) {
    if (a.str("offsets").empty()) a.fail("--fit-offsets needs --offsets (the file to write)");
    const auto off = alanine::fit_dihedral_offsets(x);
    fort::write_npy(a.str("offsets"), fort::Vector<double>(Eigen::Map<const Eigen::VectorXd>(off.data(), 19)));
  }
  const alanine::Coordinates coords = coords_from(a);
  fort::Matrix<double> q(x.rows(), kFrame);
  std::vector<double> row(kCart), qr(kFrame), back(kCart), q2(kFrame);
  double max_q_err = 0, max_d_err = 0;
  for (Index i = 0; i < x.rows(); ++i) {
    for (Index j = 0; j < kCart; ++j) row[std::size_t(j)] = x(i, j);
    if (!coords.to_q(row.data(), qr.data())) a.fail("frame " + std::to_string(i) + " is degenerate (coinciding atoms)");
    for (Index j = 0; j < kFrame; ++j) q(i, j) = qr[std::size_t(j)];
    // Round trip q -> Cartesian -> q, and the rigid-motion invariant check on distances.
    coords.from_q(qr.data(), back.data());
    coords.to_q(back.data(), q2.data());
    for (Index j = 0; j < kFrame; ++j)
      max_q_err = std::max(max_q_err, std::abs(alanine::wrap_pi(q2[std::size_t(j)] - qr[std::size_t(j)])));
    for (int p = 0; p < 22; ++p)
      for (int r = p + 1; r < 22; ++r)
        max_d_err = std::max(max_d_err, std::abs(alanine::norm(alanine::atom(row.data(), p) - alanine::atom(row.data(), r)) -
                                                 alanine::norm(alanine::atom(back.data(), p) - alanine::atom(back.data(), r))));
  }
  if (max_d_err > 1e-8) a.fail("internal error: chart round trip changes distances by " + std::to_string(max_d_err) + " nm");
  fort::write_npy(a.str("out"), q);
  std::cerr << "wrote " << q.rows() << " x " << kFrame << " coordinates to " << a.str("out") << " (round trip: max |dq| "
            << max_q_err << ", max |d distance| " << max_d_err << " nm)\n";
  return 0;
}

// ---------------------------------------------------------------------------------------------
struct PhiPsi {
  fort::Matrix<double> angles;  // [n, 2]
};

PhiPsi phi_psi_of_cartesian(const fort::Matrix<double>& x) {
  PhiPsi r{fort::Matrix<double>(x.rows(), 2)};
  std::vector<double> row(kCart);
  for (Index i = 0; i < x.rows(); ++i) {
    for (Index j = 0; j < kCart; ++j) row[std::size_t(j)] = x(i, j);
    r.angles(i, 0) = alanine::dihedral(row.data(), alanine::kPhi);
    r.angles(i, 1) = alanine::dihedral(row.data(), alanine::kPsi);
  }
  return r;
}

int cmd_eval(int argc, char** argv) {
  Args a("eval",
         "Evaluate a flow trained on standard-frame coordinates against OpenMM energies: draws --n samples with\n"
         "log-densities (timed), computes u(x) with the constraints=None system, log w = -u/kT + log(Bx^2 Cy) - log p,\n"
         "ESS, E-W1/E-W2 (raw and reweighted) against held-out MD energies, T-W2 on the (phi, psi) torus and the\n"
         "held-out NLL. Prints one key=value line.");
  a.value("model", "", "model file written by `fort train` on `frame` output", true)
      .value("system", "", "OpenMM System XML from md.py (constraints=None)", true)
      .value("test-xyz", "", "held-out Cartesian frames [N, 66]", true)
      .value("test-energy", "", "their energies [N] (kJ/mol)", true)
      .value("n", "100000", "number of model samples")
      .value("seed", "7", "sampling seed")
      .value("tw2-n", "2000", "points per side for the exact torus OT (O(n^3))")
      .value("label", "model", "name printed at the start of the line")
      .value("out-prefix", "", "write <prefix>_phipsi.npy, _logw.npy, _energy.npy (for the plot)")
      .value("threads", "0", "threads (0 = all cores); results do not depend on it");
  declare_coords(a);
  if (!a.parse(argc, argv, 2)) return 0;
  const alanine::Coordinates coords = coords_from(a);
  const Index n = a.integer("n", 10, 1ll << 30);
  const unsigned threads = thread_count(a);
  const fort::Matrix<double> test_xyz = read_checked(a, "test-xyz", kCart);
  const fort::Matrix<double> test_e = read_checked(a, "test-energy", 1);
  if (test_e.rows() != test_xyz.rows())
    a.fail("--test-energy has " + std::to_string(test_e.rows()) + " values for " + std::to_string(test_xyz.rows()) +
           " frames");
  alanine::load_openmm_plugins();
  const auto system = alanine::read_system(a.str("system"));
  LoadedModel m = read_model_description(a.str("model"));
  if (m.arch.dim != kFrame)
    a.fail("--model has dimension " + std::to_string(m.arch.dim) + "; expected " + std::to_string(kFrame) +
           " (a flow trained on `fort_alanine frame` output)");

  return with_flow(m.arch, [&](auto& flow) {
    using S = typename std::decay_t<decltype(flow)>::Scalar;
    load_flow(a.str("model"), flow);
    const fort::Random rng(std::uint64_t(a.integer("seed", 0, 1ll << 62)));
    const double corr = m.stdz.log_prob_correction();

    // 1. Samples with log-densities, in data units (the timed part: what a user pays for 1e5).
    fort::Matrix<S> q(n, kFrame);
    fort::Vector<double> log_p(n);
    const auto t0 = Clock::now();
    parallel_chunks(n, threads, [&](Index b, Index e, unsigned) {
      auto [u, lp] = flow.sample_and_log_prob(e - b, rng, std::uint64_t(b));
      q.middleRows(b, e - b) = m.stdz.to_data(fort::Matrix<S>(u));
      for (Index i = 0; i < e - b; ++i) log_p[b + i] = double(lp[i]) + corr;
    });
    const double sample_s = seconds_since(t0);

    // 2. Energies and log-weights.
    fort::Vector<double> energy(n), log_w(n);
    fort::Matrix<double> xyz(n, kCart);
    std::atomic<Index> out_of_chart{0};
    const auto t1 = Clock::now();
    parallel_chunks(n, threads, [&](Index b, Index e, unsigned) {
      alanine::EnergyEvaluator ev(*system);
      std::vector<double> row(kCart);
      std::vector<S> qr(kFrame);
      for (Index i = b; i < e; ++i) {
        for (Index j = 0; j < kFrame; ++j) qr[std::size_t(j)] = q(i, j);
        coords.from_q(qr.data(), row.data());
        for (Index j = 0; j < kCart; ++j) xyz(i, j) = row[std::size_t(j)];
        const double lj = coords.log_jacobian(qr.data());
        if (!std::isfinite(lj)) ++out_of_chart;
        energy[i] = ev(row.data());
        // Outside the chart the target density is 0 (log w = −inf, a legal zero weight). A
        // non-finite energy or log-density gives NaN/inf: counted as invalid by importance_weights.
        log_w[i] = std::isfinite(lj) ? -energy[i] / alanine::kT + lj - log_p[i]
                                     : -std::numeric_limits<double>::infinity();
        if (std::isfinite(lj) && energy[i] == std::numeric_limits<double>::infinity())
          log_w[i] = -std::numeric_limits<double>::infinity();
      }
    });
    const double energy_s = seconds_since(t1);
    Index nonfinite_energy = 0, nonfinite_logp = 0;
    for (Index i = 0; i < n; ++i) {
      nonfinite_energy += !std::isfinite(energy[i]);
      nonfinite_logp += !std::isfinite(log_p[i]);
    }
    const fort::ImportanceWeights iw = fort::importance_weights(to_std(log_w));

    // 3. Energy Wasserstein distances over samples with finite energy (the others are counted).
    std::vector<double> e_model, w_model;
    for (Index i = 0; i < n; ++i)
      if (std::isfinite(energy[i])) {
        e_model.push_back(energy[i]);
        w_model.push_back(iw.normalized[std::size_t(i)]);
      }
    const std::vector<double> e_ref = to_std(test_e.col(0));
    const double nan = std::numeric_limits<double>::quiet_NaN();
    // Clipped raw E-W1: model energies above the highest held-out MD energy are set to it (a
    // histogram over the MD range with an overflow bin). The exact E-W1 is also printed; a few
    // clashing samples (u ~ 1e10 kJ/mol) dominate it.
    const double e_max = *std::max_element(e_ref.begin(), e_ref.end());
    Index high_e = 0;
    std::vector<double> e_clip = e_model;
    for (double& v : e_clip)
      if (v > e_max) {
        v = e_max;
        ++high_e;
      }
    double ew1 = nan, ew2 = nan, ew1_rw = nan, ew2_rw = nan, ew1_clip = nan;
    if (!e_model.empty()) {
      ew1_clip = fort::wasserstein_1d(e_clip, e_ref, 1);
      ew1 = fort::wasserstein_1d(e_model, e_ref, 1);
      ew2 = fort::wasserstein_1d(e_model, e_ref, 2);
      if (iw.ess > 0) {
        ew1_rw = fort::wasserstein_1d(e_model, w_model, e_ref, {}, 1);
        ew2_rw = fort::wasserstein_1d(e_model, w_model, e_ref, {}, 2);
      }
    }

    // 4. T-W2 on (phi, psi): m raw samples (the first m) and m reweighted draws (systematic
    //    resampling of all n by their weights) against the first m held-out frames.
    const PhiPsi model_pp = phi_psi_of_cartesian(xyz), ref_pp = phi_psi_of_cartesian(test_xyz);
    const Index mtw = std::min<Index>({a.integer("tw2-n", 10, 20000), n, test_xyz.rows()});
    const double tw2 = fort::torus_wasserstein2(model_pp.angles.topRows(mtw), ref_pp.angles.topRows(mtw));
    double tw2_rw = nan;
    if (iw.ess > 0) {
      const auto idx = fort::systematic_resample(iw.normalized, mtw, rng.child(99).uniform(0));
      fort::Matrix<double> rs(mtw, 2);
      for (Index k = 0; k < mtw; ++k) rs.row(k) = model_pp.angles.row(idx[std::size_t(k)]);
      tw2_rw = fort::torus_wasserstein2(rs, ref_pp.angles.topRows(mtw));
    }

    // 5. Held-out NLL of the standard-frame coordinates q (nats; q in nm).
    fort::Matrix<double> test_q(test_xyz.rows(), kFrame);
    {
      std::vector<double> row(kCart), qr(kFrame);
      for (Index i = 0; i < test_xyz.rows(); ++i) {
        for (Index j = 0; j < kCart; ++j) row[std::size_t(j)] = test_xyz(i, j);
        if (!coords.to_q(row.data(), qr.data())) a.fail("held-out frame " + std::to_string(i) + " is degenerate");
        for (Index j = 0; j < kFrame; ++j) test_q(i, j) = qr[std::size_t(j)];
      }
    }
    fort::Vector<double> test_lp(test_q.rows());
    parallel_chunks(test_q.rows(), threads, [&](Index b, Index e, unsigned) {
      const fort::Matrix<S> u = m.stdz.to_standard(test_q.middleRows(b, e - b).eval()).template cast<S>();
      const auto lp = flow.log_prob(u);
      for (Index i = 0; i < e - b; ++i) test_lp[b + i] = double(lp[i]) + corr;
    });
    const fort::NllSummary nll = fort::summarize_nll(test_lp);

    double mean_e = 0;
    for (double v : e_model) mean_e += v / double(e_model.size());
    double mean_ref = 0;
    for (double v : e_ref) mean_ref += v / double(e_ref.size());
    std::printf(
        "%s: n=%lld ess=%.5f ess_n=%.1f ew1=%.4g ew2=%.4g ew1_clip=%.3f high_e=%.4f ew1_rw=%.3f ew2_rw=%.3f tw2=%.4f tw2_rw=%.4f "
        "nll=%.3f nll_median=%.3f nll_nonfinite=%lld nonfinite_energy=%lld nonfinite_logp=%lld out_of_chart=%lld "
        "invalid_w=%lld mean_e=%.2f mean_e_md=%.2f sample_s=%.3f energy_s=%.3f\n",
        a.str("label").c_str(), (long long)n, iw.ess_fraction, iw.ess, ew1, ew2, ew1_clip,
        double(high_e) / double(n), ew1_rw, ew2_rw, tw2, tw2_rw,
        nll.mean, nll.median, (long long)nll.non_finite, (long long)nonfinite_energy, (long long)nonfinite_logp,
        (long long)out_of_chart.load(), (long long)iw.invalid, mean_e, mean_ref, sample_s, energy_s);

    if (const std::string pre = a.str("out-prefix"); !pre.empty()) {
      fort::write_npy(pre + "_phipsi.npy", model_pp.angles);
      fort::write_npy(pre + "_logw.npy", log_w);
      fort::write_npy(pre + "_energy.npy", energy);
    }
    return 0;
  });
}

// ---------------------------------------------------------------------------------------------
int cmd_mh(int argc, char** argv) {
  Args a("mh",
         "Embedding example: the flow proposes independent Metropolis-Hastings moves, interleaved with Langevin MD\n"
         "(1 fs, 300 K, the constraints=None system, so both moves leave exp(-u/kT) invariant), compared with\n"
         "plain MD run for the same wall time. Prints the acceptance rate and C7eq/C5 <-> alphaR crossings.");
  a.value("model", "", "model file written by `fort train` on `frame` output", true)
      .value("system", "", "OpenMM System XML from md.py (constraints=None)", true)
      .value("init-xyz", "", "Cartesian frames [N, 66]; the first is the start", true)
      .value("cycles", "2000", "cycles of (--md-steps MD steps, then --proposals flow proposals)")
      .value("md-steps", "100", "Langevin steps (1 fs) per cycle")
      .value("proposals", "1", "independent flow proposals per cycle")
      .value("seed", "11", "seed of the proposals, the acceptance draws and the Langevin noise");
  declare_coords(a);
  if (!a.parse(argc, argv, 2)) return 0;
  const alanine::Coordinates coords = coords_from(a);
  const fort::Matrix<double> init = read_checked(a, "init-xyz", kCart);
  alanine::load_openmm_plugins();
  const auto system = alanine::read_system(a.str("system"));
  LoadedModel m = read_model_description(a.str("model"));
  if (m.arch.dim != kFrame) a.fail("--model has dimension " + std::to_string(m.arch.dim) + "; expected 60");
  const Index cycles = a.integer("cycles", 1, 1ll << 40), md_steps = a.integer("md-steps", 0, 1ll << 30),
              proposals = a.integer("proposals", 0, 1ll << 20);
  const std::uint64_t seed = std::uint64_t(a.integer("seed", 0, 1ll << 62));

  return with_flow(m.arch, [&](auto& flow) {
    using S = typename std::decay_t<decltype(flow)>::Scalar;
    load_flow(a.str("model"), flow);
    const double corr = m.stdz.log_prob_correction();
    const Eigen::VectorXd shift = m.stdz.shift(), scale = m.stdz.scale();
    std::vector<S> scratch(std::size_t(flow.point_scratch_size())), u(kFrame);
    // log p_θ(q) in data units through the per-point path (what an embedding code calls).
    auto log_p_of = [&](const double* q) {
      for (Index j = 0; j < kFrame; ++j) u[std::size_t(j)] = S((q[j] - shift[j]) / scale[j]);
      return double(flow.log_prob_point(u.data(), scratch.data())) + corr;
    };

    auto make_context = [&](OpenMM::LangevinIntegrator& integ) {
      integ.setRandomNumberSeed(int(seed % 2000000000) + 1);
      auto ctx = std::make_unique<OpenMM::Context>(*system, integ, OpenMM::Platform::getPlatformByName("Reference"));
      std::vector<OpenMM::Vec3> pos(22);
      for (int i = 0; i < 22; ++i) pos[std::size_t(i)] = OpenMM::Vec3(init(0, 3 * i), init(0, 3 * i + 1), init(0, 3 * i + 2));
      ctx->setPositions(pos);
      ctx->setVelocitiesToTemperature(300.0, int(seed % 1000000) + 3);
      return ctx;
    };
    auto state_of = [](OpenMM::Context& ctx, std::vector<double>& xyz) {
      const OpenMM::State st = ctx.getState(OpenMM::State::Positions | OpenMM::State::Energy);
      const auto& p = st.getPositions();
      for (int i = 0; i < 22; ++i)
        for (int c = 0; c < 3; ++c) xyz[std::size_t(3 * i + c)] = p[std::size_t(i)][c];
      return st.getPotentialEnergy();
    };
    auto basin_of = [](const std::vector<double>& xyz) {
      return alanine::basin(alanine::dihedral(xyz.data(), alanine::kPhi), alanine::dihedral(xyz.data(), alanine::kPsi));
    };

    // (a) MD + flow proposals.
    const fort::Random prop_rng(seed, 1), acc_rng(seed, 2);
    OpenMM::LangevinIntegrator integ(300.0, 1.0, 0.001);
    auto ctx = make_context(integ);
    std::vector<double> xyz(kCart), q(kFrame), qn(kFrame), xn(kCart);
    std::vector<S> qs(kFrame);
    std::vector<OpenMM::Vec3> pos(22);
    alanine::CrossingCounter cross_mh;
    Index proposed = 0, accepted = 0, rejected_chart = 0, nonfinite = 0;
    const auto t0 = Clock::now();
    for (Index c = 0; c < cycles; ++c) {
      if (md_steps) integ.step(int(md_steps));
      for (Index k = 0; k < proposals; ++k) {
        const double u_old = state_of(*ctx, xyz);
        coords.to_q(xyz.data(), q.data());
        const double log_pi_old = -u_old / alanine::kT + coords.log_jacobian(q.data());
        const double lp_old = log_p_of(q.data());
        // Proposal: sample `proposed` of the stream, data units.
        const double lpu = double(flow.sample_point(prop_rng, std::uint64_t(proposed), qs.data(), scratch.data()));
        for (Index j = 0; j < kFrame; ++j) qn[std::size_t(j)] = shift[j] + scale[j] * double(qs[std::size_t(j)]);
        const double lp_new = lpu + corr;
        ++proposed;
        const double lj = coords.log_jacobian(qn.data());
        if (!std::isfinite(lj)) {
          ++rejected_chart;
          continue;
        }
        coords.from_q(qn.data(), xn.data());
        for (int i = 0; i < 22; ++i) pos[std::size_t(i)] = OpenMM::Vec3(xn[3 * i], xn[3 * i + 1], xn[3 * i + 2]);
        ctx->setPositions(pos);
        const double u_new = ctx->getState(OpenMM::State::Energy).getPotentialEnergy();
        const double log_acc = (-u_new / alanine::kT + lj) - log_pi_old + lp_old - lp_new;
        if (!std::isfinite(u_new) || !std::isfinite(lp_new)) ++nonfinite;
        const bool accept = std::isfinite(log_acc) && std::log(acc_rng.uniform(std::uint64_t(proposed))) < log_acc;
        if (accept) {
          ++accepted;
          ctx->setVelocitiesToTemperature(300.0, int((seed + std::uint64_t(proposed)) % 1000000000) + 1);
        } else {
          for (int i = 0; i < 22; ++i) pos[std::size_t(i)] = OpenMM::Vec3(xyz[3 * i], xyz[3 * i + 1], xyz[3 * i + 2]);
          ctx->setPositions(pos);  // velocities are kept: the MD continues from where it was
        }
      }
      state_of(*ctx, xyz);
      cross_mh.add(basin_of(xyz));
    }
    const double mh_s = seconds_since(t0);
    const double mh_md_ns = double(cycles * md_steps) * 1e-6;

    // (b) Plain MD for the same wall time, checked every md-steps as above.
    OpenMM::LangevinIntegrator integ2(300.0, 1.0, 0.001);
    auto ctx2 = make_context(integ2);
    alanine::CrossingCounter cross_md;
    Index md_chunks = 0;
    const Index chunk = std::max<Index>(md_steps, 100);
    const auto t1 = Clock::now();
    while (seconds_since(t1) < mh_s) {
      integ2.step(int(chunk));
      ++md_chunks;
      state_of(*ctx2, xyz);
      cross_md.add(basin_of(xyz));
    }
    const double md_ns = double(md_chunks * chunk) * 1e-6;
    std::printf(
        "mh: cycles=%lld md_steps=%lld proposals=%lld accepted=%lld acceptance=%.4f out_of_chart=%lld "
        "nonfinite=%lld crossings=%lld md_ns=%.3f wall_s=%.1f | plain md: crossings=%lld md_ns=%.3f wall_s=%.1f\n",
        (long long)cycles, (long long)md_steps, (long long)proposed, (long long)accepted,
        proposed ? double(accepted) / double(proposed) : 0.0, (long long)rejected_chart, (long long)nonfinite,
        (long long)cross_mh.crossings, mh_md_ns, mh_s, (long long)cross_md.crossings, md_ns, seconds_since(t1));
    return 0;
  });
}

}  // namespace

int main(int argc, char** argv) {
  return fort_cli::run_commands(
      "fort_alanine", argc, argv,
      {{"frame", "Cartesian MD frames [N, 66] -> standard-frame coordinates [N, 60]", cmd_frame},
       {"eval", "ESS, E-W1/E-W2, T-W2 and held-out NLL of a trained flow against OpenMM energies", cmd_eval},
       {"mh", "flow proposals as Metropolis-Hastings moves inside MD, against plain MD", cmd_mh}});
}
