// Fused CPU kernels for the uniform int8/int4/int2 schemes (qc2c/kv/schemes/uniform.py), one pass each way.
//
// encode: x (R, L, H, n, D) fp16/bf16/fp32 -> packed codes (R, P) uint8, scales (R, G) fp16/fp32, offsets
// (R, G): uint8 zero points (observer) or mins in the scale dtype (kivi), none when symmetric; decode: the inverse into (R, L, H, n, D) of the requested dtype. Groups are `group` channels
// of one token (axis "token") or `group` tokens of one channel (axis "channel"); a ragged last group simply
// has fewer members (the eager path pads it with copies of its last element, which changes no statistic).
//
// Every float operation is the eager code's, in its order and in float32, so the bytes are identical:
//   observer:  lo = min(min x, 0), hi = max(max x, 0), s = (hi - lo) / qmax
//   symmetric: s = max(-min x, max x) / (2^(b-1) - 1)
//   (both)     stored = dtype(max(s, tiny) * (1 + eps)) (fp16; fp32 stores max(s, tiny)), inv = 1 / stored
//              zero = clamp(rint(-lo * inv), 0, qmax) (observer) or 2^(b-1) (symmetric)
//              code = clamp(rint(x * inv) + zero, low, high); decoded = dtype((code - zero) * stored)
//   kivi:      lo = min x, hi = max x, s = (hi - lo) / qmax, stored = dtype(max(s, tiny)) (nearest),
//              inv = 1 / stored, zero = dtype(lo) (nearest: the stored min, kept in the `zero` arrays),
//              code = clamp(rint((x - zero) * inv), 0, qmax); decoded = dtype(code * stored + zero)
// rint is round-half-to-even (the default rounding mode), as torch.round. Packing: lowest bits first, per row.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <vector>

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#define QC2C_AVX2 1
#endif

namespace {

constexpr int kBadInput = 1;     // a non-finite element (NaN/Inf) in x
constexpr int kScaleOverflow = 2;  // a scale that does not fit the scale dtype

// ---- float conversion of a run of n elements ----

inline void to_f32(const float* s, float* d, int64_t n) { std::memcpy(d, s, n * sizeof(float)); }

inline void to_f32(const at::Half* s, float* d, int64_t n) {
  int64_t i = 0;
#ifdef QC2C_AVX2
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
#endif
  for (; i < n; ++i) d[i] = static_cast<float>(s[i]);
}

inline void to_f32(const at::BFloat16* s, float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(s[i]);
}

inline void from_f32(const float* s, float* d, int64_t n) { std::memcpy(d, s, n * sizeof(float)); }

inline void from_f32(const float* s, at::Half* d, int64_t n) {
  int64_t i = 0;
#ifdef QC2C_AVX2
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i < n; ++i) d[i] = static_cast<at::Half>(s[i]);  // round to nearest even, as Tensor.to
}

inline void from_f32(const float* s, at::BFloat16* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = static_cast<at::BFloat16>(s[i]);
}

// ---- statistics ----

#ifdef QC2C_AVX2
inline float hmin(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_min_ss(m, _mm_movehdup_ps(m)));
}
inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}
inline float hsum(__m256 v) {  // only tested against 0: NaN iff a lane is NaN (lanes are 0 or NaN)
  __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_add_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
}
// 8 elements of x as float
inline __m256 load8(const float* x) { return _mm256_loadu_ps(x); }
inline __m256 load8(const at::Half* x) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x))); }
inline __m256 load8(const at::BFloat16* x) {
  __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
#endif

// float -> fp16 -> float (round to nearest even; overflow gives inf), and the stored form
inline float round_half(float s) {
#ifdef QC2C_AVX2
  return _cvtsh_ss(_cvtss_sh(s, _MM_FROUND_TO_NEAREST_INT));
#else
  return static_cast<float>(static_cast<at::Half>(s));
#endif
}
inline void store_scale(float* p, float v) { *p = v; }
inline void store_scale(at::Half* p, float v) {  // v is an fp16 value: exact
#ifdef QC2C_AVX2
  p->x = _cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT);
#else
  *p = static_cast<at::Half>(v);
#endif
}

// min/max over x[0:n] into lo/hi (scalars); `nonfinite` accumulates x*0 (NaN iff some element is NaN/Inf).
inline void minmax_run(const float* x, int64_t n, float& lo, float& hi, float& nonfinite) {
  int64_t i = 0;
#ifdef QC2C_AVX2
  if (n >= 8) {
    __m256 vlo = _mm256_loadu_ps(x), vhi = vlo, vz = _mm256_setzero_ps(), zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
      __m256 v = _mm256_loadu_ps(x + i);
      vlo = _mm256_min_ps(vlo, v);
      vhi = _mm256_max_ps(vhi, v);
      vz = _mm256_add_ps(vz, _mm256_mul_ps(v, zero));
    }
    lo = std::min(lo, hmin(vlo));
    hi = std::max(hi, hmax(vhi));
    nonfinite += hsum(vz);
  }
#endif
  for (; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    nonfinite += x[i] * 0.0f;
  }
}

// elementwise lo[i] = min(lo[i], x[i]) etc. over one token row (channel groups)
inline void minmax_vec(const float* x, int64_t n, float* lo, float* hi, float* nonfinite) {
  int64_t i = 0;
#ifdef QC2C_AVX2
  const __m256 zero = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    _mm256_storeu_ps(lo + i, _mm256_min_ps(_mm256_loadu_ps(lo + i), v));
    _mm256_storeu_ps(hi + i, _mm256_max_ps(_mm256_loadu_ps(hi + i), v));
    _mm256_storeu_ps(nonfinite + i, _mm256_add_ps(_mm256_loadu_ps(nonfinite + i), _mm256_mul_ps(v, zero)));
  }
#endif
  for (; i < n; ++i) {
    lo[i] = std::min(lo[i], x[i]);
    hi[i] = std::max(hi[i], x[i]);
    nonfinite[i] += x[i] * 0.0f;
  }
}

struct Spec {
  int bits;
  bool symmetric;
  bool kivi;  // asymmetric in the kivi convention (false: observer, or symmetric)
  bool fp16_scale;
  float qmax() const { return static_cast<float>((1 << bits) - 1); }
  float half() const { return static_cast<float>((1 << (bits - 1)) - 1); }
  float low() const { return symmetric ? 1.0f : 0.0f; }
  float high() const { return symmetric ? 2.0f * half() + 1.0f : qmax(); }
};

