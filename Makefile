# hbbench: everything a contributor or CI runs. The virtual environment lives in .venv and is
# created and installed on first use by any target that needs it (the stamp file records it).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HBBENCH := $(VENV)/bin/hbbench
STAMP := $(VENV)/.installed
OUT ?= results

.PHONY: install test test-all demo sweep report bench clean

# Re-installs when the package's dependencies change; torch comes from local disk where it lies there.
$(STAMP): setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,ray]"
	touch $@

install: $(STAMP)  ## virtualenv + editable install with test and Ray extras (the targets below do it on first use)

test: $(STAMP)  ## the fast tier: every kind of assertion on small work (tiny CNN, 2-4 images), <= 2 min on 2 cores
	$(PY) -m pytest -q -m "not slow" -n auto --dist loadfile --no-loadscope-reorder --durations=25

test-all: $(STAMP)  ## the whole suite, the slow tier too (EfficientNet-Lite0, real processes, documented budgets), target 6 min on 2 cores
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --durations=25

demo: $(STAMP)  ## a 4-image sweep, about a minute
	$(HBBENCH) sweep --attacks fgsm,pgd --defense jpeg,heatblur --n 4 --out $(OUT)

sweep: $(STAMP)  ## the headline comparison: fgsm,pgd,cw x none,heatblur,jpeg x oblivious,bpda on 20 embedded images
	$(HBBENCH) sweep --attacks fgsm,pgd,cw --defense heatblur,jpeg --out $(OUT)

report: $(STAMP)  ## report the newest run (runs the default sweep first if there is none)
	@ls $(OUT)/*/manifest.json >/dev/null 2>&1 || $(MAKE) sweep
	$(HBBENCH) report --out $(OUT)

bench: $(STAMP)  ## performance figures (prints them; see bench/README.md)
	for f in bench/bench_*.py; do m=$$(basename $$f .py); echo "== $$m"; $(PY) -m bench.$$m || exit 1; done

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
