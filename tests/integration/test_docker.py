"""The container path against a real, private dockerd: build the Dockerfile on an offline Debian base, run the
smoke manifest inside with no network, find its results on the host, and hit the "no GPU runtime" error.

python -m pytest tests/integration/test_docker.py -q -s      (-s shows build/run timings)

Needs root, dockerd (docker.io) and mmdebstrap (bash .ci/system-packages); skips with the reason otherwise,
and CI (QC2C_REQUIRE=docker) turns that skip into a failure. The first run builds the base (mmdebstrap),
downloads the wheelhouse and builds the image (≈2 min); later runs reuse all three from
$QC2C_DOCKER_TEST_CACHE (default ~/.cache/qc2c/docker-test).
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from infra.dockerd import DOCKER_CLI, base_image, cache_root, running_dockerd, serving, unavailable, wheelhouse

from runner.container import ContainerError, build_run_request, choose_runtime, run_in_container
from runner.exitcodes import EXIT_PREEMPTED
from runner.image import image_identity

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "manifests" / "smoke.yaml"
IMAGE = "qc2c:integration-test"
TOKEN = "hf_integration_Secret_0123456789"


@pytest.fixture(scope="module")
def dockerd():
    reason = unavailable()
    if reason:
        pytest.skip(f"docker tier: {reason}")
    with running_dockerd() as daemon:
        yield daemon


@pytest.fixture(scope="module")
def image(dockerd) -> str:
    """The project image on the local base, built by `python -m runner image` from a local wheelhouse."""
    started = time.monotonic()
    base = base_image(dockerd)
    wheels = wheelhouse(REPO)
    prepared = time.monotonic()
    with serving(wheels) as url:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "runner",
                "image",
                "--repo",
                str(REPO),
                "--docker",
                DOCKER_CLI,
                "--tag",
                IMAGE,
                "--base-image",
                base,
                "--network",
                "host",
                "--build-arg",
                "PIP_NO_INDEX=1",
                "--build-arg",
                f"PIP_FIND_LINKS={url}",
            ],
            env=dockerd.env(),
            capture_output=True,
            text=True,
            timeout=1200,
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # The previous build's image (now untagged) and unused build records: the cached data-root stays ≈2 GB;
    # the next build still reuses the dependency layer through the tagged image.
    dockerd.docker("image", "prune", "--force")
    dockerd.docker("builder", "prune", "--force")
    print(
        f"\n[docker] base + wheelhouse {prepared - started:.1f} s, image build {time.monotonic() - prepared:.1f} s",
        file=sys.stderr,
    )
    return IMAGE


def run_env(dockerd, tmp_path: Path) -> dict[str, str]:
    return {
        "DOCKER_HOST": dockerd.host,
        "HOME": str(tmp_path / "home"),
        "PATH": "/usr/bin:/bin",
        "QC2C_RUNS_DIR": str(tmp_path / "runs"),
        "HF_HOME": str(tmp_path / "hf"),
        "QC2C_TINY_CACHE": str(cache_root() / "tiny"),  # deterministic builds: safe to share between runs
        "HF_TOKEN": TOKEN,
        "OMP_NUM_THREADS": "2",
    }


def test_image_carries_commit_label_user_and_container_marker(dockerd, image):
    attrs = json.loads(dockerd.docker("image", "inspect", image).stdout)[0]
    revision = attrs["Config"]["Labels"]["org.opencontainers.image.revision"].removesuffix("-dirty")
    git = ["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"]
    assert len(revision) == 40 and subprocess.run(git, cwd=REPO, capture_output=True).returncode == 0, revision
    assert attrs["Config"]["User"] == "10001:10001"
    assert "QC2C_IN_CONTAINER=1" in attrs["Config"]["Env"]
    assert attrs["Config"]["Entrypoint"] == ["python", "-m", "runner"]


def test_auto_picks_the_container_when_engine_and_image_exist(dockerd, image):
    decision = choose_runtime("auto", device="cpu", image=image, environ={"DOCKER_HOST": dockerd.host})
    assert decision.runtime == "docker" and image in decision.reason


def test_missing_image_names_make_image(dockerd):
    env = {"DOCKER_HOST": dockerd.host}
    with pytest.raises(ContainerError, match=r"qc2c:not-built not found.*make image"):
        choose_runtime("docker", device="cpu", image="qc2c:not-built", environ=env)
    assert choose_runtime("auto", device="cpu", image="qc2c:not-built", environ=env).runtime == "native"


def test_gpu_request_without_a_gpu_runtime_is_a_clear_error(dockerd, image, tmp_path):
    env = run_env(dockerd, tmp_path)
    with pytest.raises(ContainerError, match=r"no GPU runtime \(could not select device driver.*NVIDIA Container"):
        choose_runtime("docker", device="cuda", image=image, environ=env)
    decision = choose_runtime("auto", device="cuda", image=image, environ=env)
    assert decision.runtime == "native" and "no GPU runtime" in decision.reason
    with pytest.raises(ContainerError, match="no GPU runtime"):
        run_in_container(SMOKE, ["validate", str(SMOKE)], image=image, repo_root=REPO, device="cuda", environ=env)
    assert not dockerd.docker("ps", "-aq").stdout.strip(), "a failed start must not leave a container behind"


def test_validate_runs_inside_the_image(dockerd, image, tmp_path):
    out = io.StringIO()
    code = run_in_container(
        SMOKE, ["validate", str(SMOKE)], image=image, repo_root=REPO, environ=run_env(dockerd, tmp_path), out=out
    )
    assert code == 0, out.getvalue()


def test_make_run_container_docker_runs_smoke_inside_and_leaves_results_on_the_host(dockerd, image, tmp_path):
    """The user path: `runner run --container docker` (make run CONTAINER=docker) on the smoke manifest."""
    started = time.monotonic()
    env = {**run_env(dockerd, tmp_path), "QC2C_IMAGE": image}
    argv = [sys.executable, "-m", "runner", "run", str(SMOKE), "--container", "docker"]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    print(f"\n[docker] smoke run through the container {time.monotonic() - started:.1f} s", file=sys.stderr)
    assert proc.returncode == 0, log[-4000:]
    assert "runtime: docker" in log and "network none" in log and "HF_TOKEN" in log and TOKEN not in log
    (result,) = (tmp_path / "runs").glob("smoke/*/results/mini.json")
    assert json.loads(result.read_text())["run_key"]
    provenance = (result.parent.parent / "provenance.json").read_text()
    assert image_identity(image, _client(dockerd))["image_id"] in provenance
    assert TOKEN not in provenance
    assert not dockerd.docker("ps", "-aq").stdout.strip(), "the container is removed after the run"


@pytest.mark.slow
def test_sigterm_reaches_the_runner_inside_and_the_run_is_preempted(dockerd, image, tmp_path):
    """Slurm/RunPod preemption: a signal to the host runner is forwarded; the run inside exits 75, resumable."""
    env = {**run_env(dockerd, tmp_path), "QC2C_IMAGE": image}
    argv = [sys.executable, "-m", "runner", "run", str(SMOKE), "--container", "docker"]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if " to score" in line:  # the runner inside is scoring: progress exists, the result does not yet
            proc.send_signal(signal.SIGTERM)
            break
    lines += proc.stdout.readlines()
    assert proc.wait(timeout=300) == EXIT_PREEMPTED, "".join(lines)[-4000:]
    (status,) = (tmp_path / "runs").glob("smoke/*/status.json")
    assert json.loads(status.read_text())["state"] == "preempted"
    assert not dockerd.docker("ps", "-aq").stdout.strip()


def test_a_run_without_hub_needs_has_only_loopback(dockerd, image, tmp_path):
    request = build_run_request(
        SMOKE, repo_root=REPO, image=image, gpus=False, needs_network=False, env=run_env(dockerd, tmp_path)
    )
    probe = "import socket; print(sorted(name for _, name in socket.if_nameindex()))"
    output = _client(dockerd).containers.run(
        image, entrypoint=["python", "-c", probe], network_mode=request["network_mode"], remove=True
    )
    assert output.decode().strip() == "['lo']"


def _client(dockerd):
    import docker

    return docker.DockerClient(base_url=dockerd.host)
