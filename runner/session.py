"""Load what a run scores with: the pair, the fuser (checked against the pair first), the codec, and one
`SettingScorer` per setting. Kept apart from the loop in runner/scoring_loop.py so `plan` can run the same
preflight without scoring anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from qc2c.dtypes import DTYPES
from qc2c.errors import ProblemsError
from qc2c.eval.score import SettingScorer
from qc2c.eval.settings import build_scorers
from runner.schema import Manifest

if TYPE_CHECKING:
    from qc2c.fuser.checkpoint import Fuser
    from qc2c.kv.codec import Codec


class PreflightError(ProblemsError):
    """The pair and the fuser cannot work together (or cannot be loaded); `.problems` lists why."""


@dataclass
class Session:
    """Everything loaded for a run. `info` feeds provenance.json and the results file."""

    scorers: dict[str, SettingScorer]
    device: str
    info: dict[str, Any] = field(default_factory=dict)
    fuser: Fuser | None = None
    codec: Codec | None = None
    pair: Any = None  # the loaded pair (and its token aligner): a sweep group builds its other points on them
    aligner: Any = None


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise PreflightError([f"runtime.device: {requested!r} requested but no CUDA device is visible"])
    return requested


def load_session(manifest: Manifest, fuser_ref: Any, settings: list[str], *, latent_dir: str | None = None) -> Session:
    """Load models, fuser and codec for `settings`; preflight problems raise before any model runs a token."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars would interleave with the run's own output

    device = resolve_device(manifest.runtime.device)
    dtype = DTYPES[manifest.runtime.dtype]
    torch.manual_seed(manifest.runtime.seed)
    fuser = preflight(manifest, fuser_ref)  # before any weights are loaded
    pair = load_manifest_pair(manifest, dtype=dtype, device=device)
    info: dict[str, Any] = {"models": _model_info(pair)}
    codec = None
    if fuser is not None:
        fuser = fuser.to(device=device, dtype=dtype)  # as upstream: projectors take the receiver's dtype
        info["fuser"] = {"source": fuser.source, "sha256": fuser.sha256, "root": str(fuser.root), "loaded": True}
    if "compressed" in settings:
        codec = manifest_codec(manifest, pair, fuser)
    aligner = None
    if manifest.pair.alignment != "none":
        from qc2c.models.align import TokenAligner

        aligner = TokenAligner(pair.receiver_tokenizer, pair.sharer_tokenizer, manifest.pair.alignment)
    latent = _latent(manifest, latent_dir, info)
    ev = manifest.eval.config()
    scorers = build_scorers(
        settings,
        pair,
        fuser,
        codec,
        protocol=ev.protocol,
        max_new_tokens=ev.max_new_tokens,
        device=device,
        aligner=aligner,
        seed=manifest.runtime.seed,
        text_max_new_tokens=ev.text.max_new_tokens,
        latent=latent,
    )
    return Session(scorers, device, info, fuser, codec, pair, aligner)


def _latent(manifest: Manifest, latent_dir: str | None, info: dict[str, Any]) -> Any:
    """The latent wire of eval.latent (qc2c.latent.scorer), recorded in `info["latent"]`; None without one."""
    cfg = manifest.eval.latent
    if cfg is None:
        return None
    if latent_dir is None:
        raise PreflightError(["eval.latent: the latent wire was not resolved (run through `runner run`)"])
    from qc2c.latent.checkpoint import LatentCheckpointError
    from qc2c.latent.scorer import load_evaluator

    try:
        evaluator = load_evaluator(
            latent_dir, manifest.pair.receiver, group_size=cfg.group_size, max_new_tokens=cfg.max_new_tokens
        )
    except LatentCheckpointError as exc:
        raise PreflightError([f"eval.latent: {exc}"]) from None
    source = f"from_run:{cfg.from_run}" if cfg.from_run else cfg.path
    info["latent"] = {"source": source, "root": latent_dir, "sha256": evaluator.loaded.sha256}
    return evaluator


