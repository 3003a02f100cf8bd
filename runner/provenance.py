"""provenance.json: what produced a run (code, packages, device, models, fuser, data) — and secret redaction.

Gathered at run time, never reconstructed. Secrets: the values of every environment variable whose name looks
secret (TOKEN, SECRET, PASSWORD/PASSWD, CREDENTIAL, COOKIE anywhere in it, or an AUTH, KEY or API_KEY part)
never reach a file or a log, nor do the credentials of a URL (`https://user:pw@host`, `?token=...`): a URL
such as HF_ENDPOINT is recorded without them. `redact` is the one function that enforces it; provenance,
status, logs and records all pass through it (docs/golden.md §3, failure mode 8).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

_SECRET_WORD = r"TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|PRIVATE|AUTH|COOKIE|(?:^|_)(?:API_?)?KEY(?:$|_)"
SECRET_NAME = re.compile(_SECRET_WORD, re.IGNORECASE)  # environment variable names
SECRET_FIELD = re.compile(rf"^[A-Z0-9_]*(?:{_SECRET_WORD})[A-Z0-9_]*$")  # upper-case (env-style) keys in documents
URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")  # scheme://user:password@host
URL_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:[a-z0-9_-]*(?:token|key|secret|passw[a-z]*|sig|signature|auth)[a-z0-9_-]*)=)[^&#\s]+"
)
REDACTED = "[redacted]"
PACKAGES = ("torch", "transformers", "datasets", "tokenizers", "safetensors", "huggingface-hub", "pydantic", "qc2c")
MIN_SECRET_LEN = 4  # shorter values ("1", "on") would redact ordinary text without protecting anything


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of secret-looking environment variables, longest first (so overlapping values redact fully)."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """`obj` (str / dict / list / scalar) with every secret value replaced by "[redacted]", recursively.

    Keys written like secret environment variables (upper case, e.g. "HF_TOKEN", "AWS_SECRET") get their
    value redacted whatever it is; ordinary lower-case fields such as "run_key" are left alone.
    """
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, str):
        for value in secrets:
            obj = obj.replace(value, REDACTED)
        if "://" in obj or "=" in obj:
            obj = URL_SECRET_QUERY.sub(rf"\1{REDACTED}", URL_USERINFO.sub(rf"\1{REDACTED}@", obj))
        return obj
    if isinstance(obj, dict):
        return {
            redact(k, secrets): (REDACTED if isinstance(k, str) and SECRET_FIELD.search(k) else redact(v, secrets))
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact(v, secrets) for v in obj]
    return obj


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode("utf-8", "replace")


def git_state(repo: Path) -> dict[str, Any]:
    """Commit, dirty flag and a sha256 of `git diff HEAD` (so two dirty runs can be told apart)."""
    commit = _git(repo, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "diff_sha256": None, "note": "not a git checkout"}
    status = _git(repo, "status", "--porcelain", "--untracked-files=no") or ""
    diff = _git(repo, "diff", "HEAD") or ""
    return {
        "commit": commit.strip(),
        "dirty": bool(status.strip()),
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if status.strip() else None,
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"device": device, "cpu": platform.processor() or platform.machine()}
    info["torch_threads"] = torch.get_num_threads()
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        info.update(gpu=torch.cuda.get_device_name(index), cuda=torch.version.cuda, n_gpus=torch.cuda.device_count())
    return info


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def config_sha256(model_dir: str | os.PathLike[str] | None) -> str | None:
    """sha256 of a model's config.json (identifies architecture and size alongside the revision)."""
    if model_dir is None:
        return None
    path = Path(model_dir) / "config.json"
    return file_sha256(path) if path.is_file() else None


def collect(
    *,
    repo: Path,
    device: str,
    run_key: str,
    models: dict[str, Any],
    fuser: dict[str, Any] | None,
    datasets: dict[str, Any],
    container: dict[str, Any] | None,
) -> dict[str, Any]:
    """The provenance document, redacted. `models`/`fuser`/`datasets` are filled by the caller at run time."""
    doc = {
        "run_key": run_key,
        "git": git_state(repo),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "packages": package_versions(),
        "device": device_info(device),
        "models": models,
        "fuser": fuser,
        "datasets": datasets,
        "container": container or {"runtime": "native", "image": None, "image_digest": None},
        "env": {k: v for k, v in os.environ.items() if k.startswith(("QC2C_", "HF_", "CUDA_", "SLURM_JOB"))},
    }
    return redact(doc)
