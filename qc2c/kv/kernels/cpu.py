"""Fused CPU kernels for int8/int4/int2 (uniform_cpu.cpp) and the float messages, fp16/bf16/fp32, fp8 and nf4
(floats_cpu.cpp, one extension with it): build once, choose the path, call them.

Why: the eager int schemes make several full passes over the cache (min/max, scale, float32 product, round,
clamp, cast, pack) and reach a few % of memcpy on a 2-core CPU; the fused kernels read each fp16 element
once per direction, write the codes already packed, and give the same bytes (tests/qc2c/kv/test_cpu_kernels.py
checks codes, scales, zero points and decoded tensors against the eager path).

Path choice, `QC2C_KV_KERNELS` (or `set_mode`): ``auto`` (default) uses the kernels when they build and falls
back to eager code otherwise, ``cpu`` requires them (a build failure raises `KernelUnavailable`), ``eager``
never uses them; ``cuda`` requires the Triton kernels for CUDA tensors (qc2c.kv.kernels.cuda) and runs CPU
tensors eagerly. The choice is logged once per process. The build (g++ via torch.utils.cpp_extension, ninja)
is cached in the torch extensions dir under a name keyed by the source hash, compiler flags and the torch
installation that builds it (`build_key`), so only the first call of an environment compiles (about a minute
on 2 cores). The installation is part of the key because the build files name its include folders: a second
clone with its own venv would otherwise find the first one's build "cached", pass `is_built`, and then
recompile it on load (a 40 s stall on a tiny run that auto mode promises never to build for). In ``auto`` that first build waits for a cache
worth it (`AUTO_BUILD_MIN_ELEMENTS`): a tiny-model run would spend longer compiling than the eager code takes
on all its caches, and both paths give the same bytes.

Large outputs (payloads, decoded caches) come from a pool inside the extension that keeps up to 512 MiB of
blocks the kernels handed out before: fresh blocks this large are new mmap'd pages from glibc, and faulting
them in cost as much as the encode itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

MODES = ("auto", "cpu", "cuda", "eager")  # cuda: the Triton kernels for CUDA tensors (qc2c.kv.kernels.cuda)
SOURCES = tuple(Path(__file__).with_name(n) for n in ("uniform_cpu.cpp", "floats_cpu.cpp"))
FUNCTIONS = ["encode", "decode", "raw_encode", "scaled_encode", "scaled_decode"]
log = logging.getLogger("qc2c.kv.kernels")


class KernelUnavailable(RuntimeError):
    """The fused CPU kernels were asked for (QC2C_KV_KERNELS=cpu) but cannot be built or loaded."""


_state: dict[str, object] = {}
AUTO_BUILD_MIN_ELEMENTS = 1 << 22  # ~4M elements (one 0.5B-model cache at batch 4); smaller: eager until built


def set_mode(mode: str | None) -> None:
    """Override QC2C_KV_KERNELS for this process (None: back to the environment variable)."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"kernels: unknown mode {mode!r} (allowed: {', '.join(MODES)})")
    _state.pop("logged", None)
    if mode is None:
        _state.pop("mode", None)
    else:
        _state["mode"] = mode


def mode() -> str:
    value = _state.get("mode") or os.environ.get("QC2C_KV_KERNELS", "auto")
    if value not in MODES:
        raise ValueError(f"QC2C_KV_KERNELS: unknown mode {value!r} (allowed: {', '.join(MODES)})")
    return str(value)


