"""What the kernel-vs-eager tests share: the CPU kernels built once per test module (skipped where they
cannot build), a switch into one path for one call, and the check that both paths refuse bad input alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import torch

from qc2c.kv.kernels import cpu as kernels
from qc2c.kv.quant import NonFiniteInput

T = TypeVar("T")

# in the order hypothesis samples from (it differs from qc2c.dtypes.DTYPES; the order picks the examples)
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@pytest.fixture(scope="module", autouse=True)
def built() -> Iterator[None]:
    """Imported by a test module, applies to all of its tests: the kernels load once, or the module skips."""
    try:
        kernels.load()
    except kernels.KernelUnavailable as exc:
        pytest.skip(str(exc))
    yield
    kernels.set_mode(None)


def in_mode(mode: str, fn: Callable[[], T]) -> T:
    """`fn()` with the kernels in `mode` ("eager" | "cpu"), back to the default afterwards."""
    kernels.set_mode(mode)
    try:
        return fn()
    finally:
        kernels.set_mode(None)


def assert_refused_alike(scheme, x: torch.Tensor) -> None:
    """Both paths refuse `x` with NonFiniteInput, in the same words."""
    messages = []
    for mode in ("eager", "cpu"):
        with pytest.raises(NonFiniteInput) as info:
            in_mode(mode, lambda: scheme.encode(x))
        messages.append(str(info.value))
    assert messages[0] == messages[1]
