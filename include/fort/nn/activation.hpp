#pragma once
/// \file
/// Activation functions for conditioner networks, with derivatives taken at the pre-activation.

#include <cmath>
#include <string>
#include <string_view>

#include "fort/core/config.hpp"
#include "fort/core/error.hpp"

namespace fort {

enum class Activation { relu, silu, tanh };

inline std::string to_string(Activation a) {
  switch (a) {
    case Activation::relu: return "relu";
    case Activation::silu: return "silu";
    case Activation::tanh: return "tanh";
  }
  return "unknown";
}

inline Activation parse_activation(std::string_view name) {
  if (name == "relu") return Activation::relu;
  if (name == "silu") return Activation::silu;
  if (name == "tanh") return Activation::tanh;
  throw Error("Activation", detail::concat("unknown activation '", name, "', expected relu, silu or tanh"));
}

namespace detail {

template <class S>
FORT_HOST_DEVICE inline S sigmoid(S z) {
  // Two branches so that exp() never overflows.
  if (z >= S(0)) return S(1) / (S(1) + std::exp(-z));
  const S e = std::exp(z);
  return e / (S(1) + e);
}

template <class S>
FORT_HOST_DEVICE inline S activate(Activation a, S z) {
  switch (a) {
    case Activation::relu: return z > S(0) ? z : S(0);
    case Activation::silu: return z * sigmoid(z);
    case Activation::tanh: return std::tanh(z);
  }
  return z;
}

/// d act / dz at pre-activation z.
template <class S>
FORT_HOST_DEVICE inline S activate_derivative(Activation a, S z) {
  switch (a) {
    case Activation::relu: return z > S(0) ? S(1) : S(0);
    case Activation::silu: {
      const S s = sigmoid(z);
      return s * (S(1) + z * (S(1) - s));
    }
    case Activation::tanh: {
      const S t = std::tanh(z);
      return S(1) - t * t;
    }
  }
  return S(1);
}

}  // namespace detail
}  // namespace fort
