"""`python -m qc2c.bench kd MANIFEST --kd-cache DIR` — the cost of a KD step and the speedrun-style max-batch table.

1. Step cost, on the same batch (the cache's longest rows): a KD step from the cache (student forward, KL over
   the cached candidates, backward, optimizer step) against what distillation costs without a cache: an SFT
   step plus a teacher forward (the C2C pair reading the fp16 message under no_grad; the cost of a teacher
   forward does not depend on its fuser's weights, so the student's starting fuser stands in). Printed:
   each time (median of --repeats rounds after a warm-up round; the kinds alternate within a round) and the
   ratio.
2. Max batch, without and with `train.gradient_checkpointing` (qc2c.train.grad_ckpt): the search of
   qc2c.bench.max_batch over KD steps; per probe: batch, step seconds, peak memory, tokens/s, loss and
   OK / MAX (the largest that fits) / OOM. The table is printed and written as JSON into the cache folder
   (`bench_kd.json`) unless --no-write.

Memory as in max-batch: CUDA allocator peak, or on CPU the process's peak RSS against --memory-limit-gb.

examples:
  python -m qc2c.bench kd manifests/demo_fuser_train_kd_int2.yaml --kd-cache runs/demo/demo_kd_cache-… --memory-limit-gb 2
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from qc2c.bench import positive_int
from qc2c.bench.max_batch import EXIT_BAD_INPUT, CudaMeter, OutOfMemory, RssMeter, load_manifest_dict, search

# ---- the trainer and its steps ----


def kd_trainer(manifest: dict[str, Any], cache_dir: Path) -> Any:
    import tempfile

    from qc2c.train.kd import KDTrainer
    from qc2c.train.sft import TrainSpec

    spec = TrainSpec.from_manifest(manifest)
    if spec.train.objective != "kd":
        raise ValueError(f"manifest {spec.name}: train.objective is {spec.train.objective!r}; kd is needed")
    start = (manifest.get("fuser") or {}).get("path")  # the manifest's starting fuser (a from_run needs the runner)
    out = Path(tempfile.mkdtemp(prefix="qc2c-bench-kd-"))
    return KDTrainer(spec, out, cache_dir=cache_dir, init_from=start)


class Steps:
    """KD / SFT / teacher steps of one trainer on its longest rows; `restore()` undoes every optimizer step."""

    def __init__(self, trainer: Any) -> None:
        from qc2c.kd.teacher import CacheRow, PairTeacher

        self.t = trainer
        self.rows = sorted(trainer.examples, key=lambda e: len(e.input_ids), reverse=True)
        self.snapshot = copy.deepcopy((trainer.fuser.projectors.state_dict(), trainer.optimizer.state_dict()))
        teacher_fuser = copy.deepcopy(trainer.fuser)
        self.teacher = PairTeacher(trainer.pair, teacher_fuser, None, trainer.pad_id)
        self.cache_rows = [CacheRow(tuple(e.input_ids), e.split, e.split) for e in self.rows]

    def batch(self, n: int) -> list[Any]:
        return [self.rows[i % len(self.rows)] for i in range(n)]

    def kd(self, n: int) -> tuple[int, float]:
        stats = self.t.optimizer_step([self.batch(n)])
        return int(stats["tokens"]), float(stats["loss"])

    def sft(self, n: int) -> tuple[int, float]:
        from qc2c.train.sft import Trainer

        t = self.t
        t.fuser.projectors.train()
        batch = Trainer.make_batch(t, self.batch(n))
        loss = Trainer.compute_loss(t, batch)
        loss.backward()
        t.optimizer.step()
        t.optimizer.zero_grad(set_to_none=True)
        return batch.n_tokens, float(loss.detach())

    def teacher_forward(self, n: int) -> None:
        self.teacher.logits([self.cache_rows[i % len(self.cache_rows)] for i in range(n)])

    def restore(self) -> None:
        """Weights, optimizer state and the RNG (the gates' Gumbel noise) as before the first step: every probe
        starts alike, so equal batches show equal losses with and without checkpointing."""
        torch.manual_seed(0)
        self.t.optimizer.zero_grad(set_to_none=True)
        self.t.fuser.projectors.load_state_dict(self.snapshot[0])
        self.t.optimizer.load_state_dict(copy.deepcopy(self.snapshot[1]))

    def checkpointing(self, enabled: bool) -> None:
        spec = self.t.spec
        self.t.spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, gradient_checkpointing=enabled))


def step_costs(steps: Steps, batch: int, repeats: int) -> dict[str, float]:
    """Median seconds of each step kind over `repeats` rounds after one warm-up round. The three kinds alternate
    within a round, so a neighbour's load slows them alike instead of whichever was measured during it."""
    kinds = {"kd_step_s": steps.kd, "sft_step_s": steps.sft, "teacher_forward_s": steps.teacher_forward}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for round_ in range(repeats + 1):
        for key, fn in kinds.items():
            t0 = time.perf_counter()
            fn(batch)
            if round_:
                times[key].append(time.perf_counter() - t0)
    steps.restore()
    out = {"batch": batch, **{k: statistics.median(v) for k, v in times.items()}}
    out["ratio_sft_plus_teacher_over_kd"] = (out["sft_step_s"] + out["teacher_forward_s"]) / out["kd_step_s"]
    return out


# ---- the speedrun-style table ----


def kd_probe(steps: Steps, meter: Any) -> Callable[[int], Any]:
    """A max-batch probe over KD steps that also records the loss (qc2c.bench.max_batch.measured_probe's rules)."""
    from qc2c.bench.max_batch import Probe

    def probe(batch: int) -> Probe:
        meter.reset()
        try:
            steps.kd(batch)
            t0 = time.perf_counter()
            tokens, loss = steps.kd(batch)
            dt = time.perf_counter() - t0
            peak = meter.peak()
            if meter.limit is not None and peak > meter.limit:
                raise OutOfMemory(f"peak {peak} B > limit {meter.limit} B")
            out = Probe(batch, True, dt, peak, tokens / dt if dt > 0 else None)
            out.loss = loss  # type: ignore[attr-defined]
            return out
        except (OutOfMemory, torch.OutOfMemoryError) as exc:
            return Probe(batch, False, peak_bytes=meter.peak(), error=f"{type(exc).__name__}: {str(exc)[:200]}")
        finally:
            steps.restore()

    return probe


def table(steps: Steps, meter: Any, cap: int, checkpointing: bool) -> dict[str, Any]:
    steps.checkpointing(checkpointing)
    result = search(kd_probe(steps, meter), cap=cap, limit_bytes=meter.limit)
    rows = []
    for p in sorted(result.probes, key=lambda p: p.batch):
        state = "OOM" if not p.fits else "MAX" if p.batch == result.max_batch else "OK"
        rows.append(
            {
                "batch": p.batch,
                "step_s": p.step_s,
                "peak_bytes": p.peak_bytes,
                "tokens_per_s": p.tokens_per_s,
                "loss": getattr(p, "loss", None),
                "status": state,
            }
        )
    return {
        "gradient_checkpointing": checkpointing,
        "max_batch": result.max_batch,
        "hit_cap": result.hit_cap,
        "limit_bytes": result.limit_bytes,
        "rows": rows,
    }


def format_table(t: dict[str, Any]) -> str:
    head = f"gradient checkpointing {'on' if t['gradient_checkpointing'] else 'off'}: max batch {t['max_batch']}"
    lines = [
        head + (" (hit the cap)" if t["hit_cap"] else ""),
        f"{'batch':>6} {'step_s':>8} {'peak_MiB':>9} {'tokens/s':>9} {'loss':>8} {'':>4}",
    ]
    for r in t["rows"]:
        step = f"{r['step_s']:.3f}" if r["step_s"] is not None else "-"
        peak = f"{r['peak_bytes'] / 2**20:.0f}" if r["peak_bytes"] is not None else "-"
        tps = f"{r['tokens_per_s']:.0f}" if r["tokens_per_s"] is not None else "-"
        loss = f"{r['loss']:.4f}" if r["loss"] is not None else "-"
        lines.append(f"{r['batch']:>6} {step:>8} {peak:>9} {tps:>9} {loss:>8} {r['status']:>4}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m qc2c.bench kd",
        description=__doc__.splitlines()[0],
        epilog="examples:" + __doc__.split("examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("manifest", type=Path, metavar="MANIFEST", help="a kind: train manifest with train.objective: kd")
    p.add_argument("--kd-cache", type=Path, required=True, help="the KD cache folder (a kind: kd_cache run folder)")
    p.add_argument("--batch", type=positive_int, default=8, help="batch of the step-cost comparison (default 8)")
    p.add_argument(
        "--repeats", type=positive_int, default=5, help="timed rounds of the step-cost comparison (default 5)"
    )
    p.add_argument("--memory-limit-gb", type=float, default=None, help="required on CPU; on CUDA caps free memory")
    p.add_argument("--cap", type=positive_int, default=256, help="largest batch tried (default 256)")
    p.add_argument("--no-write", action="store_true", help="do not write bench_kd.json into the cache folder")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from qc2c.kd.format import CacheFormatError

    try:
        manifest = load_manifest_dict(args.manifest)
        trainer = kd_trainer(manifest, args.kd_cache)
    except (ValueError, CacheFormatError) as exc:
        print(str(exc).splitlines()[0] if str(exc) else exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    limit = int(args.memory_limit_gb * 2**30) if args.memory_limit_gb else None
    if trainer.device.type != "cuda" and limit is None:
        print(
            f"{args.manifest}: --memory-limit-gb is required on CPU (nothing else bounds the search)", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    meter = CudaMeter(trainer.device, limit) if trainer.device.type == "cuda" else RssMeter(limit)
    steps = Steps(trainer)
    out = {
        "manifest": str(args.manifest),
        "kd_cache": str(args.kd_cache),
        "device": str(trainer.device),
        "cost": step_costs(steps, args.batch, args.repeats),
        "tables": [table(steps, meter, args.cap, False), table(steps, meter, args.cap, True)],
    }
    if not args.no_write:
        from qc2c.atomic import atomic_write

        atomic_write(args.kd_cache / "bench_kd.json", json.dumps(out, indent=2))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    c = out["cost"]
    print(
        f"step cost, batch {c['batch']} on {trainer.device}: KD step from the cache {c['kd_step_s']:.3f} s; SFT step "
        f"{c['sft_step_s']:.3f} s + teacher forward {c['teacher_forward_s']:.3f} s = "
        f"{c['ratio_sft_plus_teacher_over_kd']:.2f}x the KD step"
    )
    for t in out["tables"]:
        print(format_table(t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
