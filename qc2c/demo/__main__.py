"""`python -m qc2c.demo data|models|record|verify --out DIR`: the demo zoo's pieces (make demo-zoo runs all)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qc2c.demo import zoo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qc2c.demo", description=__doc__)
    parser.add_argument("command", choices=("data", "models", "record", "verify"))
    parser.add_argument(
        "--out", type=Path, default=None, help="zoo folder (default: $QC2C_DEMO_ZOO or the shipped one)"
    )
    parser.add_argument("--only", action="append", default=None, help="models: build only this one (repeatable)")
    args = parser.parse_args(argv)
    root = args.out or zoo.zoo_root()
    if args.command == "verify":
        problems = zoo.verify(root)
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{root}: {'ok' if not problems else f'{len(problems)} problems'}")
        return 2 if problems else 0
    if args.command == "record":
        print(zoo.write_record(root))
        return 0
    from qc2c.demo.build import build_models, write_data
    from qc2c.demo.world import World

    world = World()
    if args.command == "data":
        print(json.dumps(write_data(world, root)))
    else:
        for stats in build_models(world, root, only=args.only):
            print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
