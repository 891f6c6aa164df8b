# Every target builds .venv itself, so `make demo` and `make test` work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lab dashboard cluster bench lint browsers clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,lab,postgres,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flowlab demo

# Two pytest-xdist workers (this machine has 2 cores); PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

# Root (CI machines, containers) needs --allow-root; the config saves notebooks without outputs.
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ --config=notebooks/jupyter_server_config.py $(if $(filter 0,$(shell id -u)),--allow-root)

dashboard: $(STAMP)
	$(BIN)/flowlab dashboard

# Three processes on one PostgreSQL database behind HAProxy (docs/cluster.md); DB= another database.
DB ?= postgresql://postgres@127.0.0.1:5432/test
cluster: $(STAMP)
	$(BIN)/python -m flowlab.devcluster --db '$(DB)' --nodes 3

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) test-output
