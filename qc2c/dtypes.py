"""The torch dtypes qc2c accepts by name: model and training dtypes, and those a quantization scale may take."""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# scale dtypes of the quantization schemes; the order is the wire format's scale id (0 float16, 1 float32)
SCALE_DTYPES: dict[str, torch.dtype] = {name: DTYPES[name] for name in ("float16", "float32")}
