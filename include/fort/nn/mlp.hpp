#pragma once
/// \file
/// Multi-layer perceptron used as a coupling conditioner, with a hand-written backward pass.
///
///   h_0 = x,  z_k = h_k W_kᵀ + b_k,  h_{k+1} = act(z_k)      (or h_k + act(z_k) when residual)
///   y   = h_L W_Lᵀ + b_L                                      (last layer linear, zero at init)
///
/// Shapes: x [N, in], y [N, out]; `depth` hidden layers of `width` units. Parameters are read
/// from a flat span laid out layer by layer as W (row-major [out, in]) then b.

#include <algorithm>
#include <cmath>
#include <utility>
#include <string>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/random.hpp"
#include "fort/core/types.hpp"
#include "fort/nn/activation.hpp"

namespace fort {

struct MLPConfig {
  Index width = 64;               ///< hidden units per layer
  Index depth = 2;                ///< number of hidden layers (0 = one linear map)
  Activation activation = Activation::relu;
  bool residual = false;          ///< h_{k+1} = h_k + act(z_k) between equal-width hidden layers
};

template <class Scalar>
class MLP {
 public:
  /// Activations recorded by a forward pass for the backward pass.
  /// Kept alive between calls (as the trainer does), a cache's buffers are reused rather than
  /// reallocated: at large batches, fresh allocations cost page faults on every step.
  struct Cache {
    std::vector<Matrix<Scalar>> inputs;  ///< input of each dense layer (h_k)
    std::vector<Matrix<Scalar>> pre;     ///< pre-activation z_k of each hidden layer
    /// Backward-pass scratch (not recorded state; mutable so backward can take a const cache).
    mutable Matrix<Scalar> grad_scratch[2], dz_scratch;

    /// The input buffer of the first layer, for `forward_recorded` (callers fill it in place).
    Matrix<Scalar>& input() {
      if (inputs.empty()) inputs.resize(1);
      return inputs[0];
    }
  };

  MLP() = default;
  MLP(Index in, Index out, MLPConfig config) : in_(in), out_(out), config_(config) {
    detail::require(in >= 0 && out >= 1, "MLP", "sizes must be in >= 0 and out >= 1, got in=", in,
                    ", out=", out);
    detail::require(config.depth >= 0, "MLP", "depth must be >= 0, got ", config.depth);
    detail::require(config.depth == 0 || config.width >= 1, "MLP", "width must be >= 1, got ", config.width);
    Index prev = in;
    for (Index k = 0; k < config.depth; ++k) {
      add_layer(prev, config.width);
      prev = config.width;
    }
    add_layer(prev, out);
  }

  Index in() const { return in_; }
  Index out() const { return out_; }
  const MLPConfig& config() const { return config_; }
  Index num_params() const { return num_params_; }
  Index num_layers() const { return Index(layers_.size()); }

  std::string signature() const {
    return detail::concat("MLP(in=", in_, ",out=", out_, ",width=", config_.width, ",depth=", config_.depth,
                          ",act=", to_string(config_.activation), ",residual=", config_.residual ? 1 : 0, ")");
  }

  /// Hidden layers: uniform on ±1/sqrt(fan_in) (weights and biases); last layer: zero, so a
  /// coupling starts as the identity.
  void init_params(Grads<Scalar> p, const Random& rng) const {
    check_params(p.size());
    for (Index k = 0; k < num_layers(); ++k) {
      const auto& L = layers_[k];
      auto block = p.subspan(L.offset, L.out * L.in + L.out);
      if (k + 1 == num_layers()) {
        std::fill(block.begin(), block.end(), Scalar(0));
      } else {
        const double bound = L.in > 0 ? 1.0 / std::sqrt(double(L.in)) : 1.0;
        rng.child(k).fill_uniform(block, -bound, bound);
      }
    }
  }

  /// y = MLP(x). Records activations into `cache` when given.
  ///
  /// Written for speed: each dense layer is one Eigen GEMM (`noalias`, no temporary) into its
  /// final buffer (the cache's when recording, so nothing is copied afterwards), the bias is a
  /// broadcast add and the activation is a separate loop chosen once per layer (ReLU vectorises).
  void forward(Params<Scalar> p, const Matrix<Scalar>& x, Matrix<Scalar>& y, Cache* cache = nullptr) const {
    check_forward(p.size(), x.cols());
    if (cache) {
      cache->inputs.resize(layers_.size());
      cache->inputs[0] = x;
      run_forward(p, y, cache);
    } else {
      run_forward_nocache(p, x, y);
    }
  }

