# hybridcam: the two commands are `make demo` and `make test`.
# Both create a virtual environment in .venv (once) and install the project into it.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?= -m "not faults_slow"
FAULTS_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install system-packages demo lint test compose-test kube-test faults bench cost images up down logs constraints package-lambda deploy-cloud destroy-cloud clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: install Debian's python3-venv (make system-packages)"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,local]"
	@touch $@

install: $(STAMP)  ## create .venv and install hybridcam with its test tools

system-packages:  ## Debian packages for the tests (redis-server, ffmpeg/ffprobe, docker-compose, chromium)
	@scripts/install_system_packages.sh

demo: install  ## run the 6-camera site locally for 60 s and show it live (DURATION=0 runs until Ctrl-C)
	$(PY) -m hybridcam demo --duration $(or $(DURATION),60)

lint: install  ## ruff, mypy and the layer contracts (import-linter); `make test` runs it first
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

test: install lint system-packages  ## lint, then the test suite with the fast fault scenarios (fails if no test ran), then the container test
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi
	@$(MAKE) --no-print-directory compose-test
	@$(MAKE) --no-print-directory kube-test

compose-test:  ## build the images and run the stack in containers, faults included (skipped with a reason where no engine can run)
	@$(PYTHON) scripts/compose_check.py $(COMPOSE_TEST_ARGS)

kube-test: install  ## podman kube play of the rendered Kubernetes manifests: probes healthy, detections on every camera (after compose-test)
	@$(PY) scripts/kube_play_check.py $(KUBE_TEST_ARGS)

faults: install system-packages  ## inject every fault scenario and print the table (FULL=1: 10 min outage, 1 h soak; HOURS=N soak)
	@HYBRIDCAM_FAULTS_FULL=$(if $(FULL),1,0) $(if $(HOURS),HYBRIDCAM_FAULTS_SOAK_HOURS=$(HOURS)) $(PY) -m pytest tests/faults -o addopts="" -q -rfE \
		--timeout $(if $(or $(FULL),$(HOURS)),$(shell echo $$(( ($(or $(HOURS),1) + 1) * 3600 ))),900) $(FAULTS_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no fault scenario was collected: failing on purpose" >&2; exit 1; fi; exit $$rc

bench: install  ## print the benchmark figures (edge, cloud path, compositor, sampler, live view, actions); writes config/capacity/<this machine>.yaml
	$(PY) bench/edge.py
	$(PY) bench/capacity.py
	@if [ -f bench/cloud.py ]; then $(PY) bench/cloud.py; fi
	@if [ -f bench/compositor.py ]; then $(PY) bench/compositor.py; fi
	@if [ -f bench/sampler.py ]; then $(PY) bench/sampler.py; fi
	@if [ -f bench/live_view.py ]; then $(PY) bench/live_view.py; fi
	@if [ -f bench/real_rates.py ]; then $(PY) bench/real_rates.py --quick; fi
	@if [ -f bench/actions.py ]; then $(PY) bench/actions.py; fi

cost: install  ## price the demo site (cloud-only vs hybrid vs edge-only)
	$(PY) -m hybridcam cost $(COST_ARGS)

# `docker compose` (v2) where installed, else docker-compose (Debian's 1.29; on a podman host export the
# DOCKER_HOST that scripts/container-host-setup.sh prints). CLOUD=1 adds sampler and results_bridge
# (AWS stack outputs in .env); LOCAL_CLOUD=1 runs them against moto and the local model server.
COMPOSE_CMD := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE := $(COMPOSE_CMD) -f docker-compose.yml $(if $(GPU),-f docker-compose.gpu.yml) \
	$(if $(LOCAL_CLOUD),-f docker-compose.local-cloud.yml) \
	$(if $(or $(CLOUD),$(LOCAL_CLOUD)),--profile cloud) $(if $(LOCAL_CLOUD),--profile local-cloud)

.env:  ## a first .env from config/example.env, with a random dashboard token and Redis password
	cp config/example.env .env
	printf '\n# written by make .env: the dashboard token (open http://HOST:8088/?token=...)\nHYBRIDCAM_DASHBOARD_TOKEN=%s\n' \
		"$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(24))')" >> .env
	printf '# written by make .env: the password of the site'"'"'s Redis (requirepass; every service reads it)\nHYBRIDCAM_REDIS_PASSWORD=%s\n' \
		"$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(24))')" >> .env

images: .env  ## build the edge images (GPU=1: TensorRT edge_infer; LOCAL_CLOUD=1: local cloud too)
	$(COMPOSE) build

up: .env  ## start the edge stack and wait until every service is healthy (CLOUD=1, LOCAL_CLOUD=1, GPU=1)
	@if [ "$(COMPOSE_CMD)" = "docker compose" ]; then $(COMPOSE) up -d --wait; else \
		$(COMPOSE) up -d && $(PYTHON) scripts/compose_check.py --wait-healthy "$(COMPOSE)"; fi

down:  ## stop the edge stack (volumes kept)
	$(COMPOSE) down

logs:  ## follow the edge stack's logs
	$(COMPOSE) logs -f --tail=100

constraints: install  ## re-pin docker/constraints.txt from the tested environment
	$(PY) docker/freeze_constraints.py

package-lambda: install  ## build the Lambda zip (build/lambda/detector.zip)
	PYTHON=$(PY) cloud/lambda/package.sh

deploy-cloud: install  ## create or update the AWS stack (needs AWS credentials)
	$(PY) -m hybridcam cloud deploy

destroy-cloud: install  ## delete the AWS stack
	$(PY) -m hybridcam cloud destroy

clean:  ## remove the virtual environment and run outputs
	rm -rf $(VENV) runs .pytest_cache
