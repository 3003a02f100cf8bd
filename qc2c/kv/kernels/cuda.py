"""Triton codec kernels for CUDA tensors (qc2c/kv/kernels/triton_codec.py): choose the path, plan tiles, launch.

Why: on CUDA the eager schemes make several passes over the cache (min/max, scale, product, round, clamp, cast,
pack), each a kernel launch that reads and writes the whole tensor; the Triton kernels read each element once
per direction and write packed codes, which is what a memory-bound codec needs to approach the device's copy
bandwidth. Same bytes as the eager path (tests/qc2c/kv/test_triton_kernels.py).

Path choice, `QC2C_KV_KERNELS` (shared with the CPU kernels, `qc2c.kv.kernels.cpu.set_mode`): ``auto`` (default)
uses the Triton kernels for CUDA tensors when `triton` imports and the fused C++ kernels for CPU tensors; ``cuda``
requires the Triton kernels for CUDA tensors (`KernelUnavailable` otherwise) and leaves CPU tensors on the eager
path; ``cpu`` and ``eager`` never use them. Geometries the tiles do not cover (a group wider than `MAX_TILE` / 2
elements, a packed byte that would hold two groups' codes) stay on the eager path; a ragged last group is masked.

Triton's interpreter (TRITON_INTERPRET=1 before triton is imported) runs the same kernels on CPU tensors: the
tests use it, through `use_interpreter_on_cpu`, to check the bytes where no GPU is.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType

import torch
from torch import Tensor

from qc2c.kv.kernels import cpu
from qc2c.kv.kernels.cpu import KernelUnavailable

MAX_TILE = 4096  # elements one program reads (fp16: 8 KiB)
_state: dict[str, object] = {}
log = logging.getLogger("qc2c.kv.kernels")


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def use_interpreter_on_cpu(enabled: bool) -> None:
    """Tests: run the Triton kernels on CPU tensors through Triton's interpreter (needs TRITON_INTERPRET=1)."""
    if enabled and not interpreting():
        raise RuntimeError("use_interpreter_on_cpu needs TRITON_INTERPRET=1 set before triton is imported")
    _state["cpu_interpreter"] = enabled


def load() -> ModuleType:
    """The kernels module (imports triton once); raises KernelUnavailable with the reason."""
    if "module" in _state:
        return _state["module"]  # type: ignore[return-value]
    if "error" in _state:
        raise KernelUnavailable(str(_state["error"]))
    try:
        from qc2c.kv.kernels import triton_codec
    except Exception as exc:  # triton missing, or too old for these kernels
        _state["error"] = f"Triton codec kernels unavailable ({type(exc).__name__}: {str(exc).strip()[-300:]})"
        raise KernelUnavailable(str(_state["error"])) from exc
    _state["module"] = triton_codec
    return triton_codec


def active(device: torch.device) -> bool:
    """Whether encode/decode of a tensor on `device` goes through the Triton kernels (logs the choice once)."""
    chosen = cpu.mode()
    on_cpu = device.type == "cpu" and bool(_state.get("cpu_interpreter"))
    if chosen in ("cpu", "eager") or not (device.type == "cuda" or on_cpu):
        return False
    try:
        module = load()
    except KernelUnavailable as exc:
        if chosen == "cuda":
            raise
        _log_once(f"eager PyTorch ({exc})", logging.WARNING)
        return False
    _log_once(f"Triton kernels (triton {module.triton.__version__}{', interpreter' if interpreting() else ''})")
    return True


def _log_once(path: str, level: int = logging.INFO) -> None:
    if "logged" not in _state:
        _state["logged"] = path
        log.log(level, "kv message kernels (int8/int4/int2, fp8, nf4) on CUDA: %s", path)


