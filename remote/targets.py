"""Remote targets (`remote/targets.yaml`): where jobs run and how to reach them, validated before any connection.

Why pydantic + ruamel line numbers: a typo in a target must fail at once with `file:line: field: message`
(exit 2), not as an ssh error minutes later. Targets list the *names* of environment variables to forward,
never values (SkyPilot's `secrets:` split); values are read locally at launch and written on the far side
into a mode-600 file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from qc2c.errors import ProblemsError

# Same pattern as manifest names: safe in a file name and a Slurm job name (tmux renames '.' and ':', see
# render.tmux_session). Every pattern is applied with fullmatch: `$` alone also matches before a final
# newline, so 'smoke\n' would pass and render a launcher that bash rejects.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Host names / ssh-config aliases / users: no shell metacharacters, no leading dash (option injection).
HOST_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,252}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
# Far-side paths: absolute or ~/..., printable, no newline, no leading dash.
PATH_RE = re.compile(r"^(/|~/)[A-Za-z0-9_.,+@%/=-]*$")
SBATCH_OPT_RE = re.compile(r"^--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:+@%/=-]+)?$")
DEFAULT_TARGETS = Path("remote/targets.yaml")


class UnsafeName(ValueError):
    """A name (run tag, job name, target) that does not match NAME_RE: refused before any quoting."""


def check_name(value: str, what: str = "name") -> str:
    """Return `value` if it is a safe name, else raise: hostile names are refused, never escaped."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise UnsafeName(f"{what} {value!r} is not allowed (must match {NAME_RE.pattern})")
    return value


def check_remote_path(value: str, what: str = "path") -> str:
    if not isinstance(value, str) or not PATH_RE.fullmatch(value) or "/../" in f"{value}/":
        raise UnsafeName(f"{what} {value!r} is not allowed (absolute or ~/ path of [A-Za-z0-9_.,+@%/=-])")
    return value


class Slurm(BaseModel):
    """sbatch resources; every value becomes one `#SBATCH --flag=value` line."""

    model_config = ConfigDict(extra="forbid")
    partition: str | None = Field(None, pattern=NAME_RE.pattern.replace("[a-z0-9]", "[A-Za-z0-9]"))
    account: str | None = Field(None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    gpus: int = Field(0, ge=0, le=64)
    cpus: int = Field(1, ge=1, le=512)
    mem: str = Field("4G", pattern=r"^[0-9]+[KMGT]?$")
    time: str = Field("01:00:00", pattern=r"^([0-9]+-)?[0-9]{1,2}(:[0-9]{2}){0,2}$")
    extra: list[str] = Field(default_factory=list)

    @field_validator("extra")
    @classmethod
    def _extra_flags(cls, value: list[str]) -> list[str]:
        for flag in value:
            if not SBATCH_OPT_RE.fullmatch(flag):
                raise ValueError(f"sbatch option {flag!r} must look like --name or --name=value (no spaces)")
        return value


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", exclude=True)
    kind: Literal["runpod", "slurm"]
    host: str = Field(pattern=HOST_RE.pattern)
    port: int = Field(22, ge=1, le=65535)
    user: str | None = Field(None, pattern=USER_RE.pattern)
    identity_file: str | None = None
    ssh_config: str | None = None  # local ssh config file; `host` is then an alias in it
    workdir: str
    env_file: str | None = None
    known_hosts: Literal["strict", "accept-new", "insecure-auto-add"] = "strict"
    known_hosts_file: str | None = None  # local file; default ~/.ssh/known_hosts
    forward_env: list[str] = Field(default_factory=list)
    venv: str | None = None
    run_command: list[str] = Field(default_factory=lambda: ["python", "-m", "runner", "run"])
    slurm: Slurm | None = None

    @field_validator("workdir", "env_file", "venv")
    @classmethod
    def _remote_paths(cls, value: str | None) -> str | None:
        return None if value is None else check_remote_path(value)

    @field_validator("forward_env")
    @classmethod
    def _env_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not ENV_NAME_RE.fullmatch(name):
                raise ValueError(f"environment variable name {name!r} is not valid")
        return value

    @field_validator("run_command")
    @classmethod
    def _run_command(cls, value: list[str]) -> list[str]:
        if not value or any(not re.fullmatch(r"[A-Za-z0-9_./=:-]+", a) for a in value):
            raise ValueError("run_command must be a non-empty list of plain words")
        return value

    @model_validator(mode="after")
    def _kind_settings(self) -> Target:
        if self.kind == "runpod" and self.slurm is not None:
            raise ValueError("slurm: only allowed for kind: slurm")
        if self.kind == "slurm" and self.slurm is None:
            self.slurm = Slurm()
        if self.identity_file and self.ssh_config:
            raise ValueError("give identity_file or ssh_config (an alias in it), not both")
        return self


class TargetError(ProblemsError):
    """Bad targets file; `.problems` are `file:line: field: message` lines."""


def _line_of(node: object, loc: tuple[object, ...]) -> int | None:
    """1-based line of the deepest node on `loc` that ruamel knows about."""
    line = None
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            line = node.lc.key(key)[0] + 1
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        else:
            break
    return line


def load_targets(path: str | Path = DEFAULT_TARGETS) -> dict[str, Target]:
    """Parse and validate every target; all problems are reported together."""
    path = Path(path)
    try:
        data = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError([f"{path}:1: targets file not found (copy remote/targets.example.yaml)"]) from None
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise TargetError([f"{path}:{(mark.line + 1) if mark else 1}: YAML: {exc}"]) from None
    if not isinstance(data, CommentedMap) or not isinstance(data.get("targets"), CommentedMap):
        raise TargetError([f"{path}:1: targets: expected a mapping `targets: {{name: {{...}}}}`"])
    targets: dict[str, Target] = {}
    problems: list[str] = []
    for name, body in data["targets"].items():
        base_line = data["targets"].lc.key(name)[0] + 1
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            problems.append(f"{path}:{base_line}: targets.{name}: name must match {NAME_RE.pattern}")
            continue
        try:
            targets[name] = Target.model_validate({**dict(body or {}), "name": name})
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                line = _line_of(body, loc) or base_line
                field = ".".join(str(p) for p in ("targets", name, *loc))
                problems.append(f"{path}:{line}: {field}: {err['msg']}")
        except ValueError as exc:
            problems.append(f"{path}:{base_line}: targets.{name}: {exc}")
    if problems:
        raise TargetError(problems)
    return targets


def get_target(name: str, path: str | Path = DEFAULT_TARGETS) -> Target:
    targets = load_targets(path)
    if name not in targets:
        known = ", ".join(sorted(targets)) or "none"
        raise TargetError([f"{path}:1: targets.{name}: unknown target (known: {known})"])
    return targets[name]
