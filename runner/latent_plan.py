"""Where a manifest's latent wire comes from: `eval.latent` (kind: eval) or `train.latent.from_run` (a stage-b
kind: train run), resolved to a final/ folder at plan time, like `fuser.from_run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def latent_source(manifest: Any) -> tuple[str | None, str | None, str]:
    """(from_run, path, field) of the manifest's latent wire source; (None, None, "") when it has none."""
    ev, train = manifest.eval, manifest.train
    if ev is not None and ev.latent is not None:
        return ev.latent.from_run, ev.latent.path, "eval.latent"
    if train is not None and train.latent is not None and train.latent.from_run is not None:
        return train.latent.from_run, None, "train.latent.from_run"
    return None, None, ""


def resolve_latent(manifest: Any, registry: Any) -> tuple[str | None, list[str]]:
    """(the wire's final/ folder or None, problems)."""
    from_run, path, where = latent_source(manifest)
    if path is not None:
        ok = (Path(path) / "latent.json").is_file()
        return path, [] if ok else [f"{where}.path: {path} is no latent wire folder (no latent.json)"]
    if from_run is None:
        return None, []
    entry = registry.latest_complete(from_run)
    field = where if where.endswith("from_run") else f"{where}.from_run"
    if entry is None or entry.run_dir is None:
        why = f"no complete run of manifest {from_run!r} in {registry.path} (run it first: make run MANIFEST=manifests/{from_run}.yaml)"
        return None, [f"{field}: {why}"]
    final = Path(entry.run_dir) / "final"
    if not (final / "latent.json").is_file():
        return None, [f"{field}: run {entry.run_dir} of {from_run!r} has no latent wire in final/"]
    return str(final), []
