"""Where a fuser comes from: parse a fuser reference and resolve it to a local folder, then load it strictly.

References (`parse_fuser_ref`):

* a path: a local fuser folder (the root holding final/, or final/ itself);
* `hub:<owner>/<repo>[/<subfolder>][@<revision>]`, or the manifest's dict {repo, subfolder, revision}: the
  fuser's own files of a Hugging Face Hub snapshot, from the HF cache (`hub_fuser_dir`);
* `tiny:<receiver>+<sharer>`: a deterministic random fuser of the tiny test zoo (`qc2c.fuser.tiny`);
* `demo:<receiver>+<sharer>`: a trained fuser of the demo zoo (`qc2c.demo.zoo`).

A manifest's `fuser: {from_run: NAME}` is resolved by the runner (its registry knows the runs) into the
path of that run's final/ folder. Whatever the source, `load_fuser` reads the folder with the one strict
loader of the checkpoint format (`qc2c.fuser.checkpoint.load_fuser_dir`) and checks a sha256 pin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qc2c.demo.zoo import DemoZooError, resolve_demo_fuser
from qc2c.fuser.checkpoint import Fuser, FuserError, load_fuser_dir
from qc2c.fuser.tiny import resolve_tiny_fuser


def hub_fuser_dir(repo: str, subfolder: str = "", revision: str = "main") -> Path:
    """The snapshot folder of `repo/subfolder` in the HF cache (downloads only the fuser's own files).

    With HF_HUB_OFFLINE=1 it only looks in the cache and says what to prefetch on a miss.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_OFFLINE

    sub = subfolder.strip("/")
    root_sub = sub.removesuffix("/final").removesuffix("final").rstrip("/") if sub.endswith("final") else sub
    prefix = f"{root_sub}/" if root_sub else ""
    patterns = [f"{prefix}config.json", f"{prefix}final/*"]
    try:
        snap = snapshot_download(repo, revision=revision, allow_patterns=patterns, local_files_only=HF_HUB_OFFLINE)
    except Exception as e:  # noqa: BLE001 - hub errors are many types; all mean "not available here"
        hint = f"hf download {repo} --revision {revision} --include " + " ".join(f"'{p}'" for p in patterns)
        mode = "offline (HF_HUB_OFFLINE=1) and not in the HF cache" if HF_HUB_OFFLINE else "could not be fetched"
        raise FuserError(
            f"fuser hub:{repo}/{sub}@{revision}: {mode} ({type(e).__name__}); prefetch it: {hint}"
        ) from None
    return Path(snap) / root_sub if root_sub else Path(snap)


def parse_fuser_ref(ref: str | Path | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """("local"|"hub"|"tiny"|"demo", args) from a path, "tiny:a+b", "demo:a+b", "hub:owner/repo[/sub...][@rev]" or a hub dict."""
    if isinstance(ref, dict):
        return "hub", {
            "repo": ref["repo"],
            "subfolder": ref.get("subfolder") or "",
            "revision": ref.get("revision") or "main",
        }
    text = str(ref)
    if text.startswith("tiny:"):
        return "tiny", {"ref": text}
    if text.startswith("demo:"):
        return "demo", {"ref": text}
    if text.startswith("hub:"):
        body, _, revision = text[4:].partition("@")
        parts = body.strip("/").split("/")
        if len(parts) < 2:
            raise FuserError(f"{text}: expected hub:<owner>/<repo>[/<subfolder>][@<revision>]")
        return "hub", {"repo": "/".join(parts[:2]), "subfolder": "/".join(parts[2:]), "revision": revision or "main"}
    return "local", {"path": Path(text).expanduser()}


def load_fuser(ref: str | Path | dict[str, Any], *, sha256: str | None = None) -> Fuser:
    """Load a fuser from a local folder, `hub:` (HF cache snapshot) or `tiny:<r>+<s>`; verify a sha256 pin.

    The same strict loader runs for every source; `fuser.sha256` is the content hash (module docstring).
    """
    kind, args = parse_fuser_ref(ref)
    if kind == "tiny":
        path = resolve_tiny_fuser(args["ref"])
    elif kind == "demo":
        try:
            path = resolve_demo_fuser(args["ref"])
        except DemoZooError as err:
            raise FuserError(str(err)) from None
    elif kind == "hub":
        path = hub_fuser_dir(**args)
    else:
        path = args["path"]
        if not path.exists():
            raise FuserError(f"{path}: fuser folder does not exist")
    source = str(ref) if kind != "hub" else f"hub:{args['repo']}/{args['subfolder']}@{args['revision']}"
    fuser = load_fuser_dir(path, source=source)
    if sha256 is not None and sha256.lower() != fuser.sha256:
        raise FuserError(
            f"{source}: sha256 mismatch: checkpoint content is {fuser.sha256}, the manifest pins {sha256}; "
            "the checkpoint changed (or the pin is stale): re-download it or update fuser.sha256"
        )
    return fuser
