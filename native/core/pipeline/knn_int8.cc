// int8 nearest neighbours with a float32 guarantee (knn_int8.h).
//
// The bound. The float32 search (knn.cc) ranks bank rows b for a query q by
//   f(b) = |b|^2 - 2 q.b      (|b|^2: the float norms it holds; |q|^2 is common to all rows).
// Centring: distances do not change when a vector mu (the bank mean) is taken from both sides,
// and real features share a large mean (on magnetic_tile 10% of the rows stayed candidates
// without it, 0.1% with it). With b' = b - mu and q' = q - mu (in double),
//   f(b) = |b'|^2 - 2 q'.b' + C_q,   C_q = |q'|^2 - |q|^2 the same for every row of a query.
// Quantisation, per row: b~ = lo_b + s_b u with u in 0..255 (the unsigned VNNI operand) for b',
// q~ = s_q q^ with q^ in -127..127 for q'; r_b = b' - b~, r_q = q' - q~. The kernel sums
// I = q^.u exactly in int32, and in real arithmetic
//   q~.b~ = s_q (lo_b sum(q^) + s_b I),     q'.b' - q~.b~ = q'.r_b + r_q.b~,
// so by Cauchy-Schwarz, with e~(b) = |b'|^2 - 2 q~.b~,
//   |f(b) - C_q - e~(b)| <= eps(q, b) = 2 (|q'| |r_b| + |r_q| |b~|)
// from per-row |r_b|, |b~| and per-query |q'|, |r_q| (summed in double, rounded up to float).
// Rounding (u = 2^-24): the float32 search's own value e_ref(b) = fl(|b|^2 - 2 fl(q.b)) is within
// 2 D u |q||b| + u |f(b)| of f(b) whatever its summation order; our float evaluation of e~ (|b'|^2
// stored in float) is within u |e~| + ~10 u (1 + 2 sqrt D) |q'||b'| of it (its terms are at most
// (1 + 2 sqrt D) |q'||b'|, and |q~| <= (1 + sqrt(D) / 254) |q'|, likewise |b~|: 1.13 at D = 1024).
// Both fit, about twice over (which also covers evaluating the bounds in float and the double
// sums), in
//   rho(q, b) = kappa ((|q| + |b|)^2 + (|q'| + |b'|)^2)
//             <= 2 kappa (|q|^2 + |q'|^2) + 2 kappa (|b|^2 + |b'|^2),   kappa = (2 D + 32 sqrt D + 64) u.
// Hence lower(b) = e~ - eps - rho <= e_ref(b) - C_q <= e~ + eps + rho = upper(b). The float32
// search's minimum (less C_q) is at most T = min_b upper(b), so its row has lower <= T: every row
// with lower <= T is re-scored in float32 as the float32 search computes it (in another summation
// order), best lower bound first. A re-scored row b1 also caps that minimum at
// e(b1) - C_q + 2 rho(q, b1) (both float32 values are within rho of f(b1)), which ends the
// re-scoring early. Near-ties within float32 rounding may resolve to another equally near row,
// as another summation order would.
#include "core/pipeline/knn_int8.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#if defined(__x86_64__) && defined(__GNUC__)
// GCC 12's AVX-512 headers start results from _mm512_undefined_*(), which it then reports.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#define RP_KNN_INT8_X86 1
#define RP_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))
#else
#define RP_KNN_INT8_X86 0
#endif

