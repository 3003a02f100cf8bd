"""`python -m qc2c.bench COMMAND [ARGS]` — codec · eval · gpu · max-batch · kd · sweep.

Each command is a module qc2c/bench/<name>.py with `main(argv) -> int`; this file only dispatches.

examples:
  python -m qc2c.bench codec --schemes int8 int4
  python -m qc2c.bench codec --batch 4 --tokens 128 --json
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "codec": "qc2c.bench.codec",
    "eval": "qc2c.bench.eval",
    "gpu": "qc2c.bench.gpu",
    "max-batch": "qc2c.bench.max_batch",
    "kd": "qc2c.bench.kd",
    "sweep": "qc2c.bench.sweep",
}
EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        usage = __doc__.strip()
        if argv and argv[0] not in ("-h", "--help"):
            print(
                f"python -m qc2c.bench: unknown command {argv[0]!r} (allowed: {', '.join(COMMANDS)})", file=sys.stderr
            )
            return EXIT_BAD_INPUT
        print(usage)
        return 0 if argv else EXIT_BAD_INPUT
    module_name = COMMANDS[argv[0]]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"python -m qc2c.bench {argv[0]}: not implemented yet", file=sys.stderr)
        return EXIT_BAD_INPUT
    return int(module.main(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
