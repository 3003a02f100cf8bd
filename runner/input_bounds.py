"""Bounds on manifest input, kept apart from the loader (runner/manifest.py) that applies them.

A manifest is untrusted input (a copied sweep, a collaborator's file), and YAML lets a tiny file stand for a
huge or deeply nested document: 1 KB of aliases can expand to billions of values, and 5,000 brackets make
the parser recurse until Python gives up. Every bound here is far above what a real manifest needs.
"""

from __future__ import annotations

from pathlib import Path

MAX_FILE_BYTES = 1 << 20  # a commented manifest is a few KB
MAX_DEPTH = 32  # nesting levels of mappings and lists (the schema itself needs 5)
MAX_VALUES = 20_000  # scalars, mappings and lists after alias expansion (a manifest has about 100)
MAX_INCLUDES = 8  # files in one include chain


def flow_too_deep(text: str) -> int | None:
    """The line where `[`/`{` nesting first passes MAX_DEPTH (quotes and comments skipped), else None: the YAML
    parser recurses per level and would take long to fail, so deep flow nesting is refused before parsing."""
    depth, line, quote, comment = 0, 1, "", False
    for ch in text:
        if ch == "\n":
            line, comment = line + 1, False
        elif comment:
            continue
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            comment = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return None


def include_root(top: Path) -> Path:
    """The tree an include may reach: the nearest folder named `manifests` above the top-level file (so
    manifests/sweeps/x.yaml may include ../m2_int8.yaml), else the top-level file's own folder."""
    top = top.resolve()
    return next((d for d in top.parents if d.name == "manifests"), top.parent)
