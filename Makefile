# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
LS_VENV ?= .venv-ls
PY := $(VENV)/bin/python

.PHONY: serve test install install-ls bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[queue,test]'
	touch $@

# Label Studio lives in its own environment (its pins must not constrain ours); the end-to-end tests start it.
$(LS_VENV)/.installed:
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q 'label-studio>=1.23,<1.24'
	touch $@

install: $(VENV)/.installed

install-ls: $(LS_VENV)/.installed

serve: $(VENV)/.installed
	$(VENV)/bin/gunicorn -c python:backend.service.gunicorn_conf 'backend.service.app:create_app()'

test: $(VENV)/.installed $(LS_VENV)/.installed
	LABEL_STUDIO_BIN=$(CURDIR)/$(LS_VENV)/bin/label-studio $(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) bench/rle.py
	$(PY) bench/lime_boxes.py
	$(PY) bench/grounded.py
	$(PY) bench/retrain.py

clean:
	rm -rf $(VENV) $(LS_VENV) .pytest_cache
