# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
LS_VENV ?= .venv-ls
# pytest-xdist workers of `make test`, whole test files each (0: one process)
PYTEST_WORKERS ?= 2
PY := $(VENV)/bin/python

.PHONY: serve test install install-ls chromium bench clean readme-tables

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -e '.[queue,test]'
	touch $@

# Label Studio lives in its own environment (its pins must not constrain ours); the end-to-end tests start it.
$(LS_VENV)/.installed:
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q --no-compile 'label-studio>=1.23,<1.24'
	touch $@

# The browser tests drive Debian's Chromium through Playwright (Playwright's own browser download is not used).
# Installed when missing: as root, else through sudo when there is one; without it the browser tests skip.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  elif command -v sudo >/dev/null 2>&1; then sudo -n apt-get update -qq && sudo -n apt-get install -y -qq chromium; \
	  else echo "chromium not installed and no root/sudo: the browser tests will be skipped"; fi; } || \
	echo "chromium could not be installed: the browser tests will be skipped"

install: $(VENV)/.installed

install-ls: $(LS_VENV)/.installed

serve: $(VENV)/.installed
	$(VENV)/bin/gunicorn -c python:backend.service.gunicorn_conf 'backend.service.app:create_app()'

# The three installs are independent: they run side by side (mostly downloads; `--no-compile`: modules are
# byte-compiled when first imported, not all of torch's at install).
test:
	$(MAKE) -j3 --no-print-directory install install-ls chromium
	LABEL_STUDIO_BIN=$(CURDIR)/$(LS_VENV)/bin/label-studio $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) bench/rle.py
	$(PY) bench/lime_boxes.py
	$(PY) bench/grounded.py
	$(PY) bench/retrain.py

# The README's configuration tables are generated from the settings' and params' descriptions in the code.
readme-tables: $(VENV)/.installed
	$(PY) -m backend.core.config_tables README.md

clean:
	rm -rf $(VENV) $(LS_VENV) .pytest_cache
