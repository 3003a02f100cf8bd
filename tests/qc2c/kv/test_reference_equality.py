"""Fast schemes equal the plain-loop reference bit for bit: `python -m pytest tests/qc2c/kv/test_reference_equality.py -q`."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from kv_cases import PER_MEMBER, Case, build_tensor, case_scheme, cases
from reference import decode_group, groups
from reference import encode as reference_encode
from reference import pack as reference_pack

from qc2c.kv.quant import NonFiniteInput, pack, unpack
from qc2c.kv.schemes.base import SCALE_DTYPES
from qc2c.kv.schemes.uniform import UniformInt

SCALED = ("int8", "int4", "int2", "nf4", "fp8_e4m3", "fp8_e5m2")


@pytest.mark.parametrize("name", SCALED)
@PER_MEMBER
@given(case=cases(max_tokens=24), dtype=st.sampled_from((torch.float32, torch.float16, torch.bfloat16)))
def test_codes_scales_and_offsets_equal_the_reference(name: str, case: Case, dtype: torch.dtype) -> None:
    """Each convention (kivi, observer) and symmetric against the loop reference, on every data kind and cache
    dtype: codes, scale bytes, offsets (observer zero points, kivi mins) and decoded values, bit for bit."""
    scheme = case_scheme(name, case)
    x = build_tensor(case.shape, case.kind, case.seed, dtype)
    try:
        enc = scheme.encode(x)
    except NonFiniteInput:  # a kivi min beyond the fp16 range (float32 "huge" data): the reference must agree
        assert scheme.kivi and float(x.float().abs().max()) > torch.finfo(SCALE_DTYPES[case.scale_dtype]).max
        return
    scale_dtype = SCALE_DTYPES[case.scale_dtype]
    codes, scales, zeros = reference_encode(
        x, name, case.axis, case.group_size, case.symmetric, scale_dtype, case.convention
    )
    n = codes.shape[1]
    assert torch.equal(unpack(enc.payload, scheme.bits, n) if scheme.bits < 8 else enc.payload, codes)
    for r in range(case.shape[0]):
        expected = torch.stack(scales[r]).view(torch.uint8).reshape(-1)
        assert torch.equal(enc.scales[r], expected)
        if scheme.zero_bytes() == 1:
            assert enc.zeros[r].tolist() == zeros[r]
        elif scheme.zero_bytes():
            assert torch.equal(enc.zeros[r], torch.stack(zeros[r]).view(torch.uint8).reshape(-1))
        else:
            assert enc.zeros.shape[1] == 0
    if isinstance(scheme, UniformInt):
        expected = _reference_decode(scheme, codes, scales, zeros, tuple(x.shape)).to(dtype)
        assert torch.equal(scheme.decode(enc, dtype), expected)


def _reference_decode(scheme: UniformInt, codes, scales, zeros, shape) -> torch.Tensor:
    """Decoded (R, L, H, n, D) float32 from the reference's codes and per-group values, group by group."""
    out = torch.zeros(shape)
    codes = codes.view(shape)
    for r in range(shape[0]):
        row_groups = [
            index for index in groups(shape, scheme.grouping.axis, scheme.grouping.group_size) if index[0] == r
        ]
        for g, index in enumerate(row_groups):
            zero = zeros[r][g] if zeros[r] else None
            out[index] = decode_group(
                codes[index], scales[r][g], zero, scheme.symmetric, scheme.bits, scheme.convention
            )
    return out


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@given(n=st.integers(0, 77), rows=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_pack_matches_the_bitwise_reference_and_unpack_inverts_it(bits: int, n: int, rows: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2**bits, (rows, n), generator=gen, dtype=torch.uint8)
    packed = pack(codes, bits)
    for r in range(rows):
        assert packed[r].numpy().tobytes() == reference_pack(codes[r].tolist(), bits)
    assert torch.equal(unpack(packed, bits, n), codes)
