"""Typed settings of the latent wire (`train.latent` of a kind: train manifest, `eval.latent` of a kind: eval one).

Defaults are the demo world's: a wire of 8 vectors of width 64 that two CPU cores train in minutes. Sweeps
(`manifests/sweeps/`) vary `latent_len` and `d_z` through the ordinary grid.
"""

from __future__ import annotations

from dataclasses import dataclass

STAGES = ("a", "b")
ADAPTERS = ("linear", "mlp")
OBJECTIVES = ("tf", "first", "kCE", "KD", "gist")  # the loss names diagnostics.jsonl reports per model
DATA_SOURCES = ("demo",)  # train.latent.data: the demo world's QA view (qc2c.latent.data)


@dataclass(frozen=True)
class LatentConfig:
    """`train.latent`: what the wire is, how it is decoded and which objectives train it.

    stage a: latent fit, alternating steps (even: the latent objectives tf/first/kCE; odd: KD from the
    text-prompted decoder); stage b: every objective every step, continuing a stage-a run (`from_run`).
    """

    stage: str = "a"
    from_run: str | None = None  # stage b: the stage-a (or earlier stage-b) run whose final/ it continues
    data: str = "demo"  # the demo world's QA split (qc2c.latent.data)
    latent_len: int = 8  # M: vectors on the wire
    d_z: int = 64  # width of each wire vector
    encoder_layers: int = 2
    encoder_heads: int = 4
    adapter: str = "linear"  # linear | mlp, each with a learned scale
    deep_prefix: bool = False  # per-layer K/V prefixes from the wire (P-Tuning v2 style)
    deep_prefix_len: int = 4
    gist: bool = False  # a head per decoder that reconstructs the input from the wire
    gist_weight: float = 0.1
    tf_weight: float = 1.0  # teacher-forced CE over the whole answer
    first_weight: float = 1.0  # CE of the answer's first token
    kce_weight: float = 0.5  # CE over the answer's first K tokens
    kd_weight: float = 0.1  # KL(text-prompted decoder || latent-prompted decoder) over the answer
    k_start: int = 1  # K of kCE grows linearly from k_start to k_end over the run
    k_end: int = 3
    keep_start: float = 0.7  # latent dropout: each wire vector kept with this probability, rising to keep_end
    keep_end: float = 1.0
    log_every: int = 1  # diagnostics.jsonl: one line every log_every optimizer steps


@dataclass(frozen=True)
class LatentEvalConfig:
    """`eval.latent`: the trained wire (from_run or path) and how latent_int8 / latent_int4 quantize it."""

    from_run: str | None = None
    path: str | None = None
    group_size: int | None = None  # per wire vector: None = one scale (and min) per vector
    max_new_tokens: int = 6  # greedy answer for EM / F1 and first-token acceptance
