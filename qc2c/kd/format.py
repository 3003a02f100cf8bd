"""The top-K logit KD cache on disk: `meta.json` + shards, written atomically, validated when read.

The layout is the speedrun cache format (a teacher's top-K next-token logits computed once, so a student
trains without a teacher forward per step):

    <dir>/meta.json                 written last: its presence means the cache is complete
    <dir>/shard_00000.safetensors   rows [0, shard_size), one shard per `shard_size` rows
    <dir>/kd_resume.json            {n_written, next_shard} while a build is in progress (a killed build
                                    continues from it; shards at or after next_shard are stale and rewritten)

Per shard (N rows of L = max_length tokens, K = top_k, R = random_negatives):

    input_ids      int32   [N, L]        right-padded token ids
    attention_mask uint8   [N, L]        1 = a token, 0 = padding
    topk_idx       int32   [N, L-1, K]   the teacher's K most likely next tokens after position t
    topk_logits    float16 [N, L-1, K]   their raw logits (not divided by a temperature)
    rand_idx       int32   [N, L-1, R]   R > 0 only: random other ids (negatives), distinct, none in top-K
    rand_logits    float16 [N, L-1, R]   their raw logits
    loss_mask      uint8   [N, L-1]      qc2c: 1 where position t carries a target (padding and, for one
                                         conversation per row, the instruction carry none)
    fuse_split     int32   [N]           qc2c, one conversation per row only: the fused prefix length (the
                                         C2C split, qc2c.train.data.Example.split); absent for packed rows

Entries at positions whose loss_mask is 0 are zero. meta.json holds max_length, top_k, random_negatives,
packing, vocab_size, n_rows, the shard list with each shard's rows and sha256, the fields' dtypes, the
teacher's provenance and `content_sha256` (sha256 over the shards' hashes in order).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from qc2c.atomic import atomic_write
from qc2c.errors import ProblemsError

FORMAT = "qc2c-kd-cache"
VERSION = 1
META = "meta.json"
RESUME = "kd_resume.json"

# name -> (dtype, shape in the symbols N, L, L-1, K, R); `optional` fields may be absent
FIELDS: dict[str, tuple[torch.dtype, tuple[str, ...]]] = {
    "input_ids": (torch.int32, ("N", "L")),
    "attention_mask": (torch.uint8, ("N", "L")),
    "topk_idx": (torch.int32, ("N", "L-1", "K")),
    "topk_logits": (torch.float16, ("N", "L-1", "K")),
    "rand_idx": (torch.int32, ("N", "L-1", "R")),
    "rand_logits": (torch.float16, ("N", "L-1", "R")),
    "loss_mask": (torch.uint8, ("N", "L-1")),
    "fuse_split": (torch.int32, ("N",)),
}
DTYPE_NAMES = {torch.int32: "int32", torch.uint8: "uint8", torch.float16: "float16"}
META_KEYS = ("format", "version", "name", "max_length", "top_k", "random_negatives", "packing", "vocab_size")


class CacheFormatError(ProblemsError):
    """A cache that cannot be read; each problem is `file: field: why`."""


def cache_name(prefix: str, max_length: int, top_k: int, random_negatives: int) -> str:
    """The speedrun naming: `<prefix>_L<max length>_K<top-k>_R<random negatives>`."""
    return f"{prefix}_L{max_length}_K{top_k}_R{random_negatives}"


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def required_fields(random_negatives: int, packing: bool) -> list[str]:
    names = ["input_ids", "attention_mask", "topk_idx", "topk_logits", "loss_mask"]
    if random_negatives > 0:
        names += ["rand_idx", "rand_logits"]
    if not packing:
        names.append("fuse_split")
    return names


# ---- writing ----


def write_shard(folder: Path, index: int, tensors: dict[str, Tensor]) -> dict[str, Any]:
    """Write shard `index` atomically; returns its meta entry {file, rows, sha256}."""
    from safetensors.torch import save

    raw = save({k: v.contiguous() for k, v in tensors.items()})
    atomic_write(folder / shard_name(index), raw)
    return {"file": shard_name(index), "rows": int(tensors["input_ids"].shape[0]), "sha256": _sha(raw)}


def read_resume(folder: Path) -> dict[str, Any]:
    """{n_written, next_shard, shards} of a build in progress ({0, 0, []} when none)."""
    path = folder / RESUME
    if not path.is_file():
        return {"n_written": 0, "next_shard": 0, "shards": []}
    try:
        state = json.loads(path.read_text())
        if not isinstance(state.get("n_written"), int) or not isinstance(state.get("next_shard"), int):
            raise ValueError("n_written and next_shard must be integers")
    except (ValueError, AttributeError) as exc:
        raise CacheFormatError([f"{path}: (file): unreadable resume file ({exc}); delete it to rebuild"]) from None
    return state


def write_resume(folder: Path, n_written: int, shards: list[dict[str, Any]], settings: dict[str, Any]) -> None:
    state = {"n_written": n_written, "next_shard": len(shards), "shards": shards, "settings": settings}
    atomic_write(folder / RESUME, json.dumps(state, indent=1))


def drop_stale_shards(folder: Path, next_shard: int) -> list[Path]:
    """Shards a killed build wrote after its last resume record (they are rewritten, never trusted)."""
    stale = [p for p in folder.glob("shard_*.safetensors") if int(p.stem.split("_")[1]) >= next_shard]
    for p in stale:
        p.unlink()
    return stale


def content_sha256(shards: list[dict[str, Any]]) -> str:
    return _sha("\n".join(s["sha256"] for s in shards).encode())


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """meta.json last (the cache is complete from here on), then the resume file goes."""
    atomic_write(folder / META, json.dumps(meta, indent=2, sort_keys=True))
    (folder / RESUME).unlink(missing_ok=True)


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


# ---- reading ----


@dataclass
class KDCache:
    """A validated cache: its meta and every field concatenated over the shards (rows in order)."""

    folder: Path
    meta: dict[str, Any]
    tensors: dict[str, Tensor]

    @property
    def n_rows(self) -> int:
        return int(self.meta["n_rows"])


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META
    if not path.is_file():
        hint = (
            " (a build in progress: run its manifest again to finish it)" if (Path(folder) / RESUME).is_file() else ""
        )
        raise CacheFormatError([f"{path}: (file): no such file: not a complete KD cache{hint}"])
    try:
        meta = json.loads(path.read_text())
    except ValueError as exc:
        raise CacheFormatError([f"{path}: (file): invalid JSON ({exc})"]) from None
    problems = _meta_problems(path, meta)
    if problems:
        raise CacheFormatError(problems)
    return meta


def _meta_problems(path: Path, meta: Any) -> list[str]:
    if not isinstance(meta, dict):
        return [f"{path}: (top level): expected an object"]
    problems = [f"{path}: {k}: missing" for k in (*META_KEYS, "n_rows", "shards") if k not in meta]
    if problems:
        return problems
    if meta["format"] != FORMAT or meta["version"] != VERSION:
        problems.append(f"{path}: format: {meta['format']!r} v{meta['version']} (this qc2c reads {FORMAT} v{VERSION})")
    for key in ("max_length", "top_k", "vocab_size"):
        if not isinstance(meta[key], int) or meta[key] < (2 if key == "max_length" else 1):
            problems.append(f"{path}: {key}: expected a positive integer, got {meta[key]!r}")
    if not isinstance(meta["random_negatives"], int) or meta["random_negatives"] < 0:
        problems.append(f"{path}: random_negatives: expected an integer >= 0, got {meta['random_negatives']!r}")
    if not isinstance(meta["shards"], list) or not all(isinstance(s, dict) for s in meta["shards"]):
        problems.append(f"{path}: shards: expected a list of {{file, rows, sha256}}")
    elif sum(int(s.get("rows", 0)) for s in meta["shards"]) != meta["n_rows"]:
        problems.append(
            f"{path}: n_rows: {meta['n_rows']} but the shards hold {sum(s.get('rows', 0) for s in meta['shards'])}"
        )
    return problems


def read_cache(folder: str | Path) -> KDCache:
    """Read and validate a complete cache (every shard's hash, every field's dtype and shape, id ranges)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    folder = Path(folder)
    meta = read_meta(folder)
    names = required_fields(meta["random_negatives"], bool(meta["packing"]))
    parts: dict[str, list[Tensor]] = {n: [] for n in names}
    problems: list[str] = []
    for entry in meta["shards"]:
        path = folder / str(entry.get("file"))
        if not path.is_file():
            problems.append(f"{path}: (file): listed in meta.json but missing")
            continue
        raw = path.read_bytes()
        if _sha(raw) != entry.get("sha256"):
            problems.append(f"{path}: (file): sha256 differs from meta.json (the shard changed after it was written)")
            continue
        try:
            tensors = load(raw)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            problems.append(f"{path}: (file): not a safetensors file ({str(exc)[:120]})")
            continue
        shard_problems = field_problems(path, tensors, meta, int(entry.get("rows", -1)))
        problems += shard_problems
        if not shard_problems:
            for n in names:
                parts[n].append(tensors[n])
    if problems:
        raise CacheFormatError(problems)
    return KDCache(folder, meta, {n: torch.cat(v) for n, v in parts.items()})


