"""`python -m qc2c.bench sweep`: a 16-point grid scored as one group vs as 16 separate runs, same items.

A sweep's grid points differ only in the codec. Separately, every point is a run of its own: it loads the
pair and fuser, and scores the receiver, sharer and c2c_fp16 baselines and its compressed setting on every
batch (one run's batch step: `qc2c.eval.shared`, one section prefill per model and batch). As a group
(`runner.sweep_exec`), the pair is loaded once and each batch runs the two section prefills once, the
baselines once, and every point's own work. Both are timed here side by side, in this process, on the same
items (best of --repeats), and every row is compared: the command fails (exit 1) if any differs.

Ratios printed: scoring only (separate scoring / group scoring) and with model loading (each separate run
also loads the pair and fuser; the group loads them once). The floor is what a group cannot avoid: the two
section prefills of each batch once, plus each setting's own work (cache view, select, encode, decode, fuse,
last section, scoring) timed alone on those prefills; the group's scoring time over that floor is its
overhead (rendering, batching, records).

Grids: the tiny pair, schemes int8/int4/int2/nf4 × keep 0.25/0.5/0.75/1.0 (knorm); the demo pair
(`--pair demo`), the demo budget sweep's 16 byte budgets (greedy {drop, int4, int8}).

examples:
  python -m qc2c.bench sweep                    # tiny pair, 16 points, 64 mini items
  python -m qc2c.bench sweep --pair demo --n 96 # the demo budget curve's grid on demo test items
  python -m qc2c.bench sweep --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch

from qc2c.bench import positive_int
from qc2c.config import BudgetConfig, KVConfig, QuantConfig, SelectionConfig
from qc2c.eval.batching import by_length, chunks

BASELINES = ("receiver", "sharer", "c2c_fp16")
TARGET_RATIO = 3.0
TARGET_FLOOR = 1.15
DEMO_BUDGETS = (1000, 1500, 2000, 2500, 3000, 3700, 4500, 5500, 6500, 8000, 10000, 12500, 15000, 19000, 24000, 30000)
PAIRS = {
    "tiny": ("tiny:qwen3", "tiny:qwen2", "tiny:qwen3+qwen2", "mini", "test"),
    "demo": ("demo:receiver", "demo:sharer", "demo:receiver+sharer", "demo", "test"),
}


def grid(pair: str) -> list[tuple[str, KVConfig]]:
    """The 16 grid points of `pair`'s bench sweep, named as a sweep names its members."""
    if pair == "demo":
        budget = {"allocator": "greedy", "candidates": ("drop", "int4", "int8")}
        return [
            (
                f"bytes_per_sample_{b}",
                KVConfig(quant=QuantConfig(scheme="int8"), budget=BudgetConfig(bytes_per_sample=b, **budget)),
            )
            for b in DEMO_BUDGETS
        ]
    return [
        (
            f"scheme_{scheme}-keep_{keep}",
            KVConfig(
                quant=QuantConfig(scheme=scheme, group_size=32), selection=SelectionConfig(method="knorm", keep=keep)
            ),
        )
        for scheme in ("int8", "int4", "int2", "nf4")
        for keep in (0.25, 0.5, 0.75, 1.0)
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qc2c.bench sweep",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pair", choices=sorted(PAIRS), default="tiny")
    parser.add_argument("--n", type=positive_int, default=64, help="items scored by each path")
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--repeats", type=positive_int, default=2, help="best of this many")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def _load(pair_name: str) -> tuple[Any, Any]:
    from qc2c.fuser.sources import load_fuser
    from qc2c.models.pair import load_pair

    receiver, sharer, fuser_ref, _, _ = PAIRS[pair_name]
    pair = load_pair(receiver, sharer, dtype=torch.float32, device="cpu")
    return pair, load_fuser(fuser_ref).to(dtype=torch.float32)


def _scorers(settings: list[str], pair: Any, fuser: Any, kv: KVConfig | None) -> dict[str, Any]:
    from qc2c.eval.settings import build_scorers
    from qc2c.kv.codec import build_codec

    codec = None
    if kv is not None:
        n_s, n_r = pair.sharer.config.num_hidden_layers, pair.receiver.config.num_hidden_layers
        codec = build_codec(kv, layer_map=dict(fuser.layer_map), n_sharer_layers=n_s, n_receiver_layers=n_r)
    return build_scorers(settings, pair, fuser, codec, protocol="logits", max_new_tokens=8, device="cpu")


def _group_scorers(points: list[tuple[str, KVConfig]], pair: Any, fuser: Any) -> dict[str, Any]:
    """The baselines once, then each grid point's compressed scorer under the point's name."""
    scorers = _scorers(list(BASELINES), pair, fuser, None)
    for name, kv in points:
        scorers[name] = _scorers(["compressed"], pair, fuser, kv)["compressed"]
    return scorers


def _rows(rows: dict[str, list[Any]], batch: list[Any]) -> dict[str, list[Any]]:
    from qc2c.bench.eval import _strip

    return {name: [_strip(r.to_json(it.answer)) for r, it in zip(v, batch, strict=True)] for name, v in rows.items()}


