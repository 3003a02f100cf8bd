"""The uncompressed C2C message (settings `c2c_fp16`, `c2c_placebo`) as a `MessagePath`.

The sharer's KV is fused exactly as it is (nothing is encoded or decoded, so the numbers equal fusing with
no message path at all), but each row's record carries the bytes that message takes on the wire, counted
like any other message (`qc2c.kv.wire.closed_form_nbytes`): the fp16 codes of every sharer layer the fuser
reads, at the sharer's real geometry (KV heads × head_dim), for the row's own fused tokens, plus the index
and header bytes of a `Message`. That puts uncompressed C2C on the bytes axis, and compression ratios are
this size divided by a message's size (`nbytes_fp16_message` in the codec's records is the same number).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from qc2c.config import QuantConfig
from qc2c.fuser.seam import SectionKV, Transmitted
from qc2c.kv.quant import build_kv_schemes
from qc2c.kv.wire import closed_form_nbytes

REFERENCE_SCHEME = "fp16"


def fp16_message_nbytes(section: SectionKV) -> list[dict[str, int]]:
    """Per row: bytes by part (payload, scales, indices, header) of the fp16 message of the row's fused tokens.

    Only the sharer layers some receiver layer reads (`layer_map` values) are sent; the count uses the row's
    own token count (never the batch width), so it does not depend on how rows were batched.
    """
    key, value = build_kv_schemes(REFERENCE_SCHEME, QuantConfig())
    _, n_heads, _, head_dim = section.sharer[0][0].shape
    n_read = len(set(section.layer_map.values()))
    out = []
    for n in section.fuse_mask.bool().sum(1).tolist():
        parts = closed_form_nbytes(
            n_tokens=int(n),
            n_layers=len(section.sharer),
            n_heads=n_heads,
            head_dim=head_dim,
            set_counts=[int(n)],
            segments=[(key, value, n_read, 0)],
        )
        out.append(parts)
    return out


@dataclass(frozen=True)
class Uncompressed:
    """Implements `qc2c.fuser.seam.MessagePath`: fuse the sharer KV as is, record the fp16 message size."""

    needs_sharer_attention: ClassVar[bool] = False

    def transmit(self, section: SectionKV) -> Transmitted:
        records: list[dict[str, Any]] = []
        for n, parts in zip(section.fuse_mask.bool().sum(1).tolist(), fp16_message_nbytes(section)):
            total = sum(parts.values())
            records.append(
                {
                    "nbytes": total,
                    "nbytes_breakdown": parts,
                    "nbytes_closed_form": total,
                    "n_tokens_sent": int(n),
                    "n_tokens": int(n),
                    "nbytes_fp16_message": total,
                }
            )
        return Transmitted(sharer=section.sharer, kept=section.fuse_mask, records=records)
