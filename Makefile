# Two entry points a person needs: `make run` (the whole pipeline) and `make test`.
# Both create .venv and install the pinned dependency set from the project's own files.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install ui-prefect ui-mlflow

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=25"
	$(BIN)/python -m pip install -q -r requirements.lock
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q --no-deps -e .  # no setuptools "editable install" banner
	touch $(STAMP)

install: $(STAMP)

# The MovieLens 100k files beside the checkout (../shared/data/ml-100k) when present; otherwise the
# pipeline downloads the official zip. `make run SOURCE=/path/to/ml-100k[.zip]` picks another copy.
SOURCE ?= $(wildcard ../shared/data/ml-100k)

run: $(STAMP)
	$(BIN)/lensflow run $(if $(SOURCE),--source $(SOURCE)) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

ui-prefect: $(STAMP)
	$(BIN)/prefect server start --host 127.0.0.1 --port 4200

ui-mlflow: $(STAMP)
	$(BIN)/lensflow mlflow-ui
