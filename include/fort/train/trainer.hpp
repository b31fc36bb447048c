#pragma once
/// \file
/// Training loop for FORT (pairs x0 → x1) and maximum likelihood (data only).
///
///   auto result = fort::train_fort(flow, x0, x1, options);  // x0, x1: [N, D], row i is a pair
///   auto result = fort::train_mle(flow, data, options);     // data: [N, D]
///
/// Per run:
///  1. Validation split (deterministic): a permutation of 0..N−1 from Random(seed, 2); its first
///     round(fraction·N) entries are the validation rows, the rest (in ascending order) train.
///  2. Epoch e shuffles the training rows with random_permutation(Random(seed, 1).child(e)) and
///     walks them in minibatches of `batch_size` (the last one of an epoch may be smaller).
///  3. Each minibatch of B rows is cut into fixed chunks of `chunk_rows` rows (independent of the
///     thread count). Worker threads evaluate chunks into private buffers as contributions to the
///     batch means (sums / B); the buffers are added to the batch gradient strictly in chunk
///     order. The floating-point operations are therefore the same at any thread count and the
///     trained parameters are bit-identical at 1, 2, … threads.
///  4. The gradient's global norm is measured (and clipped when clip_norm > 0); AdamW/Adam
///     updates the flow's parameters at the learning rate of the warm-up + cosine schedule
///     (decaying over the planned run when cosine_decay); the EMA (when ema_decay > 0) follows.
///  5. Every `eval_every` steps and at the last step a history entry is recorded: the mean
///     training loss since the previous entry and, with a validation split, the validation loss
///     (no target noise; evaluated at the EMA parameters when the EMA is on, else the current
///     ones). The best validated parameters are kept; with patience > 0 training stops after
///     `patience` evaluations without an improvement of more than min_delta.
///  6. Every `checkpoint_every` steps the user's callback receives the flow (its current,
///     non-averaged parameters) and the step number.
///  7. At the end the flow's parameters are set to the choice `final_params` names
///     (automatic: best validated if there is a validation split, else EMA if on, else last).
///
/// A progress line (step, loss, validation loss, steps/s, ETA) is rewritten on stderr only when
/// stderr is a terminal and `quiet` is false.
///
/// Errors (fort::Error, "train_fort:" / "train_mle:"): batch shapes that do not match the flow or
/// each other, empty data, NaN/Inf in the data, out-of-range options (batch_size < 1, epochs < 1,
/// validation_fraction outside [0, 1), a split leaving no training or validation rows, patience
/// without validation, …), and a loss or gradient that becomes non-finite during training (the
/// flow keeps the last finite parameters).

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/random.hpp"
#include "fort/core/types.hpp"
#include "fort/flows/flow.hpp"
#include "fort/train/loss.hpp"
#include "fort/train/optimizer.hpp"

namespace fort {

/// Which parameters the flow holds when training returns.
enum class FinalParams {
  automatic,  ///< best validated if a validation split exists, else EMA if on, else last
  last,       ///< the parameters after the last update
  ema,        ///< the exponential moving average (needs ema_decay > 0)
  best,       ///< the validated parameters with the lowest validation loss (needs a split)
};

struct TrainOptions {
  LossOptions loss;                 ///< FORT loss weights (train_mle uses β = 1 only, keeping target_noise)
  AdamOptions optimizer = AdamOptions::adamw();  ///< optimizer.lr is the peak learning rate
  Index warmup_steps = 0;           ///< linear warm-up length
  bool cosine_decay = true;         ///< cosine decay to min_lr over the planned number of steps
  double min_lr = 0.0;
  double clip_norm = 0.0;           ///< global gradient-norm clip (0 = off)
  double ema_decay = 0.0;           ///< EMA of the parameters (0 = off; the paper uses 0.999)

  Index batch_size = 256;
  Index epochs = 10;
  Index max_steps = 0;              ///< cap on the number of updates (0 = no cap)
  double validation_fraction = 0.0; ///< share of the rows held out, in [0, 1)
  Index eval_every = 100;           ///< history entry (and validation) every k steps
  Index patience = 0;               ///< early stopping after this many evaluations without improvement (0 = off)
  double min_delta = 0.0;           ///< an improvement must exceed this
  Index checkpoint_every = 0;       ///< callback every k steps (0 = never)
  FinalParams final_params = FinalParams::automatic;
  bool initialize_from_data = false;///< data-dependent init (ActNorm) from the first minibatch's x1

