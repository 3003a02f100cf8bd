"""Load the receiver and the sharer (+ tokenizers) from the HF cache, a local folder or the tiny zoo.

Offline first: an HF id is looked up in the local HF cache; if it is not there and HF_HUB_OFFLINE=1, the
error says how to prefetch it (`python -m qc2c.prefetch models <id>`) before any model runs. Revisions are
pinned (branch, tag or commit) and recorded. Attention is SDPA on every device unless told otherwise: on CPU
it reproduces the (eager-attention) reference outputs within the 1e-5 conformance tolerance, as eager does
(tests/qc2c/test_conformance.py runs both), and it makes batched scoring about 1.3x faster there, because it
never materializes the (B, H, L, L) probabilities. The choice is recorded with each model in provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel


class ModelNotAvailable(RuntimeError):
    """A model that cannot be loaded here (not cached offline, no such folder); the message says what to do."""


@dataclass
class Pair:
    """Receiver + sharer (eval mode) with their tokenizers and where they came from."""

    receiver: PreTrainedModel
    sharer: PreTrainedModel
    receiver_tokenizer: Any
    sharer_tokenizer: Any
    receiver_ref: str
    sharer_ref: str
    receiver_path: Path
    sharer_path: Path
    receiver_revision: str = "main"
    sharer_revision: str = "main"

    @property
    def same_tokenizer(self) -> bool:
        return same_vocabulary(self.receiver_tokenizer, self.sharer_tokenizer)


def same_vocabulary(a: Any, b: Any) -> bool:
    """True when both tokenizers map every string to the same ids (what feeding receiver ids to the sharer needs)."""
    return a.get_vocab() == b.get_vocab()


def resolve_model_dir(ref: str, revision: str = "main") -> Path:
    """tiny:<name> / demo:<name> -> the tiny / demo zoo folder; an existing folder -> itself; an HF id -> its cache snapshot."""
    if ref.startswith("geom:"):
        raise ModelNotAvailable(
            f"{ref}: geom: models have no files and no tokenizer (random weights at a published model's shapes); "
            "they run in `python -m qc2c.bench gpu` (qc2c.models.geom.load_geom_pair), not in manifests"
        )
    if ref.startswith("tiny:"):
        from qc2c.models.tiny import resolve_tiny

        return Path(resolve_tiny(ref))
    if ref.startswith("demo:"):
        from qc2c.demo.zoo import DemoZooError, resolve_demo_model

        try:
            return resolve_demo_model(ref)
        except DemoZooError as err:
            raise ModelNotAvailable(str(err)) from None
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotAvailable(f"{path}: not a Hugging Face model folder (no config.json)")
        return path
    if ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        raise ModelNotAvailable(
            f"{ref}: no such model folder, and not an HF repo id (owner/name) tiny:<name> or demo:<name>"
        )
    return _hub_snapshot(ref, revision)


def _hub_snapshot(repo: str, revision: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_OFFLINE

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
    hint = f"prefetch it on a machine with access: python -m qc2c.prefetch models {repo} --revision {revision}"
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns, local_files_only=True))
    except Exception as cached_miss:  # noqa: BLE001 - every hub error means "not in the cache"
        if HF_HUB_OFFLINE:
            raise ModelNotAvailable(
                f"{repo}@{revision}: not in the HF cache and HF_HUB_OFFLINE=1 ({type(cached_miss).__name__}); {hint}"
            ) from None
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns))
    except Exception as e:  # noqa: BLE001
        raise ModelNotAvailable(
            f"{repo}@{revision}: could not be downloaded ({type(e).__name__}: {e}); {hint}"
        ) from None


DEFAULT_ATTENTION = "sdpa"


def load_model(
    path: Path, *, dtype: torch.dtype, device: str | torch.device, attn_implementation: str | None
) -> PreTrainedModel:
    attn = attn_implementation or DEFAULT_ATTENTION
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn)
    return model.to(device).eval()


def load_pair(
    receiver: str,
    sharer: str,
    *,
    receiver_revision: str = "main",
    sharer_revision: str = "main",
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    attn_implementation: str | None = None,
) -> Pair:
    """Both models and tokenizers; refs are HF ids, local folders or tiny:<name> (see module docstring)."""
    r_path = resolve_model_dir(receiver, receiver_revision)
    s_path = resolve_model_dir(sharer, sharer_revision)
    return Pair(
        receiver=load_model(r_path, dtype=dtype, device=device, attn_implementation=attn_implementation),
        sharer=load_model(s_path, dtype=dtype, device=device, attn_implementation=attn_implementation),
        receiver_tokenizer=AutoTokenizer.from_pretrained(r_path),
        sharer_tokenizer=AutoTokenizer.from_pretrained(s_path),
        receiver_ref=receiver,
        sharer_ref=sharer,
        receiver_path=r_path,
        sharer_path=s_path,
        receiver_revision=receiver_revision,
        sharer_revision=sharer_revision,
    )
