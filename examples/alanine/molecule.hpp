#pragma once
// Alanine dipeptide (ACE-ALA-NME, 22 atoms, native.pdb order) geometry: the standard frame that
// removes rigid motions exactly, its volume element, backbone dihedrals and basins.
//
// Standard frame. Atoms A = CA (8), B = N (6), C = C (14) of the alanine residue (bonded:
// N-CA-C). Translate A to the origin and rotate so that B lies on +x and C in the xy-plane with
// y > 0. The free coordinates are q = (B.x, C.x, C.y, then x, y, z of the other 19 atoms in index
// order): 60 numbers, a bijection between configurations modulo rigid motions (translations and
// proper rotations) and the chart {B.x > 0, C.y > 0}. Writing the 66 Cartesian coordinates as
// (translation, orientation, q), the Lebesgue measure is d³A · dΩ(orientation) · B.x² · C.y · dq
// (spherical coordinates of B, cylindrical coordinates of C about the A-B axis), so the Boltzmann
// density exp(−u/kT) in Cartesian space becomes, on the chart,
//
//   p(q) ∝ exp(−u(q)/kT) · B.x² · C.y ,   log_jacobian(q) = 2 log B.x + log C.y .
//
// The inverse places A at the origin, B at (B.x, 0, 0), C at (C.x, C.y, 0): a configuration in
// nm whose energy equals that of any rigid motion of it.
#include <fort/fort.hpp>

#include <algorithm>
#include <array>
#include <vector>
#include <cmath>
#include <limits>
#include <numbers>

