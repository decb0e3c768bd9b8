# The README's contract: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo_output

.PHONY: demo test lint bench-revenue bench-ssm clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Create the environment, install the package, fit the revenue model on the bundled data,
# recommend a budget split, compare the revenue models on UCI, and write the stargazers report
# (the `apps` extra: the stargazers and locations applications' dependencies).
demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[apps]'
	$(BIN)/jaxrev fit bundled:uci_online_retail --method svi --out $(OUT)/uci_online_retail
	$(BIN)/jaxrev fit bundled:simulated_account --method nuts --out $(OUT)/simulated_account_nuts
	$(BIN)/jaxrev fit bundled:simulated_account --method svi --out $(OUT)/simulated_account_svi
	$(BIN)/jaxrev allocate bundled:simulated_daily --revenue-fit $(OUT)/simulated_account_svi \
		--budget 10000 --half-life 14 --min-share 0.01 --out $(OUT)/allocation
	$(BIN)/jaxrev compare bundled:uci_online_retail --method svi --guide fullrank \
		--out $(OUT)/uci_compare
	$(BIN)/jaxssm report bundled:demo --out $(OUT)/stargazers_report
	@echo "Demo outputs are in $(OUT)/"

# Install the test extra (which includes `apps`) and run the whole suite, one test file per
# worker on two workers (compilation dominates; the CI machine has 2 cores).
test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	PYTHONHASHSEED=0 $(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(BIN)/python
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# Reference benchmark against the seed's Stan program (needs the `stan` extra; minutes).
bench-revenue: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[stan]'
	$(BIN)/python benchmarks/revenue_vs_stan.py

# Laplace-EM against the dense Hessian, DynamicFactorMQ and Stan (needs the `bench` extra).
bench-ssm: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/ssm_laplace_em.py

clean:
	rm -rf $(OUT) benchmarks/output .pytest_cache
