"""`python -m qc2c.bench gpu` (`make gpu-check`): the one device check, one JSON report and one table, <= 8 min.

On a CUDA machine it measures, in this order (each step's error is recorded and the next step still runs):
1. demo: the demo manifest's settings (receiver, sharer, c2c_fp16, c2c_placebo, int4 group 32) in bf16 on the GPU vs
   float32 on the CPU, prediction by prediction (target: >= 98 % agree);
2. eval at real geometry: `geom:qwen3-0.6b` <- `geom:qwen2.5-0.5b` (random weights, ~200-token prompts), the
   logits protocol's C2C prefill with the uncompressed message and with an int4 message, s/sample at batch 1 ..
   256 (targets at the best batch: <= 0.02 s/sample with int4, the codec's encode + decode <= 3 % of it);
3. codec: `qc2c.bench codec`'s round trip of every main scheme on the device next to a device-to-device copy of
   the same bytes, and the kernels alone (one scheme's encode + decode of a stacked cache; bytes checked equal
   to eager) (target: int8 and int4 move bytes at >= 80 % of the copy's bandwidth, `bandwidth_fraction`);
4. max batch of a bf16 training step with gradient checkpointing (geom pair, 512-token sequences);
5. kernel_bytes: the Triton kernels' bytes against eager PyTorch on the device, as many cases as the budget
   leaves time for (qc2c/bench/gpu_bytes.py; each new kernel specialization compiles once).
Nothing in it needs the hub, a manifest or the runner: it imports only the science core (see gpu_steps.py).

Without CUDA it prints one line and exits 0 (nothing measured). `--cpu-dry-run` runs every step on the CPU with
reduced sizes (2-layer geom models, small vocabulary, short prompts) to prove the script end to end; its
figures are not GPU figures and the report says so.

examples:
  PYTHONPATH=. timeout 480 python3 -m qc2c.bench gpu --out $OUT/gpu_check.json    # a bare GPU machine
  python -m qc2c.bench gpu --cpu-dry-run --out /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from qc2c.bench import gpu_bytes, gpu_steps
from qc2c.bench.gpu_steps import Sizes

STEPS = {
    "demo": gpu_steps.demo_agreement,
    "geometry_eval": gpu_steps.geometry_eval,
    "codec": gpu_steps.codec_bench,
    "train_max_batch": gpu_steps.train_max_batch,
    "kernel_bytes": gpu_bytes.kernel_bytes,  # last: it compiles many specializations, and stops at the budget
}
TARGETS = {
    "demo_agreement": 0.98,
    "int4_s_per_sample": 0.02,
    "codec_share": 0.03,
    "codec_ratio": 0.80,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m qc2c.bench gpu",
        description=__doc__.splitlines()[0],
        epilog="examples:" + __doc__.split("examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out", type=Path, default=Path("gpu_check.json"), help="the JSON report (default ./gpu_check.json)"
    )
    p.add_argument("--cpu-dry-run", action="store_true", help="every step on the CPU at reduced sizes (no GPU figures)")
    p.add_argument("--budget-s", type=float, default=450.0, help="eval batch sizes stop when the budget runs out")
    p.add_argument("--steps", nargs="+", choices=list(STEPS), default=list(STEPS), help="default: all")
    p.add_argument("--receiver", default=gpu_steps.RECEIVER, help="geometry_eval / train_max_batch: a geom: model")
    p.add_argument("--sharer", default=gpu_steps.SHARER, help="e.g. geom:llama3.2-1b")
    return p


def run(sizes: Sizes, steps: list[str], dry_run: bool) -> dict[str, Any]:
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "dry_run": dry_run,
        "note": "CPU dry run at reduced sizes: these are not GPU figures" if dry_run else "",
        "environment": gpu_steps.environment(sizes),
        "steps": {},
    }
    for name in steps:
        t0 = time.monotonic()
        print(f"[gpu-check] {name} ...", file=sys.stderr, flush=True)
        try:
            result = STEPS[name](sizes)
        except Exception as exc:  # noqa: BLE001 - one step's failure is recorded; the others still run
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        result["seconds"] = time.monotonic() - t0
        report["steps"][name] = result
        release_memory()
    from qc2c.kv.kernels import cuda as cuda_kernels

    report["environment"]["kernel_path_after"] = cuda_kernels.describe()  # what the codec ran on CUDA, if anything
    report["checks"] = checks(report["steps"])
    return report


def release_memory() -> None:
    """Free the step's models before the next one (the max-batch meter reads the device's free memory)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def checks(steps: dict[str, Any]) -> dict[str, Any]:
    """Each target of issue 20 with the measured value and whether it is met (None: not measured)."""
    out: dict[str, Any] = {}
    if "all_equal" in steps.get("kernel_bytes", {}):
        out["kernel_bytes_equal_eager"] = {
            "value": steps["kernel_bytes"]["all_equal"],
            "met": steps["kernel_bytes"]["all_equal"],
        }
    demo = steps.get("demo", {})
    if "agreement_all" in demo:
        out["demo_agreement"] = _check(demo["agreement_all"], TARGETS["demo_agreement"], ">=")
    geo = steps.get("geometry_eval", {})
    best = next((r for r in geo.get("rows", []) if r.get("batch") == geo.get("best_batch")), None)
    if best:
        out["int4_s_per_sample"] = _check(best["int4"]["s_per_sample"], TARGETS["int4_s_per_sample"], "<=")
        out["codec_share"] = _check(best["codec_share"], TARGETS["codec_share"], "<=")
    for row in steps.get("codec", {}).get("kernels_only", []):
        if row["scheme"] in ("int8", "int4"):
            out[f"codec_bandwidth_{row['scheme']}"] = _check(row["bandwidth_fraction"], TARGETS["codec_ratio"], ">=")
            out[f"codec_bytes_equal_{row['scheme']}"] = {
                "value": row["bytes_equal_eager"],
                "met": row["bytes_equal_eager"],
            }
    return out


