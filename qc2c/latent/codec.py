"""The latent wire as real bytes: one row's (M, d_z) wire through one of qc2c's quantization schemes.

Layout of `WireMessage.to_bytes()` (little-endian):
  header  "QC2Z" u8 version | u16 M | u16 d_z | u8 len + scheme name | the scheme's half descriptor
          (u8 axis | u32 group_size | u8 mode | u8 scale dtype: the same 7 bytes a KV message segment uses)
  body    payload (packed codes) | scales | offsets (one per group, as the scheme stores them)
The scheme groups along `token` (each wire vector is a token: one scale and min per vector, or per
`group_size` channels). `latent` sends the wire at fp16, `latent_int8` / `latent_int4` at int8 / int4 (kivi
convention, fp16 scales). `nbytes` is `len(to_bytes())`; `from_bytes` needs no lengths.
The half descriptor is read and written by the KV message's own functions (`qc2c.kv.wire`), so the two
formats cannot drift apart.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import torch
from torch import Tensor

from qc2c.kv.quant import Encoded, Scheme, build_scheme
from qc2c.kv.wire import WireError, _half, _read_encoded, _read_half

MAGIC, VERSION = b"QC2Z", 1
_HEAD = struct.Struct("<4sBHH")
WIRE_SCHEMES = {"latent": "fp16", "latent_int8": "int8", "latent_int4": "int4"}


@dataclass
class WireMessage:
    """One row's encoded wire."""

    scheme: Scheme
    encoded: Encoded
    latent_len: int
    d_z: int

    def header(self) -> bytes:
        name = self.scheme.name.encode()
        return _HEAD.pack(MAGIC, VERSION, self.latent_len, self.d_z) + bytes([len(name)]) + name + _half(self.scheme)

    def breakdown(self) -> dict[str, int]:
        """Bytes by part, as KV messages report them (a wire sends no token indices)."""
        e = self.encoded
        return {
            "payload": e.payload.numel(),
            "scales": e.scales.numel() + e.zeros.numel(),
            "indices": 0,
            "header": len(self.header()),
        }

    @property
    def nbytes(self) -> int:
        return sum(self.breakdown().values())

    def to_bytes(self) -> bytes:
        e = self.encoded
        body = b"".join(t.contiguous().cpu().numpy().tobytes() for t in (e.payload, e.scales, e.zeros))
        return self.header() + body

    @classmethod
    def from_bytes(cls, data: bytes) -> WireMessage:
        if len(data) < _HEAD.size + 1 or data[:4] != MAGIC:
            raise WireError("not a qc2c latent wire message (magic 'QC2Z' missing)")
        _, version, m, d_z = _HEAD.unpack_from(data, 0)
        if version != VERSION:
            raise WireError(f"unsupported latent wire version {version} (this qc2c reads {VERSION})")
        pos = _HEAD.size
        n = data[pos]
        name = bytes(data[pos + 1 : pos + 1 + n]).decode()
        scheme, pos = _read_half(name, memoryview(data), pos + 1 + n)
        buf = torch.frombuffer(bytearray(data[pos:]), dtype=torch.uint8)
        cursor = [0]

        def take(k: int) -> Tensor:
            if cursor[0] + k > buf.numel():
                raise WireError("latent wire message is truncated")
            out = buf[cursor[0] : cursor[0] + k]
            cursor[0] += k
            return out

        encoded = _read_encoded(scheme, (1, 1, m, d_z), take)
        if cursor[0] != buf.numel():
            raise WireError(f"latent wire message has {buf.numel() - cursor[0]} trailing bytes")
        return cls(scheme, encoded, m, d_z)

    def decode(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The wire (M, d_z) as the receiver reconstructs it."""
        return self.scheme.decode(self.encoded, dtype).reshape(self.latent_len, self.d_z)


def wire_scheme(setting: str, group_size: int | None = None) -> Scheme:
    """The scheme a latent setting sends its wire with (fp16 for `latent`)."""
    if setting not in WIRE_SCHEMES:
        raise ValueError(f"unknown latent wire setting {setting!r} (allowed: {', '.join(WIRE_SCHEMES)})")
    return build_scheme(WIRE_SCHEMES[setting], axis="token", group_size=group_size)


def encode_wire(wire: Tensor, scheme: Scheme) -> list[WireMessage]:
    """One message per row of `wire` (B, M, d_z); each row is encoded on its own (its bytes never depend on
    the batch)."""
    b, m, d = wire.shape
    out = []
    for r in range(b):
        enc = scheme.encode(wire[r : r + 1].detach().float().reshape(1, 1, 1, m, d).cpu())
        out.append(WireMessage(scheme, enc, m, d))
    return out


def through_wire(wire: Tensor, scheme: Scheme) -> tuple[Tensor, list[WireMessage]]:
    """(the wire each receiver decodes from the packed bytes, (B, M, d_z); the messages): what a latent
    setting reads is what went through `to_bytes` / `from_bytes`, not an in-memory shortcut."""
    messages = [WireMessage.from_bytes(msg.to_bytes()) for msg in encode_wire(wire, scheme)]
    decoded = torch.stack([msg.decode(torch.float32) for msg in messages]).to(wire.device, wire.dtype)
    return decoded, messages