def load_manifest_pair(manifest: Manifest, *, dtype: torch.dtype, device: Any) -> Any:
    """The manifest's pair (both models and tokenizers) at its revisions, on `device` in `dtype`."""
    from qc2c.models.pair import load_pair

    p = manifest.pair
    return load_pair(
        p.receiver,
        p.sharer,
        receiver_revision=p.receiver_revision,
        sharer_revision=p.sharer_revision,
        dtype=dtype,
        device=device,
    )


def manifest_codec(manifest: Manifest, pair: Any, fuser: Fuser) -> Codec:
    """The manifest's kv settings as the codec of a loaded pair and fuser."""
    from qc2c.kv.codec import build_codec

    return build_codec(
        manifest.kv.config(),
        layer_map=dict(fuser.layer_map),
        n_sharer_layers=pair.sharer.config.num_hidden_layers,
        n_receiver_layers=pair.receiver.config.num_hidden_layers,
    )


def grid_point_session(session: Session, manifest: Manifest) -> Session:
    """The session of another grid point of a sweep group (runner.sweep_exec): the same pair, fuser and
    baseline scorers, and a `compressed` scorer of its own over the manifest's codec. Only the codec differs
    between the points of a group, so the point scores exactly what it would score loaded alone."""
    codec = manifest_codec(manifest, session.pair, session.fuser)
    ev = manifest.eval.config()
    own = build_scorers(
        ["compressed"],
        session.pair,
        session.fuser,
        codec,
        protocol=ev.protocol,
        max_new_tokens=ev.max_new_tokens,
        device=session.device,
        aligner=session.aligner,
        seed=manifest.runtime.seed,
        text_max_new_tokens=ev.text.max_new_tokens,
    )
    scorers = {name: own.get(name, scorer) for name, scorer in session.scorers.items()}
    return Session(scorers, session.device, dict(session.info), session.fuser, codec, session.pair, session.aligner)


def preflight(manifest: Manifest, fuser_ref: Any) -> Fuser | None:
    """Check what a run needs WITHOUT loading weights: both models resolvable here (HF cache, folder or tiny
    zoo; offline misses name the prefetch command), and the fuser loaded strictly and checked against the
    pair's configs and tokenizers. Returns the fuser (None without one); raises PreflightError."""
    from transformers import AutoConfig, AutoTokenizer

    from qc2c.fuser.checkpoint import FuserError
    from qc2c.fuser.preflight import check_compatible
    from qc2c.fuser.sources import load_fuser
    from qc2c.models.pair import ModelNotAvailable, resolve_model_dir

    p = manifest.pair
    problems, dirs = [], {}
    for role, ref, rev in (("receiver", p.receiver, p.receiver_revision), ("sharer", p.sharer, p.sharer_revision)):
        try:
            dirs[role] = resolve_model_dir(ref, rev)
        except ModelNotAvailable as exc:
            problems.append(f"pair.{role}: {exc}")
    if problems:
        raise PreflightError(problems)
    if fuser_ref is None:
        return None
    try:
        fuser = load_fuser(fuser_ref, sha256=manifest.fuser.sha256)
    except FuserError as exc:
        raise PreflightError([f"fuser: {exc}"]) from None
    configs = [AutoConfig.from_pretrained(dirs[r]) for r in ("receiver", "sharer")]
    tokenizers = tuple(AutoTokenizer.from_pretrained(dirs[r]) for r in ("receiver", "sharer"))
    problems = check_compatible(
        fuser,
        *configs,
        tokenizers,
        alignment=None if p.alignment == "none" else p.alignment,
        names=(p.receiver, p.sharer),
    )
    if problems:
        raise PreflightError([f"fuser: {problem}" for problem in problems])
    return fuser


def _model_info(pair: Any) -> dict[str, Any]:
    from runner.provenance import config_sha256

    out = {}
    for role in ("receiver", "sharer"):
        model = getattr(pair, role)
        path = getattr(pair, f"{role}_path", None)
        out[role] = {
            "ref": getattr(pair, f"{role}_ref", None),
            "path": str(path) if path else None,
            "revision": getattr(pair, f"{role}_revision", None),
            "config_sha256": config_sha256(path),
            "class": type(model).__name__,
            "n_layers": model.config.num_hidden_layers,
            "attn_implementation": model.config._attn_implementation,
        }
    return out
