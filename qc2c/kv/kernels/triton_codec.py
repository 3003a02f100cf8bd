"""Triton kernels of the KV codec: int8/int4/int2 (symmetric, kivi, observer), fp8 (e4m3fn, e5m2) and nf4.

Imported only through `qc2c.kv.kernels.cuda` (which needs `triton`). One program reads a tile of whole groups
once, computes each group's statistics, stores the scales (and kivi's mins or observer's zero points) and writes
the codes already packed; decode reads the packed codes and the per-group scales once and writes the cache.

The arithmetic is the eager path's, operation for operation, so the bytes are identical
(tests/qc2c/kv/test_triton_kernels.py checks that, on CUDA or in Triton's CPU interpreter):
- divisions are IEEE (`div_rn`; Triton's plain `/` may be approximate on CUDA);
- round half to even is `_rint` ((|y| + 2^23) − 2^23, exact for |y| < 2^22: y is clamped first, and
  clamp(round(y) + z, lo, hi) = round(clamp(y, lo − z, hi − z)) + z for integer z, lo, hi);
- fp8 codes are built from the float32 bits (round to nearest even, as torch's casts), so the kernel needs no
  fp8 type support from the GPU or the interpreter;
- launches pass `enable_fp_fusion=False` on CUDA: a fused multiply-add would round q·s + min once, eager twice.

Tiles. A row of (L, H, n, D) is S slices of `length` elements along the grouped axis, at stride I
(`qc2c.kv.schemes.gpu.geometry`): token axis S = L·H·n, length D, I = 1; channel axis S = L·H, length n, I = D;
head/layer/tensor axes one whole group per slice. Each slice holds n_q = ceil(length / g) groups, the last one
ragged (eager code pads it by repeating the last element, which changes no statistic, and cuts the padding
before packing: here it is masked). Outer group o = s·n_q + q; its stats index is o·I + i. Rows are contiguous,
so R rows are R·S·n_q outer groups. I = 1: a tile is [BLOCK groups, GP] with the group contiguous; I > 1: a
tile is [GP, BLOCK channels] for one o. GP is g rounded up to a power of two (masked). Packing puts PER = 8/bits
consecutive elements in a byte, lowest bits first, along the tile's contiguous axis: the callers (`cuda.py`)
only send geometries where no byte holds two groups' codes (g and length multiples of PER, or I one).
"""

from __future__ import annotations

import triton
import triton.language as tl

MAGIC = tl.constexpr(8388608.0)  # 2^23
BAD_INPUT = tl.constexpr(1)  # the flag bits of qc2c.kv.kernels.cpu
SCALE_OVERFLOW = tl.constexpr(2)


@triton.jit
def _rint(y):
    """Round half to even of float32 |y| < 2^22 (callers clamp y first)."""
    a = tl.abs(y)
    r = (a + MAGIC) - MAGIC
    return tl.where(y < 0, -r, r)


@triton.jit
def _finite(v):
    return (v == v) & (tl.abs(v) != float("inf"))


