"""Codec throughput: encode + decode of a realistic sharer cache next to a memcpy of the same bytes.

Default geometry is Qwen2.5-0.5B's (24 layers × 2 KV heads × 64), 256 prompt tokens, batch 16, fp16.
For each scheme the full message path runs (stack layers, quantize, pack into per-row messages; decode
back to the cache dtype) with `kv.quant` defaults (keys per channel, values per token, group 64,
asymmetric). Throughput = fp16 input bytes / (encode + decode) seconds. Quantize/dequantize is
memory-bound, so the yardstick is a memcpy of the same bytes measured right before each scheme in the
same process (a loaded machine slows both alike); `ratio` = memcpy time / round-trip time, `floor` = the
ratio of a codec that only moves the bytes it must at memcpy speed (see `measure_row`). A raw float message
(fp16, bf16) of another dtype than the cache is also measured on a cache of its own dtype: its lossless path.
`--quality` adds the MSE of each scheme and asymmetric convention (kivi, observer) against the input on
synthetic KV with normal, heavy-tailed and fixed-sign outlier channels (qc2c.bench.quality).

examples:
  python -m qc2c.bench codec
  python -m qc2c.bench codec --schemes int8 int4 --repeat 10 --json
  python -m qc2c.bench codec --schemes int4 int2 --quality
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import torch

from qc2c.bench import positive_int
from qc2c.bench.quality import DATA_KINDS, measure_quality
from qc2c.config import KVConfig, QuantConfig
from qc2c.fuser.seam import SectionKV
from qc2c.kv.codec import Codec, build_codec
from qc2c.kv.kernels import cpu as kernels
from qc2c.kv.quant import SCHEMES
from qc2c.kv.schemes import uniform


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m qc2c.bench codec",
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--tokens", type=positive_int, default=256)
    p.add_argument("--layers", type=positive_int, default=24)
    p.add_argument("--heads", type=positive_int, default=2)
    p.add_argument("--head-dim", type=positive_int, default=64)
    p.add_argument("--schemes", nargs="+", default=None, help="default: every registered scheme")
    p.add_argument(
        "--repeat", type=positive_int, default=5, help="timed repeats per measurement; the minimum is reported"
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--quality",
        action="store_true",
        help="also the MSE per scheme and convention on synthetic KV (batch capped at 2)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the int schemes' elementwise kernels (checked bit-equal to eager first)",
    )
    return p


def _best(fn: Callable[[], object], repeat: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def build_section(args: argparse.Namespace) -> SectionKV:
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, args.heads, args.tokens, args.head_dim)
    sharer = [tuple(torch.randn(shape, generator=gen).to(device, dtype) for _ in (0, 1)) for _ in range(args.layers)]
    mask = torch.ones(args.batch, args.tokens, dtype=torch.bool, device=device)
    layer_map = {t: t for t in range(args.layers)}
    return SectionKV(sharer=sharer, receiver=[], fuse_mask=mask, layer_map=layer_map, project=None)  # type: ignore[arg-type]


def scheme_codec(section: SectionKV, scheme: str) -> Codec:
    """A codec that sends every layer of the bench cache with `scheme`."""
    n_layers = len(section.sharer)
    kv = KVConfig(quant=QuantConfig(scheme=scheme))
    return build_codec(kv, layer_map=section.layer_map, n_sharer_layers=n_layers, n_receiver_layers=n_layers)


def measure(args: argparse.Namespace, section: SectionKV) -> dict:
    device = section.fuse_mask.device
    n_layers = len(section.sharer)
    k0 = section.sharer[0][0]
    input_bytes = 2 * n_layers * k0.numel() * k0.element_size()
    rows = []
    for name in args.schemes or SCHEMES.names():
        rows.append(measure_row(name, section, args.repeat))
        own = lossless_dtype(name)
        if own is not None and own != k0.dtype:  # its lossless path too: a cache of its own dtype
            rows.append(measure_row(name, cast_section(section, own), args.repeat))
    return {
        "geometry": {
            "batch": args.batch,
            "layers": n_layers,
            "heads": args.heads,
            "head_dim": args.head_dim,
            "tokens": args.tokens,
            "dtype": args.dtype,
        },
        "device": str(device),
        "threads": torch.get_num_threads(),
        "input_bytes": input_bytes,
        "rows": rows,
    }


def measure_row(name: str, section: SectionKV, repeat: int) -> dict:
    """One scheme's round trip on `section`, next to a memcpy of the same bytes measured right before it.

    `floor` is the ratio a codec that only moves the bytes it must, at memcpy speed, would reach: encode reads
    the cache and writes the message, decode reads the message and writes the cache (nothing where the decoded
    cache is a view of the message, as a lossless fp16 message into an fp16 cache)."""
    device = section.fuse_mask.device
    k0 = section.sharer[0][0]
    input_bytes = 2 * len(section.sharer) * k0.numel() * k0.element_size()
    src = [torch.stack([kv[h] for kv in section.sharer]) for h in (0, 1)]
    dst = [torch.empty_like(s) for s in src]
    memcpy_s = _best(lambda: [d.copy_(s) for d, s in zip(dst, src)], repeat, device)
    codec = scheme_codec(section, name)
    encode_s = _best(lambda c=codec: c.encode(section), repeat, device)
    messages, _, _ = codec.encode(section)
    decode_s = _best(lambda c=codec, m=messages: c.decode(m, dtype=k0.dtype, device=device), repeat, device)
    sharer, _ = codec.decode(messages, dtype=k0.dtype, device=device)
    nbytes = sum(m.nbytes for m in messages)
    decoded = 0 if _is_view(sharer[0][0], messages[0]) else nbytes + input_bytes  # read message, write cache
    round_trip = encode_s + decode_s
    return {
        "scheme": name,
        "cache": str(k0.dtype).removeprefix("torch."),
        "encode_ms": 1e3 * encode_s,
        "decode_ms": 1e3 * decode_s,
        "round_trip_gb_s": input_bytes / round_trip / 1e9,
        "memcpy_gb_s": input_bytes / memcpy_s / 1e9,
        "ratio_to_memcpy": memcpy_s / round_trip,
        "floor": 2 * input_bytes / (input_bytes + nbytes + decoded),
        "compression": input_bytes / nbytes,
    }


def lossless_dtype(name: str) -> torch.dtype | None:
    """The 16-bit cache dtype a raw float message (fp16, bf16) sends losslessly; None for other schemes."""
    own = getattr(SCHEMES.get(name), "float_dtype", None)
    return own if own in (torch.float16, torch.bfloat16) else None


def cast_section(section: SectionKV, dtype: torch.dtype) -> SectionKV:
    sharer = [(k.to(dtype), v.to(dtype)) for k, v in section.sharer]
    return SectionKV(sharer=sharer, receiver=[], fuse_mask=section.fuse_mask, layer_map=section.layer_map, project=None)  # type: ignore[arg-type]


def _is_view(decoded: torch.Tensor, message) -> bool:
    """Whether a decoded layer shares memory with the message's payload (nothing was written to decode it)."""
    payload = message.segments[0].key.payload
    return decoded.untyped_storage().data_ptr() == payload.untyped_storage().data_ptr()


