// Fused CPU kernels for the float messages: fp16/bf16/fp32 payloads (qc2c/kv/schemes/floats.py), fp8 codes
// (fp8.py) and nf4 codes (nf4.py). Compiled together with uniform_cpu.cpp (its helpers are used here).
//
// raw_encode:    x -> the same values in another float dtype (one pass, NaN/Inf of the result flagged), as
//                Tensor.to: round to nearest even, overflow to Inf.
// scaled_encode: per group its absmax, stored scale and inverse (as the eager code: store_scales), then
//                y = float(x) * inv[group] in float32, then fp8 (y clamped to ±fmax, c10's rounding, as
//                Tensor.to) or nf4 (code = number of midpoints < y, as torch.bucketize; packed two per byte,
//                lowest nibble first, per row).
// scaled_decode: dtype(table[code] * scale[group]) in float32, one rounding (table: float value of each fp8
//                byte, or the nf4 levels).
#include <algorithm>
#include <type_traits>

namespace {

#ifdef QC2C_AVX2
inline void put8(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
inline void put8(at::Half* p, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
inline void put8(at::BFloat16* p, __m256 v) {  // c10's round_to_nearest_even, NaN -> 0x7FC0
  const __m256i b = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
  const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(nan));
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), w);
}
#endif

inline float as_float(float v) { return v; }
inline float as_float(at::Half v) { return static_cast<float>(v); }
inline float as_float(at::BFloat16 v) { return static_cast<float>(v); }

// exponent mask of a float dtype's bits (all ones: NaN or Inf)
inline uint32_t exp_bits(float) { return 0x7F800000u; }
inline uint32_t exp_bits(at::Half) { return 0x7C00u; }
inline uint32_t exp_bits(at::BFloat16) { return 0x7F80u; }

// d[0:n] = D(s[0:n]); true when a converted value is NaN or Inf
template <typename S, typename D>
bool convert_run(const S* s, D* d, int64_t n) {
  int64_t i = 0;
  bool bad = false;
#ifdef QC2C_AVX2
  if (std::is_same<S, D>::value) {  // a copy; NaN/Inf: all exponent bits set
    constexpr int64_t per = 32 / sizeof(S);
    const bool wide = sizeof(S) == 4;
    const __m256i m = wide ? _mm256_set1_epi32(static_cast<int>(exp_bits(S()))) : _mm256_set1_epi16(static_cast<short>(exp_bits(S())));
    __m256i acc = _mm256_setzero_si256();
    // a message is written once and read later: streaming stores skip the read-for-ownership of each line
    const bool stream = (reinterpret_cast<uintptr_t>(d) & 31) == 0;
    for (; i + per <= n; i += per) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
      if (stream) {
        _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i), w);
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), w);
      }
      const __m256i e = _mm256_and_si256(w, m);
      acc = _mm256_or_si256(acc, wide ? _mm256_cmpeq_epi32(e, m) : _mm256_cmpeq_epi16(e, m));
    }
    if (stream) _mm_sfence();
    bad = !_mm256_testz_si256(acc, acc);
  } else {
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
      put8(d + i, load8(s + i));
      acc = _mm256_or_ps(acc, nonfinite_mask(load8(d + i)));
    }
    bad = _mm256_movemask_ps(acc) != 0;
  }
#endif
  for (; i < n; ++i) {
    d[i] = static_cast<D>(as_float(s[i]));
    bad = bad || !std::isfinite(as_float(d[i]));
  }
  return bad;
}

constexpr int64_t kChunk = 4096;  // elements converted to float32 at a time

// run `body(b)` for b in [0, n) on the intra-op threads (chunks of `grain` blocks)
template <typename F>
void for_blocks(int64_t n, int64_t grain, const F& body) {
  at::parallel_for(0, n, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) body(b);
  });
}

// run `body(b0, b1)` over [0, n) blocks of `per` elements, in runs of at most kChunk elements (one block at least)
template <typename F>
void for_runs(int64_t n, int64_t per, const F& body) {
  const int64_t most = std::max<int64_t>(1, kChunk / std::max<int64_t>(per, 1));
  at::parallel_for(0, n, most, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b += most) body(b, std::min(b1, b + most));
  });
}

