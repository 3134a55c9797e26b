# podium: make demo | make test | make folds | make train FOLD=k | make cv | make oof | make submit
# Every stage takes CONFIG=path/to/x.yaml and OVERRIDES="key=value ...".

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/default.yaml
OVERRIDES ?=
FOLD   ?= 0
FOLDS  ?=
NPROC  ?=
FRESH  ?=
ACCELERATE_CONFIG ?=
PODIUM := $(PY) -m podium.cli

TRAIN_FLAGS = $(if $(NPROC),--nproc $(NPROC)) $(if $(FRESH),--fresh) \
              $(if $(ACCELERATE_CONFIG),--accelerate-config $(ACCELERATE_CONFIG))

.PHONY: help install demo demo-data check folds train cv oof submit schedule ablate report leaderboard bundle \
        bench test clean
.DEFAULT_GOAL := help

help:
	@echo "make demo            the whole pipeline on the demo competition"
	@echo "make test            the test suite (CPU)"
	@echo "make folds | train FOLD=k | cv | oof | submit   [CONFIG=... OVERRIDES=\"k=v ...\"]"
	@echo "make schedule        lr and image size per update, from the config (runs/<exp>/schedule.png)"
	@echo "make ablate FOLDS=0,1  the five tricks' effect on the CV score (runs/<exp>/ablation.png)"
	@echo "make report          runs/<exp>/report.html: CV table, curves, confusion, wrong images"
	@echo "make leaderboard     all experiments' CV scores, best first"
	@echo "make bundle          runs/<exp>/bundle/ with predict.py for an offline Kaggle kernel"
	@echo "make bench           loader, step and progressive-resizing speed figures (runs/bench.json)"

# The virtual environment, rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo-data: $(VENV)/.installed
	$(PODIUM) demo-data

check: $(VENV)/.installed
	$(PODIUM) check --config $(CONFIG) $(OVERRIDES)

folds: $(VENV)/.installed
	$(PODIUM) folds --config $(CONFIG) $(OVERRIDES)

train: $(VENV)/.installed
	$(PODIUM) train --config $(CONFIG) --fold $(FOLD) $(TRAIN_FLAGS) $(OVERRIDES)

# make cv trains every fold one after another; make -j N cv trains N side by side, each with its
# own rendezvous port and, with GPUs, its own GPU (fold k on GPU k mod #GPUs).
N_SPLITS = $(shell $(PODIUM) n-splits --config $(CONFIG) $(OVERRIDES))
PARALLEL = $(filter-out -j1,$(filter -j%,$(MAKEFLAGS)))
# check first: every image is checked (and cached, with data.cache) once, not by each fold at once.
cv: $(VENV)/.installed folds check
	@$(MAKE) --no-print-directory $(addprefix cv-fold-,$(shell seq 0 $$(( $(N_SPLITS) - 1 ))))

cv-fold-%:
	@echo "== fold $* of $(N_SPLITS) =="
	$(if $(PARALLEL),PODIUM_PIN_GPU=1) $(PODIUM) train --config $(CONFIG) --fold $* $(TRAIN_FLAGS) $(OVERRIDES)

oof: $(VENV)/.installed
	$(PODIUM) oof --config $(CONFIG) $(OVERRIDES)

submit: $(VENV)/.installed
	$(PODIUM) submit --config $(CONFIG) $(OVERRIDES)

schedule: $(VENV)/.installed
	$(PODIUM) schedule --config $(CONFIG) $(if $(NPROC),--nproc $(NPROC)) $(OVERRIDES)

ablate: $(VENV)/.installed
	$(PODIUM) ablate --config $(CONFIG) $(if $(FOLDS),--folds $(FOLDS)) $(if $(NPROC),--nproc $(NPROC)) $(OVERRIDES)

demo: $(VENV)/.installed
	$(PODIUM) demo-data
	$(MAKE) --no-print-directory cv
	$(PODIUM) oof --config $(CONFIG) $(OVERRIDES)
	$(PODIUM) submit --config $(CONFIG) $(OVERRIDES)

report: $(VENV)/.installed
	$(PODIUM) report --config $(CONFIG) $(OVERRIDES)

leaderboard: $(VENV)/.installed
	$(PODIUM) leaderboard

bundle: $(VENV)/.installed
	$(PODIUM) bundle --config $(CONFIG) $(OVERRIDES)

# Speed figures (runs/bench.json); uses ../shared/datasets when present, the demo data otherwise.
bench: $(VENV)/.installed
	$(PY) benchmarks/bench.py

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf runs data/demo
