"""`python -m qc2c.bench eval`: samples/s of batched scoring vs one sample at a time, same pair, same items.

The one-at-a-time loop is how the old evaluation scripts ran (batch size 1, 0.56-0.92 s per sample on an
H100). Both paths score the same items with the same scorer; the predictions are
compared in the same run and the command fails (exit 1) if any differs. Prints the measured ratio.

For the C2C settings it also prints a floor: the same batches through the plain receiver and sharer forwards
alone (no projector, no codec, no scoring). A batched C2C scorer has to run both forwards on its batches, so
the one-at-a-time time divided by that floor is the highest ratio batching could reach on this machine even
if fusion, codec and scoring cost nothing.

With --one-run it instead times ONE RUN's batch step: the settings receiver, sharer, c2c_fp16 and compressed
on the same batches, before (each setting its own prefills: `score_settings(shared=False)`) and after (the
C2C settings from one receiver + one sharer prefill, `qc2c.eval.shared`), interleaved, best of --repeats;
it fails if any row differs (the models alone: option probabilities within 1e-5, `qc2c.eval.shared`). Its
floor: the two fused-section forwards the shared path runs once per batch, alone (no last sections, no
fusion, no scoring) on the same batches.
It also prints each C2C setting's fuse step per sample (`fuse_s` of the shared path: projectors, cache
writes and message overhead, the codec's encode/decode excluded), compressed against c2c_fp16.

examples:
  python -m qc2c.bench eval --one-run                        # before/after of one run's batch step
  python -m qc2c.bench eval                                  # tiny pair, mini set, batch 32, CPU
  python -m qc2c.bench eval --settings compressed --n 64 --batch 32 --protocol logits
  python -m qc2c.bench eval --device cuda --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch

from qc2c.bench import positive_int
from qc2c.config import KVConfig, QuantConfig, SelectionConfig
from qc2c.eval.batching import PromptBatch, by_length, chunks
from qc2c.eval.score import SettingScorer
from qc2c.eval.settings import build_scorers

SMOKE_KV = KVConfig(
    quant=QuantConfig(scheme="int4", group_size=32), selection=SelectionConfig(method="knorm", keep=0.5)
)
SETTINGS = ("receiver", "c2c_fp16", "compressed")
TARGET_RATIO = 8.0
ONE_RUN = ("receiver", "sharer", "c2c_fp16", "compressed")
TARGET_ONE_RUN = 1.5
FUSED = ("c2c_fp16", "compressed")
TARGET_FUSE = 1.5
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qc2c.bench eval",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--receiver", default="tiny:qwen3")
    parser.add_argument("--sharer", default="tiny:qwen2")
    parser.add_argument("--fuser", default="tiny:qwen3+qwen2")
    parser.add_argument("--dataset", default="mini")
    parser.add_argument("--n", type=positive_int, default=64, help="items scored by each path")
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--protocol", choices=("logits", "generate"), default="logits")
    parser.add_argument("--max-new-tokens", type=positive_int, default=8)
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=["compressed"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--one-run", action="store_true", help="per-setting vs shared prefill of one run")
    parser.add_argument("--repeats", type=positive_int, default=3, help="--one-run: best of this many")
    return parser


def build_codec_for(fuser: Any, pair: Any) -> Any:
    from qc2c.kv.codec import build_codec

    return build_codec(
        SMOKE_KV,
        layer_map=dict(fuser.layer_map),
        n_sharer_layers=pair.sharer.config.num_hidden_layers,
        n_receiver_layers=pair.receiver.config.num_hidden_layers,
    )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(scorer: SettingScorer, items: list[Any], batch: int, device: str) -> tuple[float, list[Any]]:
    _sync(device)
    t0 = time.perf_counter()
    rows = []
    for r in chunks(len(items), batch):
        rows += scorer.score_rows(items[r.start : r.stop])
    _sync(device)
    return time.perf_counter() - t0, rows


def scorer_batches(scorer: SettingScorer, items: list[Any], batch: int, device: str) -> list[PromptBatch]:
    """The batches `scorer` itself would build for `items` (rendered, padded, on `device`)."""
    return [
        scorer.make_batch([scorer.prepare(it)[0] for it in items[r.start : r.stop]]).to(device)
        for r in chunks(len(items), batch)
    ]


@torch.no_grad()
def forward_floor(models: list[Any], batches: list[PromptBatch], device: str) -> float:
    """Seconds for `models` (plain HF forwards, cache kept, last logits only) over `batches`."""
    _sync(device)
    t0 = time.perf_counter()
    for b in batches:
        for model in models:
            model(
                input_ids=b.input_ids,
                attention_mask=b.attention_mask,
                position_ids=b.position_ids,
                use_cache=True,
                logits_to_keep=1,
            )
    _sync(device)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from qc2c.eval.datasets import DatasetUnavailable, load_mc
    from qc2c.fuser.sources import load_fuser
    from qc2c.models.pair import ModelNotAvailable, load_pair

    try:  # unknown or unavailable dataset, fuser or models: one line, exit 2 (the plug-in errors are ValueErrors)
        fuser = load_fuser(args.fuser)  # before any weights: a bad reference costs no model load
        items = load_mc(args.dataset, limit=args.n).items
        pair = load_pair(args.receiver, args.sharer, dtype=torch.float32, device=args.device)
    except (ValueError, ModelNotAvailable, DatasetUnavailable) as exc:
        print(f"python -m qc2c.bench eval: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    fuser = fuser.to(device=args.device, dtype=torch.float32)
    if args.one_run:
        return one_run(args, pair, fuser, items)
    scorers = _scorers(args.settings, args, pair, fuser)
    report: dict[str, Any] = {
        "device": args.device,
        "n": len(items),
        "batch": args.batch,
        "protocol": args.protocol,
        "torch_threads": torch.get_num_threads(),
        "settings": {},
    }
    identical = True
    ordered = by_length(items)  # as the runner batches: similar lengths together
    for name, scorer in scorers.items():
        timed(scorer, items[: min(4, len(items))], args.batch, args.device)  # warm-up (allocator, kernels)
        batched_s, batched = timed(scorer, ordered, args.batch, args.device)
        single_s, single = timed(scorer, ordered, 1, args.device)
        same = [a.pred for a in batched] == [b.pred for b in single] and not any(r.error for r in batched + single)
        identical &= same
        report["settings"][name] = {
            "batched_samples_per_s": len(items) / batched_s,
            "one_at_a_time_samples_per_s": len(items) / single_s,
            "ratio": single_s / batched_s,
            "identical_predictions": same,
        }
        if name != "receiver":
            models = [pair.receiver, pair.sharer]
            forward_floor(models, scorer_batches(scorer, ordered[:4], args.batch, args.device), args.device)  # warm-up
            floor_s = forward_floor(models, scorer_batches(scorer, ordered, args.batch, args.device), args.device)
            report["settings"][name]["forward_floor_samples_per_s"] = len(items) / floor_s
            report["settings"][name]["ratio_ceiling"] = single_s / floor_s
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"eval bench: {report['n']} items, batch {args.batch}, {args.protocol}, {args.device}, "
            f"{report['torch_threads']} torch threads"
        )
        for name, r in report["settings"].items():
            print(
                f"  {name:<11} batched {r['batched_samples_per_s']:8.1f} samples/s   one-at-a-time "
                f"{r['one_at_a_time_samples_per_s']:7.1f} samples/s   ratio {r['ratio']:5.1f}x "
                f"(target >= {TARGET_RATIO:.0f}x)   identical predictions: {r['identical_predictions']}"
            )
            if "ratio_ceiling" in r:
                print(
                    f"  {'':<11} floor: receiver + sharer forwards alone on the same batches "
                    f"{r['forward_floor_samples_per_s']:8.1f} samples/s -> batching can reach at most "
                    f"{r['ratio_ceiling']:5.1f}x here"
                )
    if not identical:
        print("eval bench: batched and one-at-a-time predictions differ (or a sample failed)", file=sys.stderr)
        return 1
    return 0


def _strip(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _strip(v) if isinstance(v, dict) else v for k, v in d.items() if k != "timing" and not k.endswith("_s")}


def _scorers(settings: Any, args: argparse.Namespace, pair: Any, fuser: Any) -> Any:
    """The setting scorers the bench times, built as a run builds them (codec from the fuser and pair)."""
    return build_scorers(
        settings,
        pair,
        fuser,
        build_codec_for(fuser, pair),
        protocol=args.protocol,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
    )


def one_run(args: argparse.Namespace, pair: Any, fuser: Any, items: list[Any]) -> int:
    """Before (per-setting prefills) vs after (shared prefills) of one run's batch step; see the docstring."""
    from qc2c.eval.shared import same_rows, score_settings

    scorers = _scorers(ONE_RUN, args, pair, fuser)
    batches = [by_length(items)[r.start : r.stop] for r in chunks(len(items), args.batch)]

    def run(shared: bool) -> tuple[float, list[Any], dict[str, float]]:
        _sync(args.device)
        t0 = time.perf_counter()
        rows = [score_settings(scorers, b, shared=shared) for b in batches]
        _sync(args.device)
        seconds = time.perf_counter() - t0
        out = [
            {k: _strip(v[j].to_json(it.answer)) for k, v in r.items()}
            for r, b in zip(rows, batches)
            for j, it in enumerate(b)
        ]
        fuse = {k: sum(row.timing["fuse_s"] for r in rows for row in r[k]) / len(items) for k in FUSED}
        return seconds, out, fuse

    score_settings(scorers, batches[0][:2], shared=True)  # warm-up: kernels, codec extension
    score_settings(scorers, batches[0][:2], shared=False)
    before_s, after_s, floor_s, identical = [], [], [], True
    c2c = scorers["c2c_fp16"]
    whole = scorer_batches(c2c, [it for b in batches for it in b], args.batch, args.device)
    section = [_section(b) for b in whole]
    fuse_s: dict[str, list[float]] = {k: [] for k in FUSED}
    for _ in range(args.repeats):
        t, old, _ = run(False)
        before_s.append(t)
        t, new, fuse = run(True)
        after_s.append(t)
        for k in FUSED:
            fuse_s[k].append(fuse[k])
        identical &= same_rows(old, new)
        floor_s.append(forward_floor([pair.receiver, pair.sharer], section, args.device))
    before, after, floor = min(before_s), min(after_s), min(floor_s)
    report = {
        "device": args.device,
        "n": len(items),
        "batch": args.batch,
        "protocol": args.protocol,
        "settings": list(ONE_RUN),
        "torch_threads": torch.get_num_threads(),
        "before_s": before,
        "after_s": after,
        "ratio": before / after,
        "target_ratio": TARGET_ONE_RUN,
        "floor_s": floor,
        "ratio_ceiling": before / floor,
        "after_over_floor": after / floor,
        "identical": identical,
        "fuse_s": {k: min(v) for k, v in fuse_s.items()},  # per sample, shared path, best of --repeats
    }
    fuse_ratio = report["fuse_s"]["compressed"] / report["fuse_s"]["c2c_fp16"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"eval bench, one run ({', '.join(ONE_RUN)}): {len(items)} items, batch {args.batch}, {args.protocol}, "
            f"{args.device}, {report['torch_threads']} torch threads, best of {args.repeats}\n"
            f"  before (per-setting prefills) {before:7.3f} s   after (shared prefills) {after:7.3f} s   "
            f"ratio {before / after:4.2f}x (target >= {TARGET_ONE_RUN}x)   identical rows: {identical}\n"
            f"  floor: the two shared section prefills alone {floor:7.3f} s -> at most {before / floor:4.2f}x; "
            f"after is {after / floor:4.2f}x the floor\n"
            f"  fuse step per sample (projectors + cache writes + message overhead, codec excluded, same "
            f"batches): compressed {report['fuse_s']['compressed'] * 1e3:.3f} ms, c2c_fp16 "
            f"{report['fuse_s']['c2c_fp16'] * 1e3:.3f} ms -> {fuse_ratio:4.2f}x (target <= {TARGET_FUSE}x)"
        )
    if not identical:
        print("eval bench: shared and per-setting rows differ", file=sys.stderr)
        return 1
    return 0


def _section(batch: PromptBatch) -> PromptBatch:
    """The fused section [0, fused_end) of `batch`: what each model runs once for the C2C settings."""
    a = batch.fused_end
    return PromptBatch(
        batch.input_ids[:, :a],
        batch.attention_mask[:, :a],
        batch.position_ids[:, :a],
        batch.fuse_mask[:, :a],
        a,
        batch.lengths,
    )


if __name__ == "__main__":
    sys.exit(main())
