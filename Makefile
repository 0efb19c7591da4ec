# Two commands on a fresh machine: `make demo` and `make test`. Everything else is set up on the way.
VENV ?= .venv
PY := $(VENV)/bin/python
RESTYLE := $(VENV)/bin/restyle
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := redis-server libb64-0d chromium

.PHONY: setup models demo test bench perf clean

setup: $(VENV)/.installed
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; fi

# torch/torchvision first and pinned: the local wheels; anything looser pulls a different build.
$(VENV)/.installed: pyproject.toml
	[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1" "numpy<2"
	$(PY) -m pip install -q -e ".[models,test,bench]"
	touch $@

artifacts/tiny/manifest.json: $(VENV)/.installed $(wildcard export/*.py) restyle/profiles.py
	$(RESTYLE) models build --profile tiny

models: setup artifacts/tiny/manifest.json
	$(RESTYLE) models render --profile tiny

demo: models
	$(PY) scripts/demo.py

test: models
	$(VENV)/bin/pytest -q -ra tests

# Triton ensemble vs the same stage code in-process (perf_analyzer); then batching and the stream model.
bench: models
	mkdir -p out
	$(RESTYLE) bench triton --profile tiny --json out/bench_triton.json --plot out/bench_triton.png
	$(PY) scripts/bench_pipeline.py

# perf_analyzer on room_restyle and a few stages, a tiny server started on free ports (any flag: restyle perf-analyzer ...)
perf: models
	$(RESTYLE) bench triton --profile tiny --quick

clean:
	rm -rf artifacts out .run model_repository/*/config.pbtxt model_repository/*/1/model.onnx
