"""The shipped demo zoo: where its files live, how `demo:` references resolve, and their sha256 record.

Layout of the zoo folder (``qc2c/demo/zoo/``, or ``$QC2C_DEMO_ZOO`` for a rebuilt one):

```
receiver/ sharer/ sharer_llama/          HF model folders (fp16 safetensors + tokenizer)
fusers/receiver+sharer-tail/              C2C_Fuser layout (config.json + final/projector_*.{pt,json}) trained
                                          on the last quarter of the message: it learns to read the sharer
fusers/receiver+sharer/                   the tail fuser fine-tuned on whole messages of A facts (all tokens)
fusers/receiver+sharer_llama-tail/        the aligned pair's fusers (token alignment 'longest'), same two steps
fusers/receiver+sharer_llama/
fusers/receiver+sharer-qat_int2/          the receiver+sharer fuser trained with the int2 codec in its path
data/demo/test.jsonl                      the `demo` dataset (ARC schema + subject): reported
data/demo/validation.jsonl                its validation split: for choosing training settings, never reported
data/fuser_train.jsonl                    chat data the fusers are trained on (C and A facts, never B or V)
data/fuser_train_shared.jsonl             its A facts only (the whole-message fine-tuning step)
build.json                                world spec, training figures and times of the build
SHA256SUMS                                sha256 of every file above (`sha256sum -c` format)
```

References: ``demo:receiver`` (a model), ``demo:receiver+sharer`` (a fuser). A missing zoo is an error that
names `make demo-zoo`, never a silent rebuild.
"""

from __future__ import annotations

import os
from pathlib import Path

from qc2c.fuser.checkpoint import file_sha256

PREFIX = "demo:"
MODELS = ("receiver", "sharer", "sharer_llama")
FUSERS = (
    "receiver+sharer-tail",
    "receiver+sharer",
    "receiver+sharer_llama-tail",
    "receiver+sharer_llama",
    "receiver+sharer-qat_int2",
)
RECORD = "SHA256SUMS"
SHIPPED = Path(__file__).resolve().parent / "zoo"


class DemoZooError(ValueError):
    """A `demo:` reference that names nothing, or a zoo that is missing or does not match its record."""


def zoo_root() -> Path:
    """The zoo in use: `$QC2C_DEMO_ZOO` when set (a rebuilt zoo), else the one shipped in the package."""
    env = os.environ.get("QC2C_DEMO_ZOO")
    return Path(env) if env else SHIPPED


def is_demo_ref(ref: object) -> bool:
    return isinstance(ref, str) and ref.startswith(PREFIX)


def _existing(path: Path, ref: str) -> Path:
    if not path.is_dir():
        raise DemoZooError(f"{ref}: {path} does not exist; build the demo zoo with `make demo-zoo`")
    return path


def resolve_demo_model(ref: str) -> Path:
    """`demo:receiver` → its HF folder in the zoo."""
    name = ref.removeprefix(PREFIX)
    if not is_demo_ref(ref) or name not in MODELS:
        raise DemoZooError(f"unknown demo model {ref!r} (known: {', '.join(PREFIX + m for m in MODELS)})")
    return _existing(zoo_root() / name, ref)


def resolve_demo_fuser(ref: str) -> Path:
    """`demo:receiver+sharer` → its C2C_Fuser folder in the zoo."""
    name = ref.removeprefix(PREFIX)
    if not is_demo_ref(ref) or name not in FUSERS:
        raise DemoZooError(f"unknown demo fuser {ref!r} (known: {', '.join(PREFIX + f for f in FUSERS)})")
    return _existing(zoo_root() / "fusers" / name, ref)


def dataset_file(split: str) -> Path:
    return zoo_root() / "data" / "demo" / f"{split}.jsonl"


def zoo_files(root: Path) -> list[Path]:
    """Every file of the zoo except the record itself, sorted (what the record covers)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != RECORD and "__pycache__" not in p.parts)


def write_record(root: Path) -> Path:
    """(Re)write SHA256SUMS over every file of the zoo."""
    lines = [f"{file_sha256(p)}  {p.relative_to(root).as_posix()}\n" for p in zoo_files(root)]
    out = root / RECORD
    out.write_text("".join(lines), encoding="utf-8")
    return out


def verify(root: Path | None = None) -> list[str]:
    """Problems with the zoo against its record: missing, changed or unrecorded files (empty when it matches)."""
    root = root or zoo_root()
    record = root / RECORD
    if not record.is_file():
        return [f"{record}: no sha256 record; build the demo zoo with `make demo-zoo`"]
    problems, recorded = [], {}
    for n, line in enumerate(record.read_text(encoding="utf-8").splitlines(), start=1):
        digest, _, rel = line.partition("  ")
        if len(digest) != 64 or not rel:
            problems.append(f"{record}:{n}: not '<sha256>  <path>'")
            continue
        recorded[rel] = digest
    for rel, digest in recorded.items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{path}: recorded in {RECORD} but missing")
        elif file_sha256(path) != digest:
            problems.append(f"{path}: sha256 differs from {RECORD} (the file changed since the zoo was built)")
    for path in zoo_files(root):
        if path.relative_to(root).as_posix() not in recorded:
            problems.append(f"{path}: not in {RECORD}")
    return problems
