# make demo   - install into .venv, train + evaluate the offline demo (MiniLM, CPU, minutes)
# make test   - install into .venv, run the whole test suite (what CI runs)
# make sweep  - the demo for xx, xy and hybrid, with one comparison table at the end

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch first, pinned: a plain `torch` requirement would pull a multi-GB CUDA build on CPU machines
TORCH  ?= torch==2.13.0
# test processes (pytest-xdist): most of the suite's time is interpreters starting and single-threaded Python,
# so two workers on 2 cores cut its wall time (docs/performance.md); a bigger box: make test TEST_WORKERS=8
TEST_WORKERS ?= 2
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo sweep test test-fast clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install -q --no-deps -e .   # the package itself (src/mdr), editable
	touch $@

demo: install
	$(BIN)/python train.py experiment=demo logger=csv

sweep: install
	$(BIN)/python train.py -m experiment=demo logger=csv sampler=xx,xy,hybrid

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=15   # the slowest listed: under 15 min on 2 cores

test-fast: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not slow"

clean:
	rm -rf $(VENV) outputs .pytest_cache
