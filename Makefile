# qc2c — every target is one line calling Python (or pip); logic lives in Python, where it is tested.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MANIFEST ?= manifests/demo.yaml
PYTEST_ARGS ?=
STAMP := $(VENV)/.stamp-setup

.PHONY: help setup run test test-all lint validate plan golden plots bench gpu-check demo-zoo lock image \
        remote-sync remote-setup remote-launch remote-status remote-logs remote-cancel remote-pull remote-merge clean

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the locked dependency set (fast when nothing changed)

run: $(STAMP)  ## run a manifest: make run MANIFEST=manifests/m7_align1.yaml [CONTAINER=docker]
	$(PY) -m runner run $(MANIFEST) $(if $(CONTAINER),--container $(CONTAINER),)

plan: $(STAMP)  ## dry run: run key, run folder, registry decision, preflight
	$(PY) -m runner plan $(MANIFEST)

validate: $(STAMP)  ## validate every manifest in manifests/
	$(PY) -m runner validate manifests/

test: $(STAMP)  ## the default test suite (unit + tiny-model integration)
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo 'pytest collected no tests: failing' >&2; exit 1; fi; exit $$rc

lint: $(STAMP)  ## ruff lint + format check
	$(PY) -m ruff check qc2c runner remote tests && $(PY) -m ruff format --check qc2c runner remote tests

golden: $(STAMP)  ## merge every complete run into golden/ and regenerate the summary
	$(PY) -m runner golden merge --all

plots: $(STAMP)  ## regenerate golden/plots/*.png
	$(PY) -m runner golden plots

demo-zoo: $(STAMP)  ## rebuild the demo world, models and fusers into qc2c/demo/zoo (about an hour on 2 cores)
	$(PY) -m runner demo-zoo

gpu-check:  ## the one device check (CUDA: JSON + table, <= 8 min; no CUDA: one line); no venv needed [OUT=file.json]
	PYTHONPATH=. $(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m qc2c.bench gpu $(if $(OUT),--out $(OUT),)

bench: $(STAMP)  ## codec and eval throughput benchmarks (print measured ratios)
	$(PY) -m qc2c.bench codec && $(PY) -m qc2c.bench eval && $(PY) -m qc2c.bench eval --one-run && $(PY) -m qc2c.bench sweep && $(PY) -m qc2c.bench sweep --pair demo

lock:  ## re-resolve requirements.lock from pyproject.toml
	{ head -2 requirements.lock; $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > requirements.lock.new && mv requirements.lock.new requirements.lock

image: $(STAMP)  ## build the pinned CUDA image, tagged with the git commit
	$(PY) -m runner image

remote-sync: $(STAMP)  ## rsync the repo to TARGET (GIT=1 also sends .git)
	$(PY) -m remote sync $(TARGET) $(if $(GIT),--git,)
remote-setup: $(STAMP)  ## bootstrap TARGET once (tools check; make setup there, or its venv)
	$(PY) -m remote setup $(TARGET)
remote-launch: $(STAMP)  ## launch MANIFEST on TARGET, detached (SWEEP=1: one job array, CHUNK=16 points per task)
	$(PY) -m remote launch $(TARGET) $(MANIFEST) $(if $(SWEEP),--sweep,) $(if $(CHUNK),--chunk $(CHUNK),)
remote-status: $(STAMP)  ## pending/running/done/failed + progress of TARGET's jobs [JOB=name]
	$(PY) -m remote status $(TARGET) $(if $(JOB),--job $(JOB),)
remote-logs: $(STAMP)  ## log of the latest job on TARGET [JOB=name] [FOLLOW=1]
	$(PY) -m remote logs $(TARGET) $(if $(JOB),--job $(JOB),) $(if $(FOLLOW),-f,)
remote-cancel: $(STAMP)  ## cancel the latest job on TARGET [JOB=name]
	$(PY) -m remote cancel $(TARGET) $(if $(JOB),--job $(JOB),)
remote-pull: $(STAMP)  ## pull complete runs back from TARGET (PARTIAL=1: in-flight too; never overwrites)
	$(PY) -m remote pull $(TARGET) $(if $(JOB),--job $(JOB),) $(if $(PARTIAL),--partial,)
remote-merge: $(STAMP)  ## golden merge of what was pulled [ALLOW=dirty]
	$(PY) -m remote merge $(TARGET) $(if $(JOB),--job $(JOB),) $(if $(ALLOW),--allow $(ALLOW),)

clean:  ## remove the virtual environment and caches (runs/ and golden/ are kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
