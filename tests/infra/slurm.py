"""A throw-away one-node Slurm on 127.0.0.1: munged + slurmctld + slurmd, cgroup-free, own ports and pids.

No slurmdbd: `sacct` does not work here, which is exactly the "job left squeue" situation the status code
must survive (MinJobAge is short so finished jobs vanish quickly). Clients need `SLURM_CONF=<conf>`.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from infra import free_port, missing_reason, pid_alive, read_pid, stop_pid_file, wait_until

BINARIES = ["/usr/sbin/munged", "munge", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "sbatch", "squeue", "scontrol"]


def unavailable() -> str | None:
    return missing_reason(BINARIES)


@dataclass
class SlurmCluster:
    root: Path
    partition: str = "debug"
    min_job_age_s: int = 5
    ctld_port: int = field(default_factory=free_port)
    slurmd_port: int = field(default_factory=free_port)
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "run" / "munge.socket"

    def pid_file(self, daemon: str) -> Path:
        return self.root / "run" / f"{daemon}.pid"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_files(self) -> None:
        for sub in ("etc", "run", "log", "state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        mem_mib = int(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 * 0.5)
        log = self.root / "log"
        self.conf.write_text(
            f"""# one node on loopback, no cgroups, no accounting daemon
ClusterName=qc2ctest
SlurmctldHost={self.node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool"}
SlurmctldPidFile={self.pid_file("slurmctld")}
SlurmdPidFile={self.pid_file("slurmd")}
SlurmctldLogFile={log / "slurmctld.log"}
SlurmdLogFile={log / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={log / "jobcomp.txt"}
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MinJobAge={self.min_job_age_s}
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
SchedulerParameters=sched_interval=1,bf_interval=1
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem_mib} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        )
        key = self.root / "etc" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        key.chmod(0o400)

    def _munge_ok(self) -> bool:
        sock = str(self.munge_socket)
        cred = subprocess.run(["munge", "-S", sock, "-n"], capture_output=True)
        return (
            cred.returncode == 0
            and subprocess.run(["unmunge", "-S", sock], input=cred.stdout, capture_output=True).returncode == 0
        )

    def _node_ready(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-n", self.node, "-o", "%T"], capture_output=True, text=True, env=self.env)
        return out.stdout.strip().rstrip("*") in ("idle", "mixed", "allocated")

    def start(self) -> SlurmCluster:
        self.write_files()
        run, log = self.root / "run", self.root / "log"
        if not pid_alive(read_pid(self.pid_file("munged"))):
            subprocess.run(
                [
                    "/usr/sbin/munged",
                    "--force",
                    f"--socket={self.munge_socket}",
                    f"--key-file={self.root / 'etc' / 'munge.key'}",
                    f"--pid-file={self.pid_file('munged')}",
                    f"--log-file={log / 'munged.log'}",
                    f"--seed-file={run / 'munged.seed'}",
                ],
                check=True,
            )
            wait_until(self._munge_ok, 10, "munged")
        if not pid_alive(read_pid(self.pid_file("slurmctld"))):
            subprocess.run(["/usr/sbin/slurmctld", "-c"], check=True, env=self.env)
        if not pid_alive(read_pid(self.pid_file("slurmd"))):
            subprocess.run(["/usr/sbin/slurmd", "-N", self.node], check=True, env=self.env)
        wait_until(self._node_ready, 60, f"node {self.node} idle (see {log})", 0.2)
        return self

    def stop(self) -> None:
        for daemon in ("slurmd", "slurmctld", "munged"):
            stop_pid_file(self.pid_file(daemon))

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
