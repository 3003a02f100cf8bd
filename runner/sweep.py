"""Sweep files: a base manifest (inline, or `include: other.yaml` + overrides) plus `grid:`.

    include: ../m2_int8.yaml
    name: m2_schemes
    grid:
      kv.quant.scheme: [int8, int4, nf4]

expands to one manifest per combination of the grid values (the first key varies slowest; at most
MAX_COMBINATIONS, refused before anything is expanded), named
`<name>-<key>_<value>-...` (the last part of the dotted path, the whole path where two keys share
a last part), sanitized to the manifest name pattern. A plain manifest expands to itself.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import re
from typing import Any

from ruamel.yaml.comments import CommentedMap

from runner.manifest import Document, Loc, ManifestError, field_names, key_line, load_document, validate_document
from runner.schema import Manifest

_NOT_NAME = re.compile(r"[^a-z0-9_.-]+")
MAX_COMBINATIONS = 256  # a grid is expanded (and every member validated) at once: bound it before that


def expand_file(path: str | os.PathLike[str]) -> list[Manifest]:
    """Every manifest a file stands for: [it] for a manifest, one per grid combination for a sweep.

    Raises ManifestError with every problem of every combination (file:line: field: message).
    """
    doc = load_document(path)
    if "grid" not in doc.data:
        return [validate_document(doc)]
    grid = _read_grid(doc)
    base = {k: v for k, v in doc.data.items() if k != "grid"}
    manifests, problems = [], []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        try:
            manifests.append(validate_document(_variant(doc, base, values)))
        except ManifestError as exc:
            problems.extend(p for p in exc.problems if p not in problems)
    if problems:
        raise ManifestError(problems)
    return manifests


def _read_grid(doc: Document) -> dict[Loc, list[Any]]:
    file, root = doc.sources[0]
    grid, node = doc.data["grid"], root.get("grid")
    line = key_line(root, "grid")
    if not isinstance(grid, dict) or not grid:
        raise ManifestError([f"{file}:{line}: grid: must map dotted field paths to lists of values"])
    problems, out = [], {}
    for dotted, values in grid.items():
        at = key_line(node, dotted, line) if isinstance(node, CommentedMap) else line
        problem = path_problem(dotted)
        if problem is None and (not isinstance(values, list) or not values):
            problem = f"must be a non-empty list of values (found: {values!r})"
        if problem is None and len({repr(v) for v in values}) != len(values):
            problem = "lists a value more than once"
        if problem is not None:
            problems.append(f"{file}:{at}: grid.{dotted}: {problem}")
        else:
            out[tuple(dotted.split("."))] = values
            doc.pins[tuple(dotted.split("."))] = (file, at)
    if problems:
        raise ManifestError(problems)
    n = math.prod(len(values) for values in out.values())
    if n > MAX_COMBINATIONS:
        sizes = " x ".join(str(len(values)) for values in out.values())
        raise ManifestError(
            [f"{file}:{line}: grid: {sizes} = {n} combinations; a sweep has at most {MAX_COMBINATIONS}"]
        )
    return out


def path_problem(dotted: str) -> str | None:
    """None when `dotted` names a manifest field (mapping keys only), else what is wrong."""
    parts = dotted.split(".")
    if parts[0] in ("schema", "name", "grid", "include"):
        return f"{parts[0]!r} cannot be swept (allowed: a field of pair, fuser, kv, eval, train, runtime, or kind)"
    for depth, part in enumerate(parts):
        allowed = field_names(tuple(parts[:depth]))
        if part not in allowed:
            where = ".".join(parts[:depth]) or "the manifest"
            if not allowed:
                return f"{where} has no fields (it is a value, not a section)"
            return f"unknown field {part!r} in {where} (allowed: {', '.join(allowed)})"
    return None


def _variant(doc: Document, base: dict[str, Any], values: dict[Loc, Any]) -> Document:
    data = copy.deepcopy(base)
    for loc, value in values.items():
        node = data
        for part in loc[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[loc[-1]] = value
    data["name"] = derived_name(str(base.get("name", "")), values)
    return Document(data, doc.sources, dict(doc.pins), list(doc.problems))


def derived_name(base: str, values: dict[Loc, Any]) -> str:
    """`<base>-<key>_<value>...`, each key the last part of its path unless two keys share it."""
    lasts = [loc[-1] for loc in values]
    parts = [base]
    for loc, value in values.items():
        key = loc[-1] if lasts.count(loc[-1]) == 1 else ".".join(map(str, loc))
        parts.append(f"{key}_{_format(value)}")
    name = _NOT_NAME.sub("_", "-".join(parts).lower()).strip("_.-")
    return name or "sweep"


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "_".join(_format(v) for v in value)
    if isinstance(value, dict):
        return "_".join(f"{k}_{_format(v)}" for k, v in value.items())
    return "null" if value is None else str(value)


def grid_chunks(path: str | os.PathLike[str], max_points: int) -> list[tuple[dict[str, Any] | None, list[int]]]:
    """A sweep's members in chunks that each run as one group in one process (runner.sweep_exec), for job
    arrays: members that differ only in `kv` values share a chunk, at most `max_points` of them where the
    grid allows (the first kv key's values are split; the rest of the kv grid stays whole). Each chunk is
    (a self-contained sweep document — includes merged, the grid narrowed to the chunk, so it expands to the
    same member names and run keys — or None for a chunk of one member, member indices in expansion order).
    """
    doc = load_document(path)
    if "grid" not in doc.data:
        return [(None, [0])]
    grid = _read_grid(doc)
    keys = list(grid)
    index = {tuple(repr(v) for v in combo): i for i, combo in enumerate(itertools.product(*grid.values()))}
    kv = [k for k in keys if k[0] == "kv"]
    other = [k for k in keys if k[0] != "kv"]
    if not kv:
        return [(None, [i]) for i in range(len(index))]
    rest = math.prod(len(grid[k]) for k in kv[1:])
    step = max(1, max_points // rest)
    chunks: list[tuple[dict[str, Any] | None, list[int]]] = []
    for fixed in itertools.product(*(grid[k] for k in other)):
        first = grid[kv[0]]
        for start in range(0, len(first), step):
            sub = {**{k: [v] for k, v in zip(other, fixed, strict=True)}, kv[0]: first[start : start + step]}
            sub.update({k: grid[k] for k in kv[1:]})
            ordered = {k: sub[k] for k in keys}  # the file's key order: the same expansion order and names
            members = [index[tuple(repr(v) for v in combo)] for combo in itertools.product(*ordered.values())]
            data = {k: copy.deepcopy(v) for k, v in doc.data.items() if k != "grid"}
            data["grid"] = {".".join(map(str, k)): v for k, v in ordered.items()}
            chunks.append((data if len(members) > 1 else None, members))
    return chunks