// v[0:n] = float(p[0:n]) with their min, max and whether one is NaN/Inf (two accumulators per statistic)
template <typename T>
inline void load_minmax(const T* p, int64_t n, float* v, float& lo, float& hi, bool& bad) {
  int64_t i = 0;
#ifdef QC2C_AVX2
  if (n >= 16) {
    __m256 lo0 = load8(p), lo1 = lo0, hi0 = lo0, hi1 = lo0, nf = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
      const __m256 a = load8(p + i), b = load8(p + i + 8);
      _mm256_storeu_ps(v + i, a);
      _mm256_storeu_ps(v + i + 8, b);
      lo0 = _mm256_min_ps(lo0, a);
      lo1 = _mm256_min_ps(lo1, b);
      hi0 = _mm256_max_ps(hi0, a);
      hi1 = _mm256_max_ps(hi1, b);
      nf = _mm256_or_ps(nf, _mm256_or_ps(nonfinite_mask(a), nonfinite_mask(b)));
    }
    lo = std::min(lo, hmin(_mm256_min_ps(lo0, lo1)));
    hi = std::max(hi, hmax(_mm256_max_ps(hi0, hi1)));
    bad = bad || _mm256_movemask_ps(nf) != 0;
  }
#endif
  for (; i < n; ++i) {
    v[i] = as_float(p[i]);
    lo = std::min(lo, v[i]);
    hi = std::max(hi, v[i]);
    bad = bad || !std::isfinite(v[i]);
  }
}

// per group: stored scale = dtype(max(max(-lo, hi) / fmax, tiny) · (1 + eps)) (fp16; fp32: no factor) into
// hs or fs, inv = 1 / stored; returns kScaleOverflow where a stored scale is Inf
inline int scales_run(const float* lo, const float* hi, int64_t m, float fmax, float tiny, at::Half* hs, float* fs,
                      float* inv) {
  int64_t i = 0;
  int fl = 0;
#ifdef QC2C_AVX2
  const __m256 vf = _mm256_set1_ps(fmax), vt = _mm256_set1_ps(tiny), up = _mm256_set1_ps(1.0009765625f);
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  __m256 over = _mm256_setzero_ps();
  for (; i + 8 <= m; i += 8) {
    const __m256 a = _mm256_max_ps(_mm256_sub_ps(zero, _mm256_loadu_ps(lo + i)), _mm256_loadu_ps(hi + i));
    __m256 sc = _mm256_max_ps(_mm256_div_ps(a, vf), vt);
    if (hs) {
      const __m128i h = _mm256_cvtps_ph(_mm256_mul_ps(sc, up), _MM_FROUND_TO_NEAREST_INT);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(hs + i), h);
      sc = _mm256_cvtph_ps(h);
    } else {
      _mm256_storeu_ps(fs + i, sc);
    }
    over = _mm256_or_ps(over, nonfinite_mask(sc));
    _mm256_storeu_ps(inv + i, _mm256_div_ps(one, sc));
  }
  if (_mm256_movemask_ps(over)) fl |= kScaleOverflow;
#endif
  for (; i < m; ++i) {
    float sc = std::max(std::max(-lo[i], hi[i]) / fmax, tiny);
    if (hs) sc = round_half(sc * 1.0009765625f);  // 1 + finfo(float16).eps: rounded up
    if (!std::isfinite(sc)) fl |= kScaleOverflow;
    if (hs)
      store_scale(hs + i, sc);
    else
      fs[i] = sc;
    inv[i] = 1.0f / sc;
  }
  return fl;
}

// out[j·I + i] = y[j·I + i] · sc[i] for a block of g·I elements (float32 products)
inline void scale_block(const float* y, const float* sc, int64_t g, int64_t I, float* out) {
  if (I == 1) {
    const float s = sc[0];
    int64_t e = 0;
#ifdef QC2C_AVX2
    const __m256 vs = _mm256_set1_ps(s);
    for (; e + 8 <= g; e += 8) _mm256_storeu_ps(out + e, _mm256_mul_ps(_mm256_loadu_ps(y + e), vs));
#endif
    for (; e < g; ++e) out[e] = y[e] * s;
    return;
  }
  for (int64_t j = 0; j < g; ++j) {
    int64_t i = 0;
#ifdef QC2C_AVX2
    for (; i + 8 <= I; i += 8)
      _mm256_storeu_ps(out + j * I + i, _mm256_mul_ps(_mm256_loadu_ps(y + j * I + i), _mm256_loadu_ps(sc + i)));
#endif
    for (; i < I; ++i) out[j * I + i] = y[j * I + i] * sc[i];
  }
}