// One group's (stored scale as float, inv, zero) from its min/max; sets `flags` on overflow.
inline void group_params(const Spec& sp, float lo, float hi, float& stored, float& inv, float& zero, int& flags) {
  float s;
  if (sp.symmetric) {
    s = std::max(-lo, hi) / sp.half();
  } else {
    if (!sp.kivi) {
      lo = std::min(lo, 0.0f);
      hi = std::max(hi, 0.0f);
    }
    if (!std::isfinite(hi - lo)) flags |= kBadInput;  // the eager path checks hi - lo, which can overflow
    s = (hi - lo) / sp.qmax();
  }
  if (sp.fp16_scale) {
    s = std::max(s, 6.103515625e-05f);  // finfo(float16).tiny
    if (!sp.kivi) s *= 1.0009765625f;   // 1 + finfo(float16).eps: rounded up (kivi: nearest)
    stored = round_half(s);
  } else {
    stored = std::max(s, std::numeric_limits<float>::min());
  }
  if (!std::isfinite(stored)) flags |= kScaleOverflow;
  inv = 1.0f / stored;
  if (sp.kivi) {
    zero = sp.fp16_scale ? round_half(lo) : lo;
    if (!std::isfinite(zero)) flags |= kScaleOverflow;
  } else {
    zero = sp.symmetric ? sp.half() + 1.0f : std::min(std::max(std::nearbyint(-lo * inv), 0.0f), sp.qmax());
  }
}

#ifdef QC2C_AVX2
// Min/max per channel over tokens t0..t1 of a (n, D) block, 32 channels at a time in registers; returns how
// many leading channels were done (a multiple of 32). NaN anywhere sets kBadInput (inf shows in lo/hi).
template <typename T>
int64_t channel_stats32(const T* blk, int64_t D, int64_t t0, int64_t t1, float* lo, float* hi, int& flags) {
  int64_t c0 = 0;
  for (; c0 + 32 <= D; c0 += 32) {
    __m256 l[4], h[4], nan = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) l[k] = h[k] = load8(blk + t0 * D + c0 + 8 * k);
    for (int64_t t = t0; t < t1; ++t) {
      const T* p = blk + t * D + c0;
      for (int k = 0; k < 4; ++k) {
        __m256 v = load8(p + 8 * k);
        l[k] = _mm256_min_ps(l[k], v);
        h[k] = _mm256_max_ps(h[k], v);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      }
    }
    if (_mm256_movemask_ps(nan)) flags |= kBadInput;
    for (int k = 0; k < 4; ++k) {
      _mm256_storeu_ps(lo + c0 + 8 * k, l[k]);
      _mm256_storeu_ps(hi + c0 + 8 * k, h[k]);
    }
  }
  return c0;
}

inline __m256 nonfinite_mask(__m256 v) { return _mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_NEQ_UQ); }

// 8 int32 codes in 0..255 -> 8 bytes at p
inline void store8codes(uint8_t* p, __m256i k) {
  __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(k), _mm256_extracti128_si256(k, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(w, w));
}

// group_params for 8 channels at a time (same operations, lane by lane); returns channels done.
template <typename S>
int64_t group_params8(const Spec& sp, const float* lo, const float* hi, int64_t D, S* scales, uint8_t* zeros,
                      S* mins, float* inv, float* zero, int& flags) {
  const __m256 vzero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  int64_t d = 0;
  __m256 bad = vzero, over = vzero;
  for (; d + 8 <= D; d += 8) {
    __m256 l = _mm256_loadu_ps(lo + d), h = _mm256_loadu_ps(hi + d), s;
    bad = _mm256_or_ps(bad, _mm256_or_ps(nonfinite_mask(l), nonfinite_mask(h)));
    if (sp.symmetric) {
      __m256 neg = _mm256_xor_ps(l, _mm256_set1_ps(-0.0f));
      s = _mm256_div_ps(_mm256_max_ps(neg, h), _mm256_set1_ps(sp.half()));
    } else {
      if (!sp.kivi) {
        l = _mm256_min_ps(l, vzero);
        h = _mm256_max_ps(h, vzero);
      }
      __m256 range = _mm256_sub_ps(h, l);
      bad = _mm256_or_ps(bad, nonfinite_mask(range));
      s = _mm256_div_ps(range, _mm256_set1_ps(sp.qmax()));
    }
    __m256 stored;
    if (sp.fp16_scale) {
      s = _mm256_max_ps(s, _mm256_set1_ps(6.103515625e-05f));
      if (!sp.kivi) s = _mm256_mul_ps(s, _mm256_set1_ps(1.0009765625f));
      __m128i bits = _mm256_cvtps_ph(s, _MM_FROUND_TO_NEAREST_INT);
      stored = _mm256_cvtph_ps(bits);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(scales + d), bits);
    } else {
      stored = _mm256_max_ps(s, _mm256_set1_ps(std::numeric_limits<float>::min()));
      _mm256_storeu_ps(reinterpret_cast<float*>(scales + d), stored);
    }
    over = _mm256_or_ps(over, nonfinite_mask(stored));
    __m256 iv = _mm256_div_ps(one, stored), z;
    if (sp.symmetric) {
      z = _mm256_set1_ps(sp.half() + 1.0f);
    } else if (sp.kivi) {
      if (sp.fp16_scale) {
        __m128i mbits = _mm256_cvtps_ph(l, _MM_FROUND_TO_NEAREST_INT);
        z = _mm256_cvtph_ps(mbits);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(mins + d), mbits);
      } else {
        z = l;
        _mm256_storeu_ps(reinterpret_cast<float*>(mins + d), z);
      }
      over = _mm256_or_ps(over, nonfinite_mask(z));
    } else {
      z = _mm256_mul_ps(_mm256_xor_ps(l, _mm256_set1_ps(-0.0f)), iv);
      z = _mm256_round_ps(z, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      z = _mm256_min_ps(_mm256_max_ps(z, vzero), _mm256_set1_ps(sp.qmax()));
      store8codes(zeros + d, _mm256_cvtps_epi32(z));
    }
    _mm256_storeu_ps(inv + d, iv);
    _mm256_storeu_ps(zero + d, z);
  }
  if (_mm256_movemask_ps(bad)) flags |= kBadInput;
  if (_mm256_movemask_ps(over)) flags |= kScaleOverflow;
  return d;
}
#endif

