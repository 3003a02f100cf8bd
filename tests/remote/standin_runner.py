"""A stand-in for `python -m runner run MANIFEST`, honouring the runner's contract that remote/ relies on.

Used by the remote integration tests where the real runner would be too fast to preempt: it writes the run
folder (runs/<milestone>/<name>-<key[:10]>/) with status.json (atomic, per sample), progress/mini.jsonl
(fsync'd lines, one per sample id, resumed without duplicates) and results/mini.json; on SIGUSR1/SIGTERM
it flushes and exits 75 (preempted); `standin.fail_at: N` fails at sample N with exit 1.

Manifest keys read: name, milestone, standin: {n_samples, sleep_s, fail_at}.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from ruamel.yaml import YAML

from runner.fsio import append_line_fsync, atomic_write_json


def run_dir_of(manifest: dict) -> tuple[Path, str]:
    key = hashlib.sha256(json.dumps(manifest.get("standin", {}), sort_keys=True).encode()).hexdigest()
    return Path("runs") / manifest["milestone"] / f"{manifest['name']}-{key[:10]}", key


def main(path: str) -> int:
    manifest = YAML(typ="safe").load(Path(path).read_text())
    spec = manifest.get("standin", {})
    n_total, sleep_s, fail_at = int(spec.get("n_samples", 5)), float(spec.get("sleep_s", 0.0)), spec.get("fail_at")
    run_dir, key = run_dir_of(manifest)
    progress = run_dir / "progress" / "mini.jsonl"
    done = [json.loads(line)["id"] for line in progress.read_text().splitlines()] if progress.exists() else []
    stop = {"signal": None}
    signal.signal(signal.SIGUSR1, lambda s, f: stop.update(signal=s))
    signal.signal(signal.SIGTERM, lambda s, f: stop.update(signal=s))

    def status(state: str, exit_code: int | None = None) -> None:
        atomic_write_json(
            run_dir / "status.json",
            {
                "state": state,
                "run_key": key,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "updated": datetime.now(UTC).isoformat(),
                "eta_s": (n_total - len(done)) * sleep_s,
                "datasets": {"mini": {"n_done": len(done), "n_total": n_total, "n_errors": 0}},
                "exit_code": exit_code,
            },
        )

    status("running")
    print(
        f"standin: resuming at {len(done)}/{n_total} restart={os.environ.get('SLURM_RESTART_COUNT', '-')}", flush=True
    )
    for i in range(len(done), n_total):
        if stop["signal"] is not None:
            status("preempted", 75)
            print(f"standin: signal {stop['signal']}, flushed at {len(done)}", flush=True)
            return 75
        if fail_at is not None and i == int(fail_at):
            status("failed", 1)
            print(f"standin: sample {i} failed", file=sys.stderr, flush=True)
            return 1
        time.sleep(sleep_s)
        append_line_fsync(progress, [json.dumps({"id": f"mini-{i}", "correct": i % 2 == 0})])
        done.append(f"mini-{i}")
        status("running")
    atomic_write_json(run_dir / "results" / "mini.json", {"run_key": key, "n": n_total})
    status("complete", 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
