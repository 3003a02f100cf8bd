"""Run a manifest inside the qc2c image: choose the runtime, build the docker run request, run it.

`runner run` calls `choose_runtime` and, when it says "docker", `run_in_container`; the container runs the
same `python -m runner` code path natively (QC2C_IN_CONTAINER=1 is baked into the image, so a runner
inside never starts a nested container — RunPod pods are containers already).

The request is a plain dict of docker SDK `containers.create` keyword arguments plus `forward_env`: the
NAMES of host variables to pass through (HF_TOKEN, ...). Their values are read only at the moment of the
SDK call, so a printed or logged request never holds a secret.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from runner.image import ContainerError, connect, default_image, image_identity, revision_note

__all__ = [
    "ContainerError",
    "Decision",
    "build_run_request",
    "choose_runtime",
    "container_provenance",
    "image_identity",
    "run_in_container",
]

WORKDIR = "/app"  # the project inside the image (Dockerfile WORKDIR); runs/ and golden/ are mounted here
HF_CACHE = "/cache/huggingface"
TINY_CACHE = "/cache/qc2c/tiny"
# Host variables a run may need inside; passed by name, never by value in anything printed.
FORWARD_ENV = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
    "PYTHONHASHSEED",
)
# Set by the request itself; a manifest's ${VAR} never overrides them.
OWN_ENV = {"HOME", "PATH", "HF_HOME", "QC2C_TINY_CACHE", "QC2C_IN_CONTAINER", "QC2C_RUNS_DIR", "C2C_CKPT_ROOT"}
GPU_DRIVER_ERROR = "could not select device driver"
VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
Runtime = Literal["docker", "native"]
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP)  # USR1: Slurm preemption notice


@dataclass(frozen=True)
class Decision:
    """Which path a run takes and why (printed by `runner run`, so the user always knows)."""

    runtime: Runtime
    reason: str
    image: str | None = None


# ---- runtime choice ----


def choose_runtime(
    requested: str,
    *,
    device: str = "auto",
    image: str | None = None,
    environ: Mapping[str, str] | None = None,
    client: Any = None,
) -> Decision:
    """auto | docker | native → Decision. `docker` refuses with ContainerError where `auto` goes native.

    `device` is the manifest's runtime.device: cuda* (or auto on a host with an NVIDIA GPU) needs the
    engine's GPU runtime, probed by starting a throwaway container with a GPU device request.
    """
    env = os.environ if environ is None else environ
    if requested not in ("auto", "docker", "native"):
        raise ContainerError(f"runtime.container: {requested!r} is not one of auto, docker, native")
    if env.get("QC2C_IN_CONTAINER") == "1":
        return Decision("native", "already inside the qc2c image (QC2C_IN_CONTAINER=1); no nested container")
    if requested == "native":
        return Decision("native", "runtime.container: native")
    image = image or default_image(env)
    try:
        client = client or connect(env)
        identity = image_identity(image, client)
        if wants_gpu(device):
            problem = gpu_runtime_problem(client, image)
            if problem:
                raise ContainerError(problem)
    except ContainerError as exc:
        if requested == "docker":
            raise
        return Decision("native", f"runtime.container: auto chose native: {exc}")
    gpu = ", GPUs via device request" if wants_gpu(device) else ""
    reason = f"runtime.container: {requested}: engine reachable and image {image} present{gpu}"
    return Decision("docker", reason + revision_note(identity.get("revision"), Path.cwd()), image)


def wants_gpu(device: str) -> bool:
    """cuda / cuda:N → True; cpu → False; auto → True when this host shows an NVIDIA GPU."""
    if device.startswith("cuda"):
        return True
    if device == "auto":
        return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None
    return False


def gpu_runtime_problem(client: Any, image: str) -> str | None:
    """None when a GPU container starts; else why not. The error only appears at start, so start one."""
    import docker

    probe = client.containers.create(
        image, entrypoint=["true"], network_mode="none", device_requests=[_gpu_request()], labels={"qc2c.probe": "gpu"}
    )
    try:
        probe.start()
        probe.wait()
    except docker.errors.APIError as exc:
        return gpu_error_message(str(exc.explanation or exc))
    finally:
        probe.remove(force=True)
    return None


def gpu_error_message(engine_error: str) -> str:
    if GPU_DRIVER_ERROR in engine_error:
        return (
            "GPUs requested (runtime.device) but the container engine has no GPU runtime "
            f"({engine_error.strip()}): install the NVIDIA Container Toolkit and run "
            "`nvidia-ctk runtime configure --runtime=docker` + restart dockerd, "
            "or set runtime.device: cpu, or runtime.container: native"
        )
    return f"container engine refused the GPU request: {engine_error.strip()}"


# ---- the run request (pure) ----


def build_run_request(
    manifest_path: str | os.PathLike[str],
    *,
    repo_root: str | os.PathLike[str],
    image: str,
    gpus: bool,
    needs_network: bool,
    env: Mapping[str, str],
    argv: Sequence[str] | None = None,
    manifest_text: str | None = None,
    uid_gid: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """docker SDK `containers.create` kwargs for one run, plus `forward_env` (names only).

    Mounts: runs/ ($QC2C_RUNS_DIR if set) and golden/ at /app/, the manifest read-only at its in-image
    path, the HF cache ($HF_HOME or ~/.cache/huggingface) and the tiny-model cache ($QC2C_TINY_CACHE or
    ~/.cache/qc2c/tiny) under /cache, and $C2C_CKPT_ROOT at the same path (manifests name it by value).
    The user is the host's uid:gid, so run folders on the host stay owned by whoever started the run.
    """
    repo = Path(repo_root).resolve()
    manifest = Path(manifest_path).resolve()
    inside = container_manifest_path(manifest, repo)
    home = Path(env.get("HOME") or "/root")
    runs = Path(env["QC2C_RUNS_DIR"]).resolve() if env.get("QC2C_RUNS_DIR") else repo / "runs"
    volumes = {
        str(runs): {"bind": f"{WORKDIR}/runs", "mode": "rw"},
        str(repo / "golden"): {"bind": f"{WORKDIR}/golden", "mode": "rw"},
        str(manifest): {"bind": inside, "mode": "ro"},
        str(Path(env.get("HF_HOME") or home / ".cache" / "huggingface")): {"bind": HF_CACHE, "mode": "rw"},
        str(Path(env.get("QC2C_TINY_CACHE") or home / ".cache" / "qc2c" / "tiny")): {"bind": TINY_CACHE, "mode": "rw"},
    }
    environment = {"QC2C_IN_CONTAINER": "1", "HF_HOME": HF_CACHE, "QC2C_TINY_CACHE": TINY_CACHE, "HOME": "/tmp"}
    if env.get("C2C_CKPT_ROOT"):
        ckpt = str(Path(env["C2C_CKPT_ROOT"]).resolve())
        volumes[ckpt] = {"bind": ckpt, "mode": "rw"}
        environment["C2C_CKPT_ROOT"] = ckpt
    referenced = set(VAR_REF.findall(manifest_text)) if manifest_text else set()
    forward = sorted(n for n in (set(FORWARD_ENV) | referenced) - OWN_ENV if n in env)
    uid, gid = uid_gid if uid_gid is not None else (os.getuid(), os.getgid())
    command = [inside if _same_file(a, manifest) else a for a in (argv or ["run", str(manifest)])]
    request: dict[str, Any] = {
        "image": image,
        "command": command,
        "working_dir": WORKDIR,
        "user": f"{uid}:{gid}",
        "volumes": volumes,
        "environment": environment,
        "forward_env": forward,
        "network_mode": "bridge" if needs_network else "none",
        "shm_size": "2g",  # torch DataLoader workers share tensors through /dev/shm (64 MiB by default)
        "labels": {"org.qc2c.manifest": str(manifest)},
    }
    if gpus:
        request["device_requests"] = [_gpu_request(env.get("CUDA_VISIBLE_DEVICES"))]
    return request


def container_manifest_path(manifest: Path, repo: Path) -> str:
    """The manifest's path inside the container: same relative path under /app when it is in the repo."""
    try:
        return f"{WORKDIR}/{manifest.relative_to(repo).as_posix()}"
    except ValueError:
        return f"{WORKDIR}/.manifest/{manifest.name}"


