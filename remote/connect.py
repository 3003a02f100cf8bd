"""Fabric 3 connections with an honest host-key policy (Fabric's default silently trusts unknown hosts).

strict: paramiko RejectPolicy against the known_hosts file (default ~/.ssh/known_hosts);
accept-new: unknown hosts are added to that file, changed keys still refused (paramiko checks known keys
before any policy); insecure-auto-add: trust anything (an explicit, documented opt-in).
"""

from __future__ import annotations

import os
from pathlib import Path

from fabric import Config, Connection
from paramiko.client import AutoAddPolicy, RejectPolicy, WarningPolicy

from remote.targets import Target


def known_hosts_path(target: Target) -> Path:
    return Path(os.path.expanduser(target.known_hosts_file or "~/.ssh/known_hosts"))


def connect(target: Target, *, connect_timeout_s: int = 15) -> Connection:
    """A not-yet-opened Connection; the policy is enforced on the first command."""
    config = Config(runtime_ssh_path=os.path.expanduser(target.ssh_config)) if target.ssh_config else Config()
    # never inline env vars into command lines (they would show in `ps`)
    config.inline_ssh_env = False
    config.run.in_stream = False  # remote commands never read our stdin (batch use, CI, pytest)
    kwargs: dict[str, object] = {}
    if target.identity_file:
        kwargs.update(key_filename=os.path.expanduser(target.identity_file), look_for_keys=False, allow_agent=False)
    conn = Connection(
        target.host,
        user=target.user,
        port=None if target.ssh_config else target.port,
        config=config,
        connect_kwargs=kwargs,
        connect_timeout=connect_timeout_s,
    )
    client = conn.client
    known = known_hosts_path(target)
    if known.exists():
        client.load_host_keys(str(known))  # also where accept-new saves
    elif target.known_hosts == "accept-new":
        known.parent.mkdir(parents=True, exist_ok=True)
        known.touch(mode=0o600)
        client.load_host_keys(str(known))
    policy = {"strict": RejectPolicy, "accept-new": AutoAddPolicy, "insecure-auto-add": WarningPolicy}
    client.set_missing_host_key_policy(policy[target.known_hosts]())
    return conn
