"""Synthetic but realistic run folders for the golden tests (imported by conftest.py and the tests) (results built with the real model).

`run_factory.make(...)` writes runs/<milestone>/<name>-<key10>/ with progress/<dataset>.jsonl (one id per item),
results/<dataset>.json (DatasetResult, with the progress lines' hash:
compressed + receiver + c2c_fp16 settings whose counts, Wilson intervals and paired statistics are computed
from seeded per-item correctness vectors), provenance.json and an entry in runs/registry.json.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.records import progress_sha256
from runner.results import DatasetResult, write_result

N_ITEMS = 40  # the bundled mini set's size in these synthetic runs
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(b: int, c: int) -> float:
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _paired(a: list[bool], b: list[bool]) -> dict[str, Any]:
    n = len(a)
    diff = (sum(a) - sum(b)) / n
    only_a = sum(x and not y for x, y in zip(a, b))
    only_b = sum(y and not x for x, y in zip(a, b))
    se = math.sqrt(max(only_a + only_b, 1)) / n
    return {
        "diff": diff,
        "ci95": [max(-1.0, diff - 1.96 * se), min(1.0, diff + 1.96 * se)],
        "mcnemar_p": mcnemar_exact(only_a, only_b),
        "n_discordant": only_a + only_b,
    }


def _setting(correct: list[bool], nbytes: float | None, prompt: float, kept: float) -> dict[str, Any]:
    n, k = len(correct), sum(correct)
    stats = None
    if nbytes is not None:
        header, indices = 64.0, (0.0 if kept >= 1.0 else 2.0 * prompt * kept)
        scales = round(nbytes * 0.06, 3)
        payload = nbytes - header - indices - scales
        stats = {
            "mean": nbytes,
            "p50": nbytes,
            "p95": nbytes * 1.2,
            "breakdown": {"payload": payload, "scales": scales, "indices": indices, "header": header},
        }
    return {
        "n": n,
        "n_correct": k,
        "n_errors": 0,
        "accuracy": k / n,
        "ci95": list(wilson(k, n)),
        "bytes": stats,
        "n_tokens_sent": {"mean": prompt * kept, "p50": prompt * kept, "p95": prompt * kept * 1.3}
        if nbytes is not None
        else None,
        "n_tokens_prompt_mean": prompt,
        "compression_ratio": FP16_CACHE_NBYTES / nbytes if nbytes else None,
        "fidelity": None,
        "paired": {},
        "timing": {"sharer_prefill_s": 0.01, "encode_s": 0.002, "decode_s": 0.001, "fuse_s": 0.003, "receiver_s": 0.02},
    }


FP16_CACHE_NBYTES = 8128.0  # the fp16 message minus its 64-byte header
SCHEME_NBYTES = {"fp16": 8192.0, "int8": 4400.0, "int4": 2300.0, "int2": 1250.0}


def build_result(
    *, name: str, milestone: str, scheme: str = "int8", keep: float = 1.0, seed: int = 0, dataset: str = "mini"
) -> dict[str, Any]:
    """A results dict as the runner writes it; accuracy drops with fewer bits/tokens, seeded per item."""
    # Baselines depend only on the pair and the items (identical in every run that shares them); the
    # compressed path also on the kv settings, like the run key (never on the manifest name).
    base = random.Random(f"pair/{dataset}")
    fp16 = [base.random() < 0.7 for _ in range(N_ITEMS)]
    receiver = [base.random() < 0.4 for _ in range(N_ITEMS)]
    rng = random.Random(f"{milestone}/{scheme}/{keep}/{dataset}/{seed}")
    flip = {"fp16": 0.0, "int8": 0.02, "int4": 0.08, "int2": 0.3}[scheme] + (1 - keep) * 0.3
    compressed = [(not c) if rng.random() < flip else c for c in fp16]
    prompt = 60.0
    nbytes = SCHEME_NBYTES[scheme] * keep
    settings = {
        "compressed": _setting(compressed, nbytes, prompt, keep),
        "receiver": _setting(receiver, None, prompt, 1.0),
        "c2c_fp16": _setting(fp16, SCHEME_NBYTES["fp16"], prompt, 1.0),
    }
    settings["compressed"]["paired"] = {
        "c2c_fp16": _paired(compressed, fp16),
        "receiver": _paired(compressed, receiver),
    }
    settings["receiver"]["paired"] = {"c2c_fp16": _paired(receiver, fp16)}
    flips = sum(a != b for a, b in zip(compressed, fp16)) / N_ITEMS
    settings["compressed"]["fidelity"] = {"flip_rate": flips, "mean_kl": flips / 4}
    settings["receiver"]["fidelity"] = {
        "flip_rate": sum(a != b for a, b in zip(receiver, fp16)) / N_ITEMS,
        "mean_kl": 0.5,
    }
    kv = {
        "quant": {"scheme": scheme, "group_size": 64},
        "selection": {"method": "all" if keep == 1.0 else "knorm", "keep": keep},
    }
    run_key = hashlib.sha256(json.dumps([kv, seed, milestone], sort_keys=True).encode()).hexdigest()
    return {
        "schema": 1,
        "run_key": run_key,
        "manifest": name,
        "milestone": milestone,
        "kind": "eval",
        "pair": {
            "receiver": "tiny:qwen3",
            "sharer": "tiny:qwen2",
            "alignment": "none",
            "receiver_revision": "main",
            "sharer_revision": "main",
        },
        "fuser": {"source": "tiny:qwen3+qwen2", "sha256": hashlib.sha256(b"fuser").hexdigest(), "loaded": True},
        "kv": kv,
        "dataset": {
            "name": dataset,
            "split": "test",
            "fingerprint": hashlib.sha256(dataset.encode()).hexdigest()[:16],
            "n_total": N_ITEMS,
            "limit": None,
            "n_declared": None,
            "notes": [],
        },
        "protocol": "logits",
        "settings": settings,
        "bytes_closed_form_drift": 0,
        "precision": {"receiver": [scheme] * 4, "sharer": [scheme, scheme, None]},
        "provenance": {"commit": COMMIT, "dirty": False, "image_digest": None, "created": "2026-11-01T12:00:00+00:00"},
    }


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data[part]
    data[last] = value


@dataclass
class RunFactory:
    root: Path

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def golden_dir(self) -> Path:
        return self.root / "golden"

    def make(
        self,
        name: str = "smoke",
        milestone: str = "smoke",
        *,
        datasets: tuple[str, ...] = ("mini",),
        status: str | None = "complete",
        patch: dict[str, Any] | None = None,
        mutate: Callable[[dict[str, Any]], None] | None = None,
        provenance: bool = True,
        **options: Any,
    ) -> Path:
        """Write one run folder; `patch` sets dotted fields of every results dict before validation."""
        results = [build_result(name=name, milestone=milestone, dataset=d, **options) for d in datasets]
        run_key = results[0]["run_key"]
        run_dir = self.runs_dir / milestone / f"{name}-{run_key[:10]}"
        for data in results:
            progress = run_dir / "progress" / f"{data['dataset']['name']}.jsonl"
            progress.parent.mkdir(parents=True, exist_ok=True)
            progress.write_text("".join(f'{{"id": "{data["dataset"]["name"]}-{i}"}}\n' for i in range(N_ITEMS)))
            data["progress_sha256"] = progress_sha256(progress)
            for dotted, value in (patch or {}).items():
                set_dotted(data, dotted, value)
            if mutate:
                mutate(data)
            write_result(run_dir / "results" / f"{data['dataset']['name']}.json", DatasetResult.model_validate(data))
        if provenance:
            doc = {"run_key": run_key, "git": {"commit": COMMIT, "dirty": False, "diff_sha256": None}}
            (run_dir / "provenance.json").write_text(json.dumps(doc))
        if status is not None:
            self.set_status(run_key, status, run_dir)
        return run_dir

    def set_status(self, run_key: str, status: str, run_dir: Path) -> None:
        path = self.runs_dir / "registry.json"
        registry = json.loads(path.read_text()) if path.exists() else {}
        registry[run_key] = {
            "status": status,
            "run_dir": str(run_dir),
            "manifest": run_dir.name,
            "pid": None,
            "host": "test",
            "heartbeat": None,
            "reason": None,
            "updated": "2026-11-01T12:00:00+00:00",
        }
        path.write_text(json.dumps(registry))


def golden_cli(argv: list[str]) -> int:
    """`python -m runner golden ...` through the golden subcommand's own parser (as runner/__main__ wires it)."""
    import argparse

    from runner.cli import golden

    parser = argparse.ArgumentParser(prog="python -m runner")
    golden.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)
