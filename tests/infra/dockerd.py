"""A private dockerd for the container tier, plus an offline Debian/Python base image and a local wheelhouse.

dockerd runs with no bridge, no iptables and no forwarding (containers get `--network none`), its own
socket, exec-root and pid file under a short /tmp folder, and a data-root CACHED under
$QC2C_DOCKER_TEST_CACHE (default ~/.cache/qc2c/docker-test) so images and BuildKit layers survive between
runs. It is stopped by its pid, never by name; a dockerd left behind by a killed run is found by the pid
file kept beside the cached data-root and stopped the same way.

The base image is `mmdebstrap --variant=minbase` of this machine's Debian suite from the mirror in
/etc/apt/sources.list*, imported with `docker import`, tagged by a hash of its recipe. The wheelhouse is
`pip download` of requirements.lock (+ setuptools, the build backend), keyed by the lock's hash, served
to the image build over http on 127.0.0.1 (the build uses `--network host`).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from infra import missing_reason, pid_alive, read_pid, stop_pid_file, wait_until

DOCKERD = "/usr/sbin/dockerd"
MMDEBSTRAP = "/usr/bin/mmdebstrap"
# Debian's CLI has BuildKit built in; a newer CLI without the buildx plugin cannot do RUN --mount.
DOCKER_CLI = "/usr/bin/docker"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
RECIPE_VERSION = 1  # bump when the base recipe below changes in a way the hash cannot see


def unavailable() -> str | None:
    return missing_reason([DOCKERD, MMDEBSTRAP, DOCKER_CLI])


def cache_root() -> Path:
    return Path(os.environ.get("QC2C_DOCKER_TEST_CACHE") or Path.home() / ".cache" / "qc2c" / "docker-test")


@dataclass
class Dockerd:
    """A running private dockerd; `host` is its DOCKER_HOST."""

    data_root: Path
    run_dir: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid_file(self) -> Path:
        return self.data_root.parent / "dockerd.pid"  # beside the cache: a stale daemon is found next time

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(self, *args: str, check: bool = True, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        env = {**self.env(), "DOCKER_BUILDKIT": "1"}
        return subprocess.run(
            [DOCKER_CLI, *args], env=env, capture_output=True, text=True, check=check, timeout=timeout_s
        )

    def start(self) -> Dockerd:
        self._stop_stale()
        self.data_root.mkdir(parents=True, exist_ok=True)
        argv = [
            DOCKERD,
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            f"--data-root={self.data_root}",
            f"--exec-root={self.run_dir / 'exec'}",
            f"--pidfile={self.pid_file}",
            f"--host={self.host}",
        ]
        log = open(self.run_dir / "dockerd.log", "ab")  # noqa: SIM115 - the daemon owns it until it exits
        self._proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        wait_until(self._ready, 30, f"dockerd on {self.socket} (log: {self.run_dir / 'dockerd.log'})", 0.1)
        return self

    def _stop_stale(self) -> None:
        """A dockerd of a killed run still holds the cached data-root: stop it (only if the pid is ours)."""
        pid = read_pid(self.pid_file)
        if pid_alive(pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                cmdline = []
            if f"--data-root={self.data_root}".encode() in cmdline:
                stop_pid_file(self.pid_file, timeout_s=30)
                return
        self.pid_file.unlink(missing_ok=True)

    def _ready(self) -> bool:
        if not self.socket.exists() or not pid_alive(read_pid(self.pid_file)):
            return False
        return self.docker("version", "--format", "{{.Server.Version}}", check=False, timeout_s=10).returncode == 0

    def stop(self) -> None:
        """SIGTERM by pid and reap it (an unreaped child would look alive to a pid-file check)."""
        proc = self._proc
        if proc is None:
            stop_pid_file(self.pid_file, timeout_s=30)
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        self.pid_file.unlink(missing_ok=True)

    def has_image(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0


@contextmanager
def running_dockerd() -> Iterator[Dockerd]:
    """Start the private dockerd (cached data-root, fresh short run dir) and stop it by pid afterwards."""
    with tempfile.TemporaryDirectory(prefix="qc2c-dockerd-", dir="/tmp") as run_dir:
        daemon = Dockerd(data_root=cache_root() / "data", run_dir=Path(run_dir)).start()
        try:
            yield daemon
        finally:
            daemon.stop()


# ---- base image: Debian minbase + python3, built offline from the apt mirror ----


def debian_suite_and_mirror() -> tuple[str, str]:
    """(codename, mirror URL) of this machine's Debian, from /etc/os-release and /etc/apt/sources.list*."""
    release = Path("/etc/os-release").read_text()
    codename = re.search(r"^VERSION_CODENAME=(\S+)", release, re.M)
    if codename is None:
        raise RuntimeError("/etc/os-release: VERSION_CODENAME missing; cannot pick the Debian suite")
    texts = [p.read_text() for p in sorted(Path("/etc/apt").glob("sources.list*/**/*")) if p.is_file()]
    texts += [Path("/etc/apt/sources.list").read_text()] if Path("/etc/apt/sources.list").is_file() else []
    for text in texts:
        for uri in re.findall(r"^URIs:\s*(\S+)|^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            url = next(u for u in uri if u)
            if re.search(r"/debian/?$", url):
                return codename.group(1), url
    raise RuntimeError("no Debian mirror (…/debian) found in /etc/apt/sources.list*; needed by mmdebstrap")


def base_recipe() -> dict[str, object]:
    suite, mirror = debian_suite_and_mirror()
    return {"version": RECIPE_VERSION, "suite": suite, "mirror": mirror, "packages": list(BASE_PACKAGES)}


def base_image(daemon: Dockerd) -> str:
    """`qc2c-test-base:<recipe hash>`: reused from the cached data-root, else imported from the cached tar,
    else built with mmdebstrap (≈20 s) first."""
    recipe = base_recipe()
    key = hashlib.sha256(repr(sorted(recipe.items())).encode()).hexdigest()[:16]
    ref = f"qc2c-test-base:{key}"
    if daemon.has_image(ref):
        return ref
    tarball = cache_root() / f"base-{key}.tar"
    if not tarball.is_file():
        partial = tarball.with_suffix(".tar.partial")
        subprocess.run(
            [
                MMDEBSTRAP,
                "--quiet",
                "--variant=minbase",
                "--format=tar",
                f"--include={','.join(BASE_PACKAGES)}",
                str(recipe["suite"]),
                str(partial),
                str(recipe["mirror"]),
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        partial.rename(tarball)
    daemon.docker("import", "--change", 'CMD ["/bin/bash"]', str(tarball), ref)
    return ref


# ---- wheelhouse: requirements.lock as wheels for the base's Python, served on 127.0.0.1 ----


def wheelhouse(repo: Path, python_version: str = "3.11") -> Path:
    """`pip download` of the lock (binary wheels for `python_version`) + setuptools; cached by lock hash."""
    lock = (repo / "requirements.lock").read_bytes()
    key = hashlib.sha256(lock + python_version.encode()).hexdigest()[:16]
    target = cache_root() / f"wheels-{key}"
    if (target / ".complete").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    common = ["--quiet", "--dest", str(target), "--only-binary=:all:", "--python-version", python_version]
    pip = [sys.executable, "-m", "pip", "download", *common]
    subprocess.run([*pip, "-r", str(repo / "requirements.lock")], check=True, capture_output=True, timeout=1800)
    subprocess.run([*pip, "setuptools>=68"], check=True, capture_output=True, timeout=600)
    (target / ".complete").write_text("ok\n")
    return target


@contextmanager
def serving(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a pip --find-links page); yields the base URL.

    The port is derived from the folder name when free: the URL is a build argument of the pip layer,
    so a new port every run would invalidate the cached dependency layer.
    """
    handler = functools.partial(_QuietHandler, directory=str(directory))
    preferred = 40000 + int(hashlib.sha256(directory.name.encode()).hexdigest(), 16) % 20000
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", preferred), handler)
    except OSError:  # taken: still works, only the pip layer is rebuilt
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass
