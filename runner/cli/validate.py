"""`python -m runner validate PATH...`: check manifest and sweep files (directories: every *.yaml below).

Static checks only (the file, not the world): whether models are cached, a from_run has completed or a
fuser fits the pair is `runner plan`'s job. Every problem is printed as `file:line: field: message`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.exitcodes import EXIT_BAD_INPUT, EXIT_OK
from runner.manifest import ManifestError, key_line, read_yaml
from runner.schema import Manifest
from runner.sweep import expand_file

EPILOG = """examples:
  python -m runner validate manifests/                     # every manifest and sweep (make validate)
  python -m runner validate manifests/m2_int4.yaml
  python -m runner validate --list manifests/sweeps/m2_schemes.yaml   # the manifests a sweep expands to
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check manifests and sweeps; prints file:line: field: message for every problem",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="manifest files or directories")
    parser.add_argument("--list", action="store_true", help="print name, run key and file of every manifest")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _validate(args.paths, args.list)
    except Exception as exc:  # the CLI boundary: one line, never a traceback
        print(f"runner validate: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _validate(paths: list[Path], show: bool) -> int:
    files, problems = manifest_files(paths)
    found: list[tuple[Path, Manifest]] = []
    for path in files:
        try:
            found += [(path, m) for m in expand_file(path)]
        except ManifestError as exc:
            problems += exc.problems
    problems += _duplicate_names(found)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in {len(files)} file(s)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if show:
        for path, m in found:
            print(f"{m.name}\t{m.run_key()[:10]}\t{path}")
    print(f"ok: {len(found)} manifests ({len(files)} files)")
    return EXIT_OK


def manifest_files(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Files given, plus every *.yaml / *.yml under directories given (sorted); missing paths are problems."""
    files: list[Path] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            below = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            if not below:
                problems.append(f"{path}: no *.yaml manifests in this directory")
            files += below
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or directory")
    return list(dict.fromkeys(files)), problems


def _duplicate_names(found: list[tuple[Path, Manifest]]) -> list[str]:
    first: dict[str, Path] = {}
    problems = []
    for path, m in found:
        if m.name in first:
            line = key_line(read_yaml(path), "name")
            problems.append(f"{path}:{line}: name: {m.name!r} is already used by {first[m.name]} (names are unique)")
        else:
            first[m.name] = path
    return problems
