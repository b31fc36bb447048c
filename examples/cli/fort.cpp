// `fort`: train, sample and evaluate FORT flows from the command line.
//
//   fort data   --name moons --n 20000 --seed 1 --out train.npy
//   fort train  --data train.npy --out model.safetensors --targets ot --loss fort --arch spline
//   fort sample --model model.safetensors --n 10000 --out samples.npy --log-prob-out logp.npy
//   fort eval   --model model.safetensors --data test.npy
//
// Each subcommand documents its options under --help. Any error prints one line
// ("fort: <what>") and exits with status 1; --help exits with 0; a missing or unknown command with 2.
#include <fort/fort.hpp>

#include <cstdio>
#include <iostream>

#include "architecture.hpp"
#include "args.hpp"
#include "model_io.hpp"
#include "toy_data.hpp"

namespace {

using namespace fort_cli;
using fort::Index;

int cmd_data(int argc, char** argv) {
  Args a("data", "Write a 2-D toy data set ([n, 2] float64) to an .npy file.");
  a.value("name", "", "moons, 8gaussians or checkerboard", true)
      .value("n", "20000", "number of points")
      .value("seed", "0", "random seed (the data set is a pure function of name, n and seed)")
      .value("out", "", "output .npy file", true);
  if (!a.parse(argc, argv, 2)) return 0;
  const auto x = toy_data(a.choice("name", {"moons", "8gaussians", "checkerboard"}), a.integer("n", 1, 100000000),
                          std::uint64_t(a.integer("seed", 0, (1ll << 62))));
  fort::write_npy(a.str("out"), x);
  std::cerr << "wrote " << x.rows() << " x 2 points to " << a.str("out") << "\n";
  return 0;
}

template <class S>
fort::Matrix<S> read_data(const Args& a, const std::string& key) {
  fort::Matrix<S> x = fort::read_npy<S>(a.str(key));
  if (x.rows() < 2) a.fail("--" + key + " '" + a.str(key) + "' has " + std::to_string(x.rows()) + " rows; expected at least 2");
  return x;
}

void declare_training(Args& a) {
  a.value("steps", "8000", "optimizer updates")
      .value("batch", "256", "minibatch size")
      .value("lr", "5e-4", "peak learning rate (AdamW, warm-up then cosine decay)")
      .value("weight-decay", "0.01", "AdamW decoupled weight decay")
      .value("warmup", "200", "linear warm-up steps")
      .value("clip", "0", "global gradient-norm clip (0 = off)")
      .value("ema", "0", "parameter EMA decay, e.g. 0.999 (0 = off)")
      .value("lambda-logdet", "0", "FORT: weight of mean(log-det^2)")
      .value("lambda-fb", "0", "FORT: weight of the forward-backward term mean |f^-1(f(x0)) - x0|^2")
      .value("target-noise", "0", "FORT: std of fresh Gaussian noise added to the targets each step")
      .value("beta-nll", "0", "FORT: weight of the hybrid maximum-likelihood term beta * NLL(data)")
      .value("val-fraction", "0.1", "share of the rows held out for validation and model selection")
      .value("eval-every", "250", "validation every k steps")
      .value("patience", "0", "early stopping after k validations without improvement (0 = off)")
      .value("checkpoint-every", "0", "write the model to --out every k steps (0 = only at the end)")
      .value("ot-exact-max", "10000", "OT targets: exact assignment up to this many points, minibatch OT above")
      .value("ot-batch", "4096", "OT targets: block size of minibatch OT")
      .value("teacher-steps", "4000", "CNF targets: flow-matching steps of the teacher")
      .value("teacher-width", "128", "CNF targets: teacher velocity MLP width")
      .value("teacher-depth", "2", "CNF targets: teacher velocity MLP hidden layers (<= 2: exact divergence in closed form)")
      .value("teacher-lr", "1e-3", "CNF targets: teacher learning rate")
      .value("teacher-batch", "0", "CNF targets: teacher minibatch size (0 = --batch)")
      .value("teacher-in", "", "CNF targets: use this saved teacher (from --teacher-out, same data) instead of training one")
      .value("teacher-time-frequencies", "0", "CNF targets: K Fourier features sin/cos(2 pi k t), k = 1..K, of the time input (0 = plain t)")
      .value("teacher-coupling", "independent", "CNF targets: flow-matching coupling, independent or minibatch_ot")
      .value("ode-steps", "50", "CNF targets: RK4 steps from noise to data")
      .value("teacher-out", "", "CNF targets: also save the teacher (for `fort eval --teacher`)")
      .value("seed", "0", "seed of initialisation, pairing, shuffling and noise")
      .value("threads", "0", "worker threads (0 = all cores); results do not depend on it")
      .flag("quiet", "no progress line");
}

template <class Flow>
int train_flow(Flow& flow, const Args& a, const Architecture& arch, const fort::Standardization& stdz,
               const fort::Matrix<typename Flow::Scalar>& u) {
  using S = typename Flow::Scalar;
  const Index N = u.rows(), D = u.cols();
  const std::uint64_t seed = arch.seed;
  const std::string loss = a.choice("loss", {"fort", "mle"});
  const std::string targets = a.choice("targets", {"ot", "cnf"});
  const unsigned threads = unsigned(a.integer("threads", 0, 1024));

  fort::TrainOptions o;
  o.batch_size = a.integer("batch", 1, 1 << 24);
  o.max_steps = a.integer("steps", 1, 1ll << 40);
  o.optimizer = fort::AdamOptions::adamw(a.real("lr", 1e-12, 10), a.real("weight-decay", 0, 10));
  o.warmup_steps = a.integer("warmup", 0, 1ll << 40);
  o.clip_norm = a.real("clip", 0, 1e30);
  o.ema_decay = a.real("ema", 0, 0.999999);
  o.validation_fraction = a.real("val-fraction", 0, 0.9);
  o.eval_every = a.integer("eval-every", 1, 1ll << 40);
  o.patience = a.integer("patience", 0, 1ll << 40);
  o.seed = seed;
  o.threads = threads;
  o.quiet = a.flag_set("quiet");
  o.loss.lambda_log_det = a.real("lambda-logdet", 0, 1e6);
  o.loss.lambda_fb = a.real("lambda-fb", 0, 1e6);
  o.loss.target_noise = a.real("target-noise", 0, 1e6);
  o.loss.beta_nll = a.real("beta-nll", 0, 1e6);
  o.loss.noise_seed = seed + 1;
  const Index train_rows = N - Index(std::llround(o.validation_fraction * double(N)));
  o.epochs = std::max<Index>(1, (o.max_steps * o.batch_size + train_rows - 1) / std::max<Index>(1, train_rows) + 1);

  Metadata meta = arch.to_metadata();
  meta["fort.shift"] = fort::Standardization::encode(stdz.shift());
  meta["fort.scale"] = fort::Standardization::encode(stdz.scale());
  meta["fort.loss"] = loss;
  meta["fort.targets"] = loss == "mle" ? "none" : targets;
  const std::string out = a.str("out");
  const Index checkpoint_every = a.integer("checkpoint-every", 0, 1ll << 40);
  o.checkpoint_every = checkpoint_every;
  auto checkpoint = [&](const Flow& f, Index step) {
    Metadata m = meta;
    m["fort.checkpoint_step"] = std::to_string(step);
    save_flow(out, f, m);
  };

  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  fort::TrainResult<S> result;
  if (loss == "mle") {
    result = fort::train_mle(flow, u, o, checkpoint);
  } else {
    fort::Batch<S> x0, x1;
    if (targets == "ot") {
      x0 = fort::sample_standard_normal<S>(N, D, seed + 2);
      const Index exact_max = a.integer("ot-exact-max", 1, 1ll << 40);
      const fort::AssignmentResult pairing =
          N <= exact_max ? fort::ot_assignment(x0, u)
                         : fort::minibatch_ot_assignment(x0, u, a.integer("ot-batch", 1, 1ll << 40), fort::Random(seed, 3));
      x1.resize(N, D);
      for (Index i = 0; i < N; ++i) x1.row(i) = u.row(pairing.target_of[std::size_t(i)]);
      std::cerr << (N <= exact_max ? "exact" : "minibatch") << " OT pairing of " << N << " points: mean cost "
                << pairing.total_cost / double(N) << " (" << seconds() << " s)\n";
      meta["fort.ot_pairing"] = N <= exact_max ? "exact" : "minibatch";
    } else if (!a.str("teacher-in").empty()) {
      // A saved teacher: it must have been trained on this data, i.e. the same standardisation.
      const std::string path = a.str("teacher-in");
      LoadedTeacher t = load_teacher(path);
      if (t.field.dim() != D)
        throw fort::Error("fort", "teacher '" + path + "' has dimension " + std::to_string(t.field.dim()) +
                                      ", the data has " + std::to_string(D));
      if (!(t.stdz.shift() == stdz.shift()) || !(t.stdz.scale() == stdz.scale()))
        throw fort::Error("fort", "teacher '" + path + "' was trained on data with a different standardisation; "
                                  "expected a teacher trained on this data set");
      const fort::VelocityMLP<S> field(D, t.field.config());
      const fort::Vector<S> params = t.params.template cast<S>();
      fort::CnfOptions co;
      co.ode.steps = a.integer("ode-steps", 1, 1 << 20);
      co.threads = threads;
      auto pairs = fort::cnf_generate_pairs<S>(field.bind(params), N, D, seed + 2, co);
      x0 = std::move(pairs.x0);
      x1 = std::move(pairs.x1);
      std::cerr << "CNF teacher from " << path << "; " << N << " pairs by RK4 (" << co.ode.steps << " steps) ("
                << seconds() << " s)\n";
      meta["fort.teacher_in"] = path;
    } else {
      fort::VelocityConfig vc;
      vc.mlp = fort::MLPConfig{a.integer("teacher-width", 1, 65536), a.integer("teacher-depth", 0, 64),
                               fort::Activation::silu, false};
      vc.time_frequencies = a.integer("teacher-time-frequencies", 0, 64);
      const fort::VelocityMLP<S> field(D, vc);
      fort::FlowMatchingOptions fm;
      fm.steps = a.integer("teacher-steps", 1, 1ll << 40);
      const Index teacher_batch = a.integer("teacher-batch", 0, 1ll << 30);
      fm.batch_size = teacher_batch > 0 ? teacher_batch : o.batch_size;
      fm.optimizer.lr = a.real("teacher-lr", 1e-12, 10);
      fm.cosine_decay = true;
      fm.coupling = fort::parse_coupling(a.choice("teacher-coupling", {"independent", "minibatch_ot"}));
      fm.seed = seed + 4;
      const auto teacher = fort::train_flow_matching(field, u, fm);
      fort::CnfOptions co;
      co.ode.steps = a.integer("ode-steps", 1, 1 << 20);
      co.threads = threads;
      auto pairs = fort::cnf_generate_pairs<S>(field.bind(teacher.params), N, D, seed + 2, co);
      x0 = std::move(pairs.x0);
      x1 = std::move(pairs.x1);
      std::cerr << "CNF teacher: " << fm.steps << " flow-matching steps, final loss " << teacher.final_loss()
                << "; " << N << " pairs by RK4 (" << co.ode.steps << " steps) (" << seconds() << " s)\n";
      if (!a.str("teacher-out").empty()) {
        Metadata tm{{"fort.kind", "cnf-teacher"},
                    {"fort.scalar", arch.scalar},
                    {"fort.dim", std::to_string(D)},
                    {"fort.teacher_width", std::to_string(vc.mlp.width)},
                    {"fort.teacher_depth", std::to_string(vc.mlp.depth)},
                    {"fort.teacher_time_frequencies", std::to_string(vc.time_frequencies)},
                    {"fort.shift", meta["fort.shift"]},
                    {"fort.scale", meta["fort.scale"]}};
        save_teacher(a.str("teacher-out"), field, teacher.params, tm);
      }
    }
    result = fort::train_fort(flow, x0, x1, o, checkpoint);
  }
  meta["fort.train_seconds"] = Architecture::real(seconds());
  meta["fort.steps"] = std::to_string(result.steps);
  save_flow(out, flow, meta);
  const auto& h = result.history.back();
  std::cerr << "trained " << result.steps << " steps in " << seconds() << " s; last train loss " << h.train_loss
            << ", best validation loss " << result.best_val_loss << "; wrote " << out << "\n";
  return 0;
}

int cmd_train(int argc, char** argv) {
  Args a("train",
         "Train a flow on an .npy data set [N, D] (float32 or float64). The data are standardised per coordinate;\n"
         "the model file stores that transform, so samples and densities are in the units of the data.\n"
         "--loss fort regresses f(x0) onto fixed targets x1 (--targets ot: exact OT pairing of N(0, I) samples\n"
         "with the data; cnf: a flow-matching teacher integrated from noise); --loss mle is maximum likelihood.");
  a.value("data", "", "training data .npy [N, D]", true)
      .value("out", "", "model file to write (safetensors)", true)
      .value("targets", "ot", "FORT targets: ot or cnf")
      .value("loss", "fort", "fort (regression onto targets) or mle (maximum likelihood)");
  Architecture::declare(a);
  declare_training(a);
  if (!a.parse(argc, argv, 2)) return 0;
  if (a.str("loss") == "mle" && a.has("targets")) a.fail("--targets applies to --loss fort only");
  const std::uint64_t seed = std::uint64_t(a.integer("seed", 0, 1ll << 62));
  const std::string scalar = a.choice("precision", {"float", "double"});
  const fort::Matrix<double> raw = read_data<double>(a, "data");
  const fort::Standardization stdz = fort::Standardization::fit(raw);
  const Architecture arch = Architecture::from_args(a, raw.cols(), seed);
  return with_flow(arch, [&](auto& flow) {
    using S = typename std::decay_t<decltype(flow)>::Scalar;
    const fort::Matrix<S> u = stdz.to_standard(raw).template cast<S>();
    return train_flow(flow, a, arch, stdz, u);
  });
}

int cmd_sample(int argc, char** argv) {
  Args a("sample", "Draw samples and their log-densities (in data units) from a trained model.");
  a.value("model", "", "model file written by `fort train`", true)
      .value("n", "10000", "number of samples")
      .value("seed", "0", "sampling seed (sample i depends only on the seed and i)")
      .value("out", "", "output .npy [n, D]", true)
      .value("log-prob-out", "", "optional output .npy [n] of log-densities");
  if (!a.parse(argc, argv, 2)) return 0;
  const Index n = a.integer("n", 1, 1ll << 40);
  LoadedModel m = read_model_description(a.str("model"));
  return with_flow(m.arch, [&](auto& flow) {
    using S = typename std::decay_t<decltype(flow)>::Scalar;
    load_flow(a.str("model"), flow);
    auto [u, log_p] = flow.sample_and_log_prob(n, fort::Random(std::uint64_t(a.integer("seed", 0, 1ll << 62))));
    const fort::Matrix<S> x = m.stdz.to_data(fort::Matrix<S>(u));
    fort::Vector<double> lp = log_p.template cast<double>().array() + m.stdz.log_prob_correction();
    fort::write_npy(a.str("out"), x);
    if (!a.str("log-prob-out").empty()) fort::write_npy(a.str("log-prob-out"), lp);
    std::cerr << "wrote " << n << " samples to " << a.str("out") << "\n";
    return 0;
  });
}

void print_summary(const std::string& label, const fort::NllSummary& s, double invert_err) {
  std::printf("%s: n=%lld mean_nll=%.4f median_nll=%.4f max_nll=%.4g holes(nll>%g)=%.4f%% non_finite=%lld",
              label.c_str(), (long long)s.count, s.mean, s.median, s.max, s.threshold, 100.0 * s.hole_fraction(),
              (long long)s.non_finite);
  if (invert_err >= 0) std::printf(" max_roundtrip_err=%.3g", invert_err);
  std::printf("\n");
}

int cmd_eval(int argc, char** argv) {
  Args a("eval",
         "Held-out negative log-likelihood of a model (or of a CNF teacher): mean, median, maximum, the fraction\n"
         "of 'holes' (points with NLL above the threshold) and, for flows, the largest |f(f^-1(x)) - x|\n"
         "(standardised units). Prints one line.");
  a.value("model", "", "model file written by `fort train` (or --teacher)")
      .value("teacher", "", "CNF teacher file written by `fort train --teacher-out`")
      .value("data", "", "held-out data .npy [N, D]", true)
      .value("threshold", "20", "NLL (nats) above which a point counts as a hole")
      .value("ode-rtol", "1e-6", "teacher: Dopri5 relative and absolute tolerance of the likelihood ODE")
      .value("label", "", "text printed at the start of the line (default: the file name)")
      .value("nll-out", "", "optional output .npy [N] of per-point NLL")
      .value("threads", "0", "threads for the teacher likelihood (0 = all cores)");
  if (!a.parse(argc, argv, 2)) return 0;
  if (a.str("model").empty() == a.str("teacher").empty()) a.fail("give exactly one of --model and --teacher");
  const double threshold = a.real("threshold", -1e300, 1e300);
  const fort::Matrix<double> raw = read_data<double>(a, "data");
  const bool teacher = !a.str("teacher").empty();
  const std::string path = teacher ? a.str("teacher") : a.str("model");
  const std::string label = a.str("label").empty() ? path : a.str("label");
  auto report = [&](const fort::Vector<double>& log_p, double invert_err) {
    print_summary(label, fort::summarize_nll(log_p, threshold), invert_err);
    if (!a.str("nll-out").empty()) fort::write_npy(a.str("nll-out"), fort::Vector<double>(-log_p));
    return 0;
  };
  if (teacher) {
    LoadedTeacher t = load_teacher(path);
    if (raw.cols() != t.field.dim())
      a.fail("--data has " + std::to_string(raw.cols()) + " columns, the teacher expects " + std::to_string(t.field.dim()));
    fort::CnfOptions co;
    co.ode.method = fort::OdeMethod::dopri5;
    co.ode.rtol = co.ode.atol = a.real("ode-rtol", 1e-12, 1e-1);
    co.threads = unsigned(a.integer("threads", 0, 1024));
    const fort::Matrix<double> u = t.stdz.to_standard(raw);
    fort::Vector<double> lp = fort::cnf_log_prob(t.field.bind(t.params), u, co);
    lp.array() += t.stdz.log_prob_correction();
    return report(lp, -1);
  }
  LoadedModel m = read_model_description(path);
  if (raw.cols() != m.arch.dim)
    a.fail("--data has " + std::to_string(raw.cols()) + " columns, the model expects " + std::to_string(m.arch.dim));
  return with_flow(m.arch, [&](auto& flow) {
    using S = typename std::decay_t<decltype(flow)>::Scalar;
    load_flow(path, flow);
    const fort::Matrix<S> u = m.stdz.to_standard(raw).template cast<S>();
    auto [z, ld] = flow.inverse(u);
    auto [u2, ld2] = flow.forward(z);
    const double err = double((u2 - u).cwiseAbs().maxCoeff());
    fort::Vector<double> lp = flow.log_prob(u).template cast<double>().array() + m.stdz.log_prob_correction();
    return report(lp, err);
  });
}

}  // namespace

int main(int argc, char** argv) {
  return fort_cli::run_commands(
      "fort", argc, argv,
      {{"data", "write a 2-D toy data set (moons, 8gaussians, checkerboard) to .npy", cmd_data},
       {"train", "train a flow on .npy data by FORT (OT or CNF targets) or maximum likelihood", cmd_train},
       {"sample", "draw samples with log-densities from a trained model", cmd_sample},
       {"eval", "held-out NLL (mean, median, hole fraction) of a model or CNF teacher", cmd_eval}});
}
