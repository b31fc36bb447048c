#pragma once
/// \file
/// Pieces shared by the OT solvers' squared-Euclidean costs on point clouds (exact assignment and
/// Sinkhorn): the finiteness check of the input points and the blocked kernel that fills one row
/// of the cost matrix without storing the matrix.

#include <algorithm>
#include <cmath>
#include <string_view>

#include "fort/core/error.hpp"
#include "fort/core/types.hpp"

namespace fort::detail {

/// Throws naming the first non-finite coordinate of the point set `x` (called `name`).
template <class D>
void require_finite_points(const Eigen::MatrixBase<D>& x, const char* name, std::string_view where) {
  for (Index i = 0; i < x.rows(); ++i)
    for (Index d = 0; d < x.cols(); ++d) {
      const double value = static_cast<double>(x(i, d));
      if (!std::isfinite(value))
        throw Error(where, concat(name, " row ", i, " column ", d, " is ", value, "; expected finite coordinates"));
    }
}

/// out[j] = ‖x0_i − x1_j‖² for j < x1t.cols(); x0 is [N, D], x1t is [D, M] (coordinate-major,
/// so each pass over a coordinate streams contiguous memory).
inline void squared_distance_row(const Matrix<double>& x0, Index i, const Matrix<double>& x1t, double* out) {
  constexpr Index block = 1024;  // keeps the output block in L1 across the D passes
  const Index m = x1t.cols();
  for (Index j0 = 0; j0 < m; j0 += block) {
    const Index len = std::min(block, m - j0);
    Eigen::Map<Eigen::ArrayXd> acc(out + j0, len);
    acc.setZero();
    for (Index d = 0; d < x1t.rows(); ++d) acc += (x1t.row(d).segment(j0, len).array() - x0(i, d)).square();
  }
}

}  // namespace fort::detail
