"""results/<dataset>.json from progress/<dataset>.jsonl: fill `runner.results.DatasetResult`.

Results are computed from the records on disk, in the dataset's item order, so a resumed run and an
uninterrupted one give identical files (apart from the creation time). Statistics come from
`qc2c.eval.metrics` (accuracy CI, McNemar, paired bootstrap) and `qc2c.eval.fidelity` (flip rate, KL vs
c2c_fp16); this module only gathers per-sample values.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any

from qc2c.kv.selection import is_oracle
from runner.records import progress_sha256, read_progress
from runner.registry import now_iso
from runner.results import (
    COMPRESSED,
    MAX_SUBJECTS,
    TEXT_ONLY,
    ByteBreakdown,
    BytesStats,
    DatasetInfo,
    DatasetResult,
    Distribution,
    Fidelity,
    FuserInfo,
    Paired,
    PairInfo,
    PrecisionView,
    ProvenanceSummary,
    QAResult,
    QAStats,
    SettingResult,
    SubjectResult,
    Timing,
    load_result,
    write_result,
)

BREAKDOWN = ("payload", "scales", "indices", "header")


def _dist(values: list[float]) -> Distribution | None:
    from qc2c.eval.metrics import summary

    if not values:
        return None
    stats = summary(values)
    return Distribution(mean=stats.mean, p50=stats.p50, p95=stats.p95)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def setting_rows(records: list[dict[str, Any]], setting: str) -> list[dict[str, Any]]:
    return [r["settings"][setting] for r in records]


def _bytes(rows: list[dict[str, Any]]) -> BytesStats | None:
    sizes = [float(r["nbytes"]) for r in rows if r.get("nbytes") is not None]
    if not sizes:
        return None
    dist = _dist(sizes)
    parts = {
        k: _mean([float(r["nbytes_breakdown"][k]) for r in rows if r.get("nbytes_breakdown")]) or 0.0 for k in BREAKDOWN
    }
    return BytesStats(mean=dist.mean, p50=dist.p50, p95=dist.p95, breakdown=ByteBreakdown(**parts))


def _timing(rows: list[dict[str, Any]]) -> Timing:
    """Mean seconds per sample by stage; stages a setting does not time stay null (never invented)."""

    def mean_of(values: list[Any]) -> float | None:
        return _mean([float(v) for v in values if v is not None])

    def stage(key: str) -> float | None:
        return mean_of([(r.get("timing") or {}).get(key) for r in rows])

    return Timing(
        sharer_prefill_s=stage("sharer_prefill_s"),
        encode_s=mean_of([r.get("encode_s") for r in rows]),
        decode_s=mean_of([r.get("decode_s") for r in rows]),
        fuse_s=stage("fuse_s"),
        receiver_s=stage("receiver_s"),
        sharer_decode_s=stage("sharer_decode_s"),
    )


def _fp16_reference(row: dict[str, Any]) -> float | None:
    """The c2c_fp16 message size of the row's tokens (records before it existed: the whole fp16 sharer cache)."""
    return row.get("nbytes_fp16_message") or row.get("nbytes_fp16_sharer")


def _paired(records: list[dict[str, Any]], setting: str, settings: list[str], seed: int) -> dict[str, Paired]:
    """This setting against every baseline of the run on the same `records` (McNemar + paired bootstrap)."""
    from qc2c.eval import metrics

    correct = [bool(r["correct"]) for r in setting_rows(records, setting)]
    paired = {}
    for base in settings:
        if base == setting or base == COMPRESSED:
            continue
        other = [bool(r["correct"]) for r in setting_rows(records, base)]
        test = metrics.mcnemar(correct, other)
        boot = metrics.paired_bootstrap(correct, other, seed=seed)
        paired[base] = Paired(
            diff=boot.diff, ci95=boot.ci95, mcnemar_p=test.p_value, n_discordant=test.n_only_a + test.n_only_b
        )
    return paired


def _subjects(
    records: list[dict[str, Any]], setting: str, settings: list[str], seed: int
) -> dict[str, SubjectResult] | None:
    """Per-subject counts and paired tests, when the items carry 2..MAX_SUBJECTS distinct subjects."""
    from qc2c.eval import metrics

    names = sorted({r.get("subject") for r in records if r.get("subject") is not None})
    if not 2 <= len(names) <= MAX_SUBJECTS or any(r.get("subject") is None for r in records):
        return None
    out = {}
    for name in names:
        part = [r for r in records if r["subject"] == name]
        n_correct = sum(bool(r["correct"]) for r in setting_rows(part, setting))
        out[name] = SubjectResult(
            n=len(part),
            n_correct=n_correct,
            accuracy=n_correct / len(part),
            ci95=metrics.wilson_interval(n_correct, len(part)),
            paired=_paired(part, setting, settings, seed),
        )
    return out


