"""Loopback daemons for the integration tier: a private sshd and a one-node Slurm, started and stopped by pid.

Everything lives under a temporary folder (configs, keys, state, logs, pid files) and listens on 127.0.0.1
only, on ports picked free at start. Nothing is ever stopped by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pid_file(pid_file: Path, timeout_s: float = 10.0) -> None:
    """SIGTERM the pid in `pid_file`, wait, SIGKILL if it ignored us; then remove the file."""
    pid = read_pid(pid_file)
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        try:
            wait_until(lambda: not pid_alive(pid), timeout_s, f"pid {pid} to exit", 0.1)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def missing_reason(binaries: list[str]) -> str | None:
    """Why the tier cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (daemons, privilege separation); run as root or in CI"
    missing = [b for b in binaries if shutil.which(b) is None and not Path(b).exists()]
    if missing:
        return f"missing {', '.join(missing)}; install with: bash .ci/system-packages"
    return None
