# invbench — the two set-up commands of the README are `make run` and `make test`.
# Both create the virtual environment they need (.venv) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-deps test-paper gpu-smoke check lint format leaderboard suites records plots report smoke-reference bench clean slurm mutation

# The test environment: the package at the exact versions the tests ran with (constraints.txt;
# the library itself declares ranges, so `pip install invbench` keeps an environment's own
# torch), its dev tools and the scale-out extras the tests drive (Ray, submitit).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,ray,slurm]'
	touch $(STAMP)

venv: $(STAMP)

## run: the embedded default benchmark (creswell on digits with a suite-trained dcgan) and its row
run: $(STAMP)
	$(BIN)/invbench run --method creswell --dataset digits --out results/default

## test-deps: what the browser and LaTeX tests need beyond .venv: Debian's chromium (driven by
## Playwright from .venv; Playwright's own browser download is never used) and pdflatex with
## booktabs + threeparttable. Installed with apt-get only when missing and running as root;
## otherwise a no-op that names what is missing (those tests then skip, saying why).
TEST_DEBS := chromium texlive-latex-base texlive-latex-extra
test-deps: $(STAMP)
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v pdflatex >/dev/null 2>&1 || missing="$$missing texlive-latex-base texlive-latex-extra"; \
	command -v pdflatex >/dev/null 2>&1 && ! kpsewhich threeparttable.sty >/dev/null 2>&1 && missing="$$missing texlive-latex-extra"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "test-deps: apt-get install$$missing"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; } \
	    || echo "test-deps: apt-get failed: the browser / LaTeX tests will skip, saying why"; \
	else \
	  echo "test-deps: missing$$missing (not root or no apt-get): the browser / LaTeX tests will skip, saying why"; \
	fi

## slurm: Debian's slurm-wlm (slurmctld, slurmd, munge) for the real-Slurm executor test, installed
## when missing and this is a root shell with apt-get; otherwise that test skips, saying why
slurm:
	@if command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing slurm-wlm (the real-Slurm test)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm \
	    >/dev/null; } || echo "make slurm: apt-get failed; the real-Slurm test will skip"; \
	else echo "make slurm: not root or no apt-get; the real-Slurm test will skip"; fi

## test: lint, format check and the test suite (what .ci/run calls)
test: $(STAMP) test-deps slurm
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

## test-paper: one optimisation step of every paper-scale network at its real widths and the
## paper-profile runs on a miniature FFHQ (minutes on a CPU; `make test` leaves them out)
test-paper: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -m paper

## gpu-smoke: each paper-scale method a few steps on CUDA with bf16 networks, per-image times
gpu-smoke: $(STAMP)
	$(BIN)/python bench/gpu_smoke.py

## check: the regression gate CI runs after the tests — the smoke suite on the embedded default,
## single-threaded (bit-reproducible), in a fresh cache, against leaderboards/smoke.json
check: $(STAMP)
	d="$$(mktemp -d)" || exit 2; trap 'rm -rf "$$d"' EXIT INT TERM; \
	export INVBENCH_HOME="$$d" OMP_NUM_THREADS=1; \
	$(BIN)/invbench suite run smoke --results "$$d/results" --quiet && \
	$(BIN)/invbench check --against leaderboards/smoke.json --results "$$d/results"

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## leaderboard: regenerate leaderboards/digits.{md,csv,tex} from a fresh run of the default protocol
## (its record goes to a temporary folder, so records of earlier code never join the table)
leaderboard: $(STAMP)
	d="$$(mktemp -d)" || exit 2; trap 'rm -rf "$$d"' EXIT INT TERM; \
	OMP_NUM_THREADS=1 $(BIN)/invbench run --method creswell --dataset digits --out "$$d" --quiet && \
	$(BIN)/invbench table --results "$$d" --format md --title "digits (embedded default)" --note "$(LB_NOTE)" -o leaderboards/digits.md && \
	$(BIN)/invbench table --results "$$d" --format csv -o leaderboards/digits.csv && \
	$(BIN)/invbench table --results "$$d" --format latex --note "$(LB_NOTE)" -o leaderboards/digits.tex