namespace alanine {

using fort::Index;
inline constexpr Index kAtoms = 22;
inline constexpr Index kCart = 3 * kAtoms;  // 66
inline constexpr Index kFrame = kCart - 6;  // 60
inline constexpr int kA = 8, kB = 6, kC = 14;
inline constexpr std::array<int, 4> kPhi{4, 6, 8, 14}, kPsi{6, 8, 14, 16};
inline constexpr double kT = 0.0083144626 * 300.0;  // kJ/mol at 300 K

struct V3 {
  double x = 0, y = 0, z = 0;
};
inline V3 operator-(V3 a, V3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
inline V3 operator*(double s, V3 a) { return {s * a.x, s * a.y, s * a.z}; }
inline double dot(V3 a, V3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
inline V3 cross(V3 a, V3 b) { return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x}; }
inline double norm(V3 a) { return std::sqrt(dot(a, a)); }

inline V3 atom(const double* xyz, int i) { return {xyz[3 * i], xyz[3 * i + 1], xyz[3 * i + 2]}; }

/// Cartesian xyz[66] (nm) -> q[60]. Returns false for a degenerate frame (A, B, C collinear).
inline bool to_frame(const double* xyz, double* q) {
  const V3 a = atom(xyz, kA), ab = atom(xyz, kB) - a, ac = atom(xyz, kC) - a;
  const double nab = norm(ab);
  if (!(nab > 1e-12)) return false;
  const V3 e1 = (1.0 / nab) * ab;
  const V3 perp = ac - dot(ac, e1) * e1;
  const double np = norm(perp);
  if (!(np > 1e-12)) return false;
  const V3 e2 = (1.0 / np) * perp, e3 = cross(e1, e2);
  q[0] = nab;
  q[1] = dot(ac, e1);
  q[2] = np;
  Index k = 3;
  for (int i = 0; i < kAtoms; ++i) {
    if (i == kA || i == kB || i == kC) continue;
    const V3 d = atom(xyz, i) - a;
    q[k++] = dot(d, e1);
    q[k++] = dot(d, e2);
    q[k++] = dot(d, e3);
  }
  return true;
}

/// q[60] -> Cartesian xyz[66] (nm), in the standard frame.
template <class S>
void from_frame(const S* q, double* xyz) {
  for (Index i = 0; i < kCart; ++i) xyz[i] = 0;
  xyz[3 * kB] = double(q[0]);
  xyz[3 * kC] = double(q[1]);
  xyz[3 * kC + 1] = double(q[2]);
  Index k = 3;
  for (int i = 0; i < kAtoms; ++i) {
    if (i == kA || i == kB || i == kC) continue;
    for (int c = 0; c < 3; ++c) xyz[3 * i + c] = double(q[k++]);
  }
}

/// log(B.x² C.y); −∞ outside the chart (B.x <= 0 or C.y <= 0) or for non-finite q.
template <class S>
double log_jacobian(const S* q) {
  const double bx = double(q[0]), cy = double(q[2]);
  if (!(bx > 0) || !(cy > 0) || !std::isfinite(bx) || !std::isfinite(cy))
    return -std::numeric_limits<double>::infinity();
  return 2 * std::log(bx) + std::log(cy);
}

/// Dihedral angle (radians, (−π, π]) of atoms i-j-k-l.
inline double dihedral(const double* xyz, const std::array<int, 4>& idx) {
  const V3 p0 = atom(xyz, idx[0]), p1 = atom(xyz, idx[1]), p2 = atom(xyz, idx[2]), p3 = atom(xyz, idx[3]);
  const V3 b0 = p0 - p1, b1 = p2 - p1, b2 = p3 - p2;
  const double nb1 = norm(b1);
  if (!(nb1 > 0)) return 0.0;
  const V3 u = (1.0 / nb1) * b1;
  const V3 v = b0 - dot(b0, u) * u, w = b2 - dot(b2, u) * u;
  return std::atan2(dot(cross(u, v), w), dot(v, w));
}

/// Basin of (φ, ψ) in degrees-free terms: +1 C7eq/C5 (extended, φ < 0, ψ > 100° or ψ < −150°),
/// −1 αR (φ < 0, −100° < ψ < 30°), 0 elsewhere (the gap between cores, and φ > 0).
inline int basin(double phi, double psi) {
  constexpr double deg = std::numbers::pi / 180.0;
  if (phi >= 0) return 0;
  if (psi > 100 * deg || psi < -150 * deg) return +1;
  if (psi > -100 * deg && psi < 30 * deg) return -1;
  return 0;
}

/// Counts core-to-core transitions along a sequence of basins (0 entries do not break a visit).
struct CrossingCounter {
  int last = 0;
  Index crossings = 0;
  void add(int b) {
    if (b == 0) return;
    if (last != 0 && b != last) ++crossings;
    last = b;
  }
};

}  // namespace alanine

namespace alanine {

// ---------------------------------------------------------------------------------------------
// Internal coordinates (a Z-matrix). The same three frame atoms give (r_AB, r_AC, angle B-A-C);
// every other atom i is placed from three already placed atoms (j, k, l) by its bond length
// r = |x_i − x_j|, bond angle θ = ∠(i, j, k) and dihedral τ = dihedral(i, j, k, l):
//
//   q = (r_AB, r_AC, θ_BAC, then (r_i, θ_i, τ_i − offset_i) for the 19 atoms in kZOrder)
//
// The Jacobian of Cartesian coordinates modulo rigid motions is triangular with the spherical
// coordinates of each atom about its parent, so
//
//   log_jacobian(q) = 2 log r_AB + 2 log r_AC + log sin θ_BAC + Σ_i (2 log r_i + log sin θ_i),
//
// and p(q) ∝ exp(−u/kT) · J(q) on the chart r > 0, θ ∈ (0, π), τ − offset ∈ [−π, π). Each
// dihedral is stored relative to an offset chosen from the training data so that the cut at ±π
// falls at the dihedral's least-populated angle (for φ = τ of atom 4 and ψ = τ of atom 16 too).
// Stiff bond lengths become single coordinates with small variance, which per-coordinate
// standardisation then makes unit-scale: the reason this chart trains far better than Cartesian.
struct ZEntry {
  int i, j, k, l;
};
// Siblings (methyl H, O vs the other substituent of the same carbon, HA vs CB) take their
// dihedral relative to an already placed sibling, so it is a narrow ±120° / 180° offset instead of
// a rotor angle shared by three coordinates; φ and ψ are the dihedrals of atoms 4 and 16.
inline constexpr std::array<ZEntry, 19> kZOrder{{
    {4, 6, 8, 14},    // C(ACE): C-N-CA-C = φ
    {1, 4, 6, 8},     // CH3(ACE): ω
    {5, 4, 6, 1},     // O(ACE) about C-N, relative to CH3
    {0, 1, 4, 6},     // methyl rotor
    {2, 1, 4, 0},     {3, 1, 4, 0},  // the other methyl H, relative to H 0
    {7, 6, 8, 4},     // H(N) about N-CA, relative to C(ACE)
    {10, 8, 6, 14},   // CB (chirality)
    {9, 8, 6, 10},    // HA, relative to CB
    {11, 10, 8, 6},   {12, 10, 8, 11},  {13, 10, 8, 11},
    {16, 14, 8, 6},   // N(NME): N-C-CA-N = ψ
    {15, 14, 8, 16},  // O(ALA) about CA-C, relative to N(NME)
    {17, 16, 14, 8},  // H(NME N)
    {18, 16, 14, 8},  // CH3(NME)
    {19, 18, 16, 14}, {20, 18, 16, 19}, {21, 18, 16, 19},
}};

inline double bond_angle(const double* xyz, int i, int j, int k) {
  const V3 a = atom(xyz, i) - atom(xyz, j), b = atom(xyz, k) - atom(xyz, j);
  const double c = dot(a, b) / std::max(norm(a) * norm(b), 1e-300);
  return std::acos(std::clamp(c, -1.0, 1.0));
}

inline double wrap_pi(double a) {
  constexpr double two_pi = 2 * std::numbers::pi;
  double r = std::fmod(a + std::numbers::pi, two_pi);
  if (r < 0) r += two_pi;
  if (r >= two_pi) r = 0;
  return r - std::numbers::pi;
}

/// The two charts the example supports.
enum class Chart { frame, internal };

struct Coordinates {
  Chart chart = Chart::internal;
  std::array<double, 19> offset{};  // dihedral offsets (internal chart)