// Scales, zero points and quantizer constants of m groups: 8 at a time where the CPU has AVX2, then one by one
// (the same operations either way). zeros is null unless observer, mins null unless kivi.
template <typename S>
void group_params_run(const Spec& sp, const float* lo, const float* hi, int64_t m, S* scales, uint8_t* zeros,
                      S* mins, float* inv, float* zero, int& flags) {
  int64_t k = 0;
#ifdef QC2C_AVX2
  k = group_params8(sp, lo, hi, m, scales, zeros, mins, inv, zero, flags);
#endif
  for (; k < m; ++k) {
    float stored;
    group_params(sp, lo[k], hi[k], stored, inv[k], zero[k], flags);
    store_scale(scales + k, stored);
    if (zeros) zeros[k] = static_cast<uint8_t>(zero[k]);
    if (mins) store_scale(mins + k, zero[k]);
  }
}

#ifdef QC2C_AVX2
// ---- fast encode paths (whole-byte rows, groups and head_dim multiples of 8) ----
// Same operations per element as quantize_run/group_params8; min/max are reduced in another order, which
// gives the same values unless a NaN is present, and a block holding a NaN is redone by the general path.

// min over 8 vectors, lane r of the result = minimum of vector r (hmin's pairing, without the scalar stores)
template <bool Max>
inline __m256 reduce8(const __m256* a) {
  auto op = [](__m256 x, __m256 y) { return Max ? _mm256_max_ps(x, y) : _mm256_min_ps(x, y); };
  __m256 p[4];
  for (int i = 0; i < 4; ++i)  // lanes j and j+4; rows i (low half) and i+4 (high half)
    p[i] = op(_mm256_permute2f128_ps(a[i], a[i + 4], 0x20), _mm256_permute2f128_ps(a[i], a[i + 4], 0x31));
  __m256 r = op(_mm256_shuffle_ps(p[0], p[1], 0x44), _mm256_shuffle_ps(p[0], p[1], 0xEE));  // rows 0,1 | 4,5
  __m256 s = op(_mm256_shuffle_ps(p[2], p[3], 0x44), _mm256_shuffle_ps(p[2], p[3], 0xEE));  // rows 2,3 | 6,7
  return op(_mm256_shuffle_ps(r, s, 0x88), _mm256_shuffle_ps(r, s, 0xDD));
}

// kivi: rint((x - vz) * vi), vz the stored min; otherwise rint(x * vi) + vz, vz the zero point; then clamped
inline __m256i quant8(__m256 x, __m256 vi, __m256 vz, __m256 vl, __m256 vh, bool kivi) {
  constexpr int kRint = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  __m256 q = kivi ? _mm256_round_ps(_mm256_mul_ps(_mm256_sub_ps(x, vz), vi), kRint)
                  : _mm256_add_ps(_mm256_round_ps(_mm256_mul_ps(x, vi), kRint), vz);
  q = _mm256_min_ps(_mm256_max_ps(q, vl), vh);
  return _mm256_cvtps_epi32(q);
}

// 32 codes (4 x 8 int32 in 0..255) -> 32 bytes in order
inline __m256i bytes32(__m256i k0, __m256i k1, __m256i k2, __m256i k3) {
  __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(k0, k1), _mm256_packus_epi32(k2, k3));
  return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline void pack_run(uint8_t* row, int64_t e0, const uint8_t* c, int64_t n, int bits);

// 32 codes in order (bytes of b) stored packed at o: 32, 16 or 8 bytes
inline void store_packed32(__m256i b, int bits, uint8_t* o) {
  if (bits == 8) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), b);
  } else if (bits == 4) {
    __m256i w = _mm256_maddubs_epi16(b, _mm256_set1_epi16(0x1001));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
  } else {
    __m256i w = _mm256_madd_epi16(_mm256_maddubs_epi16(b, _mm256_set1_epi16(0x0401)), _mm256_set1_epi32(0x00100001));
    __m128i r = _mm_packs_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(o), _mm_packus_epi16(r, r));
  }
}

// codes of n elements (n % 8 == 0) of x with one (inv, zero), stored packed at o (whole bytes)
template <typename T>
inline void quantize_group(const T* x, int64_t n, __m256 vi, __m256 vz, __m256 vl, __m256 vh, int bits, bool kivi,
                           uint8_t* o) {
  const int per = 8 / bits;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i k0 = quant8(load8(x + i), vi, vz, vl, vh, kivi), k1 = quant8(load8(x + i + 8), vi, vz, vl, vh, kivi);
    __m256i k2 = quant8(load8(x + i + 16), vi, vz, vl, vh, kivi), k3 = quant8(load8(x + i + 24), vi, vz, vl, vh, kivi);
    store_packed32(bytes32(k0, k1, k2, k3), bits, o + i / per);
  }
  for (; i < n; i += 8) {
    uint8_t c[8];
    store8codes(c, quant8(load8(x + i), vi, vz, vl, vh, kivi));
    pack_run(o, i, c, 8, bits);  // whole bytes: nothing shared
  }
}

// group_params8 over m groups, the last m % 8 padded with zero statistics (no flags) through scratch
template <typename S>
inline void group_params_all(const Spec& sp, const float* lo, const float* hi, int64_t m, S* scales, uint8_t* zeros,
                             S* mins, float* inv, float* zero, int& flags) {
  const int64_t m8 = group_params8(sp, lo, hi, m & ~int64_t(7), scales, zeros, mins, inv, zero, flags);
  if (m8 < m) {
    const int64_t r = m - m8;
    float l[8] = {0}, h[8] = {0}, iv[8], z[8];
    S s[8], mn[8];
    uint8_t zz[8];
    std::copy(lo + m8, lo + m, l);
    std::copy(hi + m8, hi + m, h);
    group_params8(sp, l, h, 8, s, zeros ? zz : nullptr, mins ? mn : nullptr, iv, z, flags);
    std::copy(s, s + r, scales + m8);
    if (zeros) std::copy(zz, zz + r, zeros + m8);
    if (mins) std::copy(mn, mn + r, mins + m8);
    std::copy(iv, iv + r, inv + m8);
    std::copy(z, z + r, zero + m8);
  }
}