def _check(value: float, target: float, op: str) -> dict[str, Any]:
    return {"value": value, "target": f"{op} {target}", "met": value >= target if op == ">=" else value <= target}


def table(report: dict[str, Any]) -> str:
    """The report as plain text lines (what the check prints)."""
    env, steps = report["environment"], report["steps"]
    head = f"gpu check {report['date']}: {env.get('gpu', 'CPU')} torch {env['torch']} triton {env.get('triton')}"
    lines = [head + (" — CPU DRY RUN, not GPU figures" if report["dry_run"] else "")]
    if env.get("kernel_path_after"):
        lines.append(f"  kv kernels on CUDA: {env['kernel_path_after']}")
    for name, step in steps.items():
        if "error" in step:
            lines.append(f"  {name}: ERROR {step['error'][:300]}")
    kb = steps.get("kernel_bytes", {})
    if "cases" in kb:
        lines.append(f"  kernel bytes vs eager: {kb['cases']} cases, {kb['n_failures']} differ, NaN refused alike: "
                     f"{kb['nan_refused_alike']} ({kb['path']}){'; ' + kb['cut_short'] if kb.get('cut_short') else ''}")  # fmt: skip
    demo = steps.get("demo", {})
    if "agreement" in demo:
        per = "  ".join(f"{s} {v:.3f}" for s, v in demo["agreement"].items())
        lines.append(f"  demo, {demo['items']} items: bf16 device vs fp32 CPU agreement {per}")
    geo = steps.get("geometry_eval", {})
    if geo.get("rows"):
        lines.append(f"  eval {geo['receiver']} <- {geo['sharer']}, ~{geo['prompt_tokens']} tokens, logits protocol:")
        lines.append(f"    {'batch':>5} {'c2c_fp16 s/sample':>18} {'int4 s/sample':>14} {'codec share':>12}")
        for r in geo["rows"]:
            if "int4" in r:
                lines.append(f"    {r['batch']:>5} {r['c2c_fp16']['s_per_sample']:>18.4f} "
                             f"{r['int4']['s_per_sample']:>14.4f} {100 * r['codec_share']:>11.1f}%")  # fmt: skip
            else:
                lines.append(f"    {r['batch']:>5} {r.get('skipped') or 'OOM'}")
    codec = steps.get("codec", {})
    for r in codec.get("kernels_only", []):
        lines.append(f"  kernels {r['scheme']:<9} round trip {r['round_trip_ms']:8.3f} ms  copy {r['copy_ms']:7.3f} ms  "
                     f"time {100 * r['ratio_to_copy']:5.1f}% of copy, bandwidth {100 * r['bandwidth_fraction']:5.1f}% "
                     f"of copy  bytes = eager: {r['bytes_equal_eager']}")  # fmt: skip
    for r in codec.get("rows", []):
        lines.append(f"  codec   {r['scheme']:<9} ({r['cache']}) round trip {r['round_trip_gb_s']:8.2f} GB/s  "
                     f"{100 * r['ratio_to_memcpy']:5.1f}% of copy (floor {100 * r['floor']:.0f}%)")  # fmt: skip
    train = steps.get("train_max_batch", {})
    if "max_batch" in train:
        lines.append(f"  train step {train['dtype']}, grad checkpointing, {train['sequence_tokens']} tokens: "
                     f"max batch {train['max_batch']}{' (cap)' if train['hit_cap'] else ''}")  # fmt: skip
    for name, c in report.get("checks", {}).items():
        value = str(c["value"]) if isinstance(c["value"], bool) else f"{c['value']:.4g}"
        lines.append(f"  check {name:<24} {value:>10} {c.get('target', ''):>8}  {'met' if c['met'] else 'NOT MET'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.cpu_dry_run and not torch.cuda.is_available():
        print(f"qc2c.bench gpu: no CUDA device here (torch {torch.__version__}); nothing measured "
              "(--cpu-dry-run runs the check's path on the CPU)")  # fmt: skip
        return 0
    sizes = Sizes.dry(args.budget_s) if args.cpu_dry_run else Sizes.real(args.budget_s)
    sizes.receiver, sizes.sharer = args.receiver, args.sharer
    report = run(sizes, args.steps, args.cpu_dry_run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(report))
    print(f"report: {args.out}")
    return 1 if any("error" in s for s in report["steps"].values()) else 0
