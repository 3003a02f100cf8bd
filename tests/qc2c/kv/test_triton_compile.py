"""The Triton kernels compile for a Hopper GPU (sm_90: H100/H200) on a machine without one.

Triton's interpreter (test_triton_kernels.py) checks the kernels' arithmetic, not that the compiler accepts
them: this test compiles each kernel, at the specializations the codec launches, ahead of time through
Triton's whole pipeline (TTIR, TTGIR, LLVM IR, PTX, and a cubin by the ptxas the triton wheel ships), and reads
the PTX for what byte-identity needs: IEEE divisions (div.rn) and no fused multiply-add, and for what bandwidth
needs: 16-byte loads of the cache, also when the layers are read in place. It runs in a
subprocess, because the interpreter tests import the kernels with TRITON_INTERPRET=1 in this process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = [
    pytest.mark.triton,  # CI requires it (QC2C_REQUIRE): a skip there is a failure
    pytest.mark.skipif(
        importlib.util.find_spec("triton") is None, reason="triton not installed (`pip install triton`)"
    ),
]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile
    from qc2c.kv.kernels import triton_codec as k

    F16 = {"TINY": 6.103515625e-05, "EPS1": 1.0009765625, "SCALE_FP16": True}
    COMMON = {"n_outer": "i32", "g": "i32", "inner": "i32", "length": "i32", "n_q": "i32"}
    LAYERED = {"bases_ptr": "*i64", "per_layer": "i32", "n_layers": "i32"}  # encode: one stack, or layers in place
    SPECS = []
    for bits in (8, 4, 2):
        for sym, kivi in ((False, True), (False, False), (True, False)):
            for channel in (True, False):
                c = dict(BITS=bits, SYMMETRIC=sym, KIVI=kivi, CHANNEL=channel, GP=64, BLOCK=64)
                zero = "*fp16" if kivi else "*u8"
                SPECS.append(("uniform_encode", {"x_ptr": "*bf16", "out_ptr": "*u8", "scale_ptr": "*fp16",
                              "zero_ptr": zero, "flag_ptr": "*i32", **COMMON, **LAYERED},
                              {**c, **F16, "LAYERS": (bits + channel + sym) % 2 == 0}))
                SPECS.append(("uniform_decode", {"payload_ptr": "*u8", "scale_ptr": "*fp16", "zero_ptr": zero,
                              "out_ptr": "*i16", **COMMON}, {**c, "OUT_BF16": True}))
    for kind, bits in ((0, 8), (1, 8), (2, 4)):
        for channel in (True, False):
            c = dict(CHANNEL=channel, GP=32, BLOCK=64)
            SPECS.append(("scaled_encode", {"x_ptr": "*fp16", "out_ptr": "*u8", "scale_ptr": "*fp16",
                          "mids_ptr": "*fp32", "flag_ptr": "*i32", **COMMON, **LAYERED},
                          {**c, **F16, "KIND": kind, "FMAX": [448.0, 57344.0, 1.0][kind],
                           "LAYERS": channel != (kind == 1)}))
            SPECS.append(("scaled_decode", {"payload_ptr": "*u8", "scale_ptr": "*fp16", "table_ptr": "*fp32",
                          "out_ptr": "*fp16", **COMMON}, {**c, "BITS": bits, "OUT_BF16": False}))
    # as launched on a real cache: pointers and the sizes g, I, length divisible by 16 (Triton specializes on it)
    ALIGNED = ("x_ptr", "out_ptr", "payload_ptr", "scale_ptr", "zero_ptr", "g", "inner", "length")
    for layers in (False, True):
        c = dict(BITS=8, SYMMETRIC=False, KIVI=True, CHANNEL=True, GP=64, BLOCK=64, LAYERS=layers, **F16)
        SPECS.append(("uniform_encode", {"x_ptr": "*bf16", "out_ptr": "*u8", "scale_ptr": "*fp16", "zero_ptr": "*fp16",
                      "flag_ptr": "*i32", **COMMON, **LAYERED}, {**c, "_aligned": True}))
    results = []
    for name, sig, consts in SPECS:
        aligned = consts.pop("_aligned", False)
        sig = {**sig, **{c: "constexpr" for c in consts}}
        attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(sig) if aligned and n in ALIGNED}
        try:
            out = compile(ASTSource(getattr(k, name), sig, consts, attrs), target=GPUTarget("cuda", 90, 32),
                          options={"enable_fp_fusion": False})
            ptx = out.asm["ptx"]
            results.append({"name": name, "consts": consts, "ok": "cubin" in out.asm, "fma": "fma." in ptx,
                            "div_rn": "div.rn.f32" in ptx, "aligned": aligned,
                            "v4_loads": "ld.global.v4" in ptx, "v4_stores": "st.global.v4" in ptx})
        except Exception as exc:
            results.append({"name": name, "consts": consts, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:800]})
    print(json.dumps(results))
    """
)


def test_every_kernel_compiles_for_sm90_with_ieee_division_and_no_fma(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]), TRITON_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == 50
    failed = [r for r in results if not r["ok"]]
    assert not failed, failed[:3]
    assert not [r for r in results if r["fma"]], "a fused multiply-add would round q·s + min once (eager: twice)"
    assert all(r["div_rn"] for r in results if r["name"].endswith("encode")), "encode divides in IEEE"
    aligned = [r for r in results if r["aligned"]]
    assert len(aligned) == 2 and all(r["v4_loads"] and r["v4_stores"] for r in aligned), (
        "int8 encode of an aligned bf16 cache, one stack or its layers in place: 16-byte loads and stores"
    )