// Token axis, rows x[i] (i < nb) of D elements, groups of g (g % 8 == 0, D % 8 == 0). Statistics, scales and
// zero points of the nb * ng groups, then the codes of row i packed into crow[i]. False (nothing final written) on a NaN.
template <typename T, typename S>
bool token_rows_fast(const T* const* x, int64_t nb, int64_t D, int64_t g, int64_t ng, const Spec& sp, S* scales,
                     uint8_t* zeros, S* mins, float* tlo, float* thi, float* tinv, float* tzero, uint8_t* const* crow, int& fl) {
  const int64_t m = nb * ng;
  __m256 alo[8], ahi[8], nan = _mm256_setzero_ps();
  for (int64_t k0 = 0; k0 < m; k0 += 8) {
    for (int64_t q = 0; q < 8; ++q) {
      const int64_t k = std::min(k0 + q, m - 1), a = (k % ng) * g, nv = std::min(g, D - a) / 8;
      const T* p = x[k / ng] + a;
      __m256 v0 = load8(p), l0 = v0, h0 = v0, l1 = v0, h1 = v0;
      int64_t v = 1;
      for (; v + 2 <= nv; v += 2) {
        __m256 a0 = load8(p + 8 * v), a1 = load8(p + 8 * v + 8);
        l0 = _mm256_min_ps(l0, a0);
        h0 = _mm256_max_ps(h0, a0);
        l1 = _mm256_min_ps(l1, a1);
        h1 = _mm256_max_ps(h1, a1);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a0, a1, _CMP_UNORD_Q));
      }
      if (v < nv) {
        __m256 a0 = load8(p + 8 * v);
        l0 = _mm256_min_ps(l0, a0);
        h0 = _mm256_max_ps(h0, a0);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a0, a0, _CMP_UNORD_Q));
      }
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v0, v0, _CMP_UNORD_Q));
      alo[q] = _mm256_min_ps(l0, l1);
      ahi[q] = _mm256_max_ps(h0, h1);
    }
    __m256 lo8 = reduce8<false>(alo), hi8 = reduce8<true>(ahi);
    if (k0 + 8 <= m) {
      _mm256_storeu_ps(tlo + k0, lo8);
      _mm256_storeu_ps(thi + k0, hi8);
    } else {
      alignas(32) float l[8], h[8];
      _mm256_store_ps(l, lo8);
      _mm256_store_ps(h, hi8);
      std::copy(l, l + (m - k0), tlo + k0);
      std::copy(h, h + (m - k0), thi + k0);
    }
  }
  if (_mm256_movemask_ps(nan)) return false;
  group_params_all(sp, tlo, thi, m, scales, zeros, mins, tinv, tzero, fl);
  const __m256 vl = _mm256_set1_ps(sp.low()), vh = _mm256_set1_ps(sp.high());
  for (int64_t k = 0; k < m; ++k) {
    const int64_t i = k / ng, a = (k % ng) * g;
    quantize_group(x[i] + a, std::min(g, D - a), _mm256_set1_ps(tinv[k]), _mm256_set1_ps(tzero[k]), vl, vh, sp.bits,
                   sp.kivi, crow[i] + a / (8 / sp.bits));
  }
  return true;
}

// Channel axis: codes of tokens t0..t1 of a (n, D) block with per-channel inv/zero, written packed into
// rows of D codes at out + t * D / per (whole bytes). Channels 0..c32 (a multiple of 32) only; returns c32.
template <typename T>
int64_t channel_quant32(const T* blk, int64_t D, int64_t t0, int64_t t1, const float* inv, const float* zero,
                        const Spec& sp, uint8_t* out) {
  const __m256 vl = _mm256_set1_ps(sp.low()), vh = _mm256_set1_ps(sp.high());
  const int per = 8 / sp.bits;
  int64_t c0 = 0;
  for (; c0 + 32 <= D; c0 += 32) {
    __m256 vi[4], vz[4];
    for (int k = 0; k < 4; ++k) {
      vi[k] = _mm256_loadu_ps(inv + c0 + 8 * k);
      vz[k] = _mm256_loadu_ps(zero + c0 + 8 * k);
    }
    for (int64_t t = t0; t < t1; ++t) {
      const T* p = blk + t * D + c0;
      const bool kv = sp.kivi;
      __m256i b = bytes32(quant8(load8(p), vi[0], vz[0], vl, vh, kv), quant8(load8(p + 8), vi[1], vz[1], vl, vh, kv),
                          quant8(load8(p + 16), vi[2], vz[2], vl, vh, kv),
                          quant8(load8(p + 24), vi[3], vz[3], vl, vh, kv));
      store_packed32(b, sp.bits, out + (t * D + c0) / per);
    }
  }
  return c0;
}
#endif

// ---- quantize / dequantize runs ----

// codes[i] = clamp(rint(x[i] * inv[i*step]) + zero[i*step], low, high), or with kivi
// clamp(rint((x[i] - zero[i*step]) * inv[i*step]), low, high); step 0 = one group, 1 = per channel
inline void quantize_run(const float* x, int64_t n, const float* inv, const float* zero, int step, float low,
                         float high, bool kivi, uint8_t* codes) {
  int64_t i = 0;
#ifdef QC2C_AVX2
  const __m256 vl = _mm256_set1_ps(low), vh = _mm256_set1_ps(high);
  __m256 vi = _mm256_set1_ps(inv[0]), vz = _mm256_set1_ps(zero[0]);
  for (; i + 8 <= n; i += 8) {
    if (step) {
      vi = _mm256_loadu_ps(inv + i);
      vz = _mm256_loadu_ps(zero + i);
    }
    store8codes(codes + i, quant8(_mm256_loadu_ps(x + i), vi, vz, vl, vh, kivi));
  }
#endif
  for (; i < n; ++i) {
    const float z = zero[i * step];
    float q = kivi ? std::nearbyint((x[i] - z) * inv[i * step]) : std::nearbyint(x[i] * inv[i * step]) + z;
    codes[i] = static_cast<uint8_t>(std::min(std::max(q, low), high));
  }
}