LB_NOTE := Regenerate: make leaderboard (OMP_NUM_THREADS=1 invbench run --method creswell --dataset digits; invbench table)

## suites: run SUITES (skipping finished cells) and write leaderboards/<suite>.{md,csv,tex}
SUITES ?= zoo creswell-models creswell-beta clipping latent-dim ood-probes
suites: $(STAMP)
	set -e; for s in $(SUITES); do \
	  OMP_NUM_THREADS=1 $(BIN)/invbench suite run $$s --quiet; \
	  $(BIN)/invbench table --suite $$s --format md -o leaderboards/$$s.md; \
	  $(BIN)/invbench table --suite $$s --format csv -o leaderboards/$$s.csv; \
	  $(BIN)/invbench table --suite $$s --format latex -o leaderboards/$$s.tex; \
	  $(MAKE) --no-print-directory records SUITE=$$s; \
	done

## records: copy suite SUITE's records (and their grids, strips, per-image CSVs; not latents)
## from results/suites/SUITE to leaderboards/records/SUITE, what `make report` is built from
records:
	test -n "$(SUITE)" && test -d results/suites/$(SUITE)
	rm -rf leaderboards/records/.$(SUITE).new && mkdir -p leaderboards/records/.$(SUITE).new
	cd results/suites/$(SUITE) && cp -p *.json *.png *.per_image.csv ../../../leaderboards/records/.$(SUITE).new/ 2>/dev/null || true
	ls leaderboards/records/.$(SUITE).new/*.json >/dev/null  # a failed copy keeps the committed records
	rm -rf leaderboards/records/$(SUITE) && mv leaderboards/records/.$(SUITE).new leaderboards/records/$(SUITE)

## report: the static HTML site of the committed results (leaderboards/records) in report/;
## open report/index.html from disk
report: $(STAMP)
	$(BIN)/invbench report --results leaderboards/records --out report

## plots: the curves of the committed suites (after `make suites`)
plots: $(STAMP)
	$(BIN)/invbench plot --suite latent-dim --x generator.z_dim --y mse --series method.name,dataset.name,eval.split --logx --title "latent-dim: reconstruction error vs latent dimension" -o leaderboards/latent-dim.png
	$(BIN)/invbench plot --suite zoo --pareto --x fid_rand --y mse --title "zoo: sample quality vs invertibility (creswell)" -o leaderboards/zoo.png

## smoke-reference: rewrite leaderboards/smoke.json (the gate's reference) from fresh runs
smoke-reference: $(STAMP)
	d="$$(mktemp -d)" || exit 2; trap 'rm -rf "$$d"' EXIT INT TERM; \
	export INVBENCH_HOME="$$d" OMP_NUM_THREADS=1; \
	$(BIN)/invbench suite run smoke --results "$$d/results" --quiet && \
	$(BIN)/invbench table --suite smoke --results "$$d/results" --format json -o leaderboards/smoke.json

clean:
	rm -rf results report .pytest_cache .ruff_cache mutants

## mutation: mutmut over suites.py, check.py, tables.py, artifacts.py and metrics/ with their fast
## tests ([tool.mutmut] in pyproject.toml); surviving mutants -> mutants/survivors.txt. Not in CI
## (hours). MUTANTS='invbench.suites*' limits it to one module. A rerun resumes and KEEPS every
## earlier result (mutmut reruns only mutants it is given by name): `make clean` first for counts
## that reflect the current tests.
MUTANTS ?=
mutation: $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,mutation]'
	OMP_NUM_THREADS=1 INVBENCH_HOME="$${INVBENCH_HOME:-$$PWD/mutants/home}" $(BIN)/mutmut run $(MUTANTS)
	$(BIN)/mutmut results > mutants/survivors.txt
	@echo "surviving mutants: $$(grep -c ': survived' mutants/survivors.txt) (mutants/survivors.txt;" \
	  "show one with: $(BIN)/mutmut show NAME)"

## bench: inversion and training speed per execution policy (eager fp32 / compiled fp32 / bf16)
## side by side in one process: ms/image/step at batch 1 and 256, GFLOP/s and fraction of the
## measured matmul peak, compile time apart, mse parity, creswell-vs-bare-loop overhead (--json)
bench: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python bench/inversion_bench.py
