"""Fill the Hugging Face cache on a machine with hub access, so runs elsewhere can stay offline.

    python -m qc2c.prefetch models Qwen/Qwen3-0.6B Qwen/Qwen2.5-0.5B-Instruct [--revision main]
    python -m qc2c.prefetch datasets openbookqa arc_challenge mmlu_redux [--split test]
    python -m qc2c.prefetch train-data teknium/OpenHermes-2.5 [--split train]   # a kind: train manifest's data

Models go through `huggingface_hub.snapshot_download`, datasets through the same `datasets.load_dataset` calls
evaluation makes (so what is cached is exactly what a run reads), then each set is converted once to check its
rows. `tiny:<name>` models are built locally instead; the bundled `mini` set needs nothing.
With HF_HUB_OFFLINE=1 the command only checks the cache. Every item is tried; each failure is one line on
stderr and the exit code is 1. Token values (HF_TOKEN and other *_TOKEN/*_KEY/*_SECRET/*_PASSWORD variables)
are never printed: messages pass through `redact`, and only whether HF_TOKEN is set is reported.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence

from qc2c.eval.datasets import DATASETS, Mini, hub_rows
from qc2c.plugins import UnknownPlugin

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
_SECRET_NAME = re.compile(r"(TOKEN|KEY|SECRET|PASSWORD)$")


def redact(text: str) -> str:
    """Replace the value of every secret-looking environment variable found in `text` with ***."""
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name.upper()) and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qc2c.prefetch",
        description="Download models and datasets into the Hugging Face cache for offline runs.",
        epilog=(
            "examples:\n"
            "  python -m qc2c.prefetch models Qwen/Qwen3-0.6B Qwen/Qwen2.5-0.5B-Instruct\n"
            "  python -m qc2c.prefetch datasets openbookqa arc_challenge mmlu_redux\n"
            "  HF_HUB_OFFLINE=1 python -m qc2c.prefetch datasets openbookqa   # only check the cache"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="kind", required=True, metavar="{models,datasets,train-data}")
    models = sub.add_parser("models", help="snapshot HF model repositories (or build tiny:<name> models)")
    models.add_argument("refs", nargs="+", metavar="MODEL", help="hub id (owner/name) or tiny:<name>")
    models.add_argument("--revision", default="main", help="branch, tag or commit for every MODEL (default: main)")
    data = sub.add_parser("datasets", help="cache the hub files of qc2c datasets")
    data.add_argument("names", nargs="+", metavar="DATASET", help=f"one of: {', '.join(DATASETS.names())}")
    data.add_argument("--split", default="test", help="split to fetch (default: test)")
    train = sub.add_parser("train-data", help="cache a chat dataset that a kind: train manifest names")
    train.add_argument("names", nargs="+", metavar="DATASET", help="hub id of train.data.dataset")
    train.add_argument("--split", default="train", help="split to fetch (default: train)")
    return parser


def fetch_train_data(name: str, split: str) -> str:
    """The same `datasets.load_dataset(name, split=...)` call training makes (qc2c.train.data.read_hf)."""
    from qc2c.train.data import read_hf

    return f"cached {name} (split {split}): {len(read_hf(name, split))} conversations"


def fetch_model(ref: str, revision: str) -> str:
    if ref.startswith("demo:"):
        from qc2c.demo.zoo import resolve_demo_model

        return f"{ref} ships with qc2c at {resolve_demo_model(ref)}"
    if ref.startswith("tiny:"):
        from qc2c.models.tiny import resolve_tiny  # deferred: it imports torch and transformers (seconds)

        return f"built {ref} at {resolve_tiny(ref)}"
    from huggingface_hub import snapshot_download

    return f"cached {ref}@{revision} at {snapshot_download(repo_id=ref, revision=revision)}"


def fetch_dataset(name: str, split: str) -> str:
    cls = DATASETS.get(name)
    if cls is Mini:
        return "mini is bundled with qc2c; nothing to fetch"
    source = cls()
    rows = hub_rows(name, cls.hub_id, cls.hub_configs, split)
    items, _ = source.convert(rows)  # fails loudly here, not in the middle of a run, if the schema moved
    return f"cached {name} ({cls.hub_id}, split {split}): {len(rows)} rows, {len(items)} items"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.kind == "datasets":
        unknown = [n for n in args.names if n not in DATASETS]
        for name in unknown:
            try:
                DATASETS.get(name)
            except UnknownPlugin as err:
                print(f"prefetch: datasets: {err}", file=sys.stderr)
        if unknown:
            return EXIT_BAD_INPUT
        jobs: list[tuple[str, Callable[[], str]]] = [(n, lambda n=n: fetch_dataset(n, args.split)) for n in args.names]
    elif args.kind == "train-data":
        jobs = [(n, lambda n=n: fetch_train_data(n, args.split)) for n in args.names]
    else:
        jobs = [(r, lambda r=r: fetch_model(r, args.revision)) for r in args.refs]
    print(f"HF_TOKEN is {'set' if os.environ.get('HF_TOKEN') else 'not set'}", file=sys.stderr)
    n_failed = 0
    for label, job in jobs:
        try:
            print(redact(job()))
        except Exception as err:  # one line per failed item; the others are still tried
            n_failed += 1
            message = " ".join(f"{type(err).__name__}: {err}".split())
            print(redact(f"prefetch: {args.kind.removesuffix('s')} {label}: {message}"), file=sys.stderr)
    return EXIT_FAILED if n_failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
