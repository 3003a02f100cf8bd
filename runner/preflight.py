"""What `runner plan` checks before a run of any kind, every problem at once: the device, both models, the
fuser (the checkpoint alone when the models are missing, so its problems are not hidden behind theirs), and
the data (eval datasets, or a train manifest's conversations) — all from local files and the HF cache.

Runs are offline unless downloads are allowed explicitly (`--allow-downloads`): `offline_unless` sets the
Hugging Face offline switches before any HF library is imported, so a missing dataset is one line naming the
prefetch command, not five network retries and a traceback.
"""

from __future__ import annotations

import os
from typing import Any

from qc2c.errors import ProblemsError

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline_unless(allowed: bool) -> None:
    """Turn the HF offline switches on (variables the user set explicitly are left as they are)."""
    if not allowed:
        for var in OFFLINE_VARS:
            os.environ.setdefault(var, "1")


def preflight_problems(plan: Any) -> list[str]:
    """Every problem found for `plan` (a runner.plan.Plan), each one line `field: what is wrong`."""
    return preflight_report(plan)[0]


def preflight_report(plan: Any) -> tuple[list[str], list[str]]:
    """(problems, warnings) for `plan`; a warning (a precision override that saves no byte) does not stop a run."""
    m = plan.manifest
    fuser, problems = _model_and_fuser_problems(plan)
    problems = _device_problems(m) + problems
    if m.kind == "eval" and m.eval is not None:
        problems += _eval_data_problems(m)
    if m.kind == "train" and m.train is not None and m.train.data is not None:
        problems += _train_data_problems(m.train.data.config(), "train.data")
    if m.kind == "kd_cache" and m.kd_cache is not None:
        problems += _train_data_problems(m.kd_cache.data.config(), "kd_cache.data")
    if getattr(plan, "kd_cache_dir", None):
        problems += _kd_cache_problems(plan.kd_cache_dir)
    return problems, _precision_warnings(m, fuser)


def _precision_warnings(m: Any, fuser: Any) -> list[str]:
    if fuser is None or m.kv.precision is None or not m.kv.precision.overrides:
        return []
    from qc2c.kv.precision import ineffective_overrides

    precision = m.kv.precision.config()
    layer_map, n = dict(fuser.layer_map), fuser.n_receiver_layers
    return ineffective_overrides(precision, scheme=m.kv.quant.scheme, layer_map=layer_map, n_receiver_layers=n)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


def _device_problems(m: Any) -> list[str]:
    from runner.session import PreflightError, resolve_device

    try:
        resolve_device(m.runtime.device)
    except PreflightError as exc:
        return list(exc.problems)
    return []


def _model_and_fuser_problems(plan: Any) -> tuple[Any, list[str]]:
    """(the fuser when everything fits, else None; problems)."""
    from qc2c.fuser.checkpoint import FuserError
    from qc2c.fuser.sources import load_fuser
    from runner.session import preflight

    try:
        return preflight(plan.manifest, plan.fuser_ref), []
    except ProblemsError as exc:
        problems = list(exc.problems) or [f"preflight: {_one_line(exc)}"]
    except Exception as exc:  # noqa: BLE001 - every load failure is a preflight problem, one line each
        problems = [f"preflight: {_one_line(exc)}"]
    if plan.fuser_ref is not None and all(p.startswith("pair.") for p in problems):
        try:  # the models are missing, so the fit was not checked: the checkpoint itself still can be
            load_fuser(plan.fuser_ref, sha256=plan.manifest.fuser.sha256)
        except FuserError as exc:
            problems.append(f"fuser: {exc}")
    return None, problems


def _eval_data_problems(m: Any) -> list[str]:
    from qc2c.eval.datasets import load_mc

    problems = []
    for name in m.eval.datasets:
        try:
            load_mc(name, split=m.eval.split, limit=m.eval.limit)
        except Exception as exc:  # noqa: BLE001 - a dataset that cannot be loaded here, whatever the reason
            problems.append(f"eval.datasets: {name}: {_one_line(exc)}")
    return problems


def _kd_cache_problems(folder: str) -> list[str]:
    """train.kd's cache: its meta.json read and checked (the shards are checked when the training reads them)."""
    from qc2c.kd.format import CacheFormatError, read_meta

    try:
        read_meta(folder)
    except CacheFormatError as exc:
        return [f"train.kd: {p}" for p in exc.problems]
    return []


def _train_data_problems(data: Any, where: str) -> list[str]:
    from dataclasses import replace

    from qc2c.train.data import DataError, load_conversations

    try:
        load_conversations(replace(data, limit=1))
    except DataError as exc:
        return [f"{where}: {exc}"]
    except Exception as exc:  # noqa: BLE001 - the HF datasets library raises many types for a cache miss
        if data.jsonl:
            return [f"{where}.jsonl: {data.jsonl}: {_one_line(exc)}"]
        fetch = f"python -m qc2c.prefetch train-data {data.dataset} --split {data.split}"
        return [
            f"{where}.dataset: {data.dataset!r} cannot be loaded here ({_one_line(exc)[:200]}); on a machine "
            f"with hub access run `{fetch}` and copy the HF cache, or give {where}.jsonl"
        ]
    return []
