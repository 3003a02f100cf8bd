"""Paired comparison of settings scored in different runs on the same items (e.g. fusers trained differently).

A run's own paired tests compare settings of one run (one fuser). Comparing PTQ, SFT-QAT and KD-QAT fusers
needs rows of several runs: this joins their progress files by item id (the item sets must be equal: same
dataset, split and limit) and prints each column's accuracy with an exact McNemar test against the first.

    python -m runner.cross_run demo --subject sharer_only \\
        c2c_fp16=runs/demo/demo_int2-…:c2c_fp16 ptq_int2=runs/demo/demo_int2-…:compressed \\
        kd_int2=runs/demo/demo_kd_int2-…:compressed
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qc2c.eval.metrics import mcnemar

EXIT_BAD_INPUT = 2


def correct_by_item(run_dir: Path, dataset: str, setting: str, subject: str | None) -> dict[str, tuple[bool, str]]:
    """{item id: (correct, predicted option)} of one setting in a run's progress file (subject-filtered); errors raise ValueError."""
    path = Path(run_dir) / "progress" / f"{dataset}.jsonl"
    if not path.is_file():
        raise ValueError(f"{path}: (file): no such progress file")
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        row = json.loads(line)
        if subject is not None and row.get("subject") != subject:
            continue
        if setting not in row["settings"]:
            raise ValueError(f"{path}:{n}: settings: no setting {setting!r} (has: {', '.join(row['settings'])})")
        scored = row["settings"][setting]
        out[row["id"]] = (bool(scored["correct"]), str(scored.get("pred")))
    return out


def compare(columns: dict[str, dict[str, tuple[bool, str]]]) -> list[dict[str, object]]:
    """One row per column: n, accuracy, and (after the first) only-this / only-first counts, McNemar p and the
    fraction of items whose predicted option equals the first column's (agreement with a teacher)."""
    names = list(columns)
    ids = sorted(columns[names[0]])
    for name in names[1:]:
        if sorted(columns[name]) != ids:
            raise ValueError(f"{name}: its items differ from {names[0]}'s (not the same dataset, split or subject)")
    ref = [columns[names[0]][i][0] for i in ids]
    ref_pred = [columns[names[0]][i][1] for i in ids]
    rows: list[dict[str, object]] = []
    for name in names:
        flags = [columns[name][i][0] for i in ids]
        agree = sum(columns[name][i][1] == q for i, q in zip(ids, ref_pred, strict=True)) / len(ids)
        row: dict[str, object] = {"column": name, "n": len(ids), "accuracy": sum(flags) / len(ids)}
        if name != names[0]:
            test = mcnemar(flags, ref)
            row.update(only_this=test.n_only_a, only_ref=test.n_only_b, p=test.p_value, agreement=agree)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runner.cross_run", description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("columns", nargs="+", metavar="LABEL=RUN_DIR:SETTING")
    p.add_argument("--subject", default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        columns = {}
        for spec in args.columns:
            label, _, rest = spec.partition("=")
            run_dir, _, setting = rest.rpartition(":")
            if not label or not run_dir or not setting:
                raise ValueError(f"{spec}: expected LABEL=RUN_DIR:SETTING")
            columns[label] = correct_by_item(Path(run_dir), args.dataset, setting, args.subject)
        rows = compare(columns)
    except ValueError as exc:
        print(f"runner.cross_run: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        test = ""
        if "p" in r:
            test = f"  vs {rows[0]['column']}: +{r['only_this']} / -{r['only_ref']}, McNemar p {r['p']:.3g}"
            test += f", same answer {r['agreement']:.3f}"
        print(f"{r['column']:>14}  n {r['n']}  acc {r['accuracy']:.3f}{test}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