// c10's fp8e4m3fn_from_fp32_value / fp8e5m2_from_fp32_value for |v| <= the format's max (v is clamped)
inline uint8_t to_fp8(float v, bool e4m3) { return e4m3 ? c10::Float8_e4m3fn(v).x : c10::Float8_e5m2(v).x; }

#ifdef QC2C_AVX2
inline __m256i to_fp8x8(__m256 v, bool e4m3) {
  __m256i b = _mm256_castps_si256(v);
  const __m256i sign = _mm256_and_si256(b, _mm256_set1_epi32(static_cast<int>(0x80000000u)));
  b = _mm256_xor_si256(b, sign);
  const int shift = e4m3 ? 20 : 21;
  const __m256i denorm = _mm256_set1_epi32(e4m3 ? 141 << 23 : 134 << 23);
  const __m256i sub = _mm256_sub_epi32(
      _mm256_castps_si256(_mm256_add_ps(_mm256_castsi256_ps(b), _mm256_castsi256_ps(denorm))), denorm);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(b, shift), _mm256_set1_epi32(1));
  const uint32_t bias = e4m3 ? (static_cast<uint32_t>(7 - 127) << 23) + 0x7FFFFu
                             : (static_cast<uint32_t>(15 - 127) << 23) + 0xFFFFFu;
  __m256i nrm = _mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(static_cast<int>(bias))), odd);
  nrm = _mm256_and_si256(_mm256_srli_epi32(nrm, shift), _mm256_set1_epi32(0xFF));
  if (e4m3) {  // a carry into 0x7f (NaN) saturates to 0x7e
    const __m256i nan = _mm256_cmpeq_epi32(nrm, _mm256_set1_epi32(0x7F));
    nrm = _mm256_add_epi32(nrm, nan);
  }
  const __m256i small = _mm256_cmpgt_epi32(_mm256_set1_epi32(e4m3 ? 121 << 23 : 113 << 23), b);
  const __m256i r = _mm256_and_si256(_mm256_blendv_epi8(nrm, sub, small), _mm256_set1_epi32(0xFF));
  return _mm256_or_si256(r, _mm256_srli_epi32(sign, 24));
}

// the nf4 code of 8 values: how many of the 15 midpoints are < v
inline __m256i nf4x8(__m256 v, const float* mids) {
  __m256i n = _mm256_setzero_si256();
  for (int m = 0; m < 15; ++m)
    n = _mm256_sub_epi32(n, _mm256_castps_si256(_mm256_cmp_ps(_mm256_set1_ps(mids[m]), v, _CMP_LT_OQ)));
  return n;
}
#endif

// y[0:n] = table[code] of n codes (bits 8: a byte each; 4: two per byte, lowest nibble first; n even)
inline void lookup_run(const uint8_t* c, int64_t n, int64_t bits, int64_t kind, const float* lut, float* y) {
  int64_t e = 0;
  if (bits == 8) {
#ifdef QC2C_AVX2
    // fp8 bytes as fp16 bits: e5m2 is the top byte of an fp16; e4m3fn shifted by 7 is an fp16 of 2^-8 its value
    // (normals and subnormals alike), its NaN codes (x111 1111) are patched in from the table
    const bool e5m2 = kind == 1;
    const __m256 nan = _mm256_set1_ps(lut[0x7F]), unit = _mm256_set1_ps(e5m2 ? 1.0f : 256.0f);
    for (; e + 8 <= n; e += 8) {
      const __m128i b = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + e)));
      const __m128i h = e5m2 ? _mm_slli_epi16(b, 8)
                             : _mm_or_si128(_mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8),
                                            _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x7F)), 7));
      __m256 v = _mm256_mul_ps(_mm256_cvtph_ps(h), unit);
      if (!e5m2) {
        const __m128i is_nan = _mm_cmpeq_epi16(_mm_and_si128(b, _mm_set1_epi16(0x7F)), _mm_set1_epi16(0x7F));
        v = _mm256_blendv_ps(v, nan, _mm256_castsi256_ps(_mm256_cvtepi16_epi32(is_nan)));
      }
      _mm256_storeu_ps(y + e, v);
    }
#endif
    for (; e < n; ++e) y[e] = lut[c[e]];
    return;
  }
