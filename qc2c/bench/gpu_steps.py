"""The measurements of `python -m qc2c.bench gpu` (qc2c/bench/gpu.py), one function each, science core only.

Nothing here imports pydantic, ruamel.yaml, datasets or fabric (the GPU machines are bare: torch, transformers,
safetensors, numpy, rich, pytest, triton); tests/qc2c/bench/test_gpu_check.py runs the check with those hidden.
Each function takes a `Sizes` (the real check's, or the CPU dry run's reduced ones) and returns a JSON-able dict.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from qc2c.config import KVConfig, QuantConfig

RECEIVER, SHARER = "geom:qwen3-0.6b", "geom:qwen2.5-0.5b"
CODEC_SCHEMES = ("int8", "int4", "int2", "fp8_e4m3", "nf4", "fp16")
DEMO_SETTINGS = ("receiver", "sharer", "c2c_fp16", "c2c_placebo", "compressed")  # manifests/demo.yaml's


@dataclass
class Sizes:
    """Everything the check's cost depends on (`real()` on a GPU; `dry()` proves the path on a CPU in seconds)."""

    device: str
    dtype: torch.dtype
    n_layers: int | None  # geom models: None = as published
    vocab_size: int | None
    prompt_tokens: int
    eval_batches: tuple[int, ...]
    eval_samples: int  # per batch size at least this many (and two batches)
    codec_geometry: tuple[int, int, int, int, int]  # batch, layers, heads, tokens, head_dim
    codec_repeat: int
    demo_items: int | None  # None: the whole test split
    train_tokens: int
    train_cap: int
    memory_limit_gb: float | None  # CPU only (the RSS meter needs a bound)
    deadline: float = field(default_factory=lambda: time.monotonic() + 480)
    receiver: str = RECEIVER
    sharer: str = SHARER  # geom:llama3.2-1b too: token ids are drawn below both vocabularies

    @classmethod
    def real(cls, budget_s: float) -> Sizes:
        return cls("cuda", torch.bfloat16, None, None, 200, (1, 8, 32, 64, 128, 256), 32, (64, 24, 2, 256, 64), 10,
                   None, 512, 256, None, time.monotonic() + budget_s)  # fmt: skip

    @classmethod
    def dry(cls, budget_s: float) -> Sizes:
        return cls("cpu", torch.bfloat16, 2, 4096, 24, (1, 2), 2, (2, 4, 2, 64, 64), 1, 12, 32, 2, 16.0,
                   time.monotonic() + budget_s)  # fmt: skip

    def left_s(self) -> float:
        return self.deadline - time.monotonic()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def environment(sizes: Sizes) -> dict[str, Any]:
    from qc2c.kv.kernels import cuda as cuda_kernels

    info: dict[str, Any] = {"torch": torch.__version__, "device": sizes.device, "dtype": str(sizes.dtype)[6:]}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if sizes.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}", memory_gib=props.total_memory / 2**30)
        info["cuda"] = torch.version.cuda
        info["kernel_path"] = "Triton" if cuda_kernels.active(torch.device("cuda")) else cuda_kernels.describe()
    return info


# ---- 1. the demo manifest's settings: bf16 on the device vs float32 on the CPU ----


def demo_items(limit: int | None) -> list[Any]:
    """The demo `test` split read with json (qc2c.eval.datasets reads files through `datasets`, absent here)."""
    from qc2c.demo.zoo import dataset_file
    from qc2c.eval.datasets import Demo, Row

    path = dataset_file("test")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = [Row(f"{path}:{i + 1}", None, i, json.loads(line)) for i, line in enumerate(lines)]
    items, _ = Demo().convert(rows)
    return items[:limit] if limit else items


