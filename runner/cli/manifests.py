"""What `run` and `plan` share: finding a manifest by path or bare name, and loading it (or a sweep)."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from runner.manifest import ManifestError
from runner.schema import Manifest
from runner.sweep import expand_file

ALLOW_DOWNLOADS_HELP = "let Hugging Face libraries download (default: offline, HF_HUB_OFFLINE=1 unless set)"
MANIFEST_DIRS = (Path("manifests"), Path("manifests") / "sweeps")  # where a bare name is looked for


def find_manifest(path: Path) -> Path:
    """`path` itself when it exists; else a bare name (`m7_align1` or `m7_align1.yaml`, as the design card
    writes it) found in manifests/ or manifests/sweeps/ of the working directory; else `path` unchanged."""
    if path.exists() or len(path.parts) != 1:
        return path
    names = [path.name] if path.suffix in (".yaml", ".yml") else [f"{path.name}.yaml", f"{path.name}.yml"]
    found = [d / n for d in MANIFEST_DIRS for n in names if (d / n).is_file()]
    return found[0] if found else path


def load_manifests(path: Path) -> list[Manifest]:
    """Every manifest `path` holds (one, or a sweep's expansion); ManifestError on any problem."""
    if not path.is_file():
        known = {p.stem: p for d in (path.parent, *MANIFEST_DIRS) for p in sorted(d.glob("*.y*ml"))}
        close = difflib.get_close_matches(path.stem, list(known), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(str(known[c]) for c in close)}?)" if close else ""
        raise ManifestError([f"{path}:1: (file): no such manifest file{hint}"])
    return expand_file(path)


def load_manifests_or_report(path: Path) -> list[Manifest] | None:
    """`load_manifests`, with every problem printed as a `file:line: field: message` line (None then)."""
    try:
        return load_manifests(path)
    except ManifestError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None