@triton.jit
def _tile(pid_o, pid_b, n_outer, g, inner, length, n_q, CHANNEL: tl.constexpr, GP: tl.constexpr, BLOCK: tl.constexpr):
    """(element offsets, element mask, group index, group mask) of one tile, int64 offsets. Outer group o is
    group q = o % n_q of slice s = o // n_q; its element j sits at t = q·g + j < length along the slice's axis."""
    if CHANNEL:
        j = tl.arange(0, GP)[:, None].to(tl.int64)
        i = (pid_b * BLOCK + tl.arange(0, BLOCK))[None, :].to(tl.int64)
        o = pid_o.to(tl.int64)
        t = (o % n_q) * g + j
        gmask = i < inner
        offs = (o // n_q) * (length * inner) + (t * inner + i)
        gidx = o * inner + i
        mask = (j < g) & (t < length) & gmask
    else:
        o = (pid_o.to(tl.int64) * BLOCK + tl.arange(0, BLOCK))[:, None]
        j = tl.arange(0, GP)[None, :].to(tl.int64)
        t = (o % n_q) * g + j
        gmask = o < n_outer
        offs = (o // n_q) * length + t
        gidx = o
        mask = gmask & (j < g) & (t < length)
    return offs, mask, gidx, gmask


@triton.jit
def _within(pid_o, pid_b, g, inner, n_q, CHANNEL: tl.constexpr, GP: tl.constexpr, BLOCK: tl.constexpr):
    """`_tile`'s offsets inside each element's slice (t·I + i), built the same way so the compiler sees them
    contiguous along the tile's contiguous axis (the layered read adds them to each layer's own base)."""
    if CHANNEL:
        j = tl.arange(0, GP)[:, None].to(tl.int64)
        i = (pid_b * BLOCK + tl.arange(0, BLOCK))[None, :].to(tl.int64)
        return ((pid_o.to(tl.int64) % n_q) * g + j) * inner + i
    else:
        o = (pid_o.to(tl.int64) * BLOCK + tl.arange(0, BLOCK))[:, None]
        return (o % n_q) * g + tl.arange(0, GP)[None, :].to(tl.int64)


@triton.jit
def _load_x(x_ptr, bases_ptr, offs, mask, pid_o, pid_b, n_outer, g, inner, length, n_q, per_layer, n_layers,
            LAYERS: tl.constexpr, CHANNEL: tl.constexpr, GP: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """The tile as float32. LAYERS: x is not one (R, L, H, n, D) tensor but its L layers (R, H, n, D), each read
    in place (x_ptr: layer 0; `bases_ptr`: each layer's distance from it in 16-byte blocks, int64); `per_layer`
    slices per layer and row, so slice s is in row s // (L·per_layer), layer (s // per_layer) % L."""
    if LAYERS:
        if CHANNEL:  # one outer group: a vector of one, so that the alignment hint has a dimension to sit on
            o1 = pid_o.to(tl.int64) + tl.zeros([1], dtype=tl.int64)
        else:
            o1 = pid_o.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        s1 = o1 // n_q
        layer = (s1 // per_layer) % n_layers
        # layer l starts 16·blocks[l] bytes after layer 0 (cuda._source): the compiler sees whole 16-byte steps
        per_16: tl.constexpr = 128 // x_ptr.dtype.element_ty.primitive_bitwidth
        base = x_ptr + (tl.load(bases_ptr + layer, mask=layer < n_layers) * per_16)[:, None]
        s = s1[:, None]
        row = s // (n_layers * per_layer)
        within = _within(pid_o, pid_b, g, inner, n_q, CHANNEL, GP, BLOCK)
        ptrs = base + (row * per_layer + s % per_layer) * (length * inner) + within
        return tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
    else:
        return tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _store_up(s, SCALE_FP16: tl.constexpr, TINY: tl.constexpr, EPS1: tl.constexpr):
    """`store_scales`: floor at the scale dtype's smallest normal, round UP into it; (stored, as float32)."""
    s = tl.maximum(s, TINY)
    if SCALE_FP16:
        stored = (s * EPS1).to(tl.float16)
    else:
        stored = s
    return stored, stored.to(tl.float32)


@triton.jit
def _store_flags(flag_ptr, pid_o, pid_b, gmask, bad, over):
    """One int32 per program: BAD_INPUT if a group holds NaN/Inf, SCALE_OVERFLOW if a stored scale or min is not
    finite (only counted for groups with finite input, as eager code checks the input first)."""
    any_bad = tl.max(tl.max(tl.where(gmask & bad, 1, 0), axis=0), axis=0)
    any_over = tl.max(tl.max(tl.where(gmask & over & ~bad, 1, 0), axis=0), axis=0)
    tl.store(flag_ptr + pid_o * tl.num_programs(1) + pid_b, any_bad * BAD_INPUT + any_over * SCALE_OVERFLOW)


@triton.jit
def _byte_tile(pid_o, pid_b, n_outer, g, inner, length, n_q, PER: tl.constexpr, CHANNEL: tl.constexpr, GP: tl.constexpr,
               BLOCK: tl.constexpr):  # fmt: skip
    """(byte offsets, byte mask) of the packed codes of `_tile`'s tile: [GP, BLOCK/PER] (channel) or
    [BLOCK, GP/PER]; byte k holds the tile's elements k·PER .. k·PER + PER − 1 along its contiguous axis."""
    if CHANNEL:
        j = tl.arange(0, GP)[:, None].to(tl.int64)
        ib = (pid_b * (BLOCK // PER) + tl.arange(0, BLOCK // PER))[None, :].to(tl.int64)
        o = pid_o.to(tl.int64)
        t = (o % n_q) * g + j
        inner_b = inner // PER  # whole: cuda.plan sends channel tiles only where PER divides I
        return (o // n_q) * (length * inner_b) + (t * inner_b + ib), (j < g) & (t < length) & (ib * PER < inner)
    else:
        o = (pid_o.to(tl.int64) * BLOCK + tl.arange(0, BLOCK))[:, None]
        jb = tl.arange(0, GP // PER)[None, :].to(tl.int64)
        t = (o % n_q) * g + jb * PER
        # whole bytes: cuda.plan sends token tiles only where PER divides g and length
        return (o // n_q) * (length // PER) + ((o % n_q) * (g // PER) + jb), (o < n_outer) & (jb * PER < g) & (
            t < length
        )


@triton.jit
def _pack_store(out_ptr, q, offs, mask, pid_o, pid_b, n_outer, g, inner, length, n_q, BITS: tl.constexpr,
                CHANNEL: tl.constexpr, GP: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """Store int32 codes q (the tile) packed, 8/BITS to a byte along the tile's contiguous axis, lowest bits first."""
    if BITS == 8:
        tl.store(out_ptr + offs, q.to(tl.uint8), mask=mask)
    else:
        PER: tl.constexpr = 8 // BITS
        shifts = (tl.arange(0, PER) * BITS).to(tl.int32)
        if CHANNEL:
            q3 = tl.reshape(q, (GP, BLOCK // PER, PER))
        else:
            q3 = tl.reshape(q, (BLOCK, GP // PER, PER))
        packed = tl.sum(q3 << shifts[None, None, :], axis=2)
        boffs, bmask = _byte_tile(pid_o, pid_b, n_outer, g, inner, length, n_q, PER, CHANNEL, GP, BLOCK)
        tl.store(out_ptr + boffs, packed.to(tl.uint8), mask=bmask)


@triton.jit
def _store_out(out_ptr, offs, y, mask, OUT_BF16: tl.constexpr):
    """Store float32 y into the decoded cache; bf16 is rounded to nearest even from the bits (out_ptr: its int16
    view), as Triton's interpreter truncates float32 -> bf16 casts; y is finite."""
    if OUT_BF16:
        b = y.to(tl.int32, bitcast=True)
        tl.store(out_ptr + offs, ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).to(tl.int16), mask=mask)
    else:
        tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _load_codes(payload_ptr, offs, mask, pid_o, pid_b, n_outer, g, inner, length, n_q, BITS: tl.constexpr,
                CHANNEL: tl.constexpr, GP: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """int32 codes of the tile: its packed bytes loaded once each, unpacked in registers (`_pack_store`'s inverse)."""
    if BITS == 8:
        return tl.load(payload_ptr + offs, mask=mask, other=0).to(tl.int32)
    PER: tl.constexpr = 8 // BITS
    boffs, bmask = _byte_tile(pid_o, pid_b, n_outer, g, inner, length, n_q, PER, CHANNEL, GP, BLOCK)
    byte = tl.load(payload_ptr + boffs, mask=bmask, other=0).to(tl.int32)
    shifts = (tl.arange(0, PER) * BITS).to(tl.int32)
    codes = (byte[:, :, None] >> shifts[None, None, :]) & ((1 << BITS) - 1)
    if CHANNEL:
        return tl.reshape(codes, (GP, BLOCK))
    else:
        return tl.reshape(codes, (BLOCK, GP))


@triton.jit
def uniform_encode(x_ptr, out_ptr, scale_ptr, zero_ptr, flag_ptr, n_outer, g, inner, length, n_q, bases_ptr, per_layer, n_layers,
                   LAYERS: tl.constexpr, BITS: tl.constexpr, SYMMETRIC: tl.constexpr, KIVI: tl.constexpr, SCALE_FP16: tl.constexpr,
                   TINY: tl.constexpr, EPS1: tl.constexpr, CHANNEL: tl.constexpr, GP: tl.constexpr,
                   BLOCK: tl.constexpr):  # fmt: skip
    pid_o, pid_b = tl.program_id(0), tl.program_id(1)
    offs, mask, gidx, gmask = _tile(pid_o, pid_b, n_outer, g, inner, length, n_q, CHANNEL, GP, BLOCK)
    RED: tl.constexpr = 0 if CHANNEL else 1
    QMAX: tl.constexpr = (1 << BITS) - 1
    HALF: tl.constexpr = (1 << (BITS - 1)) - 1
    x = _load_x(x_ptr, bases_ptr, offs, mask, pid_o, pid_b, n_outer, g, inner, length, n_q, per_layer, n_layers,
                LAYERS, CHANNEL, GP, BLOCK)  # fmt: skip
    lo = tl.min(tl.where(mask, x, float("inf")), axis=RED, keep_dims=True)
    hi = tl.max(tl.where(mask, x, -float("inf")), axis=RED, keep_dims=True)
    bad = tl.max(tl.where(mask & ~_finite(x), 1, 0), axis=RED, keep_dims=True) > 0
    if SYMMETRIC:
        absmax = tl.maximum(-lo, hi)
        bad = bad | ~_finite(absmax)
        stored, scale = _store_up(tl.math.div_rn(absmax, HALF * 1.0), SCALE_FP16, TINY, EPS1)
        zero = tl.zeros_like(scale) + (HALF + 1.0)
        low = 1.0
        high = 2.0 * HALF + 1.0
    elif KIVI:
        bad = bad | ~_finite(hi - lo)
        s = tl.maximum(tl.math.div_rn(hi - lo, QMAX * 1.0), TINY)
        stored = s.to(scale_ptr.dtype.element_ty)
        scale = stored.to(tl.float32)
        stored_min = lo.to(scale_ptr.dtype.element_ty)
        zero = stored_min.to(tl.float32)
        low = 0.0
        high = QMAX * 1.0
    else:
        lo = tl.minimum(lo, 0.0)
        hi = tl.maximum(hi, 0.0)
        bad = bad | ~_finite(hi - lo)
        stored, scale = _store_up(tl.math.div_rn(hi - lo, QMAX * 1.0), SCALE_FP16, TINY, EPS1)
        zero = tl.minimum(tl.maximum(_rint(tl.minimum(tl.maximum(-lo * tl.math.div_rn(1.0, scale), -1e6), 1e6)), 0.0),
                          QMAX * 1.0)  # fmt: skip
        low = 0.0
        high = QMAX * 1.0
    inv = tl.math.div_rn(1.0, scale)
    over = ~_finite(scale)
    if KIVI:
        over = over | ~_finite(zero)
        y = (x - zero) * inv
        q = _rint(tl.minimum(tl.maximum(y, low), high))
    else:
        y = x * inv
        q = _rint(tl.minimum(tl.maximum(y, low - zero), high - zero)) + zero
    q = tl.where(mask, q, 0.0).to(tl.int32)
    _pack_store(out_ptr, q, offs, mask, pid_o, pid_b, n_outer, g, inner, length, n_q, BITS, CHANNEL, GP, BLOCK)
    tl.store(scale_ptr + gidx, stored.to(scale_ptr.dtype.element_ty), mask=gmask)
    if KIVI:
        tl.store(zero_ptr + gidx, stored_min, mask=gmask)
    elif not SYMMETRIC:
        tl.store(zero_ptr + gidx, zero.to(tl.uint8), mask=gmask)
    _store_flags(flag_ptr, pid_o, pid_b, gmask, bad, over)


@triton.jit
def uniform_decode(payload_ptr, scale_ptr, zero_ptr, out_ptr, n_outer, g, inner, length, n_q,
                   BITS: tl.constexpr, SYMMETRIC: tl.constexpr, KIVI: tl.constexpr, CHANNEL: tl.constexpr,
                   GP: tl.constexpr, BLOCK: tl.constexpr, OUT_BF16: tl.constexpr):  # fmt: skip
    pid_o, pid_b = tl.program_id(0), tl.program_id(1)
    offs, mask, gidx, gmask = _tile(pid_o, pid_b, n_outer, g, inner, length, n_q, CHANNEL, GP, BLOCK)
    q = _load_codes(payload_ptr, offs, mask, pid_o, pid_b, n_outer, g, inner, length, n_q, BITS, CHANNEL, GP, BLOCK).to(
        tl.float32
    )
    scale = tl.load(scale_ptr + gidx, mask=gmask, other=1.0).to(tl.float32)
    if SYMMETRIC:
        y = (q - (1 << (BITS - 1)) * 1.0) * scale
    elif KIVI:
        zero = tl.load(zero_ptr + gidx, mask=gmask, other=0.0).to(tl.float32)
        y = q * scale + zero
    else:
        zero = tl.load(zero_ptr + gidx, mask=gmask, other=0).to(tl.float32)
        y = (q - zero) * scale
    _store_out(out_ptr, offs, y, mask, OUT_BF16)


@triton.jit
def _fp8_bits(y, MBITS: tl.constexpr, BIAS: tl.constexpr):
    """fp8 byte of finite float32 y, |y| <= the format's max: round to nearest even, sign kept (−0 → 0x80)."""
    DROP: tl.constexpr = 23 - MBITS
    a = tl.abs(y)
    sign = (y.to(tl.int32, bitcast=True) >> 31) & 1
    sub = _rint(a * (2.0 ** (BIAS - 1 + MBITS))).to(tl.int32)  # subnormal (and min normal) codes
    ab = a.to(tl.int32, bitcast=True)
    norm = ((ab + ((1 << (DROP - 1)) - 1) + ((ab >> DROP) & 1)) >> DROP) - ((127 - BIAS) << MBITS)
    code = tl.where(a < 2.0 ** (1 - BIAS), sub, norm)
    return code | (sign << 7)


@triton.jit
def scaled_encode(x_ptr, out_ptr, scale_ptr, mids_ptr, flag_ptr, n_outer, g, inner, length, n_q, bases_ptr, per_layer, n_layers,
                  LAYERS: tl.constexpr, KIND: tl.constexpr, FMAX: tl.constexpr, SCALE_FP16: tl.constexpr, TINY: tl.constexpr,
                  EPS1: tl.constexpr, CHANNEL: tl.constexpr, GP: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """KIND 0: fp8 e4m3fn, 1: fp8 e5m2, 2: nf4 (mids: its 15 float32 midpoints)."""
    pid_o, pid_b = tl.program_id(0), tl.program_id(1)
    offs, mask, gidx, gmask = _tile(pid_o, pid_b, n_outer, g, inner, length, n_q, CHANNEL, GP, BLOCK)
    RED: tl.constexpr = 0 if CHANNEL else 1
    x = _load_x(x_ptr, bases_ptr, offs, mask, pid_o, pid_b, n_outer, g, inner, length, n_q, per_layer, n_layers,
                LAYERS, CHANNEL, GP, BLOCK)  # fmt: skip
    lo = tl.min(tl.where(mask, x, float("inf")), axis=RED, keep_dims=True)
    hi = tl.max(tl.where(mask, x, -float("inf")), axis=RED, keep_dims=True)
    absmax = tl.maximum(-lo, hi)
    bad = (tl.max(tl.where(mask & ~_finite(x), 1, 0), axis=RED, keep_dims=True) > 0) | ~_finite(absmax)
    if KIND == 2:
        stored, scale = _store_up(absmax, SCALE_FP16, TINY, EPS1)
    else:
        stored, scale = _store_up(tl.math.div_rn(absmax, FMAX), SCALE_FP16, TINY, EPS1)
    over = ~_finite(scale)
    y = x * tl.math.div_rn(1.0, scale)
    if KIND == 2:
        q = tl.zeros_like(y).to(tl.int32)
        for k in tl.static_range(15):
            q += tl.where(y > tl.load(mids_ptr + k), 1, 0)
        q = tl.where(mask, q, 0)
        _pack_store(out_ptr, q, offs, mask, pid_o, pid_b, n_outer, g, inner, length, n_q, 4, CHANNEL, GP, BLOCK)
    else:
        y = tl.minimum(tl.maximum(tl.where(mask, y, 0.0), -FMAX), FMAX)
        if KIND == 0:
            q = _fp8_bits(y, 3, 7)
        else:
            q = _fp8_bits(y, 2, 15)
        tl.store(out_ptr + offs, q.to(tl.uint8), mask=mask)
    tl.store(scale_ptr + gidx, stored.to(scale_ptr.dtype.element_ty), mask=gmask)
    _store_flags(flag_ptr, pid_o, pid_b, gmask, bad, over)


@triton.jit
def scaled_decode(payload_ptr, scale_ptr, table_ptr, out_ptr, n_outer, g, inner, length, n_q,
                  BITS: tl.constexpr, CHANNEL: tl.constexpr, GP: tl.constexpr, BLOCK: tl.constexpr,
                  OUT_BF16: tl.constexpr):  # fmt: skip
    """out = table[code] × the group's scale (table: the 256 fp8 values, BITS 8, or the 16 nf4 levels, BITS 4)."""
    pid_o, pid_b = tl.program_id(0), tl.program_id(1)
    offs, mask, gidx, gmask = _tile(pid_o, pid_b, n_outer, g, inner, length, n_q, CHANNEL, GP, BLOCK)
    q = _load_codes(payload_ptr, offs, mask, pid_o, pid_b, n_outer, g, inner, length, n_q, BITS, CHANNEL, GP, BLOCK)
    value = tl.load(table_ptr + q, mask=mask, other=0.0)
    scale = tl.load(scale_ptr + gidx, mask=gmask, other=1.0).to(tl.float32)
    _store_out(out_ptr, offs, value * scale, mask, OUT_BF16)


__all__ = ["uniform_encode", "uniform_decode", "scaled_encode", "scaled_decode", "triton"]
