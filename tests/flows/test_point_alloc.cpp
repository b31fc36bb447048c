// The per-sample path (Flow::sample_point / forward_point / inverse_point / log_prob_point)
// allocates nothing: counted by replacing the global operator new/delete (and, on glibc without
// sanitizers, malloc/calloc/realloc, which Eigen's dynamic matrices use directly).
//
// All tests compile into one executable, so the replacements are global: they count only while
// the calling thread has switched counting on (a thread_local flag), and otherwise just forward.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <new>
#include <vector>

#include "fort/flows/flow.hpp"
#include "fort/flows/repeat.hpp"
#include "fort/flows/sequential.hpp"
#include "fort/layers/affine_coupling.hpp"
#include "fort/layers/permutation.hpp"
#include "fort/layers/spline_coupling.hpp"

namespace {
thread_local bool t_counting = false;
thread_local long t_allocations = 0;

inline void note_allocation() {
  if (t_counting) ++t_allocations;
}

/// Counts the allocations made by `f` on this thread.
template <class F>
long count_allocations(F&& f) {
  t_allocations = 0;
  t_counting = true;
  f();
  t_counting = false;
  return t_allocations;
}
}  // namespace

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
#define FORT_TEST_COUNT_MALLOC 1
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* malloc(std::size_t n) {
  note_allocation();
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t s) {
  note_allocation();
  return __libc_calloc(n, s);
}
void* realloc(void* p, std::size_t n) {
  note_allocation();
  return __libc_realloc(p, n);
}
}
#endif

// Replacements of the global allocation functions (all forms that can allocate).
void* operator new(std::size_t n) {
  note_allocation();
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  note_allocation();
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(std::size_t n, std::align_val_t a) {
  note_allocation();
  const std::size_t al = std::size_t(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

using namespace fort;

namespace {

template <class Coupling, class... Args>
auto point_flow(Index d, Args... args) {
  using S = typename Coupling::Scalar;
  using Transform = std::remove_cvref_t<decltype(std::declval<const Coupling&>().transform())>;
  using Block = Sequential<Coupling, Permutation<S>>;
  Repeat<Block> blocks(4, [&](Index i) {
    return Block(Coupling(Mask::half(d, i % 2 == 1), MLPConfig{32, 2, Activation::silu, false}, Transform(args...)),
                 Permutation<S>::random(d, Random(6).child(std::uint64_t(i))));
  });
  Flow flow(StandardNormal<S>(d), std::move(blocks), 7);
  Random(8).fill_normal(std::span<S>(flow.params().data(), std::size_t(flow.params().size())), 0, 0.1);
  return flow;
}

template <class F>
void check_no_allocation(const F& flow) {
  using S = typename F::Scalar;
  const Index d = flow.dim();
  // Everything the caller owns is allocated before counting starts.
  std::vector<S> x(static_cast<std::size_t>(d)), z(static_cast<std::size_t>(d));
  std::vector<S> scratch(static_cast<std::size_t>(flow.point_scratch_size()));
  const Random rng(3);
  S lp = 0, ld = 0, lp2 = 0, ld2 = 0;
  const long n = count_allocations([&] {
    for (std::uint64_t i = 0; i < 8; ++i) {
      lp = flow.sample_point(rng, i, x.data(), scratch.data());
      lp2 = flow.log_prob_point(x.data(), scratch.data());
      flow.inverse_point(x.data(), z.data(), ld2, scratch.data());
      flow.forward_point(z.data(), x.data(), ld, scratch.data());
    }
  });
  CHECK(n == 0);
  // The calls did real work: the round trip and the two densities agree.
  const double tol = std::is_same_v<S, float> ? 1e-3 : 1e-9;
  CHECK(std::abs(double(lp) - double(lp2)) <= tol * (1 + std::abs(double(lp))));
  CHECK(std::abs(double(ld) + double(ld2)) <= tol * (1 + std::abs(double(ld))));
}

}  // namespace

TEST_CASE("point path: the allocation counter sees allocations", "[flows][alloc]") {
  const long n = count_allocations([] {
    std::vector<double>* v = new std::vector<double>(10);
    delete v;
  });
  CHECK(n >= 2);
#ifdef FORT_TEST_COUNT_MALLOC
  const long m = count_allocations([] {
    Eigen::VectorXd v(100);  // Eigen allocates with malloc, not operator new
    v.setZero();
    REQUIRE(v.sum() == 0.0);
  });
  CHECK(m >= 1);
#endif
}

TEMPLATE_TEST_CASE("point path: affine and spline flows allocate nothing per sample", "[flows][alloc]", float,
                   double) {
  SECTION("affine, dynamic D") { check_no_allocation(point_flow<AffineCoupling<TestType>>(66, 3.0)); }
  SECTION("affine, D = 5") { check_no_allocation(point_flow<AffineCoupling<TestType>>(5, 3.0)); }
  SECTION("spline, dynamic D") { check_no_allocation(point_flow<SplineCoupling<TestType>>(66, Index(8))); }
  SECTION("spline, D = 5") { check_no_allocation(point_flow<SplineCoupling<TestType>>(5, Index(8))); }
}
