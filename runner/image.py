"""The qc2c container image: engine connection, identity for provenance, and `make image` (BuildKit build).

The build goes through the docker CLI with DOCKER_BUILDKIT=1 because the Dockerfile uses `RUN --mount`
(pip cache) and the docker SDK only drives the legacy builder. Everything else uses the docker SDK.
Errors are `ContainerError`: one plain line that says what was found and what to do next.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

IMAGE_REPO = "qc2c"
DEFAULT_IMAGE = f"{IMAGE_REPO}:latest"
REVISION_LABEL = "org.opencontainers.image.revision"
BUILDX_MISSING = "buildx component is missing"


class ContainerError(RuntimeError):
    """A container path that cannot work here; the message names the cause and the next step."""


def default_image(environ: Mapping[str, str] | None = None) -> str:
    """The image the runner uses: $QC2C_IMAGE, else qc2c:latest (what `make image` tags last)."""
    env = os.environ if environ is None else environ
    return env.get("QC2C_IMAGE") or DEFAULT_IMAGE


def engine_address(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect(environ: Mapping[str, str] | None = None, *, timeout_s: int = 120) -> Any:
    """A pinged docker SDK client, or ContainerError("no container engine ...")."""
    import docker

    env = dict(os.environ if environ is None else environ)
    try:
        client = docker.from_env(environment=env, timeout=timeout_s)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ContainerError(
            f"no container engine reachable at {engine_address(env)} ({_first_line(exc)}); start dockerd "
            "(or set DOCKER_HOST), or run natively with runtime.container: native / CONTAINER=native"
        ) from None
    return client


def image_identity(image: str, client: Any = None) -> dict[str, Any]:
    """What provenance records about an image: the reference, its id, digest and git revision label.

    `image_digest` is the registry digest when the image came from a registry (RepoDigests); a locally
    built image has none, and then the content-addressed image id stands in (`digest_source` says which).
    """
    import docker

    client = client or connect()
    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound:
        raise ContainerError(missing_image_message(image)) from None
    repo_digests = found.attrs.get("RepoDigests") or []
    labels = found.attrs.get("Config", {}).get("Labels") or {}
    return {
        "image": image,
        "image_id": found.id,
        "image_digest": repo_digests[0].split("@", 1)[1] if repo_digests else found.id,
        "digest_source": "registry" if repo_digests else "image_id",
        "revision": labels.get(REVISION_LABEL),
    }


def missing_image_message(image: str) -> str:
    return (
        f"container image {image} not found in the engine; build it with `make image` "
        "(or set QC2C_IMAGE to an image that exists), or run with runtime.container: native"
    )


def revision_note(revision: str | None, repo_root: Path) -> str:
    """ "" when the image was built from the checkout's HEAD; else a note for the runtime decision line.

    A stale image runs older code than the checkout; provenance records the image's revision either way.
    """
    try:
        head, _ = git_commit(repo_root)
    except ContainerError:
        return ""
    if revision and revision.removesuffix("-dirty") == head:
        return ""
    built = (revision or "unknown")[:12]
    return f" (note: image built from {built}, checkout is at {head[:12]}: `make image` to rebuild)"


# ---- make image ----


def git_commit(repo_root: Path) -> tuple[str, bool]:
    """(full commit, dirty) of the checkout; ContainerError outside a git checkout (the tag needs it)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo_root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ContainerError(
            f"{repo_root}: not a git checkout ({_first_line(exc)}); the image tag is the commit"
        ) from None
    return commit, bool(status.strip())


def image_tags(commit: str, dirty: bool) -> list[str]:
    """qc2c:<short commit> (+ "-dirty" when the tree has uncommitted changes) and qc2c:latest."""
    return [f"{IMAGE_REPO}:{commit[:12]}{'-dirty' if dirty else ''}", DEFAULT_IMAGE]


def build_command(
    repo_root: Path,
    *,
    tags: Sequence[str],
    build_args: Mapping[str, str],
    docker_cli: str,
    network: str | None = None,
) -> list[str]:
    """The `docker build` argv (pure; tested). Build args are not secrets: they end up in image history."""
    argv = [docker_cli, "build", "--progress=plain", "--file", str(repo_root / "Dockerfile")]
    for tag in tags:
        argv += ["--tag", tag]
    for name, value in sorted(build_args.items()):
        argv += ["--build-arg", f"{name}={value}"]
    if network:
        argv += ["--network", network]
    return [*argv, str(repo_root)]


def find_docker_cli(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    cli = env.get("QC2C_DOCKER_CLI") or shutil.which("docker", path=env.get("PATH"))
    if not cli:
        raise ContainerError("no docker CLI found on PATH (set QC2C_DOCKER_CLI); `make image` needs it to build")
    return cli


def build_image(
    repo_root: Path,
    *,
    build_args: Mapping[str, str] | None = None,
    tags: Sequence[str] | None = None,
    docker_cli: str | None = None,
    network: str | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO = sys.stderr,
) -> dict[str, Any]:
    """Build the Dockerfile with BuildKit, tag it, and return the built image's identity.

    GIT_COMMIT comes from the checkout unless given; the engine is checked first so "no engine" is one
    clear line instead of a CLI stack of connection errors.
    """
    env = dict(os.environ if environ is None else environ)
    client = connect(env)
    commit, dirty = git_commit(repo_root)
    args = {"GIT_COMMIT": commit + ("-dirty" if dirty else ""), **(build_args or {})}
    tags = list(tags) if tags else image_tags(commit, dirty)
    argv = build_command(
        repo_root, tags=tags, build_args=args, docker_cli=docker_cli or find_docker_cli(env), network=network
    )
    print("runner image: " + " ".join(argv), file=out, flush=True)
    tail = _stream(argv, {**env, "DOCKER_BUILDKIT": "1"}, out)
    if tail.returncode != 0:
        text = "\n".join(tail.lines)
        if BUILDX_MISSING in text:
            raise ContainerError(
                f"{argv[0]} has BuildKit enabled but no buildx plugin; install docker-buildx-plugin, or point "
                "QC2C_DOCKER_CLI at a docker CLI with BuildKit built in (Debian's /usr/bin/docker)"
            )
        raise ContainerError(f"docker build failed (exit {tail.returncode}): {_last_line(text)}")
    identity = image_identity(tags[0], client)
    identity["tags"] = tags
    return identity


@dataclass
class _Tail:
    returncode: int
    lines: deque[str]


def _stream(argv: list[str], env: dict[str, str], out: TextIO) -> _Tail:
    """Run argv, copying its merged output to `out` line by line; keep the last lines for the error."""
    lines: deque[str] = deque(maxlen=40)
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout or ():
            out.write(line)
            lines.append(line.rstrip("\n"))
    out.flush()
    return _Tail(proc.returncode, lines)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
