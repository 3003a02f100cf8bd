"""Pair <-> fuser compatibility, checked before any model runs: a list of problems, each saying what to do.

A fuser only fits the pair it was trained for: one projector per receiver layer, projector widths equal
to the KV heads x head_dim of both models, sharer layers that exist, the tokenizer handling it was trained
with, and (recorded in its config.json) the same receiver and sharer. Upstream checks none of this; a
mismatch there either crashes mid-run or, worse, runs.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from qc2c.errors import ProblemsError
from qc2c.fuser.checkpoint import Fuser

TRAIN_HINT = "train one with manifests/m7_fuser_train.yaml"


class IncompatibleFuser(ProblemsError):
    """The fuser does not fit the pair; `.problems` lists why, each saying what to do."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(problems, f"fuser {source} does not fit this pair:\n  - " + "\n  - ".join(problems))


def kv_shape(config: Any) -> tuple[int, int, int]:
    """(layers, KV heads, head_dim) of a HF text config (head_dim falls back to hidden / attention heads)."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers, heads, head_dim


def model_key(ref: str | None) -> str:
    """Comparable model name: tiny refs as is, HF ids and folders by their last path component, lowercased."""
    if not ref:
        return ""
    ref = str(ref)
    if ref.startswith(("tiny:", "demo:")):
        return ref.lower()
    return PurePosixPath(ref.replace("\\", "/").rstrip("/")).name.lower()


def check_compatible(
    fuser: Fuser,
    receiver_config: Any,
    sharer_config: Any,
    tokenizers: tuple[Any, Any] | None = None,
    *,
    alignment: str | None = None,
    names: tuple[str, str] | None = None,
) -> list[str]:
    """Problems (empty when the fuser fits). `names` are the pair refs (default: the configs' _name_or_path)."""
    problems: list[str] = []
    r_layers, r_heads, r_dim = kv_shape(receiver_config)
    s_layers, s_heads, s_dim = kv_shape(sharer_config)
    if fuser.n_receiver_layers != r_layers:
        problems.append(
            f"layer count: the fuser maps {fuser.n_receiver_layers} receiver layers, the receiver has {r_layers}; "
            f"{TRAIN_HINT}"
        )
    bad_src = sorted({s for s in fuser.layer_map.values() if not 0 <= s < s_layers})
    if bad_src:
        problems.append(f"layer map: sharer layers {bad_src} do not exist (the sharer has {s_layers}); {TRAIN_HINT}")
    seen: set[str] = set()
    for i, args in enumerate(fuser.init_args):
        for what, key_h, key_d, want_h, want_d in (
            ("receiver", "target_num_heads", "target_dim", r_heads, r_dim),
            ("sharer", "source_num_heads", "source_dim", s_heads, s_dim),
        ):
            got_h, got_d = args.get(key_h, 1), args.get(key_d)
            if got_h != want_h and f"{what}-heads" not in seen:
                seen.add(f"{what}-heads")
                problems.append(
                    f"KV heads: projector {i} expects {got_h} {what} KV heads, the {what} has {want_h}; {TRAIN_HINT}"
                )
            if got_d != want_d and f"{what}-dim" not in seen:
                seen.add(f"{what}-dim")
                problems.append(
                    f"head_dim: projector {i} expects {what} head_dim {got_d}, the {what} has {want_d}; {TRAIN_HINT}"
                )
    problems += _tokenizer_problems(fuser, tokenizers, alignment)
    problems += _name_problems(fuser, receiver_config, sharer_config, names)
    return problems


def _tokenizer_problems(fuser: Fuser, tokenizers: tuple[Any, Any] | None, alignment: str | None) -> list[str]:
    out = []
    trained_aligned = fuser.model_field("is_do_alignment")
    if tokenizers is not None and alignment in (None, "none"):
        r_tok, s_tok = tokenizers
        if r_tok.get_vocab() != s_tok.get_vocab():
            out.append(
                "tokenizer: receiver and sharer tokenizers differ and pair.alignment is none (the sharer would read "
                "receiver token ids); set pair.alignment: first or longest"
            )
    if trained_aligned is True and alignment in (None, "none"):
        strategy = fuser.model_field("alignment_strategy") or "first"
        out.append(
            f"alignment: this fuser was trained with token alignment ({strategy}); set pair.alignment: {strategy}"
        )
    if trained_aligned is False and alignment not in (None, "none"):
        out.append(
            f"alignment: this fuser was trained without token alignment; set pair.alignment: none (not {alignment})"
        )
    return out


def _name_problems(fuser: Fuser, receiver_config: Any, sharer_config: Any, names: tuple[str, str] | None) -> list[str]:
    refs = names or (getattr(receiver_config, "_name_or_path", ""), getattr(sharer_config, "_name_or_path", ""))
    out = []
    for role, field, ref in (("receiver", "base_model", refs[0]), ("sharer", "teacher_model", refs[1])):
        trained = fuser.model_field(field)
        if isinstance(trained, dict):  # several sharers: name -> path; qc2c uses one
            trained = next(iter(trained.values()), None)
        if trained and ref and model_key(trained) != model_key(ref):
            out.append(
                f"model: this fuser was trained for {role} {trained}, the pair's {role} is {ref}; use a fuser trained "
                f"for this pair or {TRAIN_HINT}"
            )
    return out


def ensure_compatible(
    fuser: Fuser,
    receiver_config: Any,
    sharer_config: Any,
    tokenizers: tuple[Any, Any] | None = None,
    *,
    alignment: str | None = None,
    names: tuple[str, str] | None = None,
) -> None:
    """check_compatible, raising IncompatibleFuser listing every problem."""
    problems = check_compatible(fuser, receiver_config, sharer_config, tokenizers, alignment=alignment, names=names)
    if problems:
        raise IncompatibleFuser(fuser.source, problems)