// dst[i] = dtype((codes[i] - zero[i*step]) * scale[i*step]), or with kivi dtype(codes[i] * scale[i*step] +
// zero[i*step]): float32 arithmetic, one rounding into T
#ifdef QC2C_AVX2
inline void store8(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
inline void store8(at::Half* p, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
inline void store8(at::BFloat16* p, __m256 v) {
  alignas(32) float a[8];
  _mm256_store_ps(a, v);
  from_f32(a, p, 8);
}
#endif

template <typename T>
inline void dequantize_to(const uint8_t* codes, int64_t n, const float* scale, const float* zero, int step, bool kivi,
                          T* dst) {
  int64_t i = 0;
#ifdef QC2C_AVX2
  __m256 vs = _mm256_set1_ps(scale[0]), vz = _mm256_set1_ps(zero[0]);
  for (; i + 8 <= n; i += 8) {
    if (step) {
      vs = _mm256_loadu_ps(scale + i);
      vz = _mm256_loadu_ps(zero + i);
    }
    __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i))));
    store8(dst + i, kivi ? _mm256_add_ps(_mm256_mul_ps(c, vs), vz) : _mm256_mul_ps(_mm256_sub_ps(c, vz), vs));
  }
#endif
  if (i < n) {
    float y[8];
    for (int64_t k = i; k < n; k += 8) {
      const int64_t m = std::min<int64_t>(8, n - k);
      for (int64_t j = 0; j < m; ++j) {
        const float c = static_cast<float>(codes[k + j]), z = zero[(k + j) * step], sc = scale[(k + j) * step];
        y[j] = kivi ? c * sc + z : (c - z) * sc;
      }
      from_f32(y, dst + k, m);
    }
  }
}

// ---- packing: element e of a row lives in byte e / per at bit (e % per) * bits ----

#ifdef QC2C_AVX2
// 16 packed bytes at a time (codes < 2^bits): out[k] = sum_i c[per*k + i] << (bits*i); returns bytes done.
inline int64_t pack16(const uint8_t* c, int64_t whole, int bits, uint8_t* out) {
  int64_t k = 0;
  if (bits == 4) {
    const __m128i w = _mm_set1_epi16(0x1001);  // bytes (1, 16): c0 + 16 c1 per pair
    for (; k + 16 <= whole; k += 16) {
      __m128i a = _mm_maddubs_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 2 * k)), w);
      __m128i b = _mm_maddubs_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 2 * k + 16)), w);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k), _mm_packus_epi16(a, b));
    }
  } else {
    const __m128i w8 = _mm_set1_epi16(0x0401), w16 = _mm_set1_epi32(0x00100001);  // (1, 4) then (1, 16)
    for (; k + 16 <= whole; k += 16) {
      __m128i q[4];
      for (int j = 0; j < 4; ++j)
        q[j] = _mm_madd_epi16(_mm_maddubs_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 4 * k + 16 * j)), w8), w16);
      __m128i lo = _mm_packs_epi32(q[0], q[1]), hi = _mm_packs_epi32(q[2], q[3]);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k), _mm_packus_epi16(lo, hi));
    }
  }
  return k;
}

// inverse of pack16: 16 packed bytes at a time into per * 16 codes; returns bytes done.
inline int64_t unpack16(const uint8_t* in, int64_t whole, int bits, uint8_t* c) {
  int64_t k = 0;
  if (bits == 4) {
    const __m128i m = _mm_set1_epi8(15);
    for (; k + 16 <= whole; k += 16) {
      __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + k));
      __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(c + 2 * k), _mm_unpacklo_epi8(lo, hi));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(c + 2 * k + 16), _mm_unpackhi_epi8(lo, hi));
    }
  } else {
    const __m128i m = _mm_set1_epi8(3);
    for (; k + 16 <= whole; k += 16) {
      __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + k));
      __m128i c0 = _mm_and_si128(b, m), c1 = _mm_and_si128(_mm_srli_epi16(b, 2), m);
      __m128i c2 = _mm_and_si128(_mm_srli_epi16(b, 4), m), c3 = _mm_and_si128(_mm_srli_epi16(b, 6), m);
      __m128i t0 = _mm_unpacklo_epi8(c0, c1), t1 = _mm_unpacklo_epi8(c2, c3);
      __m128i t2 = _mm_unpackhi_epi8(c0, c1), t3 = _mm_unpackhi_epi8(c2, c3);
      __m128i* o = reinterpret_cast<__m128i*>(c + 4 * k);
      _mm_storeu_si128(o, _mm_unpacklo_epi16(t0, t1));
      _mm_storeu_si128(o + 1, _mm_unpackhi_epi16(t0, t1));
      _mm_storeu_si128(o + 2, _mm_unpacklo_epi16(t2, t3));
      _mm_storeu_si128(o + 3, _mm_unpackhi_epi16(t2, t3));
    }
  }
  return k;
}
#endif

// Write n codes starting at row element e0. Whole bytes are stored; bytes shared with other runs are OR'ed
// (the caller then owns the whole row and zeroed it).
inline void pack_run(uint8_t* row, int64_t e0, const uint8_t* c, int64_t n, int bits) {
  if (bits == 8) {
    std::memcpy(row + e0, c, n);
    return;
  }
  const int per = 8 / bits;
  int64_t i = 0;
  for (; i < n && (e0 + i) % per; ++i) row[(e0 + i) / per] |= static_cast<uint8_t>(c[i] << (((e0 + i) % per) * bits));
  uint8_t* out = row + (e0 + i) / per;
  const int64_t whole = (n - i) / per;
  int64_t k0 = 0;
#ifdef QC2C_AVX2
  k0 = pack16(c + i, whole, bits, out);
#endif
  if (bits == 4) {
    for (int64_t k = k0; k < whole; ++k) out[k] = static_cast<uint8_t>(c[i + 2 * k] | (c[i + 2 * k + 1] << 4));
  } else {
    for (int64_t k = k0; k < whole; ++k) {
      const uint8_t* p = c + i + 4 * k;
      out[k] = static_cast<uint8_t>(p[0] | (p[1] << 2) | (p[2] << 4) | (p[3] << 6));
    }
  }
  for (i += whole * per; i < n; ++i) row[(e0 + i) / per] |= static_cast<uint8_t>(c[i] << (((e0 + i) % per) * bits));
}

