"""Opt-in torch.compile'd int kernels equal the eager ones: `python -m pytest tests/qc2c/kv/test_compiled_kernels.py -q -m slow`."""

from __future__ import annotations

import pytest
import torch
from kv_cases import build_tensor

from qc2c.kv.quant import build_scheme
from qc2c.kv.schemes import uniform


@pytest.mark.slow
def test_compiled_int_kernels_give_the_same_bytes_and_values_as_eager() -> None:
    x = build_tensor((2, 3, 2, 37, 16), "outliers", seed=5).half()
    modes = ((False, "kivi"), (False, "observer"), (True, "kivi"))  # (symmetric, convention)
    configs = [(name, axis, *mode) for name in ("int8", "int4") for axis in ("channel", "token") for mode in modes]
    eager = {}
    uniform.use_compiled_kernels(False)
    for name, axis, sym, conv in configs:
        scheme = build_scheme(name, axis=axis, group_size=16, symmetric=sym, convention=conv)
        enc = scheme.encode(x)
        eager[(name, axis, sym, conv)] = (enc, scheme.decode(enc, torch.float16))
    try:
        uniform.use_compiled_kernels(True)
        for name, axis, sym, conv in configs:
            scheme = build_scheme(name, axis=axis, group_size=16, symmetric=sym, convention=conv)
            enc = scheme.encode(x)
            ref_enc, ref_y = eager[(name, axis, sym, conv)]
            assert torch.equal(enc.payload, ref_enc.payload) and torch.equal(enc.zeros, ref_enc.zeros)
            assert torch.equal(scheme.decode(enc, torch.float16), ref_y)
    finally:
        uniform.use_compiled_kernels(False)
