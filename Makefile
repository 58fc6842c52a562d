# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install bytecode demo test clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py connectors/files/_transcode.c schemas/_utf8.c schemas/_md5.c schemas/_string_column.h
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "iehub needs Python 3.11, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The hub's own modules as bytecode: where PYTHONDONTWRITEBYTECODE is set (container images, this CI)
# Python compiles every module from source in every process, 0.1-0.25 s of each CLI call, Airflow task
# and test subprocess; compileall writes only what is missing or stale, so an edit is picked up.
bytecode: install
	$(BIN)/python -m compileall -q -j 0 iehub connectors schemas quality warehouse feeds dags sandbox bench >/dev/null

demo: bytecode
	$(BIN)/iehub demo

test: bytecode
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var .pytest_cache