inline void unpack_run(const uint8_t* row, int64_t e0, uint8_t* c, int64_t n, int bits) {
  if (bits == 8) {
    std::memcpy(c, row + e0, n);
    return;
  }
  const int per = 8 / bits, mask = (1 << bits) - 1;
  int64_t i = 0;
  for (; i < n && (e0 + i) % per; ++i) c[i] = (row[(e0 + i) / per] >> (((e0 + i) % per) * bits)) & mask;
  const uint8_t* in = row + (e0 + i) / per;
  const int64_t whole = (n - i) / per;
  int64_t k0 = 0;
#ifdef QC2C_AVX2
  k0 = unpack16(in, whole, bits, c + i);
#endif
  if (bits == 4) {
    for (int64_t k = k0; k < whole; ++k) {
      c[i + 2 * k] = in[k] & 15;
      c[i + 2 * k + 1] = in[k] >> 4;
    }
  } else {
    for (int64_t k = k0; k < whole; ++k) {
      uint8_t* p = c + i + 4 * k;
      p[0] = in[k] & 3;
      p[1] = (in[k] >> 2) & 3;
      p[2] = (in[k] >> 4) & 3;
      p[3] = in[k] >> 6;
    }
  }
  for (i += whole * per; i < n; ++i) c[i] = (row[(e0 + i) / per] >> (((e0 + i) % per) * bits)) & mask;
}

// ---- work decomposition ----

struct Geometry {
  int64_t R, L, H, n, D, g, ng;  // g: group length; ng: groups along the grouped axis
  bool channel;
  int64_t units_per_row() const { return L * H * (channel ? ng : n); }
  int64_t groups_per_row() const { return L * H * ng * (channel ? D : n); }
  int64_t elems_per_row() const { return L * H * n * D; }
  // parallel_for grain: about 4096 elements of work per chunk
  int64_t grain() const { return std::max<int64_t>(1, 4096 / std::max<int64_t>(1, D * (channel ? g : 1))); }
};

Geometry geometry(at::IntArrayRef shape, bool channel, int64_t group) {
  Geometry g{shape[0], shape[1], shape[2], shape[3], shape[4], 0, 0, channel};
  const int64_t len = channel ? g.n : g.D;
  g.g = group > 0 ? std::min(group, len) : len;
  g.ng = len == 0 ? 0 : (len + g.g - 1) / g.g;
  return g;
}

// Runs body(u0, u1) over every unit (a token row, or a token group of one head), in parallel. Units of
// different rows never share a byte; units of one row do unless every token row fills whole bytes, and then
// each row is handled by one thread (its payload row zeroed first by the caller).
template <typename F>
void for_units(const Geometry& g, bool aligned, const F& body) {
  const int64_t upr = g.units_per_row();
  if (aligned) {
    at::parallel_for(0, g.R * upr, g.grain(), body);
  } else {
    at::parallel_for(0, g.R, 1, [&](int64_t r0, int64_t r1) { body(r0 * upr, r1 * upr); });
  }
}

template <typename T, typename S>
void encode_impl(const std::vector<const void*>& blocks, const Spec& sp, const Geometry& g, bool aligned,
                 uint8_t* payload, int64_t P, S* scales, uint8_t* zeros, S* mins, std::atomic<int>& flags) {
  // blocks[(r * L + l) * H + h]: the (n, D) block of row r, layer l, head h (layers need not be stacked)
  auto block = [&](int64_t b) { return static_cast<const T*>(blocks[b]); };
  const int64_t D = g.D, upr = g.units_per_row();
  const float low = sp.low(), high = sp.high();
  for_units(g, aligned, [&](int64_t u0, int64_t u1) {
    std::vector<uint8_t> codes(D);
    int fl = 0;
    if (!g.channel) {  // unit = token row; groups of g channels; 8 rows at a time share the scale arithmetic
      constexpr int64_t B = 8;
      const int64_t ng = g.ng;
      std::vector<float> rows(B * D), tlo(B * ng), thi(B * ng), tinv(B * ng), tzero(B * ng);
      const bool fast = aligned && g.g % 8 == 0 && D % 8 == 0;
      for (int64_t ub = u0; ub < u1; ub += B) {
        const int64_t nb = std::min(B, u1 - ub), m = nb * ng;
#ifdef QC2C_AVX2
        if (fast) {
          const T* xr[B];
          uint8_t* crow[B];
          for (int64_t i = 0; i < nb; ++i) {
            const int64_t u = ub + i;
            xr[i] = block(u / g.n) + (u % g.n) * D;
            crow[i] = payload + (u / upr) * P + (u % upr) * D / (8 / sp.bits);
          }
          if (token_rows_fast(xr, nb, D, g.g, ng, sp, scales + ub * ng, zeros ? zeros + ub * ng : nullptr,
                              mins ? mins + ub * ng : nullptr, tlo.data(), thi.data(), tinv.data(), tzero.data(), crow,
                              fl))
            continue;
        }
#endif
        for (int64_t i = 0; i < nb; ++i) {
          const int64_t u = ub + i;
          to_f32(block(u / g.n) + (u % g.n) * D, rows.data() + i * D, D);
        }
        float nf = 0.0f;
        for (int64_t k = 0; k < m; ++k) {
          const int64_t a = (k % ng) * g.g;
          const float* xr = rows.data() + (k / ng) * D + a;
          float l = xr[0], h = xr[0];
          minmax_run(xr, std::min(g.g, D - a), l, h, nf);
          tlo[k] = l;
          thi[k] = h;
        }
        if (nf != 0.0f) fl |= kBadInput;
        group_params_run(sp, tlo.data(), thi.data(), m, scales + ub * ng, zeros ? zeros + ub * ng : nullptr,
                         mins ? mins + ub * ng : nullptr, tinv.data(), tzero.data(), fl);
        for (int64_t i = 0; i < nb; ++i) {
          const int64_t u = ub + i;
          for (int64_t j = 0; j < ng; ++j) {
            const int64_t a = j * g.g;
            quantize_run(rows.data() + i * D + a, std::min(g.g, D - a), &tinv[i * ng + j], &tzero[i * ng + j], 0, low,
                         high, sp.kivi, codes.data() + a);
          }
          pack_run(payload + (u / upr) * P, (u % upr) * D, codes.data(), D, sp.bits);
        }
      }
    } else {  // unit = token group tg of head block b; one group per channel
      std::vector<float> buf(D), lo(D), hi(D), bad(D), inv(D), zero(D);
      for (int64_t u = u0; u < u1; ++u) {
        uint8_t* prow = payload + (u / upr) * P;
        const int64_t b = u / g.ng, tg = u % g.ng, t0 = tg * g.g, t1 = std::min(g.n, t0 + g.g);
        const T* blk = block(b);
        int64_t c0 = 0;
#ifdef QC2C_AVX2
        c0 = channel_stats32(blk, D, t0, t1, lo.data(), hi.data(), fl);
#endif
        if (c0 < D) {
          const int64_t rest = D - c0;
          to_f32(blk + t0 * D + c0, lo.data() + c0, rest);
          std::copy(lo.begin() + c0, lo.end(), hi.begin() + c0);
          std::fill(bad.begin() + c0, bad.end(), 0.0f);
          for (int64_t t = t0; t < t1; ++t) {
            to_f32(blk + t * D + c0, buf.data(), rest);
            minmax_vec(buf.data(), rest, lo.data() + c0, hi.data() + c0, bad.data() + c0);
          }
          for (int64_t d = c0; d < D; ++d)
            if (bad[d] != 0.0f) fl |= kBadInput;
        }
        const int64_t s0 = u * D;
        group_params_run(sp, lo.data(), hi.data(), D, scales + s0, zeros ? zeros + s0 : nullptr,
                         mins ? mins + s0 : nullptr, inv.data(), zero.data(), fl);
        const int64_t row_block = b % (g.L * g.H);
        int64_t q0 = 0;
#ifdef QC2C_AVX2
        if (aligned) q0 = channel_quant32(blk, D, t0, t1, inv.data(), zero.data(), sp, prow + row_block * g.n * D / (8 / sp.bits));
#endif
        if (q0 < D) {
          const int64_t rest = D - q0;
          for (int64_t t = t0; t < t1; ++t) {
            to_f32(blk + t * D + q0, buf.data(), rest);
            quantize_run(buf.data(), rest, inv.data() + q0, zero.data() + q0, 1, low, high, sp.kivi, codes.data());
            pack_run(prow, (row_block * g.n + t) * D + q0, codes.data(), rest, sp.bits);
          }
        }
      }
    }
    if (fl) flags.fetch_or(fl);
  });
}