def describe() -> str | None:
    """The CUDA path chosen so far in this process, if any."""
    return _state.get("logged")  # type: ignore[return-value]


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def plan(
    geometry: tuple[int, int, int, int], rows: int, bits: int
) -> tuple[bool, int, int, tuple[int, int], int] | None:
    """(channel tile?, GP, BLOCK, grid, groups per slice) for R = `rows` rows of (S, length, g, I) = `geometry`
    (see triton_codec's docstring); None: not covered."""
    slices, length, group, inner = geometry
    per = 8 // bits
    gp = _pow2(group)
    n_q = -(-length // group) if group else 0
    if slices * rows * length == 0 or group == 0 or gp > MAX_TILE // 2:
        return None
    n_outer = slices * rows * n_q
    if inner > 1:  # channel tile: packing runs along the channels
        if inner % per:
            return None
        block = max(per, min(128, _pow2(inner), MAX_TILE // gp))
        return True, gp, block, (n_outer, -(-inner // block)), n_q
    if group % per or length % per:  # a byte would hold two groups' codes
        return None
    block = max(2, min(64, MAX_TILE // gp))
    return False, gp, block, (-(-n_outer // block), 1), n_q


def _launch(kernel, grid, *args, **meta) -> bool:
    """Run `kernel`; False where it cannot be compiled or launched here (an older Triton, say): in auto mode the
    Triton path is then switched off for the process, with the reason logged, and the caller runs eager code;
    with QC2C_KV_KERNELS=cuda it raises KernelUnavailable. Out-of-memory errors propagate as they are."""
    if not interpreting():
        meta["enable_fp_fusion"] = False  # q·s + min rounds twice in eager code; an FMA would round once
    try:
        kernel[grid](*args, **meta)
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - compiler and launcher errors are many types
        reason = f"Triton codec kernels failed ({type(exc).__name__}: {str(exc).strip()[-300:]})"
        if cpu.mode() == "cuda":
            raise KernelUnavailable(reason) from exc
        _state.pop("module", None)
        _state["error"] = reason
        _state.pop("logged", None)
        _log_once(f"eager PyTorch ({reason})", logging.WARNING)
        return False
    return True


def _out_arg(out: Tensor) -> Tensor:
    """The decoded cache as the kernels write it: bf16 through its int16 view (rounded from the bits)."""
    return out.view(torch.int16) if out.dtype == torch.bfloat16 else out


def _flags(flags: Tensor) -> int:
    """OR of the per-program flags, one host sync."""
    return int(((flags & cpu.BAD_INPUT).amax() | (flags & cpu.SCALE_OVERFLOW).amax()).item())


def _source(x: Tensor | list[Tensor], geometry: tuple[int, int, int, int]) -> tuple[Tensor, dict[str, object]] | None:
    """The first tensor (for dtype and device) and the kernels' input arguments: one (R, L, H, n, D) tensor, or
    its L layers (R, H, n, D) read in place through a table of their distances from the first one (in 16-byte
    blocks: the compiler then knows every layer's loads are aligned, and vectorizes them); None where a
    slice would span two layers (the tensor axis), the layers differ, or one starts off a 16-byte boundary (a
    view at an odd offset)."""
    if isinstance(x, Tensor):
        x = x.contiguous()
        return x, {"bases_ptr": x.new_zeros(1, dtype=torch.int64), "per_layer": 1, "n_layers": 1, "LAYERS": False}
    layers = [t.contiguous() for t in x]
    x0 = layers[0]
    if any(t.shape != x0.shape or t.dtype != x0.dtype or t.device != x0.device for t in layers):
        return None
    if geometry[0] % len(layers) or any(t.data_ptr() % 16 for t in layers):  # the kernel assumes 16-byte bases
        return None
    blocks = [(t.data_ptr() - x0.data_ptr()) // 16 for t in layers]  # exact: every base is 16-byte aligned
    bases = torch.tensor(blocks, dtype=torch.int64, device=x0.device)
    args = {"bases_ptr": bases, "per_layer": geometry[0] // len(layers), "n_layers": len(layers), "LAYERS": True}
    return x0, {**args, "_keep": layers}  # _keep: the contiguous copies stay alive until the launch returns


def _encode_setup(
    x: Tensor | list[Tensor], geometry: tuple[int, int, int, int], bits: int, scale_dtype: torch.dtype
) -> tuple[Tensor, dict[str, object], object, tuple, tuple[int, ...], Tensor, Tensor, Tensor] | None:
    """What every encode launches with: (first tensor, input arguments, the layers to keep alive until the launch
    returns, plan's tiles, the geometry arguments, and empty codes (R, P) u8, scales (R, G) and flags); None where
    `_source` or `plan` does not cover the geometry."""
    source = _source(x, geometry)
    r = source[0].shape[0] if source is not None else 0
    tiles = plan(geometry, r, bits) if source is not None else None
    if tiles is None:
        return None
    x, inputs = source
    keep = inputs.pop("_keep", None)
    grid, n_q = tiles[3], tiles[4]
    n_elements, n_groups, geo = _sizes(geometry, r, n_q)
    codes = torch.empty((r, n_elements * bits // 8), dtype=torch.uint8, device=x.device)
    scales = torch.empty((r, n_groups), dtype=scale_dtype, device=x.device)
    flags = torch.zeros(grid[0] * grid[1], dtype=torch.int32, device=x.device)
    return x, inputs, keep, tiles, geo, codes, scales, flags


def _sizes(geometry: tuple[int, int, int, int], rows: int, n_q: int) -> tuple[int, int, tuple[int, ...]]:
    """(elements per row, groups per row, the kernels' geometry arguments n_outer, g, inner, length, n_q)."""
    slices, length, group, inner = geometry
    return slices * length * inner, slices * n_q * inner, (rows * slices * n_q, group, inner, length, n_q)


def _scale_consts(scale_dtype: torch.dtype) -> dict[str, object]:
    info = torch.finfo(scale_dtype)
    return {"SCALE_FP16": scale_dtype == torch.float16, "TINY": float(info.tiny), "EPS1": 1.0 + float(info.eps)}


def uniform_encode(
    x: Tensor | list[Tensor],
    geometry: tuple[int, int, int, int],
    bits: int,
    symmetric: bool,
    kivi: bool,
    scale_dtype: torch.dtype,
) -> tuple[Tensor, Tensor, Tensor, int] | None:
    """x (R, L, H, n, D), or its L layers (R, H, n, D) read in place -> (payload (R, P) u8, scales (R, G) scale
    dtype, offsets (R, G) kivi mins / observer u8 zero points / (R, 0), flags); None where `plan` (or `_source`)
    does not cover the geometry."""
    setup = _encode_setup(x, geometry, bits, scale_dtype)
    if setup is None:
        return None
    x, inputs, keep, (channel, gp, block, grid, _), geo, payload, scales, flags = setup  # noqa: F841 - keep: see _source
    r, n_groups = scales.shape
    zero_dtype = scale_dtype if kivi else torch.uint8
    zeros = torch.empty((r, 0 if symmetric else n_groups), dtype=zero_dtype, device=x.device)
    if not _launch(
        load().uniform_encode, grid, x, payload, scales, zeros if zeros.numel() else scales, flags, *geo, **inputs,
        BITS=bits, SYMMETRIC=symmetric, KIVI=kivi, CHANNEL=channel, GP=gp, BLOCK=block, **_scale_consts(scale_dtype),
    ):  # fmt: skip
        return None
    return payload, scales, zeros, _flags(flags)


def uniform_decode(
    payload: Tensor,
    scales: Tensor,
    zeros: Tensor,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    geometry: tuple[int, int, int, int],
    bits: int,
    symmetric: bool,
    kivi: bool,
) -> Tensor | None:
    """(R, L, H, n, D) = shape in `dtype` from the encoded parts (scales and kivi mins typed, observer zero points
    u8); None where `plan` does not cover the geometry."""
    tiles = plan(geometry, shape[0], bits)
    if tiles is None:
        return None
    channel, gp, block, grid, n_q = tiles
    out = torch.empty(shape, dtype=dtype, device=payload.device)
    zeros = zeros.contiguous()
    if not _launch(
        load().uniform_decode, grid, payload.contiguous(), scales.contiguous(), zeros if zeros.numel() else scales,
        _out_arg(out), *_sizes(geometry, shape[0], n_q)[2], BITS=bits, SYMMETRIC=symmetric, KIVI=kivi,
        CHANNEL=channel, GP=gp, BLOCK=block, OUT_BF16=dtype == torch.bfloat16,
    ):  # fmt: skip
        return None
    return out


def scaled_encode(
    x: Tensor | list[Tensor],
    geometry: tuple[int, int, int, int],
    kind: int,
    fmax: float,
    scale_dtype: torch.dtype,
    mids: Tensor,
) -> tuple[Tensor, Tensor, int] | None:
    """fp8 (kind 0 e4m3fn, 1 e5m2; `fmax` its max) or nf4 (kind 2, `mids` its 15 midpoints) codes of x
    (R, L, H, n, D), or of its layers read in place -> (codes (R, M) / (R, M/2) u8, scales (R, G) scale dtype,
    flags); None: not covered."""
    setup = _encode_setup(x, geometry, 4 if kind == 2 else 8, scale_dtype)
    if setup is None:
        return None
    x, inputs, keep, (channel, gp, block, grid, _), geo, codes, scales, flags = setup  # noqa: F841 - keep: see _source
    mids = mids.to(device=x.device, dtype=torch.float32) if kind == 2 else scales
    if not _launch(
        load().scaled_encode, grid, x, codes, scales, mids, flags, *geo, **inputs, KIND=kind, FMAX=float(fmax),
        CHANNEL=channel, GP=gp, BLOCK=block, **_scale_consts(scale_dtype),
    ):  # fmt: skip
        return None
    return codes, scales, _flags(flags)


def scaled_decode(
    codes: Tensor,
    scales: Tensor,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    geometry: tuple[int, int, int, int],
    bits: int,
    table: Tensor,
) -> Tensor | None:
    """(R, L, H, n, D) = shape in `dtype`: table[code] × its group's scale (fp8: 256 values, nf4: 16 levels)."""
    tiles = plan(geometry, shape[0], bits)
    if tiles is None:
        return None
    channel, gp, block, grid, n_q = tiles
    out = torch.empty(shape, dtype=dtype, device=codes.device)
    table = table.to(device=codes.device, dtype=torch.float32)
    if not _launch(
        load().scaled_decode, grid, codes.contiguous(), scales.contiguous(), table, _out_arg(out),
        *_sizes(geometry, shape[0], n_q)[2], BITS=bits, CHANNEL=channel, GP=gp, BLOCK=block,
        OUT_BF16=dtype == torch.bfloat16,
    ):  # fmt: skip
        return None
    return out
