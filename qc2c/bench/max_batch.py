"""`python -m qc2c.bench max-batch MANIFEST` — the largest training micro-batch that fits in memory.

Method (a find-max-batch search, as throughput benchmarks do it): measure batches 1 and 2 to estimate fixed and
per-sample memory, start at the batch the free memory predicts, probe the next batch (an exact estimate ends
the search there), double until a probe fails (or the cap is reached) and bisect between the largest fit
and the smallest failure. Every probe is two real optimizer steps (the second timed) of the manifest's
training setup (projectors, frozen pair, QAT codec if set) on the manifest's longest conversations, so the
batch is the worst case. An out-of-memory error is caught, the weights and optimizer state are restored
from a snapshot taken before the search (so probes never drift), caches are emptied, and the search goes
on. Reported per probe: batch, fits, step time, peak memory, tokens/s; and whether the search hit its cap
(then the true limit may be higher). `--gradient-checkpointing both` searches without and with
`train.gradient_checkpointing`; a `train.objective: kd` manifest runs `python -m qc2c.bench kd` over its cache
(`--kd-cache`): the speedrun-style table, both ways.

Memory: on CUDA the allocator's peak (torch.cuda.max_memory_allocated) against the free memory or
--memory-limit-gb, whichever is smaller; a real OOM counts as a failure. On CPU --memory-limit-gb is
required and the meter is the process's peak RSS (VmHWM, reset before each probe through
/proc/self/clear_refs); a probe whose peak exceeds the limit counts as out of memory.

examples:
  python -m qc2c.bench max-batch manifests/m7_fuser_train.yaml
  python -m qc2c.bench max-batch my_train.yaml --memory-limit-gb 6 --cap 64 --json
  python -m qc2c.bench max-batch my_train.yaml --memory-limit-gb 6 --gradient-checkpointing both
  python -m qc2c.bench max-batch manifests/demo_fuser_train_kd_int2.yaml --kd-cache runs/demo/demo_kd_cache-… --memory-limit-gb 1
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import dataclasses
import gc
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from qc2c.bench import positive_int

EXIT_BAD_INPUT = 2


class OutOfMemory(RuntimeError):
    """A probe needed more memory than the limit (or the device raised OOM)."""


@dataclass
class Probe:
    batch: int
    fits: bool
    step_s: float | None = None
    peak_bytes: int | None = None
    tokens_per_s: float | None = None
    error: str | None = None


@dataclass
class SearchResult:
    max_batch: int  # 0: not even batch 1 fits
    cap: int
    hit_cap: bool
    estimate: int | None
    limit_bytes: int | None
    probes: list[Probe] = field(default_factory=list)


def search(probe: Callable[[int], Probe], *, cap: int, limit_bytes: int | None = None) -> SearchResult:
    """Estimate from batches 1 and 2, then grow by doubling and bisect (see module docstring)."""
    cache: dict[int, Probe] = {}  # in probing order: the report lists the probes as they ran

    def run(b: int) -> Probe:
        if b not in cache:
            cache[b] = probe(b)
        return cache[b]

    lo, hi, estimate = 0, None, None
    for b in (1, 2)[: min(cap, 2)]:
        if run(b).fits:
            lo = b
        else:
            hi = b
            break
    one, two = cache.get(1), cache.get(2)
    if hi is None and lo == 2 and limit_bytes and one.peak_bytes and two.peak_bytes and two.peak_bytes > one.peak_bytes:
        per = two.peak_bytes - one.peak_bytes
        estimate = max(2, int((limit_bytes - (one.peak_bytes - per)) // per))
    b = min(cap, estimate or lo * 2) if hi is None else None
    while hi is None and lo < cap:
        if run(b).fits:  # right after a fitting estimate, check the next batch first: the estimate is often exact
            lo, b = b, min(cap, b + 1 if b == estimate else b * 2)
        else:
            hi = b
    while hi is not None and hi - lo > 1:
        mid = (lo + hi) // 2
        if run(mid).fits:
            lo = mid
        else:
            hi = mid
    return SearchResult(lo, cap, lo >= cap, estimate, limit_bytes, list(cache.values()))


# ---- memory meters ----


class CudaMeter:
    def __init__(self, device: torch.device, limit_bytes: int | None) -> None:
        free, _ = torch.cuda.mem_get_info(device)
        self.device = device
        # the peak counts what is already allocated (the models), so the free memory is on top of it
        usable = free + torch.cuda.memory_allocated(device)
        self.limit = min(limit_bytes, usable) if limit_bytes else usable

    def reset(self) -> None:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        return int(torch.cuda.max_memory_allocated(self.device))


class RssMeter:
    """Peak resident set size of this process (VmHWM), reset before each probe (Linux)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes

    @staticmethod
    def _status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"/proc/self/status has no {key}")

    def reset(self) -> None:
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed memory back so the peak is this probe's
        except OSError:
            pass
        Path("/proc/self/clear_refs").write_text("5")

    def peak(self) -> int:
        return self._status("VmHWM")


