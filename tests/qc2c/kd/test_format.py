"""KD cache format: round trip, resume after a stop or a kill, bad files refused with `file: field: why`.
.venv/bin/python -m pytest tests/qc2c/kd/test_format.py -q"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from qc2c.kd import format as fmt
from qc2c.kd.build import BuildSettings, KDCacheStopped, build_cache
from qc2c.kd.teacher import CacheRow, row_targets

VOCAB = 50


class FakeTeacher:
    """Logits that depend only on a row's tokens (so a batch never changes them), seeded from the ids."""

    calls = 0

    def logits(self, rows):
        FakeTeacher.calls += 1
        out = []
        for r in rows:
            g = torch.Generator().manual_seed(sum((i + 1) * t for i, t in enumerate(r.input_ids)))
            out.append(torch.randn(len(r.input_ids) - 1, VOCAB, generator=g) * 3)
        return out


def rows(n: int = 11) -> list[CacheRow]:
    out = []
    for i in range(n):
        ids = tuple((7 * i + 3 * j) % VOCAB for j in range(6 + i % 5))
        out.append(CacheRow(ids, 3, 3))
    return out


SETTINGS = BuildSettings("toy", max_length=12, top_k=5, random_negatives=4, shard_size=4, batch_size=3, seed=1)


def build(folder: Path, **kw):
    return build_cache(
        folder, FakeTeacher(), rows(), SETTINGS, vocab_size=VOCAB, teacher_info={"kind": "fake"}, progress=False, **kw
    )


def test_round_trip_holds_the_teachers_top_k_and_negatives(tmp_path) -> None:
    meta = build(tmp_path)
    cache = fmt.read_cache(tmp_path)
    assert meta["n_rows"] == cache.n_rows == 11 and len(meta["shards"]) == 3 and not (tmp_path / fmt.RESUME).exists()
    assert meta["top_k"] == 5 and meta["random_negatives"] == 4 and meta["teacher"] == {"kind": "fake"}
    t = cache.tensors
    assert t["topk_idx"].dtype == torch.int32 and t["topk_logits"].dtype == torch.float16
    assert t["attention_mask"].dtype == torch.uint8 and tuple(t["rand_idx"].shape) == (11, 11, 4)
    expected = FakeTeacher().logits(rows())
    for i, r in enumerate(rows()):
        n = len(r.input_ids)
        assert t["input_ids"][i, :n].tolist() == list(r.input_ids) and int(t["attention_mask"][i].sum()) == n
        assert t["loss_mask"][i].tolist() == [0] * 3 + [1] * (n - 4) + [0] * (12 - n)
        values, idx = expected[i][3 : n - 1].topk(5, dim=-1)
        assert torch.equal(t["topk_idx"][i, 3 : n - 1], idx.int())
        assert torch.equal(t["topk_logits"][i, 3 : n - 1], values.half())
        neg = t["rand_idx"][i, 3 : n - 1].long()
        assert all(len(set(row.tolist())) == 4 for row in neg)  # distinct
        assert not any(set(a.tolist()) & set(b.tolist()) for a, b in zip(neg, idx, strict=True))  # none in top-K
        assert torch.equal(t["rand_logits"][i, 3 : n - 1], expected[i][3 : n - 1].gather(1, neg).half())
        assert not t["topk_idx"][i, :3].any() and int(t["fuse_split"][i]) == 3


def test_a_stopped_and_a_killed_build_resume_to_the_same_bytes(tmp_path) -> None:
    ref = build(tmp_path / "ref")
    with pytest.raises(KDCacheStopped) as stop:
        build(tmp_path / "run", should_stop=lambda: True)
    assert stop.value.n_written == 4 and json.loads((tmp_path / "run" / fmt.RESUME).read_text())["next_shard"] == 1
    # a kill between a shard's rename and the resume record leaves a shard nobody listed: rewritten, not trusted
    (tmp_path / "run" / fmt.shard_name(1)).write_bytes(b"half a shard")
    FakeTeacher.calls = 0
    meta = build(tmp_path / "run")
    assert FakeTeacher.calls == 3  # rows 4..10 in batches of 3 within shards of 4: [4-6], [7], [8-10]
    assert meta["content_sha256"] == ref["content_sha256"] and meta["shards"] == ref["shards"]
    assert fmt.read_cache(tmp_path / "run").n_rows == 11


