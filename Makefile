# TLS Lab — the two commands a learner needs are `make lab` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python

.PHONY: lab test notebooks labs bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

lab: $(VENV)/.installed
	$(VENV)/bin/tlslab lab

test: $(VENV)/.installed-test
	$(PY) -m pytest

# For contributors: re-execute every notebook in place (top to bottom, fresh kernel), then
# regenerate the student labs from their solutions. Commit the results.
notebooks: $(VENV)/.installed-test
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.record_timing=False \
		course/*.ipynb labs/solutions/*.ipynb
	$(VENV)/bin/tlslab build-labs

labs: $(VENV)/.installed
	$(VENV)/bin/tlslab build-labs

bench: $(VENV)/.installed-test
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache artifacts