  std::uint64_t seed = 0;           ///< key of the split and the shuffling
  unsigned threads = 0;             ///< worker threads (0 = std::thread::hardware_concurrency())
  Index chunk_rows = 64;            ///< rows per work chunk; fixes the summation order
  bool quiet = false;               ///< no progress line even on a terminal
};

/// One row of the training history.
struct HistoryEntry {
  Index step = 0;         ///< updates made so far
  Index epoch = 0;        ///< epoch of the last update (0-based)
  double lr = 0.0;        ///< learning rate of the last update
  double train_loss = 0.0;///< mean minibatch loss since the previous entry
  double val_loss = std::numeric_limits<double>::quiet_NaN();  ///< NaN without a validation split
  double grad_norm = 0.0; ///< gradient norm of the last update, before clipping
  double seconds = 0.0;   ///< wall time since the start
};

template <class S>
struct TrainResult {
  std::vector<HistoryEntry> history;
  Vector<S> last_params;   ///< after the last update
  Vector<S> ema_params;    ///< empty when the EMA is off
  Vector<S> best_params;   ///< empty without a validation split
  double best_val_loss = std::numeric_limits<double>::infinity();
  Index best_step = -1;
  Index steps = 0;         ///< updates made
  bool stopped_early = false;
  FinalParams final_params = FinalParams::last;  ///< what the flow holds now (never automatic)
  double seconds = 0.0;
};

/// Checkpoint callback: receives the flow with its current parameters and the step number.
template <class FlowT>
using CheckpointFn = std::function<void(const FlowT&, Index)>;

namespace detail {

/// A fixed set of worker threads; `run(job)` calls job(w) on every worker w = 0..size−1 (the
/// caller is worker 0) and returns when all have returned, rethrowing the first exception.
class WorkerPool {
 public:
  explicit WorkerPool(unsigned workers) : size_(std::max(1u, workers)) {
    for (unsigned w = 1; w < size_; ++w) threads_.emplace_back([this, w] { loop(w); });
  }
  ~WorkerPool() {
    {
      std::lock_guard lk(m_);
      stop_ = true;
    }
    start_.notify_all();
    for (auto& t : threads_) t.join();
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  unsigned size() const { return size_; }

  void run(const std::function<void(unsigned)>& job) {
    if (size_ == 1) {
      job(0);
      return;
    }
    {
      std::lock_guard lk(m_);
      job_ = &job;
      running_ = size_ - 1;
      error_ = nullptr;
      ++generation_;
    }
    start_.notify_all();
    std::exception_ptr mine;
    try {
      job(0);
    } catch (...) {
      mine = std::current_exception();
    }
    std::unique_lock lk(m_);
    done_.wait(lk, [&] { return running_ == 0; });
    job_ = nullptr;
    if (mine) std::rethrow_exception(mine);
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void loop(unsigned w) {
    std::uint64_t seen = 0;
    for (;;) {
      const std::function<void(unsigned)>* job;
      {
        std::unique_lock lk(m_);
        start_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      try {
        (*job)(w);
      } catch (...) {
        std::lock_guard lk(m_);
        if (!error_) error_ = std::current_exception();
      }
      {
        std::lock_guard lk(m_);
        --running_;
      }
      done_.notify_all();
    }
  }

  unsigned size_;
  std::vector<std::thread> threads_;
  std::mutex m_;
  std::condition_variable start_, done_;
  const std::function<void(unsigned)>* job_ = nullptr;
  unsigned running_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

/// Evaluates `n_chunks` chunk tasks on the pool and sums their loss terms and gradients in chunk
/// order. `chunk(c, buf)` gets a zeroed gradient buffer (empty span when !with_grad) and returns
/// its terms; a `chunk(c, buf, worker)` overload also gets the worker's index (for per-worker
/// scratch). At most `ring.size()` chunk buffers are alive at once (memory ~ threads × params,
/// not chunks × params): a chunk may start only once the chunk `ring.size()` places before it has
/// been added in.
template <class S, class ChunkFn>
LossTerms reduce_chunks(WorkerPool& pool, Index n_chunks, bool with_grad, Vector<S>& grad,
                        std::vector<Vector<S>>& ring, const ChunkFn& chunk) {
  const Index slots = Index(ring.size());
  std::mutex m;
  std::condition_variable cv;
  Index next = 0, committed = 0;
  bool failed = false;
  std::vector<char> done(std::size_t(n_chunks), 0);
  std::vector<LossTerms> slot_terms(static_cast<std::size_t>(slots));
  LossTerms total;
  if (with_grad) grad.setZero();

  pool.run([&](unsigned worker) {
    for (;;) {
      Index c;
      {
        std::unique_lock lk(m);
        cv.wait(lk, [&] { return failed || next >= n_chunks || next < committed + slots; });
        if (failed || next >= n_chunks) return;
        c = next++;
      }
      const std::size_t s = std::size_t(c % slots);
      LossTerms t;
      try {
        Grads<S> buf;
        if (with_grad) {
          ring[s].setZero();
          buf = Grads<S>(ring[s].data(), std::size_t(ring[s].size()));
        }
        if constexpr (std::is_invocable_v<const ChunkFn&, Index, Grads<S>, unsigned>) t = chunk(c, buf, worker);
        else t = chunk(c, buf);
      } catch (...) {
        {
          std::lock_guard lk(m);
          failed = true;
        }
        cv.notify_all();
        throw;
      }
      {
        std::lock_guard lk(m);
        slot_terms[s] = t;
        done[std::size_t(c)] = 1;
        // Add every finished chunk that is next in order; chunk order fixes the float sums.
        while (committed < n_chunks && done[std::size_t(committed)]) {
          const std::size_t cs = std::size_t(committed % slots);
          total += slot_terms[cs];
          if (with_grad) grad += ring[cs];
          ++committed;
        }
      }
      cv.notify_all();
    }
  });
  return total;
}

/// Chunked, threaded evaluation of the loss (and gradient) of one batch at parameters `p`.
template <class Base, class Transform>
class BatchEvaluator {
 public:
  using S = typename Transform::Scalar;
  static constexpr int D = Transform::Dim;

  BatchEvaluator(const Flow<Base, Transform>& flow, unsigned threads, Index chunk_rows, Index max_rows)
      : flow_(flow), chunk_rows_(chunk_rows),
        pool_(unsigned(std::min<Index>(Index(threads), std::max<Index>(1, (max_rows + chunk_rows - 1) / chunk_rows)))) {
    ring_.assign(std::size_t(2 * pool_.size()), Vector<S>::Zero(flow.num_params()));
    workspaces_.resize(pool_.size());
  }

  /// x0 may have no rows when the loss does not use pairs.
  LossTerms operator()(Params<S> p, const Batch<S, D>& x0, const Batch<S, D>& x1, const LossOptions& opt,
                       std::uint64_t step, Vector<S>* grad) {
    const Index n = x1.rows();
    const Index n_chunks = (n + chunk_rows_ - 1) / chunk_rows_;
    const bool pairs = x0.rows() == n;
    const Batch<S, D> none(0, flow_.dim());
    Vector<S> unused;
    Vector<S>& g = grad ? *grad : unused;
    if (grad) g.resize(flow_.num_params());
    return reduce_chunks<S>(pool_, n_chunks, grad != nullptr, g, ring_, [&](Index c, Grads<S> buf, unsigned w) {
      const Index r0 = c * chunk_rows_, rows = std::min(chunk_rows_, n - r0);
      const ConstBatchRef<S, D> c1 = x1.middleRows(r0, rows);
      const ConstBatchRef<S, D> c0 = pairs ? ConstBatchRef<S, D>(x0.middleRows(r0, rows)) : ConstBatchRef<S, D>(none);
      return accumulate_loss(flow_, p, c0, c1, opt, double(n), step, r0, buf, &workspaces_[w]);
    });
  }

 private:
  const Flow<Base, Transform>& flow_;
  Index chunk_rows_;
  WorkerPool pool_;
  std::vector<Vector<S>> ring_;
  std::vector<LossWorkspace<Transform>> workspaces_;  ///< one per worker, reused every step
};

inline unsigned resolve_threads(unsigned threads) {
  if (threads != 0) return threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

template <class S, int D>
Batch<S, D> gather_rows(const ConstBatchRef<S, D>& x, const std::vector<Index>& rows, Index begin, Index count) {
  Batch<S, D> out(count, x.cols());
  for (Index i = 0; i < count; ++i) out.row(i) = x.row(rows[std::size_t(begin + i)]);
  return out;
}

inline std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = long(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

inline void validate_train_options(const TrainOptions& o, std::string_view where) {
  o.optimizer.validate();
  require(o.batch_size >= 1, where, "batch_size must be >= 1, got ", o.batch_size);
  require(o.epochs >= 1, where, "epochs must be >= 1, got ", o.epochs);
  require(o.max_steps >= 0, where, "max_steps must be >= 0 (0 = no cap), got ", o.max_steps);
  require(o.warmup_steps >= 0, where, "warmup_steps must be >= 0, got ", o.warmup_steps);
  require(std::isfinite(o.min_lr) && o.min_lr >= 0 && o.min_lr <= o.optimizer.lr, where,
          "min_lr must be in [0, optimizer.lr = ", o.optimizer.lr, "], got ", o.min_lr);
  require(std::isfinite(o.clip_norm) && o.clip_norm >= 0, where, "clip_norm must be finite and >= 0 (0 = off), got ",
          o.clip_norm);
  require(std::isfinite(o.ema_decay) && o.ema_decay >= 0 && o.ema_decay < 1, where,
          "ema_decay must be in [0, 1) (0 = off), got ", o.ema_decay);
  require(std::isfinite(o.validation_fraction) && o.validation_fraction >= 0 && o.validation_fraction < 1, where,
          "validation_fraction must be in [0, 1), got ", o.validation_fraction);
  require(o.eval_every >= 1, where, "eval_every must be >= 1, got ", o.eval_every);
  require(o.patience >= 0, where, "patience must be >= 0 (0 = off), got ", o.patience);
  require(std::isfinite(o.min_delta) && o.min_delta >= 0, where, "min_delta must be finite and >= 0, got ",
          o.min_delta);
  require(o.checkpoint_every >= 0, where, "checkpoint_every must be >= 0 (0 = never), got ", o.checkpoint_every);
  require(o.chunk_rows >= 1, where, "chunk_rows must be >= 1, got ", o.chunk_rows);
  require(o.patience == 0 || o.validation_fraction > 0, where,
          "patience (early stopping) needs a validation split; set validation_fraction > 0");
  require(o.final_params != FinalParams::best || o.validation_fraction > 0, where,
          "final_params = best needs a validation split; set validation_fraction > 0");
  require(o.final_params != FinalParams::ema || o.ema_decay > 0, where,
          "final_params = ema needs ema_decay > 0");
}

template <class Base, class Transform>
TrainResult<typename Transform::Scalar> train_impl(Flow<Base, Transform>& flow,
                                                  ConstBatchRef<typename Transform::Scalar, Transform::Dim> x0,
                                                  ConstBatchRef<typename Transform::Scalar, Transform::Dim> x1,
                                                  const LossOptions& loss_opt, const TrainOptions& opt,
                                                  const CheckpointFn<Flow<Base, Transform>>& checkpoint,
                                                  std::string_view where) {
  using S = typename Transform::Scalar;
  constexpr int D = Transform::Dim;
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t_start).count(); };

  // ---- checks ------------------------------------------------------------------------------
  validate_train_options(opt, where);
  loss_opt.validate();
  const bool pairs = loss_opt.uses_pairs();
  require(x1.rows() >= 1, where, "no training data: the data batch has 0 rows");
  check_loss_inputs(flow, x0, x1, loss_opt, where);
  require(!opt.checkpoint_every || bool(checkpoint), where,
          "checkpoint_every is ", opt.checkpoint_every, " but no checkpoint callback was given");
  require_finite(flow.params(), where, "the flow's initial parameters");

  // ---- validation split ----------------------------------------------------------------------
  const Index n = x1.rows();
  const Index n_val = Index(std::llround(opt.validation_fraction * double(n)));
  require(opt.validation_fraction == 0 || n_val >= 1, where, "validation_fraction ", opt.validation_fraction,
          " of ", n, " rows leaves no validation rows");
  require(n - n_val >= 1, where, "validation_fraction ", opt.validation_fraction, " of ", n,
          " rows leaves no training rows");
  std::vector<Index> order(static_cast<std::size_t>(n));
  if (n_val > 0) random_permutation(std::span<Index>(order), Random(opt.seed, 2));
  else
    for (Index i = 0; i < n; ++i) order[std::size_t(i)] = i;
  std::vector<Index> val_rows(order.begin(), order.begin() + n_val);
  std::vector<Index> train_rows(order.begin() + n_val, order.end());
  std::sort(train_rows.begin(), train_rows.end());  // the split is a set; shuffling comes per epoch
  const Index n_train = Index(train_rows.size());
  const Batch<S, D> none(0, flow.dim());
  Batch<S, D> xv0 = none, xv1;
  if (n_val > 0) {
    if (pairs) xv0 = gather_rows<S, D>(x0, val_rows, 0, n_val);
    xv1 = gather_rows<S, D>(x1, val_rows, 0, n_val);
  }

  // ---- plan ----------------------------------------------------------------------------------
  const Index batch = std::min(opt.batch_size, n_train);
  const Index steps_per_epoch = (n_train + batch - 1) / batch;
  Index planned = opt.epochs * steps_per_epoch;
  if (opt.max_steps > 0) planned = std::min(planned, opt.max_steps);
  const WarmupCosineSchedule schedule(ScheduleOptions{
      opt.optimizer.lr, std::min(opt.warmup_steps, planned), opt.cosine_decay ? planned : 0, opt.min_lr});

  const unsigned threads = resolve_threads(opt.threads);
  BatchEvaluator<Base, Transform> evaluate(flow, threads, opt.chunk_rows, std::max(batch, n_val));
  Adam<S> adam(flow.num_params(), opt.optimizer);
  std::optional<EMA<S>> ema;
  LossOptions val_opt = loss_opt;
  val_opt.target_noise = 0;  // validation measures the model, not the stabiliser

  const bool show = !opt.quiet && isatty(2);
  TrainResult<S> result;
  Index no_improve = 0, since_log = 0, step = 0;
  double loss_since_log = 0, last_lr = 0, last_norm = 0, last_val = std::numeric_limits<double>::quiet_NaN();
  double last_print = -1;
  Vector<S> grad(flow.num_params());
  std::vector<Index> perm(static_cast<std::size_t>(n_train));
  bool stop = false;

  for (Index epoch = 0; epoch < opt.epochs && !stop && step < planned; ++epoch) {
    random_permutation(std::span<Index>(perm), Random(opt.seed, 1).child(std::uint64_t(epoch)));
    for (Index& r : perm) r = train_rows[std::size_t(r)];
    for (Index b0 = 0; b0 < n_train && step < planned; b0 += batch) {
      const Index rows = std::min(batch, n_train - b0);
      const Batch<S, D> xb0 = pairs ? gather_rows<S, D>(x0, perm, b0, rows) : none;
      const Batch<S, D> xb1 = gather_rows<S, D>(x1, perm, b0, rows);

      if (step == 0) {
        if (opt.initialize_from_data) flow.initialize_from_data(xb1);
        if (opt.ema_decay > 0) ema.emplace(flow.params(), opt.ema_decay);
      }

      const LossTerms terms = evaluate(flow.param_span(), xb0, xb1, loss_opt, std::uint64_t(step), &grad);
      const double norm = clip_grad_norm<S>(grad, opt.clip_norm > 0 ? opt.clip_norm
                                                                     : std::numeric_limits<double>::infinity());
      require(std::isfinite(terms.total) && std::isfinite(norm), where, "the loss (", terms.total,
              ") or its gradient norm (", norm, ") became non-finite at step ", step,
              "; the flow keeps the last finite parameters. Lower the learning rate, clip gradients "
              "(clip_norm) or add regularisation");
      last_lr = schedule(step);
      adam.step(flow.params(), grad, last_lr);
      if (ema) ema->update(flow.params());
      ++step;
      last_norm = norm;
      loss_since_log += terms.total;
      ++since_log;

      const bool last_step = step == planned;
      if (step % opt.eval_every == 0 || last_step) {
        HistoryEntry e;
        e.step = step;
        e.epoch = epoch;
        e.lr = last_lr;
        e.train_loss = loss_since_log / double(since_log);
        e.grad_norm = last_norm;
        loss_since_log = 0;
        since_log = 0;
        if (n_val > 0) {
          const Vector<S>& validated = ema ? ema->params() : flow.params();
          const Params<S> vp(validated.data(), std::size_t(validated.size()));
          e.val_loss = evaluate(vp, xv0, xv1, val_opt, std::uint64_t(step), nullptr).total;
          last_val = e.val_loss;
          if (e.val_loss < result.best_val_loss - opt.min_delta) {
            result.best_val_loss = e.val_loss;
            result.best_step = step;
            result.best_params = validated;
            no_improve = 0;
          } else if (++no_improve >= opt.patience && opt.patience > 0) {
            result.stopped_early = true;
            stop = true;
          }
        }
        e.seconds = elapsed();
        result.history.push_back(e);
      }
      if (opt.checkpoint_every > 0 && step % opt.checkpoint_every == 0) checkpoint(flow, step);

      if (show && (elapsed() - last_print >= 0.1 || last_step || stop)) {
        last_print = elapsed();
        const double rate = double(step) / std::max(last_print, 1e-9);
        std::fprintf(stderr, "\r%s step %lld/%lld  loss %.5g  val %.5g  %.1f steps/s  ETA %s   ",
                     std::string(where).c_str(), (long long)step, (long long)planned, terms.total, last_val, rate,
                     format_duration(double(planned - step) / rate).c_str());
        std::fflush(stderr);
      }
      if (stop) break;
    }
  }
  if (show) std::fputc('\n', stderr);

  // ---- result --------------------------------------------------------------------------------
  result.steps = step;
  result.last_params = flow.params();
  if (ema) result.ema_params = ema->params();
  FinalParams choice = opt.final_params;
  if (choice == FinalParams::automatic)
    choice = n_val > 0 ? FinalParams::best : (ema ? FinalParams::ema : FinalParams::last);
  if (choice == FinalParams::best && result.best_params.size() == 0) choice = ema ? FinalParams::ema : FinalParams::last;
  if (choice == FinalParams::best) flow.set_params(result.best_params);
  if (choice == FinalParams::ema) flow.set_params(result.ema_params);
  result.final_params = choice;
  result.seconds = elapsed();
  return result;
}

}  // namespace detail

/// FORT training on pairs: row i of x0 (noise, [N, D]) maps to row i of x1 (target, [N, D]).
/// Trains `flow`'s parameters in place and returns the history; see the file comment.
template <class Base, class Transform>
TrainResult<typename Transform::Scalar> train_fort(Flow<Base, Transform>& flow,
                                                  ConstBatchRef<typename Transform::Scalar, Transform::Dim> x0,
                                                  ConstBatchRef<typename Transform::Scalar, Transform::Dim> x1,
                                                  const TrainOptions& options,
                                                  const std::type_identity_t<CheckpointFn<Flow<Base, Transform>>>& checkpoint = {}) {
  detail::require(x0.rows() == x1.rows() && x0.cols() == x1.cols(), "train_fort", "x0 has shape [", x0.rows(),
                  ", ", x0.cols(), "] but x1 has shape [", x1.rows(), ", ", x1.cols(),
                  "]; expected equal shapes (one x0 row per x1 row)");
  return detail::train_impl(flow, x0, x1, options.loss, options, checkpoint, "train_fort");
}

/// Maximum-likelihood training on `data` ([N, D]): the loss is −mean log p(data) (β = 1, all
/// other weights 0; options.loss.target_noise and noise_seed still apply, as dequantisation noise).
template <class Base, class Transform>
TrainResult<typename Transform::Scalar> train_mle(Flow<Base, Transform>& flow,
                                                 ConstBatchRef<typename Transform::Scalar, Transform::Dim> data,
                                                 const TrainOptions& options,
                                                 const std::type_identity_t<CheckpointFn<Flow<Base, Transform>>>& checkpoint = {}) {
  using S = typename Transform::Scalar;
  LossOptions mle = LossOptions::mle();
  mle.target_noise = options.loss.target_noise;
  mle.noise_seed = options.loss.noise_seed;
  const Batch<S, Transform::Dim> none(0, flow.dim());
  return detail::train_impl(flow, none, data, mle, options, checkpoint, "train_mle");
}

/// The loss of a whole data set at the flow's parameters, evaluated in chunks on `threads`
/// threads (0 = all cores) with the same chunk-ordered sums as training. x0 may have no rows
/// when the loss uses only β (held-out NLL: `evaluate_loss(flow, Batch<S, D>(0, D), data,
/// LossOptions::mle())`).
template <class Base, class Transform>
LossTerms evaluate_loss(const Flow<Base, Transform>& flow, ConstBatchRef<typename Transform::Scalar, Transform::Dim> x0,
                        ConstBatchRef<typename Transform::Scalar, Transform::Dim> x1, const LossOptions& options,
                        unsigned threads = 0, Index chunk_rows = 64) {
  using S = typename Transform::Scalar;
  options.validate();
  detail::check_loss_inputs(flow, x0, x1, options, "evaluate_loss");
  detail::require(chunk_rows >= 1, "evaluate_loss", "chunk_rows must be >= 1, got ", chunk_rows);
  detail::BatchEvaluator<Base, Transform> eval(flow, detail::resolve_threads(threads), chunk_rows, x1.rows());
  const Batch<S, Transform::Dim> b0 = options.uses_pairs() ? Batch<S, Transform::Dim>(x0) : Batch<S, Transform::Dim>(0, flow.dim());
  const Batch<S, Transform::Dim> b1 = x1;
  return eval(flow.param_span(), b0, b1, options, 0, nullptr);
}

}  // namespace fort
