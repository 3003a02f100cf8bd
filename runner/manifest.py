"""Load a manifest: UTF-8 check → ruamel round-trip parse → `include:` → ${VAR} expansion → pydantic.

Every problem becomes one line `file:line: dotted.field: message (what is allowed)`, and all of them
are collected into one `ManifestError`, so a user fixes a file in one pass. Lines come from the
round-trip nodes (`CommentedMap.lc`, `CommentedSeq.lc`), which is why YAML is loaded with typ="rt".

Loading is bounded, because a manifest is untrusted input (a copied sweep, a file from a collaborator):
at most MAX_FILE_BYTES per file, MAX_DEPTH levels of nesting, MAX_VALUES values once YAML aliases are
expanded (a 1 KB "billion laughs" file would otherwise expand forever), MAX_INCLUDES files per chain,
and `include:` is a relative path that stays inside the manifests' tree (`include_root`). Errors never
quote a file's content beyond the offending key's value.
"""

from __future__ import annotations

import datetime
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from qc2c.errors import ProblemsError
from runner.input_bounds import MAX_DEPTH, MAX_FILE_BYTES, MAX_INCLUDES, MAX_VALUES, flow_too_deep, include_root
from runner.schema import PATTERN_HELP, Manifest, Problems

_VAR = re.compile(r"\$\{([^}]*)\}")
_VAR_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_SECRET = re.compile(r"(^HF_TOKEN$|_TOKEN$|_KEY$|_SECRET$|_PASSWORD$)")

Loc = tuple[str | int, ...]


class ManifestError(ProblemsError):
    """Every problem of one manifest (or sweep) file, each as "file:line: dotted.field: message"."""


