"""`StageClock`: seconds spent inside chosen modules' forward calls, for per-stage timings of a prefill."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


class StageClock:
    """Seconds spent inside `module.forward` calls, via forward hooks (removed on exit).

    Lets the C2C prefill report sharer / receiver / fusion time separately without instrumenting the fused
    forward itself. On CUDA each hook synchronizes, so the numbers are wall time of finished kernels.
    """

    def __init__(self, modules: dict[str, Any], device: Any) -> None:
        self.modules, self.seconds = modules, dict.fromkeys(modules, 0.0)
        self._sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
        self._handles: list[Any] = []
        self._t0: dict[str, float] = {}

    def __enter__(self) -> StageClock:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._start(name)))
            self._handles.append(module.register_forward_hook(self._stop(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()

    def _start(self, name: str) -> Callable[..., None]:
        def hook(_module: Any, _args: Any) -> None:
            self._sync()
            self._t0[name] = time.perf_counter()

        return hook

    def _stop(self, name: str) -> Callable[..., None]:
        def hook(_module: Any, _args: Any, _out: Any) -> None:
            self._sync()
            self.seconds[name] += time.perf_counter() - self._t0[name]

        return hook
