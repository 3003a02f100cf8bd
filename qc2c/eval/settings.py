"""The evaluated settings (names as in the manifest, results, golden rows and plots) and their scorers.

What each setting sends from the sharer to the receiver decides how it is compared:

* `receiver`, `sharer`: one model alone; nothing is sent, no fuser (`ALONE`);
* `compressed`: the manifest's kv codec as the message path (selection → quantization → packed bytes);
* `c2c_fp16`: uncompressed C2C; its fp16 message size is counted like any message, so it is a point on the
  bytes axis and compression ratios are relative to it;
* `c2c_placebo`: the c2c_fp16 message of another item (a fixed derangement, `qc2c.eval.placebo`): the control
  that shows whether a gain comes from the message's content;
* `text_answer`, `text_analysis`: text-to-text: the sharer writes its answer, or a short analysis of the
  question, and the receiver reads that text before the question (`qc2c.eval.text`); bytes are the UTF-8
  bytes of the text, and no fuser is needed (`TEXT`);
* `latent`, `latent_int8`, `latent_int4`: the receiver decodes from a trained latent wire (fp16, int8, int4
  packed bytes); `latent_text`: the same receiver reading the wire's source as text; `latent_placebo`:
  another item's wire (`qc2c.latent.scorer`; the manifest's `eval.latent` names the wire; no fuser).

Every setting is scored on the same items in the same batch step, so all comparisons are paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from qc2c.eval.aligned import AlignedScorer
from qc2c.eval.placebo import PlaceboScorer
from qc2c.eval.prefill import c2c_prefill, plain_prefill
from qc2c.eval.score import SettingScorer
from qc2c.eval.text import TextScorer
from qc2c.kv.uncompressed import Uncompressed

COMPRESSED = "compressed"
ALONE = ("receiver", "sharer")  # one model alone: no message, no fuser
KV_BASELINES = ("c2c_fp16", "c2c_placebo")  # uncompressed sharer KV fused by the fuser
TEXT = ("text_answer", "text_analysis")  # the sharer's text read by the receiver: no fuser
LATENT = ("latent", "latent_int8", "latent_int4", "latent_text", "latent_placebo")  # qc2c.latent.scorer
BASELINES = ALONE + KV_BASELINES + TEXT + LATENT
NO_FUSER = ALONE + TEXT + LATENT


def setting_problems(settings: Sequence[str], pair: Any) -> list[str]:
    """Why these settings cannot run on this pair (empty when they can); `pair.alignment` is none|first|longest."""
    if "c2c_placebo" in settings and pair.alignment != "none":
        return [f"c2c_placebo is not supported with pair.alignment {pair.alignment!r} (allowed only with: none)"]
    return []


def build_scorers(
    settings: Sequence[str],
    pair: Any,
    fuser: Any,
    codec: Any | None,
    *,
    protocol: str,
    max_new_tokens: int,
    device: str | torch.device,
    aligner: Any | None = None,
    seed: int = 0,
    text_max_new_tokens: int = 64,
    latent: Any | None = None,
) -> dict[str, SettingScorer]:
    """One scorer per setting of a loaded pair: the runner and the eval benchmark build them here, so the
    benchmark times exactly what a run scores. With `aligner`, the C2C settings take the documented per-row
    path (`AlignedScorer`); `c2c_placebo` is refused there (see qc2c.eval.placebo). Text settings need no
    alignment: the receiver re-tokenizes the sharer's text."""
    args = (protocol, max_new_tokens, device)
    scorers: dict[str, SettingScorer] = {}
    for name in settings:
        if name == "receiver":
            scorers[name] = SettingScorer(
                name, pair.receiver_tokenizer, plain_prefill(pair.receiver), pair.receiver, *args
            )
        elif name == "sharer":
            scorers[name] = SettingScorer(
                name, pair.sharer_tokenizer, plain_prefill(pair.sharer, "sharer_prefill_s"), pair.sharer, *args
            )
        elif name in (COMPRESSED, *KV_BASELINES):
            path = codec if name == COMPRESSED else Uncompressed()
            prefill = c2c_prefill(pair.receiver, pair.sharer, fuser, path)
            if name == "c2c_placebo":
                if aligner is not None:
                    raise ValueError("c2c_placebo is not supported for aligned pairs (pair.alignment must be none)")
                scorers[name] = PlaceboScorer(name, pair.receiver_tokenizer, prefill, pair.receiver, *args, seed=seed)
            elif aligner is not None:
                scorers[name] = AlignedScorer(
                    name, pair.receiver_tokenizer, prefill, pair.receiver, *args, aligner=aligner
                )
            else:
                scorers[name] = SettingScorer(name, pair.receiver_tokenizer, prefill, pair.receiver, *args)
        elif name in TEXT:
            scorers[name] = TextScorer(
                name,
                pair.receiver_tokenizer,
                plain_prefill(pair.receiver),
                pair.receiver,
                *args,
                sharer=pair.sharer,
                sharer_tokenizer=pair.sharer_tokenizer,
                text_max_new_tokens=text_max_new_tokens,
            )
        elif name in LATENT:
            if latent is None:
                raise ValueError(f"setting {name} needs a trained latent wire (eval.latent)")
            scorers[name] = latent.scorer(name, pair.receiver, pair.receiver_tokenizer, device=device, seed=seed)
        else:
            raise ValueError(f"unknown setting {name!r} (allowed: {COMPRESSED}, {', '.join(BASELINES)})")
    return scorers
