# invbench — the two set-up commands of the README are `make run` and `make test`.
# Both create the virtual environment they need (.venv) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format leaderboard bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: the embedded default benchmark (creswell on digits with a suite-trained dcgan) and its row
run: $(STAMP)
	$(BIN)/invbench run --method creswell --dataset digits --out results/default

## test: lint, format check and the test suite (what .ci/run calls)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## leaderboard: regenerate leaderboards/digits.{md,csv,tex} from fresh runs of the default protocol
leaderboard: $(STAMP)
	$(BIN)/invbench run --method creswell --dataset digits --out results/leaderboard --quiet
	$(BIN)/invbench table --results results/leaderboard --format md --title "digits (embedded default)" -o leaderboards/digits.md
	$(BIN)/invbench table --results results/leaderboard --format csv -o leaderboards/digits.csv
	$(BIN)/invbench table --results results/leaderboard --format latex -o leaderboards/digits.tex

clean:
	rm -rf results .pytest_cache .ruff_cache