def demo_predictions(items: list[Any], device: str, dtype: torch.dtype) -> dict[str, list[str | None]]:
    """Predictions of DEMO_SETTINGS (the demo manifest: int4 message, group 32, batch 32) on `items`."""
    from qc2c.eval.batching import chunks
    from qc2c.eval.settings import build_scorers
    from qc2c.fuser.sources import load_fuser
    from qc2c.kv.codec import build_codec
    from qc2c.models.pair import load_pair

    pair = load_pair("demo:receiver", "demo:sharer", dtype=dtype, device=device)
    fuser = load_fuser("demo:receiver+sharer").to(device=device, dtype=dtype)
    kv = KVConfig(quant=QuantConfig(scheme="int4", group_size=32))
    n_r, n_s = pair.receiver.config.num_hidden_layers, pair.sharer.config.num_hidden_layers
    codec = build_codec(kv, layer_map=dict(fuser.layer_map), n_sharer_layers=n_s, n_receiver_layers=n_r)
    scorers = build_scorers(DEMO_SETTINGS, pair, fuser, codec, protocol="logits", max_new_tokens=8, device=device)
    preds: dict[str, list[str | None]] = {}
    for name, scorer in scorers.items():
        scorer.use_dataset(items)  # c2c_placebo pairs items (a fixed derangement of their ids)
        rows = []
        for r in chunks(len(items), 32):
            rows += scorer.score_rows(items[r.start : r.stop])
        preds[name] = [row.pred if row.error is None else f"error: {row.error}" for row in rows]
    return preds


def demo_agreement(sizes: Sizes) -> dict[str, Any]:
    items = demo_items(sizes.demo_items)
    t0 = time.perf_counter()
    reference = demo_predictions(items, "cpu", torch.float32)
    t1 = time.perf_counter()
    device = demo_predictions(items, sizes.device, sizes.dtype)
    t2 = time.perf_counter()
    per = {s: sum(a == b for a, b in zip(reference[s], device[s])) / len(items) for s in DEMO_SETTINGS}
    gold = [it.answer for it in items]
    acc = {s: {k: sum(p == g for p, g in zip(preds[s], gold)) / len(items) for k, preds in
               (("cpu_float32", reference), ("device", device))} for s in DEMO_SETTINGS}  # fmt: skip
    return {
        "items": len(items),
        "settings": list(DEMO_SETTINGS),
        "agreement": per,
        "agreement_all": sum(per.values()) / len(per),
        "accuracy": acc,
        "cpu_float32_s": t1 - t0,
        "device_s": t2 - t1,
    }


# ---- 2. eval at real geometry: s/sample, logits protocol, with and without a codec ----


def geometry_eval(sizes: Sizes) -> dict[str, Any]:
    from qc2c.eval.prefill import C2CPrefill
    from qc2c.kv.codec import build_codec
    from qc2c.kv.uncompressed import Uncompressed
    from qc2c.models import geom

    pair = geom.load_geom_pair(sizes.receiver, sizes.sharer, dtype=sizes.dtype, device=sizes.device, n_layers=sizes.n_layers,
                               vocab_size=sizes.vocab_size)  # fmt: skip
    fuser = geom.geom_fuser(pair, dtype=sizes.dtype, device=sizes.device)
    n_r, n_s = pair.receiver.config.num_hidden_layers, pair.sharer.config.num_hidden_layers
    vocab = min(pair.receiver.config.vocab_size, pair.sharer.config.vocab_size)  # ids both models read
    kv = KVConfig(quant=QuantConfig(scheme="int4"))
    codec = build_codec(kv, layer_map=dict(fuser.layer_map), n_sharer_layers=n_s, n_receiver_layers=n_r)
    settings = {"c2c_fp16": Uncompressed(), "int4": codec}
    rows: list[dict[str, Any]] = []
    for batch in sizes.eval_batches:
        if sizes.left_s() < 60 and rows:
            rows.append({"batch": batch, "skipped": "time budget"})
            continue
        n = max(sizes.eval_samples, 2 * batch)
        lengths = geom.prompt_lengths(n, mean=sizes.prompt_tokens, seed=batch)
        batches = [geom.prompt_batch(lengths[i : i + batch], vocab_size=vocab, seed=i, device=sizes.device)
                   for i in range(0, n, batch)]  # fmt: skip
        row: dict[str, Any] = {"batch": batch, "samples": n}
        try:
            for name, path in settings.items():
                prefill = C2CPrefill(pair.receiver, pair.sharer, fuser, path)
                with torch.no_grad():
                    prefill(batches[0])  # warm-up: kernels compiled, allocator grown
                    sync(sizes.device)
                    t0 = time.perf_counter()
                    codec_s = 0.0
                    for b in batches:
                        out = prefill(b)
                        torch.softmax(out.logits_last, dim=-1)  # the logits protocol's option read
                        codec_s += sum(r.get("encode_s", 0.0) + r.get("decode_s", 0.0) for r in out.records)
                    sync(sizes.device)
                seconds = time.perf_counter() - t0
                row[name] = {"s_per_sample": seconds / n, "codec_s_per_sample": codec_s / n}
        except torch.OutOfMemoryError as exc:
            row["oom"] = str(exc)[:200]
            torch.cuda.empty_cache()
            rows.append(row)
            break
        row["codec_share"] = row["int4"]["codec_s_per_sample"] / row["int4"]["s_per_sample"]
        row["int4_over_fp16"] = row["int4"]["s_per_sample"] / row["c2c_fp16"]["s_per_sample"] - 1
        rows.append(row)
    done = [r for r in rows if "int4" in r]
    best = min(done, key=lambda r: r["int4"]["s_per_sample"]) if done else None
    overrides = {"n_layers": sizes.n_layers, "vocab_size": sizes.vocab_size}
    return {"receiver": sizes.receiver, "sharer": sizes.sharer, "prompt_tokens": sizes.prompt_tokens, "overrides": overrides,
            "rows": rows, "best_batch": best["batch"] if best else None}  # fmt: skip