template <typename T, typename S>
void decode_impl(at::Tensor& out, const Spec& sp, const Geometry& g, const uint8_t* payload, int64_t P,
                 const S* scales, const uint8_t* zeros, const S* mins) {
  T* dst = out.data_ptr<T>();
  const int64_t D = g.D, upr = g.units_per_row();
  const float sym_zero = static_cast<float>(1 << (sp.bits - 1));
  at::parallel_for(0, g.R * upr, g.grain(), [&](int64_t u0, int64_t u1) {
    std::vector<float> scale(std::max<int64_t>(D, 8 * g.ng)), zero(std::max<int64_t>(D, 8 * g.ng));
    std::vector<uint8_t> codes(D);
    for (int64_t u = u0; u < u1; ++u) {
      const uint8_t* prow = payload + (u / upr) * P;
      if (!g.channel) {  // scales of 8 rows at a time
        const int64_t i = (u - u0) % 8, ng = g.ng;
        if (i == 0) {
          const int64_t m = std::min<int64_t>(8, u1 - u) * ng;
          to_f32(scales + u * ng, scale.data(), m);
          if (mins)
            to_f32(mins + u * ng, zero.data(), m);
          else
            for (int64_t k = 0; k < m; ++k) zero[k] = zeros ? static_cast<float>(zeros[u * ng + k]) : sym_zero;
        }
        unpack_run(prow, (u % upr) * D, codes.data(), D, sp.bits);
        for (int64_t j = 0; j < ng; ++j) {
          const int64_t a = j * g.g;
          dequantize_to(codes.data() + a, std::min(g.g, D - a), &scale[i * ng + j], &zero[i * ng + j], 0, sp.kivi,
                        dst + u * D + a);
        }
      } else {
        const int64_t b = u / g.ng, tg = u % g.ng, t0 = tg * g.g, t1 = std::min(g.n, t0 + g.g);
        to_f32(scales + u * D, scale.data(), D);
        if (mins)
          to_f32(mins + u * D, zero.data(), D);
        else
          for (int64_t d = 0; d < D; ++d) zero[d] = zeros ? static_cast<float>(zeros[u * D + d]) : sym_zero;
        const int64_t row_block = b % (g.L * g.H);
        for (int64_t t = t0; t < t1; ++t) {
          unpack_run(prow, (row_block * g.n + t) * D, codes.data(), D, sp.bits);
          dequantize_to(codes.data(), D, scale.data(), zero.data(), 1, sp.kivi, dst + (b * g.n + t) * D);
        }
      }
    }
  });
}

template <typename F>
void dispatch(at::ScalarType t, const F& f) {
  switch (t) {
    case at::kHalf: f(at::Half()); break;
    case at::kBFloat16: f(at::BFloat16()); break;
    case at::kFloat: f(float()); break;
    default: TORCH_CHECK(false, "dtype: float16, bfloat16 or float32 expected, got ", t);
  }
}

// ---- output buffers ----
// Large outputs come from a small pool of blocks this module freed before. Why: glibc serves blocks this
// large with fresh mmap'd pages and returns them on free, so every call paid a page fault per 4 KiB written,
// which doubled the encode time. Blocks wait here (at most kPoolBytes in all) until a request of the same size.
constexpr size_t kPoolMin = size_t(1) << 20, kPoolBytes = size_t(512) << 20;

struct Pool {
  std::mutex m;
  std::multimap<size_t, void*> free;
  size_t cached = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: tensors may be freed after static destructors ran
  return *p;
}

void pool_give(void* ptr, size_t n) {
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.m);
    if (p.cached + n <= kPoolBytes) {
      p.free.emplace(n, ptr);
      p.cached += n;
      return;
    }
  }
  std::free(ptr);
}

at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  size_t n = c10::elementSize(options.dtype().toScalarType());
  for (int64_t s : sizes) n *= static_cast<size_t>(s);
  if (n < kPoolMin) return at::empty(sizes, options);
  n = (n + 63) / 64 * 64;
  void* ptr = nullptr;
  {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.m);
    auto it = p.free.find(n);
    if (it != p.free.end()) {
      ptr = it->second;
      p.cached -= n;
      p.free.erase(it);
    }
  }
  if (!ptr) ptr = std::aligned_alloc(64, n);
  TORCH_CHECK(ptr, "out of memory allocating ", n, " bytes");
  return torch::from_blob(ptr, sizes, [n](void* q) { pool_give(q, n); }, options);
}

