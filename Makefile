# hbbench: everything a contributor or CI runs. The virtual environment lives in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HBBENCH := $(VENV)/bin/hbbench
OUT ?= results

.PHONY: install test demo sweep report bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)  ## virtualenv + editable install with test and Ray extras (torch comes from local disk here)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,ray]"

test:  ## the whole suite (a few minutes on 2 cores)
	$(PY) -m pytest -q

demo:  ## a 4-image sweep, about a minute
	$(HBBENCH) sweep --attacks fgsm,pgd --defense jpeg,heatblur --n 4 --out $(OUT)

sweep:  ## the default sweep: fgsm,pgd,cw x none,jpeg x oblivious,bpda on 20 embedded ImageNet images
	$(HBBENCH) sweep --attacks fgsm,pgd,cw --defense jpeg --out $(OUT)

report:  ## report the newest run (runs the default sweep first if there is none)
	@ls $(OUT)/*/manifest.json >/dev/null 2>&1 || $(MAKE) sweep
	$(HBBENCH) report --out $(OUT)

bench:  ## performance figures (prints them; see bench/README.md)
	for f in bench/bench_*.py; do m=$$(basename $$f .py); echo "== $$m"; $(PY) -m bench.$$m || exit 1; done

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