# ---- 3. the codec on the device: round trip vs a device-to-device copy ----


def codec_bench(sizes: Sizes) -> dict[str, Any]:
    from qc2c.bench import codec as codec_bench_module
    from qc2c.kv.kernels import cpu as cpu_kernels
    from qc2c.kv.quant import build_scheme

    b, layers, heads, tokens, head_dim = sizes.codec_geometry
    args = argparse.Namespace(batch=b, layers=layers, heads=heads, tokens=tokens, head_dim=head_dim,
                              device=sizes.device, dtype="bfloat16" if sizes.dtype == torch.bfloat16 else "float16",
                              repeat=sizes.codec_repeat, schemes=list(CODEC_SCHEMES))  # fmt: skip
    section = codec_bench_module.build_section(args)
    result = codec_bench_module.measure(args, section)
    x = torch.stack([kv[0] for kv in section.sharer], dim=1)  # (B, L, H, n, D): the keys, one tensor
    kernels = []
    for name in ("int8", "int4", "int2", "fp8_e4m3", "nf4"):
        scheme = build_scheme(name, axis="token", group_size=64)
        dst = torch.empty_like(x)
        copy_s = _best(lambda d=dst: d.copy_(x), sizes)
        enc = scheme.encode(x)
        trip_s = _best(lambda s=scheme: s.decode(s.encode(x), x.dtype), sizes)
        cpu_kernels.set_mode("eager")
        try:
            ref = scheme.encode(x)
        finally:
            cpu_kernels.set_mode(None)
        same = all(torch.equal(getattr(enc, f), getattr(ref, f)) for f in ("payload", "scales", "zeros"))
        message = sum(getattr(enc, f).numel() for f in ("payload", "scales", "zeros"))
        kernels.append({"scheme": name, "round_trip_ms": 1e3 * trip_s, "copy_ms": 1e3 * copy_s,
                        "ratio_to_copy": copy_s / trip_s, "message_bytes": message,
                        "bandwidth_fraction": bandwidth_fraction(x.numel() * x.element_size(), message, copy_s, trip_s),
                        "bytes_equal_eager": same})  # fmt: skip
    result["kernels_only"] = kernels
    return result