  /// Recording forward pass on the input the caller has written into `cache.input()` (saves a
  /// copy of the input and, with a cache kept between calls, its allocation).
  void forward_recorded(Params<Scalar> p, Matrix<Scalar>& y, Cache& cache) const {
    check_forward(p.size(), cache.input().cols());
    cache.inputs.resize(layers_.size());
    run_forward(p, y, &cache);
  }

  /// Given dL/dy, accumulates dL/dparams into `dL_dp` and writes dL/dx (if `dL_dx` is non-null).
  void backward(Params<Scalar> p, const Cache& cache, const Matrix<Scalar>& dL_dy, Matrix<Scalar>* dL_dx,
                Grads<Scalar> dL_dp) const {
    check_params(p.size());
    check_params(dL_dp.size());
    detail::require(dL_dy.cols() == out_ && Index(cache.inputs.size()) == num_layers() &&
                        Index(cache.pre.size()) == num_layers() - 1,
                    "MLP", "backward needs dL/dy with ", out_, " columns and a cache recorded by forward; got ",
                    dL_dy.cols(), " columns and a cache of ", cache.inputs.size(), " layers");
    const Index n = dL_dy.rows();
    Matrix<Scalar>* bufs = cache.grad_scratch;
    Matrix<Scalar>& dz = cache.dz_scratch;
    const Matrix<Scalar>* g = &dL_dy;  // dL/d(output of layer k)
    for (Index k = num_layers() - 1; k >= 0; --k) {
      const auto& L = layers_[k];
      const Matrix<Scalar>& h = cache.inputs[k];
      const Matrix<Scalar>* dzp = g;
      if (k + 1 < num_layers()) {
        activation_backward(config_.activation, cache.pre[k], *g, dz);
        dzp = &dz;
      }
      weight_grad(dL_dp, k).noalias() += dzp->transpose() * h;
      bias_grad(dL_dp, k) += dzp->colwise().sum().transpose();
      if (k == 0 && !dL_dx) return;
      Matrix<Scalar>& g_prev = (k == 0 && dL_dx) ? *dL_dx : bufs[k % 2];
      g_prev.resize(n, L.in);
      g_prev.noalias() = *dzp * weight(p, k);
      if (k + 1 < num_layers() && is_residual(k)) g_prev += *g;
      g = &g_prev;
    }
  }

  /// Scalars of scratch that forward_point needs.
  Index point_scratch_size() const { return 2 * std::max<Index>(config_.width, 1); }

  /// One sample: x[in] -> y[out], no allocation. `scratch` holds point_scratch_size() scalars.
  void forward_point(Params<Scalar> p, const Scalar* x, Scalar* y, Scalar* scratch) const {
    const Index w = std::max<Index>(config_.width, 1);
    Scalar* bufs[2] = {scratch, scratch + w};
    const Scalar* h = x;
    for (Index k = 0; k < num_layers(); ++k) {
      const auto& L = layers_[k];
      Scalar* z = (k + 1 == num_layers()) ? y : bufs[k % 2];
      Eigen::Map<Eigen::Matrix<Scalar, Eigen::Dynamic, 1>> zv(z, L.out);
      Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>> hv(h, L.in);
      zv.noalias() = weight(p, k) * hv;
      zv += bias(p, k);
      if (k + 1 < num_layers()) {
        // One activation loop chosen per layer (vectorises), as in the batched pass.
        Eigen::Map<const Eigen::Matrix<Scalar, 1, Eigen::Dynamic>> prev(h, L.in);
        Eigen::Map<Eigen::Matrix<Scalar, 1, Eigen::Dynamic>> zr(z, L.out);
        activate_into(config_.activation, zr, zr, is_residual(k) ? &prev : nullptr);
      }
      h = z;
    }
  }

 private:
  struct Dense {
    Index in, out, offset;
  };

  void add_layer(Index in, Index out) {
    layers_.push_back({in, out, num_params_});
    num_params_ += in * out + out;
  }