namespace rp {
namespace {

constexpr int kMR = 8;                // queries per kernel call
constexpr int kNR = 3;                // 16-row panels per kernel call: 24 int32 accumulators
constexpr int kPanel = 16;            // bank rows per panel: one zmm of int32 sums
constexpr int64_t kChunkPanels = 24;  // 384 bank rows (384 KiB at D = 1024) stay in L2 while...
constexpr int64_t kBlockGroups = 32;  // ...256 queries pass over them
enum Term { kLo, kStep, kResid, kNormQ, kNorm, kSlack, kTerms };  // rows of rowTerms_
constexpr float kInf = std::numeric_limits<float>::infinity();

std::atomic<bool>& enabledFlag() {
  static std::atomic<bool> flag{[] {
    const char* env = std::getenv("RECONPATCH_KNN");
    return !(env && std::strcmp(env, "float32") == 0);
  }()};
  return flag;
}
std::atomic<int64_t> gQueries{0}, gRescored{0}, gFallback{0};

// The smallest float >= x.
float upward(double x) {
  const float f = static_cast<float>(x);
  return static_cast<double>(f) >= x ? f : std::nextafter(f, kInf);
}
// A bound term (x >= 0) rounded up, after a relative 1e-9 for the double sums' own rounding.
float roundUp(double x) { return upward(x * (1 + 1e-9)); }

struct Candidate {
  float lower;
  int64_t row;
};

// Per query: the scale terms of e~ and eps, the running threshold T and per-lane minima of upper.
struct QueryState {
  alignas(64) float vmin[kPanel];
  float scale2 = 0;  // 2 s_q
  float sumQ = 0;    // sum(q^), exact in float
  float alpha = 0;   // 2 |q'|
  float beta = 0;    // 2 |r_q|
  float slack = 0;   // 2 kappa (|q|^2 + |q'|^2)
  double shift = 0;  // C_q = |q'|^2 - |q|^2
  float threshold = kInf;
  bool finite = true;
};

#if RP_KNN_INT8_X86

// q' = q - mu, q^ = round(q' / s_q), s_q = max|q'| / 127; the bound uses the actual residual, so
// any rounding works. Sums in kLanes partial sums so that the loops vectorise. centred: scratch [D].
RP_VNNI_TARGET void quantiseQuery(const float* q, const float* mu, int64_t D, double kappa, int8_t* out, double* centred,
                                  QueryState* s) {
  constexpr int kLanes = 8;
  double top[kLanes] = {}, norm2[kLanes] = {}, centred2[kLanes] = {};
  for (int64_t i0 = 0; i0 < D; i0 += kLanes)
    for (int l = 0; l < kLanes && i0 + l < D; ++l) {
      const double x = q[i0 + l], c = x - mu[i0 + l];
      centred[i0 + l] = c;
      top[l] = std::max(top[l], std::fabs(c));
      norm2[l] += x * x;
      centred2[l] += c * c;
    }
  double topAll = 0, n2 = 0, c2 = 0;
  for (int l = 0; l < kLanes; ++l) {
    topAll = std::max(topAll, top[l]);
    n2 += norm2[l];
    c2 += centred2[l];
  }
  if (!std::isfinite(n2) || !std::isfinite(c2)) {  // a NaN or infinity in q
    s->finite = false;
    return;
  }
  const float scale = static_cast<float>(topAll / 127);
  const double inv = scale > 0 ? 1.0 / scale : 0;
  double resid2[kLanes] = {}, sum[kLanes] = {};
  for (int64_t i0 = 0; i0 < D; i0 += kLanes)
    for (int l = 0; l < kLanes && i0 + l < D; ++l) {
      const double v = std::min(127.0, std::max(-127.0, std::nearbyint(centred[i0 + l] * inv)));
      out[i0 + l] = static_cast<int8_t>(v);
      sum[l] += v;
      const double r = centred[i0 + l] - static_cast<double>(scale) * v;  // s_q q^_i is exact in double
      resid2[l] += r * r;
    }
  double r2 = 0, total = 0;
  for (int l = 0; l < kLanes; ++l) {
    r2 += resid2[l];
    total += sum[l];
  }
  std::fill(s->vmin, s->vmin + kPanel, kInf);
  s->scale2 = 2 * scale;
  s->sumQ = static_cast<float>(total);
  s->alpha = roundUp(2 * std::sqrt(c2));
  s->beta = roundUp(2 * std::sqrt(r2));
  s->slack = roundUp(2 * kappa * (n2 + c2));
  s->shift = c2 - n2;
}

// acc += sum of 4 (uint8 u) * (int8 s) products per int32 lane. Inline assembly because GCC 12
// wraps the intrinsic's accumulator in register copies (66 moves per 24 products, 2.5x slower).
#define RP_DPBUSD(acc, u, s) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s))
#define RP_TILE_ZERO(i) __m512i c##i##0 = _mm512_setzero_si512(), c##i##1 = c##i##0, c##i##2 = c##i##0;
#define RP_TILE_ROW(i)                                    \
  {                                                       \
    int32_t w;                                            \
    std::memcpy(&w, q + (i) * qStride + 4 * kk, 4);       \
    const __m512i a = _mm512_set1_epi32(w);               \
    RP_DPBUSD(c##i##0, b0, a);                            \
    RP_DPBUSD(c##i##1, b1, a);                            \
    RP_DPBUSD(c##i##2, b2, a);                            \
  }
#define RP_TILE_STORE(i)                                  \
  _mm512_store_si512(out + ((i) * kNR + 0) * kPanel, c##i##0); \
  _mm512_store_si512(out + ((i) * kNR + 1) * kPanel, c##i##1); \
  _mm512_store_si512(out + ((i) * kNR + 2) * kPanel, c##i##2);

// out[(i kNR + j) 16 + l] = q^_i . u_{row l of panel j}: kMR queries (rows of q, qStride bytes
// apart) against kNR panels (panelBytes apart), over groups4 groups of 4 dimensions.
RP_VNNI_TARGET void dotTile(const int8_t* q, int64_t qStride, const uint8_t* panel, int64_t panelBytes,
                            int64_t groups4, int32_t* out) {
  RP_TILE_ZERO(0) RP_TILE_ZERO(1) RP_TILE_ZERO(2) RP_TILE_ZERO(3)
  RP_TILE_ZERO(4) RP_TILE_ZERO(5) RP_TILE_ZERO(6) RP_TILE_ZERO(7)
  for (int64_t kk = 0; kk < groups4; ++kk) {
    const __m512i b0 = _mm512_loadu_si512(panel + kk * 64);
    const __m512i b1 = _mm512_loadu_si512(panel + panelBytes + kk * 64);
    const __m512i b2 = _mm512_loadu_si512(panel + 2 * panelBytes + kk * 64);
    RP_TILE_ROW(0) RP_TILE_ROW(1) RP_TILE_ROW(2) RP_TILE_ROW(3)
    RP_TILE_ROW(4) RP_TILE_ROW(5) RP_TILE_ROW(6) RP_TILE_ROW(7)
  }
  RP_TILE_STORE(0) RP_TILE_STORE(1) RP_TILE_STORE(2) RP_TILE_STORE(3)
  RP_TILE_STORE(4) RP_TILE_STORE(5) RP_TILE_STORE(6) RP_TILE_STORE(7)
}

// From one tile of int32 sums (queries q0.., bank rows row0..): e~, eps, the bounds; keeps the
// per-lane minima of upper and appends rows whose lower bound is <= the query's threshold.
// T: rowTerms_ (stride `rows`).
RP_VNNI_TARGET void boundTile(const int32_t* tile, int64_t q0, int64_t qEnd, int64_t row0, const float* T, int64_t rows,
                              int64_t excludeBegin, int64_t excludeEnd, QueryState* states, std::vector<Candidate>* cands) {
  // Rows in [excludeBegin, excludeEnd) take part in neither bound nor candidates: per panel, a lane mask.
  __mmask16 keep[kNR];
  for (int j = 0; j < kNR; ++j) {
    const int64_t r = row0 + j * kPanel;
    keep[j] = 0xFFFF;
    if (r < excludeEnd && r + kPanel > excludeBegin)
      for (int l = 0; l < kPanel; ++l)
        if (r + l >= excludeBegin && r + l < excludeEnd) keep[j] &= static_cast<__mmask16>(~(1u << l));
  }
  for (int i = 0; i < kMR && q0 + i < qEnd; ++i) {
    QueryState& s = states[q0 + i];
    if (!s.finite) continue;
    __m512 vmin = _mm512_load_ps(s.vmin);
    const __m512 sumQ = _mm512_set1_ps(s.sumQ), scale2 = _mm512_set1_ps(s.scale2);
    const __m512 alpha = _mm512_set1_ps(s.alpha), beta = _mm512_set1_ps(s.beta), slack = _mm512_set1_ps(s.slack);
    for (int j = 0; j < kNR; ++j) {
      const int64_t r = row0 + j * kPanel;
      const __m512 dot = _mm512_cvtepi32_ps(_mm512_load_si512(tile + (i * kNR + j) * kPanel));
      // lo_b sum(q^) + s_b I, then e~ = |b|^2 - 2 s_q (that)
      const __m512 t = _mm512_fmadd_ps(_mm512_loadu_ps(T + kStep * rows + r), dot,
                                       _mm512_mul_ps(_mm512_loadu_ps(T + kLo * rows + r), sumQ));
      const __m512 e = _mm512_fnmadd_ps(scale2, t, _mm512_loadu_ps(T + kNorm * rows + r));
      const __m512 eps = _mm512_add_ps(
          _mm512_fmadd_ps(alpha, _mm512_loadu_ps(T + kResid * rows + r),
                          _mm512_fmadd_ps(beta, _mm512_loadu_ps(T + kNormQ * rows + r), _mm512_loadu_ps(T + kSlack * rows + r))),
          slack);
      const __m512 lower = _mm512_sub_ps(e, eps);
      vmin = _mm512_mask_min_ps(vmin, keep[j], vmin, _mm512_add_ps(e, eps));
      __mmask16 hit = _mm512_mask_cmp_ps_mask(keep[j], lower, _mm512_set1_ps(s.threshold), _CMP_LE_OQ);
      if (hit) {  // rare once the threshold has come down: tighten it, then keep what still passes
        s.threshold = std::min(s.threshold, _mm512_reduce_min_ps(vmin));
        hit = _mm512_mask_cmp_ps_mask(keep[j], lower, _mm512_set1_ps(s.threshold), _CMP_LE_OQ);
        alignas(64) float low[kPanel];
        _mm512_store_ps(low, lower);
        for (; hit; hit &= static_cast<__mmask16>(hit - 1)) {
          const int l = __builtin_ctz(hit);
          cands[q0 + i].push_back({low[l], r + l});
        }
      }
    }
    _mm512_store_ps(s.vmin, vmin);
  }
}

// float32 dot product (any summation order is within the bound's allowance).
RP_VNNI_TARGET float dotF32(const float* a, const float* b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

#endif  // RP_KNN_INT8_X86

}  // namespace

bool knnInt8Supported() {
#if RP_KNN_INT8_X86
  static const bool supported = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
  }();
  return supported;
#else
  return false;
#endif
}

bool knnInt8Enabled() { return knnInt8Supported() && enabledFlag().load(); }
void setKnnInt8Enabled(bool enabled) { enabledFlag().store(enabled); }

KnnInt8Counters knnInt8Counters() { return {gQueries.load(), gRescored.load(), gFallback.load()}; }
void resetKnnInt8Counters() {
  gQueries = 0;
  gRescored = 0;
  gFallback = 0;
}

Int8Bank::Int8Bank(const torch::Tensor& bank, const torch::Tensor& norms) : bank_(bank), norms_(norms) {
  n_ = bank.size(0);
  dim_ = bank.size(1);
  dim4_ = (dim_ + 3) / 4 * 4;
  panels_ = (n_ + kPanel * kNR - 1) / (kPanel * kNR) * kNR;  // whole kernel tiles; extra rows are padding
  const int64_t rows = panels_ * kPanel, panelBytes = dim4_ * kPanel;
  kappa_ = (2.0 * dim_ + 32.0 * std::sqrt(static_cast<double>(dim_)) + 64.0) * std::ldexp(1.0, -24);
  // int32 sums of up to 127 * 255 * D stay exact up to D = 65536 (and so does the argument above).
  if (!knnInt8Supported() || n_ == 0 || dim_ > 65536) return;
  packed_ = torch::zeros({panels_, dim4_ / 4, kPanel, 4}, torch::kUInt8);
  rowTerms_ = torch::zeros({kTerms, rows});
  float* T = rowTerms_.data_ptr<float>();
  std::fill(T + kNorm * rows + n_, T + (kNorm + 1) * rows, kInf);  // padding rows: e~ = +inf, never candidates
  uint8_t* packed = packed_.data_ptr<uint8_t>();
  const float* b = bank_.data_ptr<float>();
  const float* nb = norms_.data_ptr<float>();
  auto mean = bank_.to(torch::kFloat64).mean(0);  // [D]; any mu is exact, the mean makes b' small
  if (!mean.isfinite().all().item<bool>()) return;
  mean_ = mean.to(torch::kFloat32).contiguous();
  const float* mu = mean_.data_ptr<float>();
  std::atomic<bool> finite{true};
  at::parallel_for(0, n_, 64, [&](int64_t r0, int64_t r1) {
    std::vector<uint8_t> u(static_cast<size_t>(dim4_), 0);
    std::vector<double> c(static_cast<size_t>(dim_));  // b' = b - mu
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = b + r * dim_;
      double lo = INFINITY, hi = -INFINITY, centred2 = 0;
      for (int64_t i = 0; i < dim_; ++i) {
        c[i] = static_cast<double>(row[i]) - mu[i];
        lo = std::min(lo, c[i]);
        hi = std::max(hi, c[i]);
        centred2 += c[i] * c[i];
      }
      // lo as a float at or below the minimum; the bound uses the actual residual in any case.
      const float loF = static_cast<float>(lo) > lo ? std::nextafter(static_cast<float>(lo), -kInf) : static_cast<float>(lo);
      const float step = static_cast<float>((hi - loF) / 255);
      if (!std::isfinite(lo) || !std::isfinite(hi) || !std::isfinite(loF) || !std::isfinite(step) || !std::isfinite(nb[r])) {
        finite = false;
        continue;
      }
      double resid2 = 0, tilde2 = 0;
      for (int64_t i = 0; i < dim_; ++i) {
        const int v = step > 0 ? static_cast<int>(std::min(255.0, std::max(0.0, std::nearbyint((c[i] - loF) / step)))) : 0;
        u[i] = static_cast<uint8_t>(v);
        const double tilde = static_cast<double>(loF) + static_cast<double>(step) * v;
        resid2 += (c[i] - tilde) * (c[i] - tilde);
        tilde2 += tilde * tilde;
      }
      uint8_t* dst = packed + (r / kPanel) * panelBytes + (r % kPanel) * 4;
      for (int64_t g = 0; g < dim4_ / 4; ++g) std::memcpy(dst + g * kPanel * 4, u.data() + g * 4, 4);
      T[kLo * rows + r] = loF;
      T[kStep * rows + r] = step;
      T[kResid * rows + r] = roundUp(std::sqrt(resid2));
      T[kNormQ * rows + r] = roundUp(std::sqrt(tilde2));
      T[kNorm * rows + r] = static_cast<float>(centred2);  // |b'|^2: its rounding is inside rho
      T[kSlack * rows + r] = roundUp(2 * kappa_ * (static_cast<double>(nb[r]) + centred2));
    }
  });
  usable_ = finite.load();
}

int64_t Int8Bank::bytes() const {
  return (packed_.defined() ? packed_.numel() : 0) + (rowTerms_.defined() ? rowTerms_.numel() * 4 : 0) +
         (mean_.defined() ? mean_.numel() * 4 : 0);
}

void Int8Bank::nearest(const torch::Tensor& q, torch::Tensor* distances, torch::Tensor* indices,
                       std::vector<int64_t>* fallback, int64_t excludeBegin, int64_t excludeEnd) const {
  const int64_t m = q.size(0);
  *distances = torch::zeros({m, 1});
  *indices = torch::zeros({m, 1}, torch::kInt64);
  fallback->clear();
#if RP_KNN_INT8_X86
  if (m == 0) return;
  const int64_t mPad = (m + kMR - 1) / kMR * kMR, groups = mPad / kMR;
  const int64_t rows = panels_ * kPanel, panelBytes = dim4_ * kPanel;
  auto qq = torch::zeros({mPad, dim4_}, torch::kInt8);  // padding queries are zero and skipped
  int8_t* qqp = qq.data_ptr<int8_t>();
  const float* qp = q.data_ptr<float>();
  std::vector<QueryState> states(static_cast<size_t>(m));
  const float* mu = mean_.data_ptr<float>();
  at::parallel_for(0, m, 16, [&](int64_t i0, int64_t i1) {
    std::vector<double> centred(static_cast<size_t>(dim_));
    for (int64_t i = i0; i < i1; ++i)
      quantiseQuery(qp + i * dim_, mu, dim_, kappa_, qqp + i * dim4_, centred.data(), &states[i]);
  });
  const auto qNorms = q.pow(2).sum(1).contiguous();  // |q|^2 as the float32 search adds it
  const float* qn = qNorms.data_ptr<float>();

  // The int8 pass: each thread takes a contiguous range of query groups.
  std::vector<std::vector<Candidate>> cands(static_cast<size_t>(m));
  const uint8_t* packed = packed_.data_ptr<uint8_t>();
  const float* T = rowTerms_.data_ptr<float>();
  at::parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
    alignas(64) int32_t tile[kMR * kNR * kPanel];
    for (int64_t b0 = g0; b0 < g1; b0 += kBlockGroups) {
      const int64_t b1 = std::min(g1, b0 + kBlockGroups);
      for (int64_t p0 = 0; p0 < panels_; p0 += kChunkPanels) {
        const int64_t p1 = std::min(panels_, p0 + kChunkPanels);
        for (int64_t g = b0; g < b1; ++g)
          for (int64_t p = p0; p < p1; p += kNR) {
            dotTile(qqp + g * kMR * dim4_, dim4_, packed + p * panelBytes, panelBytes, dim4_ / 4, tile);
            boundTile(tile, g * kMR, m, p * kPanel, T, rows, excludeBegin, excludeEnd, states.data(), cands.data());
          }
      }
    }
  });

  // Re-score the candidates in float32, best lower bound first, until none can beat the cap.
  // Past `limit` re-scored rows a query goes to the float32 GEMM instead (adversarial banks where
  // every row is about as far: there the GEMM is cheaper than row-by-row products).
  const int64_t limit = std::max<int64_t>(64, n_ / 16);
  const float* bank = bank_.data_ptr<float>();
  const float* norms = norms_.data_ptr<float>();
  float* dOut = distances->data_ptr<float>();
  int64_t* iOut = indices->data_ptr<int64_t>();
  std::vector<char> sendBack(static_cast<size_t>(m), 0);
  std::atomic<int64_t> rescored{0};
  at::parallel_for(0, m, 8, [&](int64_t i0, int64_t i1) {
    int64_t done = 0;
    for (int64_t i = i0; i < i1; ++i) {
      const QueryState& s = states[i];
      if (!s.finite) {
        sendBack[i] = 1;
        continue;
      }
      float cap = s.threshold;
      for (float v : s.vmin) cap = std::min(cap, v);
      auto& c = cands[i];
      c.erase(std::remove_if(c.begin(), c.end(), [&](const Candidate& x) { return x.lower > cap; }), c.end());
      std::sort(c.begin(), c.end(), [](const Candidate& a, const Candidate& b) { return a.lower < b.lower || (a.lower == b.lower && a.row < b.row); });
      float best = kInf;
      int64_t bestRow = -1, count = 0;
      for (const auto& x : c) {
        if (x.lower > cap) break;
        if (count == limit) {
          sendBack[i] = 1;
          break;
        }
        const float e = norms[x.row] - 2.f * dotF32(qp + i * dim_, bank + x.row * dim_, dim_);
        ++count;
        if (e < best || (e == best && x.row < bestRow)) {
          best = e;
          bestRow = x.row;
        }
        cap = std::min(cap, upward(e - s.shift + 2.0 * (s.slack + T[kSlack * rows + x.row])));
      }
      done += count;
      if (bestRow < 0) sendBack[i] = 1;  // cannot happen with finite values; the GEMM decides then
      if (sendBack[i]) continue;
      dOut[i] = std::max(best + qn[i], 0.f);
      iOut[i] = bestRow;
    }
    rescored += done;
  });
  for (int64_t i = 0; i < m; ++i)
    if (sendBack[i]) fallback->push_back(i);
  gQueries += m;
  gRescored += rescored.load();
  gFallback += static_cast<int64_t>(fallback->size());
#else
  for (int64_t i = 0; i < m; ++i) fallback->push_back(i);
#endif
}

}  // namespace rp