def int_kernel_path(args: argparse.Namespace) -> str:
    """Which int8/int4/int2 code ran: torch.compile, the fused C++ CPU kernels, the Triton kernels (CUDA) or eager
    PyTorch."""
    if args.compile:
        return "torch.compile"
    if str(args.device).startswith("cuda"):
        from qc2c.kv.kernels import cuda

        return cuda.describe() or "eager PyTorch"
    return kernels.describe() or "eager PyTorch"


def check_compiled_equals_eager(args: argparse.Namespace, section: SectionKV) -> None:
    """Encode the bench cache eagerly, then compiled; refuse to time kernels that change a single byte."""
    names = [s for s in (args.schemes or SCHEMES.names()) if s in ("int8", "int4", "int2")]
    uniform.use_compiled_kernels(False)
    eager = {s: _encode_bytes(section, s) for s in names}
    uniform.use_compiled_kernels(True)
    for s in names:
        if _encode_bytes(section, s) != eager[s]:
            uniform.use_compiled_kernels(False)
            raise SystemExit(f"--compile: compiled {s} kernels differ from eager ones; refusing to benchmark them")


def _encode_bytes(section: SectionKV, scheme: str) -> list[bytes]:
    codec = scheme_codec(section, scheme)
    messages, _, _ = codec.encode(section)
    sharer, _ = codec.decode(messages, dtype=section.sharer[0][0].dtype, device=section.fuse_mask.device)
    return [m.to_bytes() for m in messages] + [k.cpu().contiguous().numpy().tobytes() for k, _ in sharer[:2]]


_SHORT = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    g = result["geometry"]
    compiled = f"; int schemes: {result['int_kernels']}" if result.get("int_kernels") else ""
    title = (
        f"codec round trip: {g['batch']}×{g['layers']}L×{g['heads']}H×{g['tokens']}T×{g['head_dim']} {g['dtype']} "
        f"({result['input_bytes'] / 1e6:.1f} MB) on {result['device']}, {result['threads']} threads{compiled}"
    )
    table = Table(title=title)
    for col in ("scheme", "encode ms", "decode ms", "round trip GB/s", "memcpy GB/s", "ratio", "floor", "compression"):
        table.add_column(col, justify="left" if col == "scheme" else "right")
    for r in result["rows"]:
        table.add_row(
            r["scheme"] if r["cache"] == g["dtype"] else f"{r['scheme']} ({_SHORT[r['cache']]} cache)",
            f"{r['encode_ms']:.1f}",
            f"{r['decode_ms']:.1f}",
            f"{r['round_trip_gb_s']:.3f}",
            f"{r['memcpy_gb_s']:.2f}",
            f"{100 * r['ratio_to_memcpy']:.1f}%",
            f"{100 * r['floor']:.0f}%",
            f"{r['compression']:.2f}×",
        )
    Console().print(table)
    if result.get("quality"):
        print_quality(result["quality"], result["quality_geometry"])


def print_quality(rows: list[dict], geometry: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"quantizer MSE vs the input ({geometry}; keys per channel, values per token, group 64)")
    for col in ("scheme", "convention", "half", *DATA_KINDS):
        table.add_column(col, justify="right" if col in DATA_KINDS else "left")
    for r in rows:
        for half in ("keys", "values"):
            table.add_row(r["scheme"], r["convention"], half, *(f"{r['mse'][kind][half]:.3e}" for kind in DATA_KINDS))
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    unknown = [s for s in args.schemes or () if s not in SCHEMES]
    if unknown:
        for name in unknown:
            try:
                SCHEMES.get(name)
            except ValueError as exc:
                print(f"--schemes: {exc}", file=sys.stderr)
        return 2
    section = build_section(args)
    if args.compile:
        check_compiled_equals_eager(args, section)
    result = measure(args, section)
    result["compiled_kernels"] = bool(args.compile)
    result["int_kernels"] = int_kernel_path(args)
    if args.quality:
        shape = (min(args.batch, 2), args.layers, args.heads, args.tokens, args.head_dim)
        result["quality"] = measure_quality(args.schemes or list(SCHEMES.names()), shape, getattr(torch, args.dtype))
        result["quality_geometry"] = f"{shape[0]}×{shape[1]}L×{shape[2]}H×{shape[3]}T×{shape[4]} {args.dtype}"
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0