def _gpu_request(visible: str | None = None) -> Any:
    import docker

    if visible and visible.strip():
        ids = [d.strip() for d in visible.split(",") if d.strip()]
        return docker.types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])
    return docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])


def _same_file(arg: str, manifest: Path) -> bool:
    try:
        return Path(arg).resolve() == manifest
    except (OSError, ValueError):
        return False


# ---- running ----


def run_in_container(
    manifest_path: str | os.PathLike[str],
    argv: Sequence[str],
    *,
    image: str | None = None,
    repo_root: str | os.PathLike[str] | None = None,
    device: str | None = None,
    environ: Mapping[str, str] | None = None,
    client: Any = None,
    out: TextIO | None = None,
) -> int:
    """Run `python -m runner <argv>` in the image for this manifest; stream its output; return its exit code.

    Signals (SIGINT, SIGTERM, SIGUSR1, SIGHUP) are forwarded to the container, so preemption inside still flushes
    progress and exits 75. The container is removed afterwards, whatever happened.
    """
    import docker

    env = dict(os.environ if environ is None else environ)
    out = out or sys.stderr
    client = client or connect(env)
    image = image or default_image(env)
    identity = image_identity(image, client)
    text = Path(manifest_path).read_text(encoding="utf-8")
    gpus = wants_gpu(device or manifest_device(text, env))
    request = build_run_request(
        manifest_path,
        repo_root=repo_root or Path.cwd(),
        image=identity["image_id"],
        gpus=gpus,
        needs_network=manifest_needs_network(text, env),
        env=env,
        argv=argv,
        manifest_text=text,
    )
    request["environment"].update(
        QC2C_IMAGE=image, QC2C_IMAGE_ID=identity["image_id"], QC2C_IMAGE_DIGEST=identity["image_digest"]
    )
    for source, spec in request["volumes"].items():
        if spec["mode"] == "rw":
            Path(source).mkdir(parents=True, exist_ok=True)
    print(describe(request, identity), file=out, flush=True)
    kwargs = {k: v for k, v in request.items() if k != "forward_env"}
    kwargs["environment"] = {**request["environment"], **{n: env[n] for n in request["forward_env"]}}
    container = client.containers.create(**kwargs)
    try:
        with _forward_signals(container):
            try:
                container.start()
            except docker.errors.APIError as exc:
                raise ContainerError(gpu_error_message(str(exc.explanation or exc))) from None
            for chunk in container.logs(stream=True, follow=True):
                out.write(chunk.decode("utf-8", "replace"))
                out.flush()
            return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