  /// h = act(z) (residual: h = h_prev + act(z)), one specialised loop per activation. h may be z.
  template <class Z, class Out, class Residual>
  static void activate_into(Activation a, const Z& z, Out& h, const Residual* residual) {
    auto run = [&](auto&& expr) {
      if (residual) h = *residual + expr;
      else h = expr;
    };
    switch (a) {
      case Activation::relu: run(z.cwiseMax(Scalar(0))); return;
      case Activation::silu: run(z.unaryExpr([](Scalar v) { return v * detail::sigmoid(v); })); return;
      case Activation::tanh: run(z.unaryExpr([](Scalar v) { return Scalar(std::tanh(v)); })); return;
    }
  }

  /// dz = g ⊙ act'(pre).
  static void activation_backward(Activation a, const Matrix<Scalar>& pre, const Matrix<Scalar>& g,
                                  Matrix<Scalar>& dz) {
    dz.resize(g.rows(), g.cols());
    switch (a) {
      case Activation::relu: dz = (pre.array() > Scalar(0)).select(g, Scalar(0)); return;
      default:
        dz = g.cwiseProduct(pre.unaryExpr([a](Scalar v) { return detail::activate_derivative(a, v); }));
        return;
    }
  }

  /// Recording forward pass; cache->inputs[0] holds the input.
  void run_forward(Params<Scalar> p, Matrix<Scalar>& y, Cache* cache) const {
    const Index n = cache->inputs[0].rows();
    cache->pre.resize(layers_.size() - 1);
    for (Index k = 0; k < num_layers(); ++k) {
      const auto& L = layers_[k];
      const Matrix<Scalar>& h = cache->inputs[k];
      const bool last = k + 1 == num_layers();
      Matrix<Scalar>& z = last ? y : cache->pre[k];
      z.resize(n, L.out);
      z.noalias() = h * weight(p, k).transpose();
      z.rowwise() += bias(p, k).transpose();
      if (last) return;
      Matrix<Scalar>& next = cache->inputs[k + 1];
      next.resize(n, L.out);
      activate_into(config_.activation, z, next, is_residual(k) ? &h : nullptr);
    }
  }

  /// Forward pass without a cache: two ping-pong buffers.
  void run_forward_nocache(Params<Scalar> p, const Matrix<Scalar>& x, Matrix<Scalar>& y) const {
    const Index n = x.rows();
    Matrix<Scalar> hbuf[2], z;
    const Matrix<Scalar>* h = &x;
    for (Index k = 0; k < num_layers(); ++k) {
      const auto& L = layers_[k];
      const bool last = k + 1 == num_layers();
      Matrix<Scalar>& zk = last ? y : z;
      zk.resize(n, L.out);
      zk.noalias() = *h * weight(p, k).transpose();
      zk.rowwise() += bias(p, k).transpose();
      if (last) return;
      Matrix<Scalar>& next = hbuf[k % 2];
      next.resize(n, L.out);
      activate_into(config_.activation, zk, next, is_residual(k) ? h : nullptr);
      h = &next;
    }
  }

  bool is_residual(Index k) const {
    return config_.residual && k + 1 < num_layers() && layers_[k].in == layers_[k].out;
  }

  void check_forward(std::size_t params, Index cols) const {
    check_params(params);
    detail::require(cols == in_, "MLP", "input has ", cols, " columns, expected ", in_);
  }

  void check_params(std::size_t size) const {
    detail::require(Index(size) == num_params_, "MLP", "parameter span has ", size, " values, expected ",
                    num_params_);
  }

  using MatMap = Eigen::Map<const Matrix<Scalar>>;
  using VecMap = Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>;
  using MatGrad = Eigen::Map<Matrix<Scalar>>;
  using VecGrad = Eigen::Map<Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>;

  MatMap weight(Params<Scalar> p, Index k) const {
    const auto& L = layers_[k];
    return MatMap(p.data() + L.offset, L.out, L.in);
  }
  VecMap bias(Params<Scalar> p, Index k) const {
    const auto& L = layers_[k];
    return VecMap(p.data() + L.offset + L.out * L.in, L.out);
  }
  MatGrad weight_grad(Grads<Scalar> g, Index k) const {
    const auto& L = layers_[k];
    return MatGrad(g.data() + L.offset, L.out, L.in);
  }
  VecGrad bias_grad(Grads<Scalar> g, Index k) const {
    const auto& L = layers_[k];
    return VecGrad(g.data() + L.offset + L.out * L.in, L.out);
  }

  Index in_ = 0, out_ = 1;
  MLPConfig config_{};
  std::vector<Dense> layers_;
  Index num_params_ = 0;
};

}  // namespace fort