#ifdef QC2C_AVX2
  const __m256 low = _mm256_loadu_ps(lut), high = _mm256_loadu_ps(lut + 8);
  const __m256i shifts = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4), fifteen = _mm256_set1_epi32(15);
  const __m256i pairs = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  for (; e + 8 <= n; e += 8) {
    int four;
    std::memcpy(&four, c + e / 2, sizeof(four));
    const __m256i bytes = _mm256_cvtepu8_epi32(_mm_cvtsi32_si128(four));
    const __m256i k = _mm256_and_si256(_mm256_srlv_epi32(_mm256_permutevar8x32_epi32(bytes, pairs), shifts), fifteen);
    const __m256 big = _mm256_castsi256_ps(_mm256_cmpgt_epi32(k, _mm256_set1_epi32(7)));
    _mm256_storeu_ps(y + e, _mm256_blendv_ps(_mm256_permutevar8x32_ps(low, k), _mm256_permutevar8x32_ps(high, k), big));
  }
#endif
  for (; e < n; e += 2) {
    y[e] = lut[c[e / 2] & 15];
    y[e + 1] = lut[c[e / 2] >> 4];
  }
}

inline uint8_t nf4_code(float v, const float* mids) {
  int n = 0;
  for (int m = 0; m < 15; ++m) n += mids[m] < v;
  return static_cast<uint8_t>(n);
}

// codes of n scaled values (n even for nf4): fp8 bytes, or nf4 nibble pairs (lowest first)
inline void codes_run(const float* v, int64_t n, int64_t kind, const float* mids, uint8_t* o) {
  const bool nf4 = kind == 2, e4m3 = kind == 0;
  const float fmax = e4m3 ? 448.0f : 57344.0f;
  int64_t e = 0;
#ifdef QC2C_AVX2
  const __m256 lo = _mm256_set1_ps(-fmax), hi = _mm256_set1_ps(fmax);
  for (; e + 8 <= n; e += 8) {
    const __m256 x = _mm256_loadu_ps(v + e);
    if (!nf4) {
      store8codes(o + e, to_fp8x8(_mm256_min_ps(_mm256_max_ps(x, lo), hi), e4m3));
      continue;
    }
    const __m256i k = nf4x8(x, mids);  // pairs (k0, k1) -> k0 | k1 << 4 in the low dword of each qword
    const __m256i pairs = _mm256_or_si256(k, _mm256_srli_epi64(k, 28));
    const __m256i low = _mm256_permutevar8x32_epi32(pairs, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(low), _mm256_castsi256_si128(low));
    const int four = _mm_cvtsi128_si32(_mm_packus_epi16(w, w));
    std::memcpy(o + e / 2, &four, sizeof(four));
  }
#endif
  for (; e < n; ++e) {
    if (!nf4) {
      o[e] = to_fp8(std::min(std::max(v[e], -fmax), fmax), e4m3);
    } else if (e % 2 == 0) {
      o[e / 2] = nf4_code(v[e], mids);
    } else {
      o[e / 2] = static_cast<uint8_t>(o[e / 2] | (nf4_code(v[e], mids) << 4));
    }
  }
}

}  // namespace

// xs: one (R, L, H, n, D) tensor or L layers (R, H, n, D) -> [(R, L, H, n, D) in like's dtype, flags (1,)].
std::vector<at::Tensor> raw_encode(const std::vector<at::Tensor>& xs, const at::Tensor& like) {
  TORCH_CHECK(!xs.empty(), "x: expected at least one tensor");
  const at::Tensor& x = xs[0];
  for (const at::Tensor& t : xs) {
    check_shape(t, "x");
    TORCH_CHECK(t.scalar_type() == x.scalar_type() && t.sizes() == x.sizes(), "x: layers differ in shape or dtype");
  }
  const bool stacked = xs.size() == 1 && x.dim() == 5;
  TORCH_CHECK(stacked || x.dim() == 4, "x: expected (R, L, H, n, D) or a list of (R, H, n, D)");
  std::vector<int64_t> shape = x.sizes().vec();
  if (!stacked) shape.insert(shape.begin() + 1, static_cast<int64_t>(xs.size()));
  at::Tensor out = pooled_empty(shape, like.options());
  const int64_t R = shape[0], L = shape[1], block = shape[2] * shape[3] * shape[4];
  std::atomic<int> flags{0};
  if (out.numel() == 0) return {out, at::zeros({1}, x.options().dtype(at::kInt))};
  dispatch(x.scalar_type(), [&](auto s_tag) {
    using S = decltype(s_tag);
    dispatch(out.scalar_type(), [&](auto d_tag) {
      using D = decltype(d_tag);
      D* dst = out.data_ptr<D>();
      for_blocks(R * L, 1, [&](int64_t b) {
        const int64_t r = b / L, l = b % L;
        const S* src = stacked ? x.data_ptr<S>() + b * block : xs[l].data_ptr<S>() + r * block;
        if (convert_run(src, dst + b * block, block)) flags |= kBadInput;
      });
    });
  });
  return {out, at::full({1}, flags.load(), x.options().dtype(at::kInt))};
}