@dataclass
class Document:
    """A parsed manifest file: plain data (includes merged, variables expanded) + the nodes for lines.

    `sources` are (file, round-trip root) pairs, the including file first; `pins` send a dotted path
    to a fixed (file, line), which sweeps use for values that come from `grid:`.
    """

    data: dict[str, Any]
    sources: list[tuple[str, CommentedMap]]
    pins: dict[Loc, tuple[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # found before validation (undefined variables)

    def where(self, loc: Loc) -> tuple[str, int]:
        """(file, 1-based line) of the deepest node of `loc` found in any source."""
        for depth in range(len(loc), 0, -1):
            if loc[:depth] in self.pins:
                return self.pins[loc[:depth]]
        best = (0, self.sources[0][0], 1)
        for name, root in self.sources:
            depth, line = _line_of(root, loc)
            if depth > best[0]:
                best = (depth, name, line)
        return best[1], best[2]


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read, expand and validate one manifest file; raises ManifestError listing every problem."""
    doc = load_document(path)
    if "grid" in doc.data:
        file, line = doc.where(("grid",))
        raise ManifestError(
            [f"{file}:{line}: grid: this is a sweep (several manifests); expand it with runner.sweep.expand_file"]
        )
    return validate_document(doc)


def load_document(path: str | os.PathLike[str], _seen: tuple[Path, ...] = ()) -> Document:
    """Parse `path` (and what it includes) into a Document; raises ManifestError. `_seen` is the include
    chain so far (the top-level file first)."""
    path = Path(path)
    root = read_yaml(path)
    problems: list[str] = []
    data = _plain(root, str(path), problems, budget=[MAX_VALUES])
    sources = [(str(path), root)]
    include = data.pop("include", None)
    if include is not None:
        line = key_line(root, "include")
        fatal: list[str] = []
        base = _included(path, include, line, _seen, fatal)
        if fatal:
            raise ManifestError(fatal)
        data = _merge(base.data, data)
        sources += base.sources
        problems = base.problems + problems
    return Document(data, sources, problems=problems)


def read_yaml(path: Path) -> CommentedMap:
    """The round-trip mapping of a UTF-8 YAML file; syntax errors and duplicate keys name file:line."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ManifestError([f"{path}:1: (file): {size} bytes; a manifest is at most {MAX_FILE_BYTES} bytes"])
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError([f"{path}:1: cannot read file ({exc.strerror or exc})"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(
            [f"{path}:{line}: file is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8"]
        ) from None
    deep = flow_too_deep(text)
    if deep is not None:
        raise ManifestError([f"{path}:{deep}: (top level): nested more than {MAX_DEPTH} levels deep"])
    try:
        root = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        raise ManifestError([f"{path}:{_syntax_line(exc)}: YAML syntax: {exc.problem or exc.context}"]) from None
    except YAMLError as exc:
        raise ManifestError([f"{path}:1: YAML syntax: {str(exc).splitlines()[0]}"]) from None
    except RecursionError:
        raise ManifestError([f"{path}:1: (top level): nested more than {MAX_DEPTH} levels deep"]) from None
    if not isinstance(root, CommentedMap):
        kind = "empty" if root is None else ("a list" if isinstance(root, list) else "a single value")
        raise ManifestError([f"{path}:1: (top level): the file is {kind}; a manifest is a mapping (schema: 1, ...)"])
    return root


def _syntax_line(exc: MarkedYAMLError) -> int:
    """An unclosed [ or { is reported where it opened, not at the end of the file where it was noticed."""
    use_context = exc.context_mark is not None and "flow" in str(exc.context)
    mark = exc.context_mark if use_context or exc.problem_mark is None else exc.problem_mark
    return mark.line + 1 if mark is not None else 1


def validate_document(doc: Document) -> Manifest:
    """`Manifest.model_validate(doc.data)`, with pydantic's errors turned into file:line problems."""
    try:
        manifest = Manifest.model_validate(doc.data)
    except ValidationError as exc:
        raise ManifestError(doc.problems + format_errors(exc, doc)) from None
    if doc.problems:
        raise ManifestError(doc.problems)
    return manifest


def format_errors(exc: ValidationError, doc: Document) -> list[str]:
    problems: list[str] = []
    for err in exc.errors():
        error = err.get("ctx", {}).get("error")
        loc = _clean(err["loc"], doc.data)
        if isinstance(error, Problems):
            for dotted, anchor, message in error.items:
                where = loc + _parts(anchor if anchor is not None else dotted)
                problems.append(_line(doc, loc + _parts(dotted), where, message))
        else:
            problems.append(_line(doc, loc, loc, _message(err, loc)))
    return list(dict.fromkeys(problems))


def _line(doc: Document, loc: Loc, where: Loc, message: str) -> str:
    file, line = doc.where(where)
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    return f"{file}:{line}: {dotted}: {message}"


def _parts(dotted: str) -> Loc:
    return tuple(int(p) if p.isdigit() else p for p in dotted.split("."))


def _message(err: dict[str, Any], loc: Loc) -> str:
    kind, msg = err["type"], err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = field_names(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}?; " if close else ""
        return f"unknown field ({hint}allowed: {', '.join(allowed)})"
    if kind == "missing":
        return "required field is missing"
    if kind == "too_short":
        return f"needs at least {err['ctx']['min_length']} item(s) (found {err['ctx']['actual_length']})"
    value = err.get("input")
    if kind == "string_pattern_mismatch":
        msg = PATTERN_HELP.get(err["ctx"]["pattern"], msg)
    if kind != "value_error" and isinstance(value, str | int | float | bool | type(None)):
        shown = (
            repr(value)
            if not isinstance(value, str) or len(value) <= 60
            else f"{value[:40]!r}... ({len(value)} characters)"
        )
        msg += f" (found: {shown})"
    return msg


def _clean(loc: Loc, data: Any) -> Loc:
    """Drop loc parts that are not in the data (union tags such as 'int' or 'function-after[...]')."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part.isidentifier():
            out.append(part)  # a missing field: it names the place, there is nothing below it
            break
        else:
            continue
        out.append(part)
    return tuple(out)


def _line_of(root: CommentedMap, loc: Loc) -> tuple[int, int]:
    """(how many parts of loc were found, 1-based line of the deepest one) in one round-trip tree."""
    node, depth, line = root, 0, 1
    for part in loc:
        if isinstance(node, CommentedMap) and part not in node:
            part = next((k for k in node if str(k) == part), part)  # non-string keys (`1:`) became strings
        if isinstance(node, CommentedMap) and part in node:
            line = key_line(node, part, line)
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = _item_line(node, part, line)
        else:
            break
        node, depth = node[part], depth + 1
    return depth, line


def key_line(node: CommentedMap, key: Any, default: int = 1) -> int:
    """1-based line of `key` in `node`; `default` for keys without a position (from a `<<:` merge)."""
    try:
        return node.lc.key(key)[0] + 1
    except (KeyError, TypeError, AttributeError):
        return default


def _item_line(node: CommentedSeq, index: int, default: int) -> int:
    try:
        return node.lc.item(index)[0] + 1
    except (KeyError, TypeError, AttributeError):
        return default


def field_names(loc: Loc) -> list[str]:
    """Field names (aliases) of the section at `loc`, [] when `loc` is not a section."""
    model = section_model(loc)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def section_model(loc: Loc) -> type[BaseModel] | None:
    """The schema class of the section at `loc` (list indices skipped), None when it is not a section."""
    model: type[BaseModel] | None = Manifest
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        names = {info.alias or name: info for name, info in model.model_fields.items()}
        model = _model_in(names[part].annotation) if part in names else None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, tuple, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


# ---- plain data, ${VAR} expansion, include ----


def _plain(node: Any, file: str, problems: list[str], line: int = 1, loc: Loc = (), *, budget: list[int]) -> Any:
    """Round-trip node → plain dict/list/str/int/float/bool, expanding ${VAR} in strings; bounded by MAX_DEPTH
    and by `budget` (values left to produce, shared by the whole walk: aliases count every time they expand)."""
    budget[0] -= 1
    if budget[0] < 0 or len(loc) > MAX_DEPTH:
        dotted = ".".join(str(p) for p in loc[:MAX_DEPTH]) or "(top level)"
        why = (
            f"nested more than {MAX_DEPTH} levels deep"
            if len(loc) > MAX_DEPTH
            else (f"expands to more than {MAX_VALUES} values (YAML aliases repeating each other?)")
        )
        raise ManifestError([f"{file}:{line}: {dotted}: {why}"])
    if isinstance(node, CommentedMap):
        return {
            str(k): _plain(v, file, problems, key_line(node, k, line), loc + (str(k),), budget=budget)
            for k, v in node.items()
        }
    if isinstance(node, CommentedSeq):
        return [
            _plain(v, file, problems, _item_line(node, i, line), loc + (i,), budget=budget) for i, v in enumerate(node)
        ]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    dotted = ".".join(str(p) for p in loc)
    if isinstance(node, TaggedScalar):
        if str(node.tag) == "tag:yaml.org,2002:str":
            return _plain(str(node.value), file, problems, line, loc, budget=budget)
        problems.append(f"{file}:{line}: {dotted}: YAML tag {node.tag} is not supported (write a plain value)")
        return str(node.value)
    if isinstance(node, datetime.date):
        return node.isoformat()  # `2024-01-01` is text in a manifest; YAML would make it a date
    if isinstance(node, str):
        return expand(str(node), os.environ, lambda msg: problems.append(f"{file}:{line}: {dotted}: {msg}"))
    return node


def expand(text: str, env: typing.Mapping[str, str], report: typing.Callable[[str], None]) -> str:
    """Replace ${VAR} and ${VAR:-default}; an undefined variable without default is reported, text kept."""

    def replace(match: re.Match[str]) -> str:
        body = _VAR_BODY.fullmatch(match[1])
        if body is None:
            report(f"malformed variable {match[0]!r} (allowed: ${{NAME}} or ${{NAME:-default}})")
            return match[0]
        name, default = body[1], body[2]
        if _SECRET.search(name):
            report(f"${{{name}}} looks like a secret; secrets stay in the environment, never in a manifest")
            return match[0]
        if name in env:
            return env[name]
        if default is not None:
            return default
        report(f"environment variable {name} is not set (set it, or write ${{{name}:-default}})")
        return match[0]

    if "${" in text and text.count("${") != len(_VAR.findall(text)):
        report(f"unclosed '${{' in {text!r} (allowed: ${{NAME}} or ${{NAME:-default}})")
        return text
    return _VAR.sub(replace, text)


def _included(path: Path, include: Any, line: int, seen: tuple[Path, ...], problems: list[str]) -> Document:
    chain = seen + (path.resolve(),)
    root = include_root(chain[0])
    if not isinstance(include, str) or not include or os.path.isabs(include) or include.startswith("~"):
        found = repr(include) if isinstance(include, str) and len(include) < 200 else f"a {type(include).__name__}"
        problems.append(f"{path}:{line}: include: must be a relative path to a manifest file (found: {found})")
        return Document({}, [])
    target = (path.parent / include).resolve()
    if not target.is_relative_to(root):
        problems.append(f"{path}:{line}: include: {include!r} leaves {root} (includes stay in the manifests' tree)")
        return Document({}, [])
    if target in chain:
        problems.append(f"{path}:{line}: include: {include!r} includes itself (directly or through other files)")
        return Document({}, [])
    if len(chain) >= MAX_INCLUDES:
        problems.append(f"{path}:{line}: include: more than {MAX_INCLUDES} files in one include chain")
        return Document({}, [])
    if not target.is_file():
        problems.append(f"{path}:{line}: include: no such file {include!r} (relative to {path.parent})")
        return Document({}, [])
    if target.suffix not in (".yaml", ".yml"):
        problems.append(f"{path}:{line}: include: {include!r} is not a manifest (allowed: a .yaml or .yml file)")
        return Document({}, [])
    try:
        return load_document(os.path.normpath(path.parent / include), chain)
    except ManifestError as exc:
        problems.extend(exc.problems)
        return Document({}, [])


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else in `over` replaces the base value."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