def field_problems(path: Path, tensors: dict[str, Tensor], meta: dict[str, Any], rows: int) -> list[str]:
    """`file: field: why` for every field of one shard that is missing, of the wrong dtype, shape or range."""
    L, K, R = meta["max_length"], meta["top_k"], meta["random_negatives"]  # noqa: N806 - the format's symbols
    sizes = {"N": rows, "L": L, "L-1": L - 1, "K": K, "R": R}
    problems = []
    for name in required_fields(R, bool(meta["packing"])):
        dtype, symbols = FIELDS[name]
        if name not in tensors:
            problems.append(f"{path}: {name}: missing")
            continue
        t, want = tensors[name], tuple(sizes[s] for s in symbols)
        if t.dtype != dtype:
            problems.append(
                f"{path}: {name}: dtype {str(t.dtype).removeprefix('torch.')}, expected {DTYPE_NAMES[dtype]}"
            )
        elif tuple(t.shape) != want:
            shape = " x ".join(f"{s}={n}" for s, n in zip(symbols, want, strict=True))
            problems.append(f"{path}: {name}: shape {list(t.shape)}, expected [{shape}]")
        elif (
            name in ("topk_idx", "rand_idx", "input_ids")
            and t.numel()
            and (t.min() < 0 or t.max() >= meta["vocab_size"])
        ):
            problems.append(f"{path}: {name}: ids outside [0, vocab_size {meta['vocab_size']})")
        elif name in ("topk_logits", "rand_logits") and not bool(torch.isfinite(t).all()):
            problems.append(f"{path}: {name}: non-finite logits")
        elif name == "fuse_split" and t.numel() and (t.min() < 0 or t.max() >= L):
            problems.append(f"{path}: {name}: splits outside [0, max_length {L})")
    return problems
