#pragma once
/// \file
/// Per-coordinate standardisation of a data set, with its exact change of variables.
///
///   u = (x − shift) / scale,   log p_x(x) = log p_u(u) − Σ_j log scale_j
///
/// Flows are trained on u (unit-scale data suits the default spline interval and learning
/// rates); `to_data` maps samples back and `log_prob_correction()` converts log-densities, so
/// every number a user sees is in the units of the original data. shift and scale are kept in
/// double whatever the data's scalar type. A constant column gets scale 1 (not 0), so it is only
/// shifted and never divides by zero.

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/types.hpp"

namespace fort {

class Standardization {
 public:
  Standardization() = default;
  Standardization(Vector<double> shift, Vector<double> scale) : shift_(std::move(shift)), scale_(std::move(scale)) {
    detail::require(shift_.size() == scale_.size() && shift_.size() >= 1, where, "shift has ", shift_.size(),
                    " entries and scale ", scale_.size(), "; expected the same number, at least 1");
    detail::require_finite(shift_, where, "shift");
    for (Index j = 0; j < scale_.size(); ++j)
      detail::require(std::isfinite(scale_[j]) && scale_[j] > 0, where, "scale[", j, "] is ", scale_[j],
                      "; expected a finite value > 0");
  }

  /// Mean and standard deviation of each column of `data` (two-pass, in double).
  template <class Derived>
  static Standardization fit(const Eigen::MatrixBase<Derived>& data) {
    detail::require(data.rows() >= 1 && data.cols() >= 1, where, "data has shape [", data.rows(), ", ", data.cols(),
                    "]; expected at least one row and one column");
    const Matrix<double> x = data.template cast<double>();
    detail::require_finite(x.reshaped(), where, "data");
    Vector<double> mean = x.colwise().mean().transpose(), scale(x.cols());
    for (Index j = 0; j < x.cols(); ++j) {
      const double var = (x.col(j).array() - mean[j]).square().mean();
      scale[j] = var > 0 ? std::sqrt(var) : 1.0;
    }
    return Standardization(mean, scale);
  }

  /// The identity transform in `dim` coordinates.
  static Standardization identity(Index dim) {
    return Standardization(Vector<double>::Zero(dim), Vector<double>::Ones(dim));
  }

  Index dim() const { return shift_.size(); }
  const Vector<double>& shift() const { return shift_; }
  const Vector<double>& scale() const { return scale_; }

  /// u = (x − shift) / scale.
  template <class S>
  Matrix<S> to_standard(const Matrix<S>& x) const {
    check_cols(x.cols(), "x");
    Matrix<S> u(x.rows(), x.cols());
    for (Index j = 0; j < x.cols(); ++j)
      u.col(j) = ((x.col(j).template cast<double>().array() - shift_[j]) / scale_[j]).template cast<S>();
    return u;
  }

  /// x = shift + scale ⊙ u.
  template <class S>
  Matrix<S> to_data(const Matrix<S>& u) const {
    check_cols(u.cols(), "u");
    Matrix<S> x(u.rows(), u.cols());
    for (Index j = 0; j < u.cols(); ++j)
      x.col(j) = (u.col(j).template cast<double>().array() * scale_[j] + shift_[j]).template cast<S>();
    return x;
  }

  /// −Σ_j log scale_j: add it to log p_u(u) to get log p_x(x).
  double log_prob_correction() const { return -scale_.array().log().sum(); }

  /// Round-trip text form (17 significant digits, comma-separated) for model-file metadata.
  static std::string encode(const Vector<double>& v) {
    std::ostringstream out;
    out.precision(17);
    for (Index j = 0; j < v.size(); ++j) out << (j ? "," : "") << v[j];
    return out.str();
  }
  static Vector<double> decode(const std::string& text, std::string_view what) {
    std::vector<double> values;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
      std::size_t used = 0;
      double v = 0;
      try {
        v = std::stod(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      detail::require(used == item.size() && !item.empty(), where, what, ": '", item,
                      "' is not a number; expected comma-separated numbers");
      values.push_back(v);
    }
    return Eigen::Map<const Vector<double>>(values.data(), Index(values.size()));
  }

 private:
  static constexpr const char* where = "Standardization";
  void check_cols(Index cols, const char* name) const {
    detail::require(cols == dim(), where, name, " has ", cols, " columns, expected ", dim());
  }
  Vector<double> shift_, scale_;
};

}  // namespace fort
