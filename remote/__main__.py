"""`python -m remote VERB TARGET ...` — sync · setup · launch · status · logs · cancel · pull · merge.

The verbs are the Makefile's remote-* targets. Bad input (targets file, names, manifest) prints one line
per problem (`file:line: field: message`) and exits 2, with no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from invoke.exceptions import UnexpectedExit
from paramiko.ssh_exception import SSHException

from remote import ledger
from remote.planning import DEFAULT_CHUNK, plan_tasks
from remote.targets import DEFAULT_TARGETS, TargetError, UnsafeName, get_target
from runner.exitcodes import EXIT_BAD_INPUT, EXIT_RUN_FAILED

VERBS = ("sync", "setup", "launch", "status", "logs", "cancel", "pull", "merge")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m remote", description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=Path, default=DEFAULT_TARGETS, help="targets file (%(default)s)")
    parser.add_argument("--ledger", type=Path, default=ledger.DEFAULT_LEDGER, help="job ledger (%(default)s)")
    parser.add_argument("--repo", type=Path, default=Path("."), help="local repository root (%(default)s)")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        p = sub.add_parser(verb, help=f"{verb} on TARGET")
        p.add_argument("target", help="a name in the targets file")
        if verb == "sync":
            p.add_argument("--git", action="store_true", help="also send .git (slow the first time)")
        if verb == "launch":
            p.add_argument("manifest", type=Path)
            p.add_argument("--sweep", action="store_true", help="expand a sweep file into one job array")
            p.add_argument(
                "--chunk",
                type=_positive,
                default=DEFAULT_CHUNK,
                help="grid points per array task (points differing only in kv share a task: %(default)s)",
            )
        if verb in ("status", "logs", "cancel", "pull", "merge"):
            p.add_argument("--job", help="one job (name or Slurm id); default: all jobs of TARGET (latest for logs)")
        if verb == "status":
            p.add_argument("--json", action="store_true")
        if verb == "logs":
            p.add_argument("-f", "--follow", action="store_true")
        if verb == "merge":
            p.add_argument("--allow", action="append", default=[], help="golden rule to waive (e.g. dirty), recorded")
        if verb == "pull":
            p.add_argument("--partial", action="store_true", help="also pull in-flight runs")
    return parser


def _positive(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def dispatch(args: argparse.Namespace) -> int:
    from remote import merge, tasks

    target = get_target(args.target, args.targets)
    common = {"job": getattr(args, "job", None), "ledger_path": args.ledger}
    if args.verb == "sync":
        return tasks.sync(target, repo=args.repo, include_git=args.git)
    if args.verb == "setup":
        return tasks.setup(target)
    if args.verb == "launch":
        if not args.manifest.is_file():
            raise TargetError([f"{args.manifest}:1: manifest: file not found"])
        chunk = args.chunk

        def planner(manifest: Path, is_sweep: bool) -> list:
            return plan_tasks(manifest, is_sweep, chunk=chunk)

        entry = tasks.launch(target, args.manifest, is_sweep=args.sweep, ledger_path=args.ledger, planner=planner)
        n_tasks = max(entry.task_of) + 1 if entry.task_of else len(entry.run_dirs)
        print(
            f"{entry.target}: launched {entry.name} ({entry.kind} {entry.handle}, {n_tasks} task(s)) -> "
            f"{', '.join(entry.run_dirs)}"
        )
        return 0
    if args.verb == "status":
        return tasks.status(target, as_json=args.json, **common)
    if args.verb == "logs":
        return tasks.logs(target, follow=args.follow, **common)
    if args.verb == "cancel":
        return tasks.cancel(target, **common)
    if args.verb == "pull":
        return tasks.pull(target, repo=args.repo, partial=args.partial, **common)
    return merge.merge(target, repo=args.repo, allow=args.allow, **common)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return dispatch(args)
    except TargetError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
    except UnsafeName as exc:
        print(f"{args.target}: {exc}", file=sys.stderr)
    except ValueError as exc:  # PlanError, ledger problems, pydantic Job validation
        print(str(exc), file=sys.stderr)
    except UnexpectedExit as exc:  # a far command failed: its exit code and stderr, not a traceback
        tail = (exc.result.stderr or exc.result.stdout or "").strip().splitlines()[-3:]
        print(f"{args.target}: far command exited {exc.result.exited}: {' | '.join(tail)}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except (SSHException, OSError) as exc:  # unknown host key, refused connection, bad key file
        print(f"{args.target}: ssh: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
