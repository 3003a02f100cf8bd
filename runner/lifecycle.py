"""The lifecycle every run kind shares: claim → run folder → running → body → complete | preempted | failed.

`execute_lifecycle(plan, body)` claims the run in the registry (one locked compare-and-set: a second copy
exits EXIT_ALREADY_RUNNING and touches nothing), prepares the run folder (a re-run moves the old one aside),
opens logs/run.log, writes manifest.yaml and status.json, calls `body` and records how it ended. One place
decides statuses, so eval runs (runner.execute) and train runs (runner.train_exec) cannot drift.

Stop signals: SIGTERM / SIGINT / SIGUSR1 / SIGHUP set a flag (`StopFlag`) that a body checks between
batches or steps; a call wrapped with `StopFlag.interruptible` (scoring a batch, which writes nothing) is
abandoned at once. Either way the body raises `Preempted`: status.json says "preempted", the registry entry
is released, and the exit code is EXIT_PREEMPTED (75), which Slurm's requeue path checks; a re-run of the
same manifest resumes from the progress on disk. `RunFailed` (or any other exception) marks the run failed
(exit 1); a full disk releases the entry instead, so that a re-run resumes once space is freed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, ParamSpec, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from qc2c.errors import ProblemsError
from runner import fsio
from runner.exitcodes import EXIT_ALREADY_RUNNING, EXIT_OK, EXIT_PREEMPTED, EXIT_RUN_FAILED
from runner.plan import Plan, decide
from runner.provenance import redact, secret_values
from runner.registry import AlreadyRunning, Registry, now_iso
from runner.status import StatusFile

REPO_ROOT = Path(__file__).resolve().parents[1]

P = ParamSpec("P")
R = TypeVar("R")


class Preempted(Exception):
    """A stop signal arrived; progress up to the last batch is on disk."""


class RunFailed(Exception):
    """The run cannot complete (too many sample errors, nothing scored, preflight refusal)."""


class _StopNow(BaseException):
    """Raised by the signal handler inside `StopFlag.interruptible` calls. A BaseException, so that the
    scorers' per-sample `except Exception` does not record a stop signal as a sample error."""


class StopFlag:
    """Set by SIGTERM / SIGINT / SIGUSR1 / SIGHUP; checked between batches. SIGHUP is what a closing shell
    sends its background jobs: it flushes and releases like a preemption instead of dying at once (exit 129)
    with the registry left at "running"."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)
    # process-wide on purpose: a stop signal stops the process, so a sweep must not start its next run after a
    # signal that arrived while a run was finishing (after its last check); `runner run` resets it per command
    received: int | None = None

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}
        self._armed = False

    def install(self) -> None:
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal = signum
        StopFlag.received = signum
        if self._armed:
            self._armed = False
            raise _StopNow

    def interruptible(self, fn: Callable[P, R]) -> Callable[P, R]:
        """`fn`, abandoned at once when a stop signal arrives during it (Preempted), instead of finishing first:
        a generation of max_new_tokens per sample can take minutes, more than a scheduler's grace period. Only
        for calls that write nothing (scoring a batch): what they computed is dropped and scored on resume."""

        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                self._armed = True
                try:
                    self.check()
                    return fn(*args, **kwargs)
                finally:
                    self._armed = False
            except _StopNow:
                raise Preempted(f"received {signal.Signals(self.signal).name} while scoring a batch") from None

        return call

    def check(self) -> None:
        if self.signal is not None:
            raise Preempted(f"received {signal.Signals(self.signal).name}")


class RedactingFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.secrets = secret_values()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = ()
        return True


class QuietFileHandler(logging.FileHandler):
    """run.log's handler: a line that cannot be written (a full disk) is dropped, not reported with a
    "--- Logging error ---" traceback on stderr for every later line; the run's own error path says why."""

    dropped = 0  # lines not written

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.dropped += 1