def measured_probe(step: Callable[[int], int], meter: Any, rebuild: Callable[[], None]) -> Callable[[int], Probe]:
    """A probe around `step(batch) -> tokens`: two real steps (the second timed), the peak over both, OOM (device
    or over the limit) -> failure; `rebuild()` restores the state after every probe."""

    def probe(batch: int) -> Probe:
        meter.reset()
        try:
            step(batch)  # warm-up step: optimizer state and allocator caches appear here (its peak counts)
            t0 = time.perf_counter()
            tokens = step(batch)  # the timed step
            dt = time.perf_counter() - t0
            peak = meter.peak()
            if meter.limit is not None and peak > meter.limit:
                raise OutOfMemory(f"peak {peak} B > limit {meter.limit} B")
            return Probe(batch, True, dt, peak, tokens / dt if dt > 0 else None)
        except (OutOfMemory, torch.OutOfMemoryError) as exc:
            return Probe(batch, False, peak_bytes=meter.peak(), error=f"{type(exc).__name__}: {str(exc)[:200]}")
        finally:
            rebuild()

    return probe


# ---- the manifest's training step ----


def trainer_step(manifest: dict[str, Any]) -> tuple[Any, Callable[[int], int], Callable[[], None]]:
    """(trainer, step(batch) -> tokens, rebuild()) for a kind: train manifest dict."""
    import tempfile

    from qc2c.train.sft import Trainer, TrainSpec

    spec = TrainSpec.from_manifest(manifest)
    trainer = Trainer(spec, Path(tempfile.mkdtemp(prefix="qc2c-max-batch-")))
    longest = sorted(trainer.examples, key=lambda e: len(e.input_ids), reverse=True)
    snapshot = copy.deepcopy((trainer.fuser.projectors.state_dict(), trainer.optimizer.state_dict()))

    def step(batch: int) -> int:
        rows = [longest[i % len(longest)] for i in range(batch)]
        return int(trainer.optimizer_step([rows])["tokens"])

    def rebuild() -> None:
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.fuser.projectors.load_state_dict(snapshot[0])
        trainer.optimizer.load_state_dict(copy.deepcopy(snapshot[1]))

    return trainer, step, rebuild


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m qc2c.bench max-batch",
        description=__doc__.splitlines()[0],
        epilog="examples:" + __doc__.split("examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("manifest", type=Path, metavar="MANIFEST", help="a kind: train manifest")
    p.add_argument("--memory-limit-gb", type=float, default=None, help="required on CPU; on CUDA caps free memory")
    p.add_argument("--cap", type=positive_int, default=256, help="largest batch tried (default 256)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--gradient-checkpointing",
        choices=("manifest", "off", "on", "both"),
        default="manifest",
        help="train.gradient_checkpointing for the probes; both: one search without, one with (default: manifest)",
    )
    p.add_argument("--kd-cache", type=Path, default=None, help="objective kd: the cache (runs python -m qc2c.bench kd)")
    return p


def load_manifest_dict(path: Path) -> dict[str, Any]:
    """The manifest as a plain dict (validate it with `python -m runner validate`; this reads what it needs)."""
    import yaml

    if not path.is_file():
        raise ValueError(f"{path}:1: (file): no such manifest file")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ValueError(f"{path}:{mark.line + 1 if mark else 1}: (file): invalid YAML") from None
    if not isinstance(doc, dict) or doc.get("kind") != "train" or not isinstance(doc.get("train"), dict):
        raise ValueError(f"{path}:1: kind: max-batch needs a kind: train manifest with a train: section")
    return doc


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        manifest = load_manifest_dict(args.manifest)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    if manifest["train"].get("objective") == "kd":  # over a KD cache: the speedrun table, both ways (bench kd)
        return _kd(args)
    limit = int(args.memory_limit_gb * 2**30) if args.memory_limit_gb else None
    trainer, step, rebuild = trainer_step(manifest)
    if trainer.device.type == "cuda":
        meter: Any = CudaMeter(trainer.device, limit)
    elif limit is None:
        print(
            f"{args.manifest}: --memory-limit-gb is required on CPU (nothing else bounds the search)", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    else:
        meter = RssMeter(limit)
    modes = {"manifest": [trainer.spec.train.gradient_checkpointing], "off": [False], "on": [True]}
    results = {}
    for flag in modes.get(args.gradient_checkpointing, [False, True]):
        train = dataclasses.replace(trainer.spec.train, gradient_checkpointing=flag)
        trainer.spec = dataclasses.replace(trainer.spec, train=train)
        results[flag] = search(measured_probe(step, meter, rebuild), cap=args.cap, limit_bytes=meter.limit)
    if args.json:
        docs = {("on" if flag else "off"): asdict(r) for flag, r in results.items()}
        print(json.dumps(docs if len(docs) > 1 else next(iter(docs.values())), indent=2))
    else:
        for flag, result in results.items():
            print(f"gradient checkpointing {'on' if flag else 'off'}:\n{format_result(result, trainer.device)}")
    return 0


def _kd(args: argparse.Namespace) -> int:
    from qc2c.bench import kd

    if args.kd_cache is None:
        print(f"{args.manifest}: train.objective is kd: give its cache with --kd-cache RUN_FOLDER", file=sys.stderr)
        return EXIT_BAD_INPUT
    gb = [] if args.memory_limit_gb is None else ["--memory-limit-gb", str(args.memory_limit_gb)]
    return kd.main(
        [str(args.manifest), "--kd-cache", str(args.kd_cache), "--cap", str(args.cap), *gb]
        + (["--json"] if args.json else [])
    )


def format_result(result: SearchResult, device: Any) -> str:
    lines = [f"max-batch on {device}: limit {result.limit_bytes / 2**30:.2f} GiB" if result.limit_bytes else ""]
    lines.append(f"{'batch':>6} {'fits':>5} {'step_s':>8} {'peak_GiB':>9} {'tokens/s':>10}")
    for p in result.probes:
        step = f"{p.step_s:.3f}" if p.step_s is not None else "-"
        peak = f"{p.peak_bytes / 2**30:.3f}" if p.peak_bytes is not None else "-"
        tps = f"{p.tokens_per_s:.0f}" if p.tokens_per_s is not None else "-"
        lines.append(f"{p.batch:>6} {'yes' if p.fits else 'OOM':>5} {step:>8} {peak:>9} {tps:>10}")
    cap = " (hit the cap: the true limit may be higher; raise --cap)" if result.hit_cap else ""
    lines.append(f"max batch: {result.max_batch}{cap}; estimate from batches 1-2: {result.estimate}")
    return "\n".join(line for line in lines if line)