def cpu_flags() -> list[str]:
    """-mavx2 -mfma -mf16c when this CPU has all three (portable otherwise: the kernels have scalar loops)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return ["-mavx2", "-mfma", "-mf16c"] if {"avx2", "fma", "f16c"} <= flags else []


def build_key(source: str, cflags: list[str], torch_version: str, include_dirs: list[str]) -> str:
    """12 hex digits naming one build: what is compiled, how, and against which torch and Python headers."""
    text = "\n".join([source, " ".join(cflags), torch_version, *include_dirs])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BuildSpec:
    name: str  # extension name, keyed by `build_key`
    source: str
    cflags: list[str]
    simd: list[str]  # the part of cflags chosen for this CPU (logged with the path)


def _build_spec() -> BuildSpec:
    """Worked out once per process (the source and /proc/cpuinfo are read here only): `active` asks on every
    small encode while the extension is not built."""
    if "spec" not in _state:
        from torch.utils import cpp_extension

        simd = cpu_flags()
        cflags = ["-O3", "-fopenmp", "-ffp-contract=off", *simd]
        source = "\n".join(path.read_text() for path in SOURCES)
        includes = [*cpp_extension.include_paths(), sysconfig.get_paths()["include"]]
        key = build_key(source, cflags, torch.__version__, includes)
        _state["spec"] = BuildSpec(f"qc2c_uniform_cpu_{key}", source, cflags, simd)
    return _state["spec"]  # type: ignore[return-value]


def is_built() -> bool:
    """Whether this process has the extension or the torch extensions cache holds its build (loads in ~1 s)."""
    if "module" in _state:
        return True
    from torch.utils import cpp_extension

    name = _build_spec().name
    try:
        folder = Path(cpp_extension._get_build_directory(name, verbose=False))
    except Exception:  # a private helper: if it moves, behave as "not built"
        return False
    return (folder / f"{name}.so").is_file()


def load() -> ModuleType:
    """The compiled extension (built on first use, then loaded from the cache); raises KernelUnavailable."""
    if "module" in _state:
        return _state["module"]  # type: ignore[return-value]
    if "error" in _state:
        raise KernelUnavailable(str(_state["error"]))
    from torch.utils import cpp_extension

    spec = _build_spec()
    try:
        module = cpp_extension.load_inline(
            name=spec.name,
            cpp_sources=[spec.source],
            functions=FUNCTIONS,
            extra_cflags=spec.cflags,
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as exc:  # compiler, ninja or loader missing/failing: one reason, kept for later calls
        _state["error"] = f"fused CPU kernels cannot be built ({type(exc).__name__}: {str(exc).strip()[-400:]})"
        raise KernelUnavailable(str(_state["error"])) from exc
    _state["module"] = module
    _state["flags"] = " ".join(spec.simd) or "no SIMD flags"
    return module


def active(device: torch.device, n_elements: int | None = None) -> bool:
    """Whether int encode/decode on `device` of a tensor of `n_elements` goes through the fused kernels (logs
    the choice once). In auto mode a small tensor never triggers the first build (see module docstring)."""
    chosen = mode()
    if device.type != "cpu" or chosen in ("eager", "cuda"):
        _log_once(f"eager PyTorch (QC2C_KV_KERNELS={chosen})" if device.type == "cpu" else None)
        return False
    small = n_elements is not None and n_elements < AUTO_BUILD_MIN_ELEMENTS
    if chosen == "auto" and small and "error" not in _state and not is_built():
        return False  # not logged: the first cache large enough to build for makes the choice
    try:
        load()
    except KernelUnavailable as exc:
        if chosen == "cpu":
            raise
        _log_once(f"eager PyTorch ({exc})", logging.WARNING)
        return False
    _log_once(f"fused C++ CPU kernels ({_state['flags']})")
    return True


def _log_once(path: str | None, level: int = logging.INFO) -> None:
    if path is not None and "logged" not in _state:
        _state["logged"] = path
        log.log(level, "kv message kernels (int8/int4/int2, fp16/bf16/fp32, fp8, nf4) on CPU: %s", path)


def describe() -> str | None:
    """The path chosen so far in this process ('fused C++ CPU kernels (...)' / 'eager PyTorch (...)'), if any."""
    return _state.get("logged")  # type: ignore[return-value]


def encode(
    x: Tensor | list[Tensor], bits: int, symmetric: bool, kivi: bool, axis: str, group: int | None, fp16_scale: bool
):
    """x (R, L, H, n, D), or its L layers (R, H, n, D) each, read in place -> (payload (R, P) u8, scales (R, G)
    fp16/fp32, offsets (R, G or 0): u8 zero points, or with `kivi` mins typed like the scales, flags int)."""
    xs = [x.contiguous()] if isinstance(x, Tensor) else [t.contiguous() for t in x]
    payload, scales, zeros, flags = load().encode(xs, bits, symmetric, kivi, axis == "channel", group or 0, fp16_scale)
    return payload, scales, zeros, int(flags.item())


def decode(
    payload: Tensor,
    scales: Tensor,
    zeros: Tensor,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    bits: int,
    symmetric: bool,
    kivi: bool,
    axis: str,
    group: int | None,
) -> Tensor:
    """(R, L, H, n, D) = shape in `dtype` from the encoded parts (scales, and kivi's mins, typed fp16/fp32)."""
    like = torch.empty(0, dtype=dtype)
    return load().decode(
        payload.contiguous(),
        scales.contiguous(),
        zeros.contiguous(),
        list(shape),
        like,
        bits,
        symmetric,
        kivi,
        axis == "channel",
        group or 0,
    )


BAD_INPUT, SCALE_OVERFLOW = 1, 2


# ---- float messages (floats_cpu.cpp) ----


def raw_encode(x: Tensor | list[Tensor], dtype: torch.dtype) -> tuple[Tensor, bool]:
    """x (R, L, H, n, D), or its L layers (R, H, n, D) read in place -> ((R, L, H, n, D) in `dtype`, whether a
    converted value is NaN/Inf)."""
    xs = [x.contiguous()] if isinstance(x, Tensor) else [t.contiguous() for t in x]
    out, flags = load().raw_encode(xs, torch.empty(0, dtype=dtype))
    return out, bool(flags.item() & BAD_INPUT)


def scaled_encode(
    x: Tensor | list[Tensor], geometry: tuple[int, int, int], kind: int, fp16_scale: bool, table: Tensor
) -> tuple[Tensor, Tensor, int]:
    """x (R, L, H, n, D), or its L layers (R, H, n, D) read in place where no group spans two layers, each row
    grouped as `geometry` (O, g, I) -> (codes: kind 0 e4m3fn, 1 e5m2 (R, M) uint8, 2 nf4 (R, M/2) two per byte,
    `table` its 15 midpoints; scales (R, O·I) fp16/fp32; flags int)."""
    xs = [x.contiguous()] if isinstance(x, Tensor) else [t.contiguous() for t in x]
    codes, scales, flags = load().scaled_encode(xs, *geometry, kind, fp16_scale, table)
    return codes, scales, int(flags.item())


def scaled_decode(
    codes: Tensor, scales: Tensor, outer: int, group: int, inner: int, kind: int, table: Tensor, dtype: torch.dtype
) -> Tensor:
    """(R, outer·group·inner) in `dtype` = table[code] × the scale (R, outer·inner, fp16/fp32) of its group; kind as
    in `scaled_encode` (table: the 256 fp8 byte values, or the 16 nf4 levels)."""
    like = torch.empty(0, dtype=dtype)
    return load().scaled_decode(codes.contiguous(), scales.contiguous(), outer, group, inner, kind, table, like)
