# hybridcam: the two commands are `make demo` and `make test`.
# Both create a virtual environment in .venv (once) and install the project into it.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install system-packages demo lint test bench cost images up down logs constraints package-lambda deploy-cloud destroy-cloud clean

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

test: install lint system-packages  ## lint, then run the whole test suite (fails if no test ran)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; exit $$rc

bench: install  ## print the benchmark figures (edge, cloud path, compositor, live view)
	$(PY) bench/edge.py
	@if [ -f bench/cloud.py ]; then $(PY) bench/cloud.py; fi
	@if [ -f bench/compositor.py ]; then $(PY) bench/compositor.py; fi
	@if [ -f bench/live_view.py ]; then $(PY) bench/live_view.py; fi

cost: install  ## price the demo site (cloud-only vs hybrid vs edge-only)
	$(PY) -m hybridcam cost $(COST_ARGS)

COMPOSE := docker compose $(if $(GPU),-f docker-compose.yml -f docker-compose.gpu.yml) $(if $(LOCAL_CLOUD),--profile local-cloud)

.env:  ## a first .env from config/example.env, with a random dashboard token
	cp config/example.env .env
	printf '\n# written by make .env: the dashboard token (open http://HOST:8088/?token=...)\nHYBRIDCAM_DASHBOARD_TOKEN=%s\n' \
		"$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(24))')" >> .env

images: .env  ## build the edge images (GPU=1: TensorRT edge_infer; LOCAL_CLOUD=1: local cloud too)
	$(COMPOSE) build

up: .env  ## start the edge stack and wait until every service is healthy
	$(COMPOSE) up -d --wait

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