KILL = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from test_format import build
    from pathlib import Path
    def kill(done, total):
        if done >= 8:
            os.kill(os.getpid(), signal.SIGKILL)
    build(Path(sys.argv[1]), on_rows=kill)
    """
)


def test_sigkill_during_a_build_loses_nothing_and_duplicates_nothing(tmp_path) -> None:
    ref = build(tmp_path / "ref")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    here = str(Path(__file__).parent)
    proc = subprocess.run(
        [sys.executable, "-c", KILL, str(tmp_path / "run"), here], env=env, capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert json.loads((tmp_path / "run" / fmt.RESUME).read_text())["n_written"] == 8
    with pytest.raises(fmt.CacheFormatError, match="build in progress"):
        fmt.read_cache(tmp_path / "run")
    meta = build(tmp_path / "run")
    assert meta["content_sha256"] == ref["content_sha256"]
    t, r = fmt.read_cache(tmp_path / "run").tensors, fmt.read_cache(tmp_path / "ref").tensors
    assert all(torch.equal(t[k], r[k]) for k in r)


def _rewrite(folder: Path, shard: int, change) -> Path:
    """Apply `change` to one shard's tensors and record its new hash, so only the field check can refuse it."""
    from safetensors.torch import load, save

    path = folder / fmt.shard_name(shard)
    tensors = load(path.read_bytes())
    change(tensors)
    raw = save(tensors)
    path.write_bytes(raw)
    meta = json.loads((folder / fmt.META).read_text())
    meta["shards"][shard]["sha256"] = fmt._sha(raw)
    (folder / fmt.META).write_text(json.dumps(meta))
    return path


BAD = {
    "dtype": (lambda t: t.update(topk_logits=t["topk_logits"].float()), "topk_logits: dtype float32, expected float16"),
    "shape": (
        lambda t: t.update(topk_idx=t["topk_idx"][:, :, :3].contiguous()),
        "topk_idx: shape [4, 11, 3], expected [N=4 x L-1=11 x K=5]",
    ),
    "missing": (lambda t: t.pop("rand_idx"), "rand_idx: missing"),
    "range": (lambda t: t.update(topk_idx=t["topk_idx"] + VOCAB), "topk_idx: ids outside [0, vocab_size 50)"),
    "finite": (lambda t: t["rand_logits"].fill_(float("inf")), "rand_logits: non-finite logits"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_shards_are_refused_naming_file_and_field(tmp_path, case) -> None:
    build(tmp_path)
    change, why = BAD[case]
    path = _rewrite(tmp_path, 1, change)
    with pytest.raises(fmt.CacheFormatError) as err:
        fmt.read_cache(tmp_path)
    assert err.value.problems == [f"{path}: {why}"]


def test_a_changed_shard_a_missing_shard_and_a_bad_meta_are_refused(tmp_path) -> None:
    build(tmp_path)
    (tmp_path / fmt.shard_name(0)).write_bytes((tmp_path / fmt.shard_name(0)).read_bytes()[:-1] + b" ")
    (tmp_path / fmt.shard_name(2)).unlink()
    with pytest.raises(fmt.CacheFormatError) as err:
        fmt.read_cache(tmp_path)
    assert err.value.problems == [
        f"{tmp_path / fmt.shard_name(0)}: (file): sha256 differs from meta.json (the shard changed after it was written)",
        f"{tmp_path / fmt.shard_name(2)}: (file): listed in meta.json but missing",
    ]
    meta = json.loads((tmp_path / fmt.META).read_text())
    (tmp_path / fmt.META).write_text(json.dumps({**meta, "top_k": 0, "n_rows": 12}))
    with pytest.raises(fmt.CacheFormatError) as err:
        fmt.read_meta(tmp_path)
    assert [p.split(": ")[1] for p in err.value.problems] == ["top_k", "n_rows"]


def test_packed_rows_have_targets_everywhere_and_no_split(tmp_path) -> None:
    from qc2c.kd.teacher import packed_rows
    from qc2c.train.data import Example

    examples = [Example(list(range(1 + i, 8 + i)), [], [], [], 2) for i in range(5)]  # 35 tokens
    packed = packed_rows(examples, 12)
    assert [len(r.input_ids) for r in packed] == [12, 12, 11] and all(r.first_target == 0 for r in packed)
    settings = BuildSettings("p", max_length=12, top_k=3, packing=True, shard_size=8)
    build_cache(tmp_path, FakeTeacher(), packed, settings, vocab_size=VOCAB, teacher_info={}, progress=False)
    t = fmt.read_cache(tmp_path).tensors
    assert "fuse_split" not in t and t["loss_mask"].sum(1).tolist() == [11, 11, 10]


def test_row_targets_leave_positions_without_a_target_zero() -> None:
    r = CacheRow((1, 2, 3, 4), 2, 2)
    out = row_targets(
        [r], FakeTeacher().logits([r]), max_length=6, top_k=2, random_negatives=0, first_row=0, seed=0, packing=False
    )
    assert out["loss_mask"][0].tolist() == [0, 0, 1, 0, 0] and not out["topk_logits"][0, [0, 1, 3, 4]].any()