  /// Cartesian xyz[66] -> q[60]; false for a degenerate configuration.
  bool to_q(const double* xyz, double* q) const {
    if (chart == Chart::frame) return to_frame(xyz, q);
    const double rab = norm(atom(xyz, kB) - atom(xyz, kA)), rac = norm(atom(xyz, kC) - atom(xyz, kA));
    if (!(rab > 1e-12) || !(rac > 1e-12)) return false;
    q[0] = rab;
    q[1] = rac;
    q[2] = bond_angle(xyz, kB, kA, kC);
    for (std::size_t n = 0; n < kZOrder.size(); ++n) {
      const ZEntry& z = kZOrder[n];
      q[3 + 3 * n] = norm(atom(xyz, z.i) - atom(xyz, z.j));
      q[4 + 3 * n] = bond_angle(xyz, z.i, z.j, z.k);
      q[5 + 3 * n] = wrap_pi(dihedral(xyz, {z.i, z.j, z.k, z.l}) - offset[n]);
    }
    return true;
  }

  /// q[60] -> Cartesian xyz[66] (nm), A at the origin, B on +x, C in the xy-plane.
  template <class S>
  void from_q(const S* q, double* xyz) const {
    if (chart == Chart::frame) return from_frame(q, xyz);
    for (Index i = 0; i < kCart; ++i) xyz[i] = 0;
    const double rab = double(q[0]), rac = double(q[1]), th = double(q[2]);
    xyz[3 * kB] = rab;
    xyz[3 * kC] = rac * std::cos(th);
    xyz[3 * kC + 1] = rac * std::sin(th);
    for (std::size_t n = 0; n < kZOrder.size(); ++n) {
      const ZEntry& z = kZOrder[n];
      const double r = double(q[3 + 3 * n]), theta = double(q[4 + 3 * n]), tau = double(q[5 + 3 * n]) + offset[n];
      // NeRF: place i from c = j, b = k, a = l.
      const V3 c = atom(xyz, z.j), b = atom(xyz, z.k), a = atom(xyz, z.l);
      V3 bc = c - b;
      bc = (1.0 / std::max(norm(bc), 1e-300)) * bc;
      V3 nrm = cross(b - a, bc);
      nrm = (1.0 / std::max(norm(nrm), 1e-300)) * nrm;
      const V3 m2 = cross(nrm, bc);
      const double d0 = -r * std::cos(theta), d1 = r * std::sin(theta) * std::cos(tau),
                   d2 = r * std::sin(theta) * std::sin(tau);
      xyz[3 * z.i] = c.x + d0 * bc.x + d1 * m2.x + d2 * nrm.x;
      xyz[3 * z.i + 1] = c.y + d0 * bc.y + d1 * m2.y + d2 * nrm.y;
      xyz[3 * z.i + 2] = c.z + d0 * bc.z + d1 * m2.z + d2 * nrm.z;
    }
  }