def separate(points: list[tuple[str, KVConfig]], pair: Any, fuser: Any, batches: list[list[Any]]) -> tuple[float, dict]:
    """Each point as its own run's batch step: its baselines and its compressed setting on every batch."""
    from qc2c.eval.shared import score_settings

    t0, out = time.perf_counter(), {}
    for name, kv in points:
        scorers = _scorers([*BASELINES, "compressed"], pair, fuser, kv)
        rows: dict[str, list[Any]] = {}
        for batch in batches:
            for setting, values in _rows(score_settings(scorers, batch), batch).items():
                rows.setdefault(setting, []).extend(values)
        out[name] = rows
    return time.perf_counter() - t0, out


def grouped(points: list[tuple[str, KVConfig]], pair: Any, fuser: Any, batches: list[list[Any]]) -> tuple[float, dict]:
    """The group: the baselines once per batch and every point's compressed setting on the shared prefills."""
    from qc2c.eval.shared import score_settings

    t0 = time.perf_counter()
    scorers = _group_scorers(points, pair, fuser)
    rows: dict[str, list[Any]] = {}
    for batch in batches:
        for setting, values in _rows(score_settings(scorers, batch), batch).items():
            rows.setdefault(setting, []).extend(values)
    seconds = time.perf_counter() - t0
    return seconds, {name: {**{b: rows[b] for b in BASELINES}, "compressed": rows[name]} for name, _ in points}


def floor(points: list[tuple[str, KVConfig]], pair: Any, fuser: Any, batches: list[list[Any]]) -> float:
    """The two section prefills of each batch once + each setting's own work timed alone on them."""
    from qc2c.eval.shared import prepare_all, score_on_section, section_prefill

    scorers = _group_scorers(points, pair, fuser)
    total = 0.0
    for batch in batches:
        prepared = prepare_all(scorers, batch)
        t0 = time.perf_counter()
        shared = section_prefill(scorers["c2c_fp16"], [p for p, _ in prepared["c2c_fp16"]])
        total += time.perf_counter() - t0
        for name, scorer in scorers.items():
            t0 = time.perf_counter()
            score_on_section(scorer, batch, prepared[name], shared)
            total += time.perf_counter() - t0
    return total


def main(argv: list[str] | None = None) -> int:
    from qc2c.eval.datasets import load_mc
    from qc2c.eval.shared import same_rows

    args = build_parser().parse_args(argv)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    pair, fuser = _load(args.pair)
    load_s = time.perf_counter() - t0
    _, _, _, dataset, split = PAIRS[args.pair]
    items = load_mc(dataset, split=split, limit=args.n).items
    ordered = by_length(items)
    batches = [ordered[r.start : r.stop] for r in chunks(len(ordered), args.batch)]
    points = grid(args.pair)
    grouped(points[:2], pair, fuser, batches[:1])  # warm-up: kernels, codec extension, allocator
    sep_s, grp_s, floor_s, identical = [], [], [], True
    for _ in range(args.repeats):
        t, old = separate(points, pair, fuser, batches)
        sep_s.append(t)
        t, new = grouped(points, pair, fuser, batches)
        grp_s.append(t)
        floor_s.append(floor(points, pair, fuser, batches))
        for name, _ in points:
            flat_old = [dict(zip(old[name], vals)) for vals in zip(*old[name].values())]
            flat_new = [dict(zip(new[name], vals)) for vals in zip(*new[name].values())]
            identical &= same_rows(flat_old, flat_new, alone=())
    sep, grp, flo = min(sep_s), min(grp_s), min(floor_s)
    n_points = len(points)
    with_load = (sep + n_points * load_s) / (grp + load_s)
    report = {
        "pair": args.pair,
        "n": len(items),
        "batch": args.batch,
        "points": n_points,
        "baselines": list(BASELINES),
        "torch_threads": torch.get_num_threads(),
        "separate_s": sep,
        "group_s": grp,
        "ratio": sep / grp,
        "target_ratio": TARGET_RATIO,
        "load_s": load_s,
        "ratio_with_load": with_load,
        "floor_s": flo,
        "group_over_floor": grp / flo,
        "target_floor": TARGET_FLOOR,
        "identical": identical,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"sweep bench ({args.pair} pair, {n_points} grid points, baselines {', '.join(BASELINES)}): "
            f"{len(items)} items, batch {args.batch}, cpu, {report['torch_threads']} torch threads, best of "
            f"{args.repeats}\n"
            f"  {n_points} separate runs {sep:7.3f} s   one group {grp:7.3f} s   ratio {sep / grp:5.2f}x "
            f"(target >= {TARGET_RATIO}x)   identical rows: {identical}\n"
            f"  with model loading ({load_s:.2f} s per run): {with_load:5.2f}x\n"
            f"  floor (two section prefills per batch once + each setting's own work alone) {flo:7.3f} s; "
            f"the group is {grp / flo:4.2f}x its floor (target <= {TARGET_FLOOR}x)"
        )
    if not identical:
        print("sweep bench: grouped and separate rows differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