def setting_result(
    records: list[dict[str, Any]], setting: str, settings: list[str], seed: int, *, oracle: bool = False
) -> SettingResult:
    from qc2c.eval import fidelity, metrics

    rows = setting_rows(records, setting)
    correct = [bool(r["correct"]) for r in rows]
    n, n_correct = len(rows), sum(correct)
    message = [r for r in rows if r.get("nbytes") is not None]
    fp16_rows = setting_rows(records, "c2c_fp16") if "c2c_fp16" in settings else [{} for _ in rows]
    refs = [_fp16_reference(r) or f.get("nbytes") for r, f in zip(rows, fp16_rows)]  # text: c2c_fp16's own bytes
    ratios = [ref / r["nbytes"] for r, ref in zip(rows, refs) if r.get("nbytes") and ref]
    paired = _paired(records, setting, settings, seed)
    fid = None
    if setting != "c2c_fp16" and "c2c_fp16" in settings and setting not in TEXT_ONLY:
        ref = setting_rows(records, "c2c_fp16")
        measured = fidelity.fidelity(
            [r["pred"] for r in ref],
            [r["pred"] for r in rows],
            [r.get("option_probs") for r in ref],
            [r.get("option_probs") for r in rows],
        )
        # generate protocol: no option distributions, hence no KL; the results model needs both numbers
        if measured.mean_kl is not None:
            fid = Fidelity(flip_rate=measured.flip_rate, mean_kl=measured.mean_kl)
    prompt_lengths = [float(r["n_tokens_prompt"]) for r in rows if r.get("n_tokens_prompt") is not None]
    return SettingResult(
        n=n,
        n_correct=n_correct,
        n_errors=sum(1 for r in rows if r.get("error")),
        accuracy=n_correct / n,
        ci95=metrics.wilson_interval(n_correct, n),
        bytes=_bytes(rows),
        n_tokens_sent=_dist([float(r["n_tokens_sent"]) for r in message if r.get("n_tokens_sent") is not None]),
        n_tokens_prompt_mean=_mean(prompt_lengths),
        compression_ratio=_mean(ratios),
        fidelity=fid,
        paired=paired,
        timing=_timing(rows),
        oracle=oracle,
        subjects=_subjects(records, setting, settings, seed),
        qa=_qa(records, setting),
    )


def _qa_stats(rows: list[dict[str, Any]]) -> QAStats:
    n = len(rows)
    return QAStats(
        n=n,
        exact_match=sum(bool(r["em"]) for r in rows) / n,
        f1=sum(float(r["f1"]) for r in rows) / n,
        first_acc=sum(bool(r["first_ok"]) for r in rows) / n,
        nll_per_token=sum(float(r["nll_per_token"]) for r in rows) / n,
    )


def _qa(records: list[dict[str, Any]], setting: str) -> QAResult | None:
    """Short-answer scores of a setting whose rows carry them (the latent settings), overall and per subject."""
    rows = [r for r in setting_rows(records, setting) if r.get("em") is not None]
    if not rows or len(rows) != len(records):
        return None
    names = sorted({r.get("subject") for r in records if r.get("subject") is not None})
    subjects = None
    if 2 <= len(names) <= MAX_SUBJECTS:
        subjects = {n: _qa_stats(setting_rows([r for r in records if r.get("subject") == n], setting)) for n in names}
    return QAResult(**_qa_stats(rows).model_dump(), subjects=subjects)


def precision_view(session: Any) -> PrecisionView | None:
    """Both views of the codec's precision plan: asked per receiver layer, sent per sharer layer (None = unsent)."""
    if session.codec is None:
        return None
    plan = session.codec.plan
    n_sharer = session.info["models"]["sharer"]["n_layers"]
    return PrecisionView(
        receiver=[plan.receiver[t] for t in sorted(plan.receiver)],
        sharer=[plan.sharer.get(layer) for layer in range(n_sharer)],
    )


def build_result(
    plan: Any, session: Any, dataset: str, info: dict[str, Any], provenance: dict[str, Any]
) -> DatasetResult:
    m = plan.manifest
    progress_path = plan.run_dir / "progress" / f"{dataset}.jsonl"
    records = read_progress(progress_path).records
    settings = plan.settings
    seed = m.runtime.seed
    oracle = COMPRESSED if is_oracle(m.kv.selection.method) else None  # the setting whose selection is an oracle
    models = provenance.get("models") or {}
    fuser = provenance.get("fuser") or {}
    drift = sum(
        abs(int(r["settings"][COMPRESSED]["nbytes"]) - int(r["settings"][COMPRESSED]["nbytes_closed_form"]))
        for r in records
        if COMPRESSED in r["settings"] and r["settings"][COMPRESSED].get("nbytes_closed_form") is not None
    )
    git = provenance.get("git") or {}
    return DatasetResult.model_validate(
        {
            "schema": 1,
            "run_key": plan.run_key,
            "manifest": m.name,
            "milestone": m.milestone,
            "kind": "eval",
            "pair": PairInfo(
                receiver=m.pair.receiver,
                sharer=m.pair.sharer,
                alignment=m.pair.alignment,
                receiver_revision=(models.get("receiver") or {}).get("revision") or m.pair.receiver_revision,
                sharer_revision=(models.get("sharer") or {}).get("revision") or m.pair.sharer_revision,
            ),
            "fuser": FuserInfo(source=plan.fuser_source, sha256=fuser.get("sha256"), loaded=bool(fuser.get("loaded"))),
            "kv": m.kv.model_dump(mode="json", by_alias=True),
            "dataset": DatasetInfo(name=dataset, **info),
            "protocol": m.eval.protocol,
            "settings": {s: setting_result(records, s, settings, seed, oracle=s == oracle) for s in settings},
            "bytes_closed_form_drift": drift,
            "precision": precision_view(session),
            "provenance": ProvenanceSummary(
                commit=git.get("commit"),
                dirty=git.get("dirty"),
                image_digest=(provenance.get("container") or {}).get("image_digest"),
                created=now_iso(),
            ),
            "progress_sha256": progress_sha256(progress_path),
        }
    )


def write_results(
    plan: Any, session: Any, infos: dict[str, dict[str, Any]], provenance: dict[str, Any], *, log: logging.Logger
) -> None:
    for dataset, info in infos.items():
        result = build_result(plan, session, dataset, info, provenance)
        path = plan.run_dir / "results" / f"{dataset}.json"
        write_result(path, result)
        log.info("%s: wrote %s", dataset, path)


def read_results(run_dir: Path) -> list[DatasetResult]:
    return [load_result(p) for p in sorted((run_dir / "results").glob("*.json"))]