  /// log J(q); −∞ outside the chart or for non-finite q.
  template <class S>
  double log_jacobian(const S* q) const {
    if (chart == Chart::frame) return alanine::log_jacobian(q);
    constexpr double ninf = -std::numeric_limits<double>::infinity();
    auto log_r = [](double r) { return r > 0 && std::isfinite(r) ? std::log(r) : ninf; };
    auto log_sin = [](double t) { return t > 0 && t < std::numbers::pi ? std::log(std::sin(t)) : ninf; };
    double s = 2 * log_r(double(q[0])) + 2 * log_r(double(q[1])) + log_sin(double(q[2]));
    for (std::size_t n = 0; n < kZOrder.size(); ++n) {
      const double tau = double(q[5 + 3 * n]);
      if (!(tau >= -std::numbers::pi && tau < std::numbers::pi)) return ninf;
      s += 2 * log_r(double(q[3 + 3 * n])) + log_sin(double(q[4 + 3 * n]));
    }
    return std::isnan(s) ? ninf : s;
  }
};

/// Offsets putting each dihedral's cut at its least-populated angle (36 bins) in xyz [N, 66].
inline std::array<double, 19> fit_dihedral_offsets(const fort::Matrix<double>& xyz) {
  std::array<double, 19> off{};
  constexpr int bins = 36;
  std::vector<double> row(kCart);
  std::vector<std::array<Index, bins>> hist(kZOrder.size());
  for (auto& h : hist) h.fill(0);
  for (Index r = 0; r < xyz.rows(); ++r) {
    for (Index c = 0; c < kCart; ++c) row[std::size_t(c)] = xyz(r, c);
    for (std::size_t n = 0; n < kZOrder.size(); ++n) {
      const ZEntry& z = kZOrder[n];
      const double t = dihedral(row.data(), {z.i, z.j, z.k, z.l});
      const int b = std::clamp(int((t + std::numbers::pi) / (2 * std::numbers::pi) * bins), 0, bins - 1);
      ++hist[n][std::size_t(b)];
    }
  }
  for (std::size_t n = 0; n < kZOrder.size(); ++n) {
    int best = 0;
    for (int b = 1; b < bins; ++b)
      if (hist[n][std::size_t(b)] < hist[n][std::size_t(best)]) best = b;
    const double cut = -std::numbers::pi + (best + 0.5) * (2 * std::numbers::pi / bins);
    off[n] = wrap_pi(cut + std::numbers::pi);  // τ − offset = ±π exactly at the cut
  }
  return off;
}

}  // namespace alanine
