# Everything a newcomer needs: `make demo` and `make test` create .venv if missing and install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench bench-resnet18 fuzz clean
BENCH_ARGS ?=

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import converter, torch, tensorflow, keras, onnx2tf" 2>/dev/null
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m fixtures.save demo-out
	$(BIN)/crossport convert demo-out/small_cnn.pt2 -o demo-out/small_cnn.keras --force
	$(BIN)/crossport convert demo-out/small_cnn.pt2 -o demo-out/small_cnn.tflite --force

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/zoo.py $(BENCH_ARGS)

bench-resnet18: $(STAMP)
	$(BIN)/python benchmarks/resnet18.py

clean:
	rm -rf demo-out .pytest_cache

fuzz: $(STAMP)
	rm -f fuzz-log.jsonl; CROSSPORT_FUZZ_EXAMPLES=200 CROSSPORT_FUZZ_LOG=fuzz-log.jsonl $(BIN)/python -m pytest -q -p no:logging tests/test_fuzz_convert.py; rc=$$?; $(BIN)/python -c "import json, collections; rows = [json.loads(l) for l in open('fuzz-log.jsonl')]; [print(*k, v) for k, v in sorted(collections.Counter((r['direction'], r['target'], r['outcome']) for r in rows).items())]"; exit $$rc
