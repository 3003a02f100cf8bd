"""A private OpenSSH server on 127.0.0.1 with key-only auth, its own host key, config and pid file.

Clients trust it through a known_hosts file written here (so strict host-key checking stays on).
Usage: `with SshDaemon(tmp) as sshd: ...` or start()/stop().
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from infra import free_port, missing_reason, pid_alive, port_open, read_pid, stop_pid_file, wait_until

SSHD = "/usr/sbin/sshd"
BINARIES = [SSHD, "ssh", "ssh-keygen", "rsync", "tmux"]


def unavailable() -> str | None:
    return missing_reason(BINARIES)


@dataclass
class SshDaemon:
    root: Path
    port: int = field(default_factory=free_port)

    @property
    def pid_file(self) -> Path:
        return self.root / "sshd.pid"

    @property
    def client_key(self) -> Path:
        return self.root / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    def _keygen(self, path: Path, comment: str) -> None:
        if not path.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)

    def write_files(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self._keygen(self.root / "host_ed25519", "qc2c-test-host")
        self._keygen(self.client_key, "qc2c-test-client")
        authorized = self.root / "authorized_keys"
        authorized.write_text((self.root / "client_ed25519.pub").read_text())
        authorized.chmod(0o600)
        host_pub = (self.root / "host_ed25519.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {' '.join(host_pub)}\n")
        config = self.root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.root / 'host_ed25519'}",
                    f"PidFile {self.pid_file}",
                    f"AuthorizedKeysFile {authorized}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",  # keys live under /tmp
                    "Subsystem sftp internal-sftp",
                    "MaxStartups 50:30:100",
                    "MaxSessions 50",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        return config

    def start(self) -> SshDaemon:
        if pid_alive(read_pid(self.pid_file)):
            return self
        config = self.write_files()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation dir
        subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
        subprocess.run([SSHD, "-f", str(config), "-E", str(self.log)], check=True)  # daemonizes, writes pid file
        wait_until(lambda: port_open(self.port), 10, f"sshd on port {self.port} (see {self.log})")
        return self

    def target_fields(self) -> dict[str, object]:
        """The connection part of a remote target pointing at this daemon (strict host-key checking)."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": "root",
            "identity_file": str(self.client_key),
            "known_hosts_file": str(self.known_hosts),
            "known_hosts": "strict",
        }

    def stop(self) -> None:
        stop_pid_file(self.pid_file)

    def __enter__(self) -> SshDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