// xs: one (R, L, H, n, D) tensor, or its L layers (R, H, n, D) when no group spans two layers; each row viewed
// (O, g, I), group (o, i) = x[o, :, i]. Per group: absmax = max |x| (float32), s = absmax / fmax (fp8) or absmax
// (nf4), stored = dtype(max(s, tiny) · (1 + eps)) (fp16 scales; fp32: max(s, tiny)), inv = 1 / stored; then
// y = x · inv and its code (kind 0 e4m3fn, 1 e5m2, clamped to ±fmax; 2 nf4, table: the 15 midpoints).
// Returns [codes (R, M) uint8 or nf4 (R, M/2), scales (R, O·I) fp16/fp32, flags (1,)].
std::vector<at::Tensor> scaled_encode(const std::vector<at::Tensor>& xs, int64_t O, int64_t g, int64_t I,
                                      int64_t kind, bool fp16_scale, const at::Tensor& table) {
  TORCH_CHECK(!xs.empty(), "x: expected at least one tensor");
  const at::Tensor& x = xs[0];
  for (const at::Tensor& t : xs) {
    check_shape(t, "x");
    TORCH_CHECK(t.scalar_type() == x.scalar_type() && t.sizes() == x.sizes(), "x: layers differ in shape or dtype");
  }
  check_shape(table, "table");
  const bool stacked = xs.size() == 1, nf4 = kind == 2;
  const int64_t R = x.size(0), M = O * g * I, n = g * I, slab = x.numel() / std::max<int64_t>(R, 1);
  TORCH_CHECK(slab * static_cast<int64_t>(xs.size()) == M && (stacked || slab % n == 0), "x: wrong sizes");
  TORCH_CHECK(!nf4 || (n % 2 == 0 && table.numel() == 15), "nf4: even groups and 15 midpoints expected");
  at::Tensor out = pooled_empty({R, nf4 ? M / 2 : M}, x.options().dtype(at::kByte));
  at::Tensor scales = at::empty({R, O * I}, x.options().dtype(fp16_scale ? at::kHalf : at::kFloat));
  std::atomic<int> flags{0};
  const float fmax = nf4 ? 1.0f : (kind == 0 ? 448.0f : 57344.0f);
  const float tiny = fp16_scale ? 6.103515625e-05f : std::numeric_limits<float>::min();
  const float* mids = table.data_ptr<float>();
  if (R * M == 0) return {out, scales, at::zeros({1}, x.options().dtype(at::kInt))};
  at::Half* half_scales = fp16_scale ? scales.data_ptr<at::Half>() : nullptr;
  float* float_scales = fp16_scale ? nullptr : scales.data_ptr<float>();
  dispatch(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    uint8_t* dst = out.data_ptr<uint8_t>();
    std::vector<const T*> bases;
    for (const at::Tensor& t : xs) bases.push_back(t.data_ptr<T>());
    const int64_t per_slab = stacked ? O : slab / n;  // blocks in one row of one tensor
    for_runs(R * O, n, [&](int64_t b0, int64_t b1) {
      thread_local std::vector<float> y, stats;
      const int64_t total = (b1 - b0) * n, m = (b1 - b0) * I;
      if (static_cast<int64_t>(y.size()) < total) y.resize(total);
      if (static_cast<int64_t>(stats.size()) < 4 * m) stats.resize(4 * m);
      float *lo = stats.data(), *hi = lo + m, *bad = hi + m, *inv = bad + m;
      std::fill(lo, lo + m, std::numeric_limits<float>::infinity());
      std::fill(hi, hi + m, -std::numeric_limits<float>::infinity());
      std::fill(bad, bad + m, 0.0f);
      int fl = 0;
      int64_t r = b0 / O, o = b0 % O, l = stacked ? 0 : o / per_slab, w = o % per_slab;
      for (int64_t b = b0; b < b1; ++b) {
        const T* p = bases[l] + (r * per_slab + w) * n;
        if (++w == per_slab) w = 0, ++l;
        if (++o == O) o = 0, ++r, l = 0;
        float* v = y.data() + (b - b0) * n;
        const int64_t k = (b - b0) * I;
        if (I == 1) {
          bool nonfinite = false;
          load_minmax(p, n, v, lo[k], hi[k], nonfinite);
          if (nonfinite) fl |= kBadInput;
        } else {
          to_f32(p, v, n);
          for (int64_t j = 0; j < g; ++j) minmax_vec(v + j * I, I, lo + k, hi + k, bad + k);
        }
      }
      for (int64_t i = 0; i < m; ++i)
        if (bad[i] != 0.0f) fl |= kBadInput;
      fl |= scales_run(lo, hi, m, fmax, tiny, half_scales ? half_scales + b0 * I : nullptr,
                       float_scales ? float_scales + b0 * I : nullptr, inv);
      for (int64_t b = b0; b < b1; ++b) {
        float* v = y.data() + (b - b0) * n;
        scale_block(v, inv + (b - b0) * I, g, I, v);
      }
      if (fl) flags |= fl;
      codes_run(y.data(), total, kind, mids, dst + (nf4 ? b0 * n / 2 : b0 * n));  // n is even for nf4
    });
  });
  return {out, scales, at::full({1}, flags.load(), x.options().dtype(at::kInt))};
}

