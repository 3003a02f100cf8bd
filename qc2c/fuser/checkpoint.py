"""Read and write the published C2C fuser layout (docs/c2c.md §3), strictly.

    <fuser>/config.json                  training recipe (model.base_model / teacher_model / alignment)
    <fuser>/final/projector_{i}.pt       state_dict of projector i (= receiver layer i), exactly §2's keys
    <fuser>/final/projector_{i}.json     {"class": "C2CProjector", "init_args": {...}} (dtype encoded)
    <fuser>/final/projector_config.json  {"0": {"1": {"t": [[source_layer, projector_idx]]}}}
    <fuser>/final/aggregator_config.json "{}" (written for the paper-era loader; optional when reading)

Upstream loads with `strict=False`; qc2c refuses missing or unexpected keys, any class but C2CProjector
and partial `final/` folders, because a silently half-loaded fuser gives plausible but wrong numbers.
A file that cannot be read (truncated .pt, non-UTF-8 JSON), weights holding NaN/Inf and malformed
projector_config entries are refused too, each naming the file and what is wrong, before any model runs.

This module knows the format only; where a fuser comes from (a path, the Hub, the tiny or demo zoo) is
`qc2c.fuser.sources`, which reads every source through `load_fuser_dir`.

Checkpoint identity (`fuser_sha256`): sha256 over the files the loader reads, in sorted order of their path
relative to the fuser root (`config.json`, `final/...`), each contributing the line
`<relative path>\\0<sha256 of its bytes>\\n`. It does not depend on where the folder lives.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qc2c.fuser.projector import C2CProjector

PROJECTOR_CLASS = "C2CProjector"
_PT = re.compile(r"^projector_(\d+)\.pt$")


class FuserError(ValueError):
    """A fuser checkpoint that cannot be used as is; the message says what is wrong and what to do."""


@dataclass
class Fuser:
    """A loaded fuser: one projector per receiver layer and the receiver layer -> sharer layer map.

    layer_map[t] = sharer layer feeding receiver layer t; projector_index[t] = index into `projectors`.
    `recipe` is config.json (empty when the checkpoint has none); `root` the folder that holds final/.
    """

    projectors: nn.ModuleList
    layer_map: dict[int, int]
    projector_index: dict[int, int]
    recipe: dict[str, Any]
    init_args: list[dict[str, Any]]
    root: Path
    sha256: str
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def n_receiver_layers(self) -> int:
        return len(self.layer_map)

    def model_field(self, name: str) -> Any:
        return (self.recipe.get("model") or {}).get(name)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Fuser:
        """Cast projectors like upstream RosettaModel does (a bf16 receiver gets bf16 projectors)."""
        self.projectors.to(device=device, dtype=dtype)
        return self


def encode_arg(value: Any) -> Any:
    if isinstance(value, torch.dtype):
        return {"__type__": "torch.dtype", "value": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"__type__": "torch.device", "value": str(value)}
    return value


def decode_arg(value: Any, where: str) -> Any:
    if isinstance(value, dict) and "__type__" in value:
        kind, raw = value["__type__"], value.get("value")
        if kind == "torch.dtype":
            dtype = getattr(torch, str(raw), None)
            if not isinstance(dtype, torch.dtype):
                raise FuserError(f"{where}: dtype: unknown torch dtype {raw!r}")
            return dtype
        if kind == "torch.device":
            return torch.device(raw)
        if kind == "str":
            return str(raw)
        raise FuserError(f"{where}: unknown encoded type {kind!r}")
    return value


def final_dir_of(path: Path) -> Path:
    """Accept the fuser root (holding final/) or final/ itself (what upstream's checkpoints_dir names)."""
    if (path / "final").is_dir():
        return path / "final"
    if (path / "projector_config.json").exists() or any(path.glob("projector_*.pt")):
        return path
    raise FuserError(
        f"{path}: not a C2C fuser checkpoint (no final/ folder and no projector_*.pt); point fuser.path at "
        "the folder that holds final/ (or at final/ itself), or train one with manifests/m7_fuser_train.yaml"
    )


def checkpoint_files(final: Path) -> list[Path]:
    """The files the loader reads; refuses partial folders, naming what is missing."""
    if not final.is_dir():
        raise FuserError(f"{final}: fuser folder does not exist")
    indices = sorted(int(m.group(1)) for p in final.iterdir() if (m := _PT.match(p.name)))
    problems = []
    if not indices:
        problems.append("no projector_{i}.pt files")
    missing_pt = sorted(set(range(max(indices) + 1)) - set(indices)) if indices else []
    if missing_pt:
        problems.append(f"missing projector index(es) {missing_pt} (have {indices})")
    missing_json = [f"projector_{i}.json" for i in indices if not (final / f"projector_{i}.json").is_file()]
    if missing_json:
        problems.append(f"missing {', '.join(missing_json)}")
    if not (final / "projector_config.json").is_file():
        problems.append("missing projector_config.json")
    if problems:
        raise FuserError(
            f"{final}: incomplete fuser checkpoint: {'; '.join(problems)}. Re-download or copy the whole "
            "final/ folder (a partial copy or an interrupted training save), or re-run the training manifest"
        )
    files = [final / f"projector_{i}.{ext}" for i in indices for ext in ("pt", "json")]
    files.append(final / "projector_config.json")
    if (final / "aggregator_config.json").is_file():
        files.append(final / "aggregator_config.json")
    if (final.parent / "config.json").is_file():
        files.append(final.parent / "config.json")
    return files


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fuser_sha256(path: str | Path) -> str:
    """Content hash of a local fuser checkpoint (see the module docstring for the exact definition)."""
    final = final_dir_of(Path(path))
    root = final.parent
    h = hashlib.sha256()
    for file in sorted(checkpoint_files(final), key=lambda p: p.relative_to(root).as_posix()):
        h.update(f"{file.relative_to(root).as_posix()}\0{file_sha256(file)}\n".encode())
    return h.hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FuserError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FuserError(f"{path}: cannot be read ({type(e).__name__}: {e}); re-download or re-copy it") from None


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """torch.load of one projector file; a truncated or corrupt file (OSError: [Errno 22], unpickling and zip
    errors, which name no file) becomes a FuserError naming it, and non-finite weights are refused."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file; all mean "unreadable"
        why = (str(e).strip().splitlines() or [""])[0][:200]
        raise FuserError(
            f"{path}: not a readable PyTorch state_dict ({type(e).__name__}: {why}); the file is truncated or "
            "corrupt: re-download or re-copy the fuser"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FuserError(f"{path}: holds a {type(state).__name__}, not a state_dict of tensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise FuserError(f"{path}: weights {bad[:5]} hold NaN or Inf values (a diverged training run?)")
    return state


def load_projector(final: Path, i: int) -> tuple[C2CProjector, dict[str, Any]]:
    meta_path = final / f"projector_{i}.json"
    meta = _read_json(meta_path)
    cls = meta.get("class")
    if cls != PROJECTOR_CLASS:
        raise FuserError(f"{meta_path}: class: {cls!r} is not supported (only {PROJECTOR_CLASS})")
    init_args = {k: decode_arg(v, f"{meta_path}: init_args.{k}") for k, v in (meta.get("init_args") or {}).items()}
    try:
        projector = C2CProjector(**init_args)
    except TypeError as e:
        raise FuserError(f"{meta_path}: init_args: {e}") from None
    state = _read_state(final / f"projector_{i}.pt")
    strict_load(projector, state, final / f"projector_{i}.pt")
    return projector.eval(), init_args


def strict_load(module: nn.Module, state: dict[str, torch.Tensor], where: Path | str) -> None:
    """load_state_dict(strict) with one message naming every missing / unexpected / mis-shaped key."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append(f"shape mismatch {shapes}")
    if problems:
        raise FuserError(f"{where}: state_dict does not match C2CProjector: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)


def parse_projector_config(path: Path, n_projectors: int) -> tuple[dict[int, int], dict[int, int]]:
    """{"0": {"1": {"t": [[src, p]]}}} -> (layer_map, projector_index); only the first pair is used (§1)."""
    raw = _read_json(path)
    try:
        per_layer = raw["0"]["1"]
        per_layer.items()
    except (KeyError, TypeError, AttributeError):
        raise FuserError(f"{path}: expected {{'0': {{'1': {{layer: [[source, projector]]}}}}}}") from None
    layer_map, projector_index = {}, {}
    for key, pairs in per_layer.items():
        try:
            t, src, p = int(key), _int(pairs[0][0]), _int(pairs[0][1])
        except (ValueError, TypeError, IndexError, KeyError):
            raise FuserError(
                f"{path}: layer {key!r}: expected a non-empty list [[source_layer, projector_index], ...] of "
                f"integers (found: {json.dumps(pairs)[:80]})"
            ) from None
        if not 0 <= p < n_projectors:
            raise FuserError(f"{path}: layer {t}: projector index {p} out of range (0..{n_projectors - 1})")
        layer_map[t], projector_index[t] = src, p
    return dict(sorted(layer_map.items())), dict(sorted(projector_index.items()))


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def load_fuser_dir(path: str | Path, *, source: str | None = None) -> Fuser:
    """Load a local fuser folder (root or final/) strictly; projectors in eval mode, dtype as saved."""
    final = final_dir_of(Path(path))
    files = checkpoint_files(final)
    n = sum(1 for f in files if f.suffix == ".pt")
    loaded = [load_projector(final, i) for i in range(n)]
    layer_map, projector_index = parse_projector_config(final / "projector_config.json", n)
    config = final.parent / "config.json"
    recipe = _read_json(config) if config.is_file() else {}
    notes = [] if recipe else [f"{config}: absent; model names cannot be checked against the pair"]
    return Fuser(
        projectors=nn.ModuleList(p for p, _ in loaded),
        layer_map=layer_map,
        projector_index=projector_index,
        recipe=recipe,
        init_args=[a for _, a in loaded],
        root=final.parent,
        sha256=fuser_sha256(final),
        source=source or str(path),
        notes=notes,
    )


def save_fuser(
    root: str | Path,
    projectors: list[C2CProjector],
    layer_map: dict[int, int],
    recipe: dict[str, Any],
    init_args: list[dict[str, Any]],
) -> Path:
    """Write the published layout under `root` (config.json + final/); returns root. Projector i = layer i."""
    root = Path(root)
    final = root / "final"
    final.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(recipe, indent=4))
    write_projectors(final, projectors, layer_map, init_args)
    return root


def write_projectors(
    folder: Path, projectors: Sequence[nn.Module], layer_map: dict[int, int], init_args: Sequence[dict[str, Any]]
) -> None:
    """projector_{i}.pt / .json, projector_config.json and aggregator_config.json into `folder`: the files of a
    published final/ (and of a training checkpoint), in the one layout `load_fuser_dir` reads."""
    for i, (projector, args) in enumerate(zip(projectors, init_args, strict=True)):
        torch.save(projector.state_dict(), folder / f"projector_{i}.pt")
        meta = {"class": PROJECTOR_CLASS, "init_args": {k: encode_arg(v) for k, v in args.items()}}
        (folder / f"projector_{i}.json").write_text(json.dumps(meta, indent=2))
    config = {"0": {"1": {str(t): [[s, t]] for t, s in sorted(layer_map.items())}}}
    (folder / "projector_config.json").write_text(json.dumps(config))
    (folder / "aggregator_config.json").write_text("{}")
