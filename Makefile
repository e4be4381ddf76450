# Everything a newcomer needs: `make demo` and `make test` create .venv if missing and install first.
# Another Python: `make test PYTHON=python3.13` (3.11, 3.12 and 3.13 are supported; pyenv's installs are found
# even when they are not the active version). A .venv made with another Python is replaced.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(shell .ci/find-python $(PYTHON))
PYVER := $(shell $(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
STAMP := $(VENV)/.installed-$(PYVER)

.PHONY: install demo test bench bench-peers bench-resnet18 fuzz clean dist smoke-wheel
BENCH_ARGS ?=
PEERS_ARGS ?=
TWINS_ARGS ?=

$(STAMP): pyproject.toml constraints.txt
	@case "$(PYVER)" in 3.11|3.12|3.13) ;; *) echo "make: need Python 3.11, 3.12 or 3.13 (PYTHON=$(PYTHON) gives '$(PYVER)')"; exit 2;; esac
	@if [ -x $(BIN)/python ] && [ "$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(PYVER)" ]; then \
		echo "make: $(VENV) was made with another Python; recreating it with $(PY)"; rm -rf $(VENV); fi
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]" 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import converter, torch, tensorflow, keras, onnx, onnxruntime, tf2onnx, onnx2torch" 2>/dev/null
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m fixtures.save demo-out
	$(BIN)/crossport convert demo-out/small_cnn.pt2 -o demo-out/small_cnn.keras --force
	$(BIN)/crossport convert demo-out/small_cnn.pt2 -o demo-out/small_cnn.tflite --force

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The zoo, then the same models next to the peer converters (litert-torch, nobuco) in their own venvs, made once
# under ~/.cache/crossport-bench/peers (benchmarks/peer_venvs.py), then the Keras -> PyTorch conversions against the
# same architectures written natively in PyTorch (benchmarks/native_twins.py).
bench: $(STAMP)
	$(BIN)/python benchmarks/zoo.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/peers.py $(PEERS_ARGS)
	$(BIN)/python benchmarks/native_twins.py $(TWINS_ARGS)

bench-peers: $(STAMP)
	$(BIN)/python benchmarks/peers.py $(PEERS_ARGS)

bench-resnet18: $(STAMP)
	$(BIN)/python benchmarks/resnet18.py

clean:
	rm -rf demo-out .pytest_cache dist build

# A wheel and an sdist in dist/ (the wheel is what `pip install crossport` installs).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist . >/dev/null
	@ls dist

# The built wheel in a fresh venv of SMOKE_PYTHON, outside the repository, and the smoke subset against it.
SMOKE_PYTHON ?= python3.13
smoke-wheel: dist
	bash .ci/wheel-smoke $(SMOKE_PYTHON)

fuzz: $(STAMP)
	rm -f fuzz-log.jsonl; CROSSPORT_FUZZ_EXAMPLES=200 CROSSPORT_FUZZ_LOG=fuzz-log.jsonl $(BIN)/python -m pytest -q -p no:logging tests/test_fuzz_convert.py; rc=$$?; $(BIN)/python -c "import json, collections; rows = [json.loads(l) for l in open('fuzz-log.jsonl')]; [print(*k, v) for k, v in sorted(collections.Counter((r['direction'], r['target'], r['outcome']) for r in rows).items())]"; exit $$rc