inline void check_shape(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), what, ": expected a contiguous CPU tensor");
}

}  // namespace

// xs: one (R, L, H, n, D) tensor, or L per-layer (R, H, n, D) tensors read in place (no stacking copy).
// Returns [payload (R, P) uint8, scales (R, G) scale dtype, offsets (R, G | 0): uint8 zero points (observer),
// mins in the scale dtype (kivi), none (symmetric), flags int32 (1,)].
std::vector<at::Tensor> encode(const std::vector<at::Tensor>& xs, int64_t bits, bool symmetric, bool kivi,
                               bool channel, int64_t group, bool fp16_scale) {
  TORCH_CHECK(!xs.empty(), "x: expected at least one tensor");
  const at::Tensor& x = xs[0];
  std::vector<int64_t> shape;
  if (xs.size() == 1 && x.dim() == 5) {
    shape = x.sizes().vec();
  } else {
    TORCH_CHECK(x.dim() == 4, "x: expected (R, L, H, n, D) or a list of (R, H, n, D)");
    shape = {x.size(0), static_cast<int64_t>(xs.size()), x.size(1), x.size(2), x.size(3)};
  }
  for (const at::Tensor& t : xs) {
    check_shape(t, "x");
    TORCH_CHECK(t.scalar_type() == x.scalar_type() && t.sizes() == x.sizes(), "x: layers differ in shape or dtype");
  }
  TORCH_CHECK(bits == 8 || bits == 4 || bits == 2, "bits: 8, 4 or 2");
  const Geometry g = geometry(shape, channel, group);
  kivi = kivi && !symmetric;
  const Spec sp{static_cast<int>(bits), symmetric, kivi, fp16_scale};
  const int64_t per = 8 / bits, P = (g.elems_per_row() + per - 1) / per, G = g.groups_per_row();
  const bool aligned = g.D % per == 0;
  std::vector<const void*> blocks(g.R * g.L * g.H);
  const int64_t esize = static_cast<int64_t>(x.element_size()), bbytes = g.n * g.D * esize;
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t l = 0; l < g.L; ++l)
      for (int64_t h = 0; h < g.H; ++h) {
        const char* base = static_cast<const char*>(xs.size() == 1 ? x.data_ptr() : xs[l].data_ptr());
        const int64_t k = xs.size() == 1 ? (r * g.L + l) * g.H + h : r * g.H + h;
        blocks[(r * g.L + l) * g.H + h] = base + k * bbytes;
      }
  auto u8 = x.options().dtype(at::kByte);
  at::Tensor payload = pooled_empty({g.R, P}, u8);
  if (!aligned) payload.zero_();
  const auto scale_type = x.options().dtype(fp16_scale ? at::kHalf : at::kFloat);
  at::Tensor scales = at::empty({g.R, G}, scale_type);
  at::Tensor zeros = at::empty({g.R, symmetric ? 0 : G}, kivi ? scale_type : u8);
  std::atomic<int> flags{0};
  if (g.R * g.elems_per_row() > 0) {
    dispatch(x.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      uint8_t* z = symmetric || kivi ? nullptr : zeros.data_ptr<uint8_t>();
      if (fp16_scale)
        encode_impl<T, at::Half>(blocks, sp, g, aligned, payload.data_ptr<uint8_t>(), P, scales.data_ptr<at::Half>(), z,
                                 kivi ? zeros.data_ptr<at::Half>() : nullptr, flags);
      else
        encode_impl<T, float>(blocks, sp, g, aligned, payload.data_ptr<uint8_t>(), P, scales.data_ptr<float>(), z,
                              kivi ? zeros.data_ptr<float>() : nullptr, flags);
    });
  }
  at::Tensor fl = at::full({1}, flags.load(), x.options().dtype(at::kInt));
  return {payload, scales, zeros, fl};
}

// (R, L, H, n, D) = shape in like's dtype (fp16/bf16/fp32) from the encoded parts (kivi: zeros are the mins,
// typed like scales).
at::Tensor decode(const at::Tensor& payload, const at::Tensor& scales, const at::Tensor& zeros,
                  std::vector<int64_t> shape, const at::Tensor& like, int64_t bits, bool symmetric, bool kivi,
                  bool channel, int64_t group) {
  TORCH_CHECK(shape.size() == 5, "shape: expected (R, L, H, n, D)");
  at::Tensor out = pooled_empty(shape, like.options());
  check_shape(payload, "payload");
  check_shape(scales, "scales");
  check_shape(zeros, "zeros");
  TORCH_CHECK(bits == 8 || bits == 4 || bits == 2, "bits: 8, 4 or 2");
  const Geometry g = geometry(out.sizes(), channel, group);
  kivi = kivi && !symmetric;
  const Spec sp{static_cast<int>(bits), symmetric, kivi, scales.scalar_type() == at::kHalf};
  TORCH_CHECK(scales.numel() == g.R * g.groups_per_row(), "scales: wrong number of groups");
  TORCH_CHECK(symmetric || zeros.numel() == scales.numel(), "zeros: wrong number of groups");
  TORCH_CHECK(!kivi || zeros.scalar_type() == scales.scalar_type(), "zeros: kivi mins must have the scales' dtype");
  const int64_t P = payload.size(1);
  TORCH_CHECK(P * (8 / bits) >= g.elems_per_row(), "payload: too short");
  if (out.numel() == 0) return out;
  const uint8_t* z = symmetric || kivi ? nullptr : zeros.data_ptr<uint8_t>();
  dispatch(out.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    if (sp.fp16_scale)
      decode_impl<T, at::Half>(out, sp, g, payload.data_ptr<uint8_t>(), P, scales.data_ptr<at::Half>(), z,
                               kivi ? zeros.data_ptr<at::Half>() : nullptr);
    else
      decode_impl<T, float>(out, sp, g, payload.data_ptr<uint8_t>(), P, scales.data_ptr<float>(), z,
                            kivi ? zeros.data_ptr<float>() : nullptr);
  });
  return out;
}