def bandwidth_fraction(cache_bytes: int, message_bytes: int, copy_s: float, trip_s: float) -> float:
    """The round trip's memory throughput as a fraction of the copy's: encode reads the cache and writes the
    message, decode reads the message and writes the cache (2·(cache + message) bytes), the copy reads and writes
    the cache (2·cache). A codec at copy speed scores 1.0; its time ratio to the copy is at most
    cache / (cache + message) (0.8 for int4 of a 16-bit cache, 0.67 for int8)."""
    return (2 * (cache_bytes + message_bytes) / trip_s) / (2 * cache_bytes / copy_s)


def _best(fn, sizes: Sizes) -> float:
    fn()
    times = []
    for _ in range(sizes.codec_repeat):
        sync(sizes.device)
        t0 = time.perf_counter()
        fn()
        sync(sizes.device)
        times.append(time.perf_counter() - t0)
    return min(times)


# ---- 4. max batch of a training step: bf16, gradient checkpointing of the receiver ----


def train_max_batch(sizes: Sizes) -> dict[str, Any]:
    """The largest micro-batch of one C2C training step (frozen geom pair, projectors trained with AdamW,
    next-token CE over the response section, `qc2c.train.grad_ckpt` on the receiver) on `train_tokens`-token
    sequences, by `qc2c.bench.max_batch.search` (two real steps per probe; an OOM is a failed probe)."""
    if sizes.left_s() < 60:
        return {"skipped": f"time budget ({sizes.left_s():.0f} s left)"}
    import torch.nn.functional as F

    from qc2c.bench.max_batch import CudaMeter, RssMeter, measured_probe, search
    from qc2c.fuser.fuse import FusePlan, fused_forward
    from qc2c.models import geom
    from qc2c.train.grad_ckpt import checkpointed_layers

    pair = geom.load_geom_pair(sizes.receiver, sizes.sharer, dtype=sizes.dtype, device=sizes.device, n_layers=sizes.n_layers,
                               vocab_size=sizes.vocab_size)  # fmt: skip
    for model in (pair.receiver, pair.sharer):
        model.requires_grad_(False)
    fuser = geom.geom_fuser(pair, dtype=sizes.dtype, device=sizes.device)
    fuser.projectors.train()
    optimizer = torch.optim.AdamW(fuser.projectors.parameters(), lr=1e-4)
    vocab = min(pair.receiver.config.vocab_size, pair.sharer.config.vocab_size)  # ids both models read
    response = max(8, sizes.train_tokens // 4)  # the trained (unfused) section: a chat turn's answer

    def step(batch: int) -> int:
        lengths = [sizes.train_tokens] * batch
        b = geom.prompt_batch(lengths, vocab_size=vocab, seed=batch, device=sizes.device)
        b.fuse_mask[:, -response:] = False
        plan = FusePlan.from_runs(b.fuse_mask, response)
        with checkpointed_layers(pair.receiver, True):
            out = fused_forward(pair.receiver, pair.sharer, fuser, plan, b.input_ids, attention_mask=b.attention_mask,
                                position_ids=b.position_ids)  # fmt: skip
        logits = out.logits[:, :-1].float()
        labels = b.input_ids[:, -response + 1 :]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(sizes.device)
        return batch * sizes.train_tokens

    def rebuild() -> None:
        optimizer.zero_grad(set_to_none=True)

    if sizes.device == "cuda":
        meter: Any = CudaMeter(torch.device("cuda"), None)
    else:
        meter = RssMeter(int(sizes.memory_limit_gb * 2**30))
    result = search(measured_probe(step, meter, rebuild), cap=sizes.train_cap, limit_bytes=meter.limit)
    probes = [{"batch": p.batch, "fits": p.fits, "step_s": p.step_s, "peak_gib": (p.peak_bytes or 0) / 2**30,
               "tokens_per_s": p.tokens_per_s} for p in result.probes]  # fmt: skip
    return {"dtype": str(sizes.dtype)[6:], "gradient_checkpointing": True, "sequence_tokens": sizes.train_tokens,
            "trained_tokens": response, "max_batch": result.max_batch, "hit_cap": result.hit_cap,
            "limit_gib": (result.limit_bytes or 0) / 2**30, "probes": probes}  # fmt: skip