// codes (R, P) uint8 (kind 0 e4m3fn, 1 e5m2: a byte per element; 2 nf4: two per byte, lowest nibble first),
// scales fp16/fp32 (R, O·I), table float32 (the 256 fp8 byte values, or the 16 nf4 levels) -> (R, O·g·I) in
// like's dtype.
at::Tensor scaled_decode(const at::Tensor& codes, const at::Tensor& scales, int64_t O, int64_t g, int64_t I,
                         int64_t kind, const at::Tensor& table, const at::Tensor& like) {
  const int64_t bits = kind == 2 ? 4 : 8;
  check_shape(codes, "codes");
  check_shape(scales, "scales");
  check_shape(table, "table");
  const int64_t R = codes.size(0), M = O * g * I;
  TORCH_CHECK(scales.numel() == R * O * I && codes.size(1) * (8 / bits) == M, "codes, scales: wrong sizes");
  TORCH_CHECK(bits == 8 || (bits == 4 && (g * I) % 2 == 0), "bits: 8, or 4 with even groups");
  at::Tensor out = pooled_empty({R, M}, like.options());
  if (out.numel() == 0) return out;
  const float* lut = table.data_ptr<float>();
  dispatch(out.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const uint8_t* src = codes.data_ptr<uint8_t>();
    const bool half = scales.scalar_type() == at::kHalf;
    T* dst = out.data_ptr<T>();
    for_runs(R * O, g * I, [&](int64_t b0, int64_t b1) {
      thread_local std::vector<float> buf, sc;
      const int64_t n = g * I, total = (b1 - b0) * n;
      if (static_cast<int64_t>(buf.size()) < total) buf.resize(total);
      if (static_cast<int64_t>(sc.size()) < (b1 - b0) * I) sc.resize((b1 - b0) * I);
      float* y = buf.data();
      if (half)
        to_f32(scales.data_ptr<at::Half>() + b0 * I, sc.data(), (b1 - b0) * I);
      else
        std::memcpy(sc.data(), scales.data_ptr<float>() + b0 * I, (b1 - b0) * I * sizeof(float));
      lookup_run(src + (bits == 8 ? b0 * n : b0 * n / 2), total, bits, kind, lut, y);
      for (int64_t b = b0; b < b1; ++b) scale_block(y + (b - b0) * n, sc.data() + (b - b0) * I, g, I, y + (b - b0) * n);
      T* o = dst + b0 * n;
      int64_t i = 0;
#ifdef QC2C_AVX2
      for (; i + 8 <= total; i += 8) put8(o + i, _mm256_loadu_ps(y + i));
#endif
      for (; i < total; ++i) o[i] = static_cast<T>(y[i]);
    });
  });
  return out;
}
