"""Fast schemes equal the plain-loop reference bit for bit: `python -m pytest tests/qc2c/kv/test_reference_equality.py -q`."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from kv_cases import PER_MEMBER, Case, build_tensor, cases
from reference import encode as reference_encode
from reference import pack as reference_pack

from qc2c.kv.quant import build_scheme, pack, unpack
from qc2c.kv.schemes.base import SCALE_DTYPES

SCALED = ("int8", "int4", "int2", "nf4", "fp8_e4m3", "fp8_e5m2")


@pytest.mark.parametrize("name", SCALED)
@PER_MEMBER
@given(case=cases(max_tokens=24))
def test_codes_scales_and_zero_points_equal_the_reference(name: str, case: Case) -> None:
    scheme = build_scheme(name, axis=case.axis, group_size=case.group_size, symmetric=case.symmetric,
                          scale_dtype=case.scale_dtype)  # fmt: skip
    x = build_tensor(case.shape, case.kind, case.seed)
    enc = scheme.encode(x)
    codes, scales, zeros = reference_encode(x, name, case.axis, case.group_size, case.symmetric,
                                            SCALE_DTYPES[case.scale_dtype])  # fmt: skip
    n = codes.shape[1]
    assert torch.equal(unpack(enc.payload, scheme.bits, n) if scheme.bits < 8 else enc.payload, codes)
    for r in range(case.shape[0]):
        expected = torch.stack(scales[r]).view(torch.uint8).reshape(-1)
        assert torch.equal(enc.scales[r], expected)
        if scheme.has_zeros():
            assert enc.zeros[r].tolist() == zeros[r]
        else:
            assert enc.zeros.shape[1] == 0


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@given(n=st.integers(0, 77), rows=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_pack_matches_the_bitwise_reference_and_unpack_inverts_it(bits: int, n: int, rows: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2**bits, (rows, n), generator=gen, dtype=torch.uint8)
    packed = pack(codes, bits)
    for r in range(rows):
        assert packed[r].numpy().tobytes() == reference_pack(codes[r].tolist(), bits)
    assert torch.equal(unpack(packed, bits, n), codes)