def open_log(run_dir: Path, *, echo: bool = True) -> logging.Logger:
    """logs/run.log (appended across resumes) and, when `echo`, the same lines on stderr; secrets redacted."""
    log = logging.getLogger(f"qc2c.run.{run_dir}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [QuietFileHandler(run_dir / "logs" / "run.log", encoding="utf-8")]
    if echo:
        handlers.append(logging.StreamHandler(sys.stderr))
    handlers[0].setLevel(logging.DEBUG)
    for handler in handlers[1:]:
        handler.setLevel(logging.INFO)
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
        handler.addFilter(RedactingFilter())
        log.addHandler(handler)
    return log


def prepare_run_dir(plan: Plan) -> None:
    """A re-run of an invalid/failed run moves the old folder aside (never deletes results)."""
    if plan.decision == "rerun" and plan.run_dir.exists():
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = plan.run_dir.parent / ".superseded" / f"{plan.run_tag}-{stamp}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(plan.run_dir), str(aside))
    plan.run_dir.mkdir(parents=True, exist_ok=True)


def write_manifest_yaml(plan: Plan) -> None:
    """manifest.yaml: the resolved manifest (defaults filled, ${VAR} expanded), dumped with ruamel."""
    data = redact(plan.manifest.model_dump(mode="json", by_alias=True))
    doc = CommentedMap(data)
    source = plan.source or "(sweep member)"
    doc.yaml_set_start_comment(f"resolved manifest of run {plan.run_tag}\nsource: {source}\nrun_key: {plan.run_key}")
    buf = io.StringIO()
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.dump(doc, buf)
    fsio.atomic_write(plan.run_dir / "manifest.yaml", buf.getvalue())


@dataclass
class RunHandles:
    """What a run body writes through: its log, the run registry, status.json and the stop flag."""

    log: logging.Logger
    registry: Registry
    status: StatusFile
    stop: StopFlag


def execute_lifecycle(plan: Plan, body: Callable[[RunHandles], str], *, echo: bool = True, label: str = "run") -> int:
    """The lifecycle every run kind shares: running → `body` → complete | preempted (75) | failed.

    `body` raises Preempted on a stop signal, RunFailed (or any exception) when the run cannot complete, and
    returns a note for the completion line. One place decides statuses, so eval and train runs cannot drift.
    The run is claimed first (one locked compare-and-set): a copy that loses touches nothing in the run folder.
    """
    m = plan.manifest
    registry = Registry(plan.runs_dir)
    try:
        before = registry.claim(plan.run_key, run_dir=str(plan.run_dir), manifest=m.name)
    except AlreadyRunning as exc:
        print(f"{plan.run_dir}: {exc}; not started twice (exit {EXIT_ALREADY_RUNNING})", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    plan.decision, plan.reason = decide(before, plan.run_dir)  # what the plan read may be stale by now
    if plan.decision == "skip":  # completed by another copy since the plan was made
        plan.run_dir = Path(before.run_dir) if before is not None and before.run_dir else plan.run_dir
        print(f"{plan.run_dir}: skip ({plan.reason})", file=sys.stderr)
        return EXIT_OK
    log = logging.getLogger(f"qc2c.run.{plan.run_dir}")  # configured by open_log once the folder exists
    run = RunHandles(log, registry, StatusFile(plan.run_dir, plan.run_key), StopFlag())
    run.stop.install()
    try:
        return _owned_run(plan, body, run, echo=echo, label=label)
    except OSError as exc:
        if not fsio.disk_full(exc):
            raise
        return out_of_space(plan, run, exc)
    finally:
        run.stop.restore()


def _owned_run(plan: Plan, body: Callable[[RunHandles], str], run: RunHandles, *, echo: bool, label: str) -> int:
    """The claimed part of `execute_lifecycle`; a full disk propagates (its handler must not log or write
    much: every write it makes lands on the same full disk)."""
    prepare_run_dir(plan)
    run.log = log = open_log(plan.run_dir, echo=echo)
    log.info("%s %s (%s): decision %s: %s", label, plan.run_tag, plan.run_key, plan.decision, plan.reason)
    try:
        write_manifest_yaml(plan)
        run.status.write("running")
        note = body(run)
    except Preempted as exc:
        return preempt_run(plan, run, exc)
    except RunFailed as exc:
        return _fail(plan, run, str(exc))
    except Exception as exc:  # noqa: BLE001 - logged with traceback, one line on stderr, run marked failed
        if fsio.disk_full(exc):
            raise
        log.debug("traceback:\n%s", traceback.format_exc())
        return _fail(plan, run, failure_reason(exc))
    return complete_run(plan, run, note)


def failure_reason(exc: BaseException) -> str:
    """The one line a failed run records: a RunFailed's message, a ProblemsError's problems, else type: message."""
    if isinstance(exc, RunFailed):
        return str(exc)
    if isinstance(exc, ProblemsError) and exc.problems:
        return "; ".join(exc.problems)
    return f"{type(exc).__name__}: {exc}"


def preempt_run(plan: Plan, run: RunHandles, exc: Preempted) -> int:
    """A stop signal: status.json says preempted, the registry entry is released; returns EXIT_PREEMPTED."""
    run.log.warning("preempted (%s): progress is on disk; re-run the same manifest to resume", exc)
    run.status.write("preempted", exit_code=EXIT_PREEMPTED, reason=str(exc))
    run.registry.release(plan.run_key, f"preempted ({exc})")
    return EXIT_PREEMPTED


def complete_run(plan: Plan, run: RunHandles, note: str = "") -> int:
    """status.json and the registry say complete; returns EXIT_OK."""
    run.status.write("complete", exit_code=EXIT_OK)
    m = plan.manifest
    run.registry.set_status(plan.run_key, "complete", run_dir=str(plan.run_dir), manifest=m.name, completed=now_iso())
    run.log.info("complete: %s%s", plan.run_dir, note)
    return EXIT_OK


def out_of_space(plan: Plan, run: RunHandles, exc: OSError, *, echo: bool = True) -> int:
    """A full disk: one line naming the file and the free space; status.json says failed and the registry
    entry is released (not failed), so that once space is freed a re-run resumes the progress on disk. Both
    are small files rewritten in place when no new block can be had; what still cannot be written is left."""
    line = fsio.no_space_line(exc, plan.run_dir)
    if echo:
        print(line, file=sys.stderr)
    run.log.debug("run stopped: %s", line)
    with contextlib.suppress(OSError):
        run.status.write("failed", exit_code=EXIT_RUN_FAILED, reason=line)
    with contextlib.suppress(OSError):
        run.registry.release(plan.run_key, "no space left on device: free space, then run again to resume")
    return EXIT_RUN_FAILED


def _fail(plan: Plan, run: RunHandles, reason: str) -> int:
    return fail_run(plan, run.log, run.status, run.registry, reason)


def fail_run(plan: Plan, log: logging.Logger, status: StatusFile, registry: Registry, reason: str) -> int:
    """Mark a claimed run failed (run.log, status.json, registry); returns EXIT_RUN_FAILED."""
    log.error("run failed: %s", reason)
    status.write("failed", exit_code=EXIT_RUN_FAILED, reason=reason)
    registry.set_status(
        plan.run_key, "failed", run_dir=str(plan.run_dir), manifest=plan.manifest.name, reason=redact(reason)
    )
    return EXIT_RUN_FAILED
