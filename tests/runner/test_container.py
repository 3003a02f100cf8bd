"""Container hook without an engine: runtime choice, the docker run request (CPU/GPU), secrets, `runner image`.

python -m pytest tests/runner/test_container.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.container import (
    FORWARD_ENV,
    HF_CACHE,
    TINY_CACHE,
    ContainerError,
    build_run_request,
    choose_runtime,
    container_provenance,
    describe,
    gpu_error_message,
    manifest_needs_network,
    wants_gpu,
)
from runner.image import build_command, image_tags, revision_note

REPO = Path(__file__).resolve().parents[2]
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/qc2c-test/docker.sock"}
TOKEN = "hf_test_Secret_Value_123456"
TINY_MANIFEST = "pair: {receiver: tiny:qwen3, sharer: tiny:qwen2}\nfuser: {path: 'tiny:qwen3+qwen2'}\n"


def request_for(tmp_path: Path, *, gpus: bool = False, needs_network: bool = False, env=None, text=None):
    repo = tmp_path / "repo"
    (repo / "manifests").mkdir(parents=True, exist_ok=True)
    manifest = repo / "manifests" / "m.yaml"
    manifest.write_text(text or TINY_MANIFEST)
    env = {"HOME": str(tmp_path / "home"), **(env or {})}
    request = build_run_request(
        manifest,
        repo_root=repo,
        image="qc2c:test",
        gpus=gpus,
        needs_network=needs_network,
        env=env,
        argv=["run", str(manifest), "--container", "native"],
        manifest_text=manifest.read_text(),
        uid_gid=(1234, 5678),
    )
    return request, repo, manifest


# ---- choose_runtime ----


def test_inside_the_image_the_runner_never_starts_a_nested_container():
    for requested in ("auto", "docker", "native"):
        decision = choose_runtime(requested, environ={"QC2C_IN_CONTAINER": "1", **NO_ENGINE})
        assert decision.runtime == "native" and "QC2C_IN_CONTAINER" in decision.reason


def test_native_is_native_without_touching_an_engine():
    decision = choose_runtime("native", environ=NO_ENGINE)
    assert decision.runtime == "native" and decision.image is None


def test_docker_without_an_engine_is_a_clear_error():
    with pytest.raises(ContainerError, match=r"no container engine reachable at unix:///nonexistent.*native"):
        choose_runtime("docker", environ=NO_ENGINE)


def test_auto_without_an_engine_runs_natively_and_says_why():
    decision = choose_runtime("auto", environ=NO_ENGINE)
    assert decision.runtime == "native"
    assert "auto chose native" in decision.reason and "no container engine" in decision.reason


def test_unknown_runtime_is_refused():
    with pytest.raises(ContainerError, match="'podman' is not one of auto, docker, native"):
        choose_runtime("podman", environ=NO_ENGINE)


def test_gpu_wanted_for_cuda_devices_not_for_cpu():
    assert wants_gpu("cuda") and wants_gpu("cuda:1")
    assert not wants_gpu("cpu")


def test_no_gpu_runtime_error_explains_the_fix():
    message = gpu_error_message('could not select device driver "" with capabilities: [[gpu]]')
    assert "no GPU runtime" in message and "NVIDIA Container Toolkit" in message and "runtime.device: cpu" in message


# ---- the run request ----


def test_cpu_request_mounts_runs_golden_caches_and_the_manifest(tmp_path):
    request, repo, manifest = request_for(tmp_path)
    volumes = request["volumes"]
    home = tmp_path / "home"
    assert volumes[str(repo / "runs")] == {"bind": "/app/runs", "mode": "rw"}
    assert volumes[str(repo / "golden")] == {"bind": "/app/golden", "mode": "rw"}
    assert volumes[str(manifest)] == {"bind": "/app/manifests/m.yaml", "mode": "ro"}
    assert volumes[str(home / ".cache" / "huggingface")]["bind"] == HF_CACHE
    assert volumes[str(home / ".cache" / "qc2c" / "tiny")]["bind"] == TINY_CACHE
    assert request["command"] == ["run", "/app/manifests/m.yaml", "--container", "native"]
    assert request["network_mode"] == "none"
    assert "device_requests" not in request
    assert request["user"] == "1234:5678"
    assert request["working_dir"] == "/app"
    assert request["environment"]["QC2C_IN_CONTAINER"] == "1"


def test_gpu_request_asks_for_all_gpus_or_the_visible_ones(tmp_path):
    request, _, _ = request_for(tmp_path, gpus=True)
    (device,) = request["device_requests"]
    assert device["Count"] == -1 and device["Capabilities"] == [["gpu"]]
    request, _, _ = request_for(tmp_path, gpus=True, env={"CUDA_VISIBLE_DEVICES": "1,3"})
    (device,) = request["device_requests"]
    assert device["DeviceIDs"] == ["1", "3"] and device["Capabilities"] == [["gpu"]]


def test_network_only_when_the_manifest_needs_the_hub(tmp_path):
    request, _, _ = request_for(tmp_path, needs_network=True)
    assert request["network_mode"] == "bridge"
    assert not manifest_needs_network(TINY_MANIFEST + "eval: {datasets: [mini]}\n", {})
    assert manifest_needs_network("pair: {receiver: Qwen/Qwen3-0.6B, sharer: tiny:qwen2}\n", {})
    assert manifest_needs_network(TINY_MANIFEST + "eval: {datasets: [mini, openbookqa]}\n", {})
    assert manifest_needs_network("fuser: {hub: {repo: nics-efc/C2C_Fuser}}\n", {})
    assert not manifest_needs_network("pair: {receiver: Qwen/Qwen3-0.6B}\n", {"HF_HUB_OFFLINE": "1"})


def test_secrets_are_forwarded_by_name_and_never_appear_in_the_request(tmp_path):
    env = {"HF_TOKEN": TOKEN, "MY_API_KEY": "k" * 20, "UNRELATED": "x", "CUDA_VISIBLE_DEVICES": "0"}
    request, _, _ = request_for(tmp_path, env=env)
    assert "HF_TOKEN" in request["forward_env"] and "CUDA_VISIBLE_DEVICES" in request["forward_env"]
    assert "UNRELATED" not in request["forward_env"] and "MY_API_KEY" not in request["forward_env"]
    assert set(request["forward_env"]) <= set(FORWARD_ENV)
    identity = {"image": "qc2c:test", "image_digest": "sha256:" + "0" * 64}
    for text in (repr(request), json.dumps(request, default=str), describe(request, identity)):
        assert TOKEN not in text and "k" * 20 not in text
    assert "HF_TOKEN" in describe(request, identity)


def test_variables_the_manifest_references_are_forwarded_and_the_checkpoint_root_mounted(tmp_path):
    ckpt = tmp_path / "ckpt"
    text = "fuser: {path: '${C2C_CKPT_ROOT}/f/final'}\ndescription: '${RUN_NOTE:-none}'\n"
    request, _, _ = request_for(tmp_path, env={"C2C_CKPT_ROOT": str(ckpt), "RUN_NOTE": "hi"}, text=text)
    assert request["volumes"][str(ckpt)] == {"bind": str(ckpt), "mode": "rw"}
    assert request["environment"]["C2C_CKPT_ROOT"] == str(ckpt)
    assert "RUN_NOTE" in request["forward_env"] and "C2C_CKPT_ROOT" not in request["forward_env"]


def test_runs_dir_override_is_mounted_as_the_containers_runs(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    request, repo, _ = request_for(tmp_path, env={"QC2C_RUNS_DIR": str(elsewhere)})
    assert request["volumes"][str(elsewhere)] == {"bind": "/app/runs", "mode": "rw"}
    assert str(repo / "runs") not in request["volumes"]


def test_manifest_outside_the_repo_is_mounted_under_app(tmp_path):
    outside = tmp_path / "mine.yaml"
    outside.write_text(TINY_MANIFEST)
    request = build_run_request(
        outside, repo_root=tmp_path / "repo", image="i", gpus=False, needs_network=False, env={"HOME": "/h"}
    )
    assert request["volumes"][str(outside)] == {"bind": "/app/.manifest/mine.yaml", "mode": "ro"}
    assert request["command"] == ["run", "/app/.manifest/mine.yaml"]


def test_container_provenance_reads_what_the_request_passes_in():
    assert container_provenance({}) is None
    env = {"QC2C_IN_CONTAINER": "1", "QC2C_IMAGE": "qc2c:abc", "QC2C_IMAGE_ID": "sha256:1", "QC2C_GIT_COMMIT": "c"}
    assert container_provenance(env) == {
        "runtime": "docker",
        "image": "qc2c:abc",
        "image_id": "sha256:1",
        "image_digest": None,
        "revision": "c",
    }


# ---- make image ----


def test_image_tags_name_the_commit_and_mark_a_dirty_tree():
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert image_tags(commit, False) == ["qc2c:0123456789ab", "qc2c:latest"]
    assert image_tags(commit, True)[0] == "qc2c:0123456789ab-dirty"


def test_build_command_passes_tags_args_and_network(tmp_path):
    argv = build_command(
        tmp_path,
        tags=["qc2c:x", "qc2c:latest"],
        build_args={"GIT_COMMIT": "c", "BASE_IMAGE": "b"},
        docker_cli="/usr/bin/docker",
        network="host",
    )
    assert argv[:2] == ["/usr/bin/docker", "build"]
    assert argv[argv.index("--file") + 1] == str(tmp_path / "Dockerfile")
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--tag"] == ["qc2c:x", "qc2c:latest"]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--build-arg"] == ["BASE_IMAGE=b", "GIT_COMMIT=c"]
    assert argv[argv.index("--network") + 1] == "host" and argv[-1] == str(tmp_path)


def test_runner_image_without_an_engine_says_so_and_exits_2():
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "image"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **NO_ENGINE},
    )
    assert proc.returncode == 2
    assert "no container engine reachable at unix:///nonexistent" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_stale_image_is_named_in_the_decision(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert revision_note(head, REPO) == "" and revision_note(head + "-dirty", REPO) == ""
    note = revision_note("f" * 40, REPO)
    assert f"image built from {'f' * 12}, checkout is at {head[:12]}" in note and "make image" in note
    assert revision_note("f" * 40, tmp_path) == ""  # not a checkout: nothing to compare with


def test_run_provenance_names_an_image_only_inside_one(monkeypatch) -> None:
    from runner.cli.run import container_info

    monkeypatch.delenv("QC2C_IN_CONTAINER", raising=False)
    monkeypatch.setenv("QC2C_IMAGE", "qc2c:abc")  # set in the host shell, but this run is native
    assert container_info("native", "asked") == {
        "runtime": "native",
        "image": None,
        "image_id": None,
        "image_digest": None,
        "reason": "asked",
    }
    monkeypatch.setenv("QC2C_IN_CONTAINER", "1")
    monkeypatch.setenv("QC2C_IMAGE_ID", "sha256:1")
    monkeypatch.setenv("QC2C_GIT_COMMIT", "c0ffee")
    info = container_info("native", "inside the image")
    assert info["runtime"] == "docker" and info["image"] == "qc2c:abc" and info["image_id"] == "sha256:1"
    assert info["revision"] == "c0ffee" and info["reason"] == "inside the image"
