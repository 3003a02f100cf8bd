"""Execute a planned `kind: kd_cache` run: a top-K logit KD cache (qc2c.kd) in a run folder like any other.

The run folder is the cache: meta.json, shard_*.safetensors (qc2c.kd.format), plus manifest.yaml,
provenance.json, logs/run.log and status.json ("kd_cache": n_done = rows written of n_total). A kind: train
manifest with `train.objective: kd` reads it through `train.kd.from_run: <this manifest's name>`.

A killed build continues from its resume file (kd_resume.json) when the manifest is run again: rows written
are kept, a shard written after the last resume record is rewritten, and the finished cache is byte-identical
to an uninterrupted build (the teacher's batches start at shard boundaries). SIGTERM / SIGINT / SIGUSR1 /
SIGHUP stop after the current shard and exit 75.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from qc2c.dtypes import DTYPES
from qc2c.kd.build import BuildSettings, KDCacheStopped, build_cache
from qc2c.kd.format import cache_name
from qc2c.kd.teacher import ModelTeacher, PairTeacher, conversation_rows, packed_rows
from qc2c.train.data import build_examples, load_conversations
from runner import fsio
from runner.lifecycle import REPO_ROOT, Preempted, RunFailed, RunHandles, execute_lifecycle
from runner.plan import Plan
from runner.progress_ui import ProgressUI
from runner.provenance import collect
from runner.session import _model_info, load_manifest_pair, manifest_codec, preflight, resolve_device


def _teacher(plan: Plan, pair: Any, device: str, dtype: torch.dtype) -> tuple[Any, dict[str, Any]]:
    """(teacher, its provenance: kind, models, fuser sha256, codec)."""
    m, cfg = plan.manifest, plan.manifest.kd_cache.config()
    tok = pair.receiver_tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    info: dict[str, Any] = {"kind": cfg.teacher, "models": {}, "fuser": None, "codec": None}
    for role in ("receiver", "sharer"):
        info["models"][role] = {"ref": getattr(m.pair, role), "revision": getattr(m.pair, f"{role}_revision")}
    if cfg.teacher in ("receiver", "sharer"):
        return ModelTeacher(getattr(pair, cfg.teacher), pad), info
    fuser = preflight(m, plan.fuser_ref).to(device=device, dtype=dtype)
    info["fuser"] = {"source": plan.fuser_source, "sha256": fuser.sha256}
    codec = None
    if cfg.teacher == "compressed":
        codec = manifest_codec(m, pair, fuser)
        info["codec"] = m.kv.model_dump(mode="json")
    return PairTeacher(pair, fuser, codec, pad), info


def run_kd_cache_plan(plan: Plan, *, container: dict[str, Any] | None = None, ui: ProgressUI | None = None) -> int:
    """Build (or finish) the KD cache of `plan`; returns an exit code from runner.exitcodes."""

    def body(run: RunHandles) -> str:
        m, cfg = plan.manifest, plan.manifest.kd_cache.config()
        device, dtype = resolve_device(m.runtime.device), DTYPES[m.runtime.dtype]
        t0 = time.monotonic()
        torch.manual_seed(m.runtime.seed)
        pair = load_manifest_pair(m, dtype=dtype, device=device)
        if not pair.same_tokenizer:
            raise RunFailed("pair: a KD cache needs a pair sharing the receiver's tokenizer (pair.alignment none)")
        teacher, info = _teacher(plan, pair, device, dtype)
        examples, dropped = build_examples(
            load_conversations(cfg.data), pair.receiver_tokenizer, None, cfg.data.max_length
        )
        rows = packed_rows(examples, cfg.data.max_length) if cfg.packing else conversation_rows(examples)
        if not rows:
            raise RunFailed(f"kd_cache.data: no conversation fits max_length {cfg.data.max_length}")
        settings = BuildSettings(
            name=cache_name(m.name, cfg.data.max_length, cfg.top_k, cfg.random_negatives),
            max_length=cfg.data.max_length,
            top_k=cfg.top_k,
            random_negatives=cfg.random_negatives,
            packing=cfg.packing,
            shard_size=cfg.shard_size,
            batch_size=cfg.batch_size,
            seed=m.runtime.seed,
        )
        run.log.info(
            "loaded the %s teacher on %s in %.1f s; %d rows (%d conversations, %d longer than max_length dropped)",
            cfg.teacher,
            device,
            time.monotonic() - t0,
            len(rows),
            len(examples),
            dropped,
        )
        run.status.set_dataset("kd_cache", n_done=0, n_total=len(rows), n_errors=0)
        beat = run.registry.heartbeat_every(plan.run_key)

        def on_rows(n_done: int, n_total: int) -> None:
            entry = run.status.datasets["kd_cache"]
            run.status.scored("kd_cache", n_done - entry["n_done"], 0)
            run.status.write()
            beat()
            run.log.info("kd cache: %d/%d rows", n_done, n_total)

        provenance = collect(
            repo=REPO_ROOT,
            device=device,
            run_key=plan.run_key,
            models=_model_info(pair),
            fuser=info["fuser"],
            container=container,
            datasets={"kd_cache": {**vars(cfg.data), "n_rows": len(rows), "n_dropped_too_long": dropped}},
        )
        info["versions"] = provenance.get("packages")
        info["git"] = provenance.get("git")
        info["data"] = {**vars(cfg.data), "n_conversations": len(examples), "n_dropped_too_long": dropped}
        try:
            meta = build_cache(
                plan.run_dir,
                teacher,
                rows,
                settings,
                vocab_size=pair.receiver.get_output_embeddings().weight.shape[0],
                teacher_info=info,
                should_stop=lambda: run.stop.signal is not None,
                on_rows=on_rows,
                progress=False,
            )
        except KDCacheStopped as exc:
            raise Preempted(str(exc)) from exc
        fsio.atomic_write_json(plan.run_dir / "provenance.json", provenance)
        return f" (KD cache {meta['name']}: {meta['n_rows']} rows, content {meta['content_sha256'][:12]})"

    return execute_lifecycle(plan, body, label="kd_cache run")