def describe(request: Mapping[str, Any], identity: Mapping[str, Any]) -> str:
    """One line for the log: image, network, GPUs, mounts, forwarded variable names (never values)."""
    mounts = ", ".join(f"{src}->{spec['bind']}:{spec['mode']}" for src, spec in request["volumes"].items())
    forwarded = ", ".join(request["forward_env"]) or "none"
    return (
        f"runner: container {identity['image']} ({identity['image_digest']}); network {request['network_mode']}; "
        f"gpus {'yes' if request.get('device_requests') else 'no'}; user {request['user']}; mounts {mounts}; "
        f"forwarded env (values hidden): {forwarded}"
    )


@contextmanager
def _forward_signals(container: Any) -> Iterator[None]:
    """Forward SIGINT/SIGTERM/SIGUSR1/SIGHUP to the container while it runs (signal handlers: main thread only)."""

    def forward(signum: int, _frame: object) -> None:
        try:
            container.kill(signal=signal.Signals(signum).name)
        except Exception as exc:  # the container may be gone already; the wait() that follows tells
            print(f"runner: could not forward {signal.Signals(signum).name}: {exc}", file=sys.stderr)

    saved: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        saved = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def container_provenance(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """Inside the image: {"runtime": "docker", "image", "image_id", "image_digest", "revision"}; else None."""
    env = os.environ if environ is None else environ
    if env.get("QC2C_IN_CONTAINER") != "1":
        return None
    return {
        "runtime": "docker",
        "image": env.get("QC2C_IMAGE"),
        "image_id": env.get("QC2C_IMAGE_ID"),
        "image_digest": env.get("QC2C_IMAGE_DIGEST"),
        "revision": env.get("QC2C_GIT_COMMIT"),
    }


# ---- what the manifest asks of the container (read before validation, which happens inside) ----


def _peek(text: str, env: Mapping[str, str]) -> dict[str, Any]:
    from ruamel.yaml import YAML

    def expand(match: re.Match[str]) -> str:
        default = match.group(0)[len(match.group(1)) + 2 : -1]
        return env.get(match.group(1)) or (default[2:] if default.startswith(":-") else "")

    data = YAML(typ="safe").load(VAR_REF.sub(expand, text))
    return data if isinstance(data, dict) else {}


def manifest_device(text: str, env: Mapping[str, str] | None = None) -> str:
    runtime = _peek(text, os.environ if env is None else env).get("runtime") or {}
    return str(runtime.get("device") or "auto")


def manifest_needs_network(text: str, env: Mapping[str, str]) -> bool:
    """True when the manifest names something on the Hugging Face hub and HF_HUB_OFFLINE is not set.

    Hub things: a model id that is not tiny:<name> or a path, `fuser.hub`, a dataset other than the
    bundled `mini`, `train.data.dataset` that is not a local file.
    """
    if env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    data = _peek(text, env)
    pair, fuser = data.get("pair") or {}, data.get("fuser") or {}
    models = [pair.get("receiver"), pair.get("sharer")]
    if any(isinstance(m, str) and _is_hub_ref(m) for m in models) or fuser.get("hub"):
        return True
    datasets = (data.get("eval") or {}).get("datasets") or []
    train_data = ((data.get("train") or {}).get("data") or {}).get("dataset")
    return any(d not in ("mini", "demo") for d in datasets) or (isinstance(train_data, str) and _is_hub_ref(train_data))


def _is_hub_ref(ref: str) -> bool:
    return not (ref.startswith(("tiny:", "demo:", "/", ".", "~")) or Path(ref).exists())
