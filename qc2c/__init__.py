"""qc2c: Quantized Cache-to-Cache — compress the sharer KV message of C2C and measure what it costs.

Public API: `C2CModel`, `load_fuser`, `load_pair` and the plug-in families `SCHEMES`, `SELECTORS`,
`ALLOCATORS`, `DATASETS`, plus the wire `Message`. They are resolved on first access, so that importing a
light module (`qc2c.plugins`, `qc2c.kv.quant`) does not import transformers.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qc2c.c2c import C2CModel
    from qc2c.fuser.sources import load_fuser
    from qc2c.models.pair import load_pair

_EXPORTS = {
    "C2CModel": "qc2c.c2c",
    "load_fuser": "qc2c.fuser.sources",
    "load_pair": "qc2c.models.pair",
    "SCHEMES": "qc2c.kv.quant",
    "SELECTORS": "qc2c.kv.selection",
    "ALLOCATORS": "qc2c.kv.budget",
    "DATASETS": "qc2c.eval.datasets",
    "Message": "qc2c.kv.wire",
}
__all__ = ["C2CModel", "load_fuser", "load_pair", "SCHEMES", "SELECTORS", "ALLOCATORS", "DATASETS", "Message"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'qc2c' has no attribute {name!r}")
