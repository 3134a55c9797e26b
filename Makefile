# podium: make demo | make test | make folds | make train FOLD=k | make cv | make oof | make submit
# Every stage takes CONFIG=path/to/x.yaml and OVERRIDES="key=value ...".
# `make help` lists the targets from their `## ...` comments: a public target gets one on its rule
# line; a target without one is internal (demo-data, cv-fold-%: steps of demo and cv).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/default.yaml
OVERRIDES ?=
FOLD   ?= 0
FOLDS  ?=
SEEDS  ?=
EXPS   ?=
NAME   ?=
METHOD ?= weights
NPROC  ?=
FRESH  ?=
ACCELERATE_CONFIG ?=
PODIUM := $(PY) -m podium.cli

TRAIN_FLAGS = $(if $(NPROC),--nproc $(NPROC)) $(if $(FRESH),--fresh) \
              $(if $(ACCELERATE_CONFIG),--accelerate-config $(ACCELERATE_CONFIG))

.PHONY: help install install-latest lock demo demo-data check folds train cv oof submit blend schedule ablate tune lr-find report audit leaderboard bundle kaggle-dataset kaggle-submit \
        bench test test-fast lint docs clean
.DEFAULT_GOAL := help

help:  ## this list
	@echo "podium: an image-classification competition, from folds to a Kaggle submission"
	@echo "usage: make <target> [CONFIG=path/to/x.yaml] [OVERRIDES=\"key=value ...\"]"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z0-9_-]+:.*## / { printf "  make %-15s %s\n", $$1, $$2 }' \
		$(MAKEFILE_LIST)

demo: $(VENV)/.installed  ## the whole pipeline on the demo competition (data/demo/)
	$(PODIUM) demo-data
	$(MAKE) --no-print-directory cv
	$(PODIUM) oof --config $(CONFIG) $(OVERRIDES)
	$(PODIUM) submit --config $(CONFIG) $(OVERRIDES)

# The virtual environment, from requirements.lock (the exact versions `make lock` resolved), rebuilt
# when the lock or pyproject.toml changes. .installed says how it was installed: the lock test
# compares `pip freeze` with the lock only after an install from the lock.
EXTRAS := dev,kaggle
LOCK   := requirements.lock
PIP_ARGS ?=  # e.g. --extra-index-url for a torch build of another CUDA release (docs/operations.md)
$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_ARGS) -r $(LOCK) -e ".[$(EXTRAS)]"
	echo "lock $(LOCK)" > $@

install: $(VENV)/.installed  ## build .venv from requirements.lock (every target does it on first use)

install-latest:  ## .venv from pyproject.toml's floors instead: the newest versions they allow
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_ARGS) --upgrade --upgrade-strategy eager -e ".[$(EXTRAS)]"
	echo "latest" > $(VENV)/.installed

# pip's resolver, asked for a dry-run install of everything (--ignore-installed: as into an empty
# .venv), reports the versions it would choose; podium.lock writes them with their platform markers.
lock: $(VENV)/.installed  ## requirements.lock from pyproject.toml's floors (the newest versions they allow)
	$(PY) -m pip install --quiet --dry-run --ignore-installed --report $(VENV)/lock-report.json -e ".[$(EXTRAS)]"
	$(PY) -m podium.lock $(VENV)/lock-report.json $(LOCK)

demo-data: $(VENV)/.installed
	$(PODIUM) demo-data

check: $(VENV)/.installed  ## validate the config and every image, train nothing (caches them, with data.cache)
	$(PODIUM) check --config $(CONFIG) $(OVERRIDES)

folds: $(VENV)/.installed  ## runs/<exp>/folds.csv: the cross-validation split
	$(PODIUM) folds --config $(CONFIG) $(OVERRIDES)

train: $(VENV)/.installed  ## one fold: FOLD=k [NPROC=n] [FRESH=1] [ACCELERATE_CONFIG=x.yaml]
	$(PODIUM) train --config $(CONFIG) --fold $(FOLD) $(TRAIN_FLAGS) $(OVERRIDES)

# make cv trains every fold one after another; make -j N cv trains N side by side, each with its
# own rendezvous port and, with GPUs, its own GPU (fold k on GPU k mod #GPUs).
N_SPLITS = $(shell $(PODIUM) n-splits --config $(CONFIG) $(OVERRIDES))
PARALLEL = $(filter-out -j1,$(filter -j%,$(MAKEFLAGS)))
comma := ,
EXP = $(basename $(notdir $(CONFIG)))
ifeq ($(SEEDS),)
# check first: every image is checked (and cached, with data.cache) once, not by each fold at once.
cv: $(VENV)/.installed folds check  ## folds, check, then every fold (-j N: N side by side; SEEDS=0,1,2: one experiment each)
	@$(MAKE) --no-print-directory $(addprefix cv-fold-,$(shell seq 0 $$(( $(N_SPLITS) - 1 ))))
else
# SEEDS=0,1,2: the same config under each seed, one experiment each (<exp>_seed<k>), ready for make blend.
cv: $(VENV)/.installed
	@for s in $(subst $(comma), ,$(SEEDS)); do \
		echo "== seed $$s: $(EXP)_seed$$s =="; \
		$(MAKE) --no-print-directory cv SEEDS= OVERRIDES="$(OVERRIDES) seed=$$s experiment=$(EXP)_seed$$s" || exit 1; \
	done
endif

cv-fold-%:
	@echo "== fold $* of $(N_SPLITS) =="
	$(PODIUM) train --config $(CONFIG) --fold $* $(TRAIN_FLAGS) $(if $(PARALLEL),--pin-gpu) $(OVERRIDES)

oof: $(VENV)/.installed  ## join the out-of-fold predictions: runs/<exp>/oof.csv, cv.json and the CV table
	$(PODIUM) oof --config $(CONFIG) $(OVERRIDES)

submit: $(VENV)/.installed  ## submissions/<exp>.csv: the folds' test predictions averaged [FOLDS=0,2: a probe]
	$(PODIUM) submit --config $(CONFIG) $(if $(FOLDS),--folds $(FOLDS)) $(OVERRIDES)

schedule: $(VENV)/.installed  ## lr and image size per update, from the config (runs/<exp>/schedule.png)
	$(PODIUM) schedule --config $(CONFIG) $(if $(NPROC),--nproc $(NPROC)) $(OVERRIDES)

ablate: $(VENV)/.installed  ## FOLDS=0,1: the five tricks' effect on the CV score (runs/<exp>/ablation.png)
	$(PODIUM) ablate --config $(CONFIG) $(if $(FOLDS),--folds $(FOLDS)) $(if $(NPROC),--nproc $(NPROC)) $(OVERRIDES)

# make -j N tune: N workers on one study (with GPUs, worker k on GPU k mod #GPUs). The study is
# created first, so the workers never race to create it; the summary reads it when all are done.
TRIALS ?=
WORKERS = $(or $(patsubst -j%,%,$(PARALLEL)),1)
tune: $(VENV)/.installed folds check  ## Optuna search over tune.space: TRIALS=n [-j N: N workers]; runs/<exp>/best.yaml
	$(PODIUM) tune --config $(CONFIG) --step study $(OVERRIDES)
	@$(MAKE) --no-print-directory $(addprefix tune-worker-,$(shell seq 0 $$(( $(WORKERS) - 1 ))))
	$(PODIUM) tune --config $(CONFIG) --step summary $(OVERRIDES)

tune-worker-%:
	$(PODIUM) tune --config $(CONFIG) --worker $* $(if $(TRIALS),--trials $(TRIALS)) $(if $(NPROC),--nproc $(NPROC)) \
		$(if $(PARALLEL),--pin-gpu) $(OVERRIDES)

UPDATES ?= 200
lr-find: $(VENV)/.installed  ## the lr range test on fold 0 [UPDATES=200]: runs/<exp>/lr_find.png, a suggested train.lr
	$(PODIUM) lr-find --config $(CONFIG) --updates $(UPDATES) $(OVERRIDES)

report: $(VENV)/.installed  ## runs/<exp>/report.html: CV table, curves, confusion, wrong images [NAME=a blend]
	$(PODIUM) report --config $(CONFIG) $(if $(NAME),--name $(NAME)) $(OVERRIDES)

audit: $(VENV)/.installed  ## runs/<exp>/audit.html + audit.csv: duplicate images (in train, across folds, in test), label suspects
	$(PODIUM) audit --config $(CONFIG) $(OVERRIDES)

leaderboard: $(VENV)/.installed  ## all experiments' CV scores, best first
	$(PODIUM) leaderboard

bundle: $(VENV)/.installed  ## runs/<exp>/bundle/ with predict.py for an offline Kaggle kernel [NAME=a blend]
	$(PODIUM) bundle --config $(CONFIG) $(if $(NAME),--name $(NAME)) $(OVERRIDES)

blend: $(VENV)/.installed  ## EXPS="a b" NAME=x [METHOD=weights|mean|rank]: runs/x/, submissions/x.csv
	$(PODIUM) blend --config $(CONFIG) --exps $(EXPS) --name $(NAME) --method $(METHOD) $(OVERRIDES)

# The official kaggle command line (installed with the kaggle extra); credentials stay in the
# user's kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY.
MESSAGE ?=
kaggle-dataset: $(VENV)/.installed  ## upload runs/<exp>/bundle/ as a private Kaggle dataset (a new version when it exists) [NAME=x]
	$(PODIUM) kaggle-dataset --config $(CONFIG) $(if $(NAME),--name $(NAME)) $(OVERRIDES)

kaggle-submit: $(VENV)/.installed  ## submit submissions/<exp>.csv to kaggle.competition, refused if stale [NAME=x MESSAGE=...]
	$(PODIUM) kaggle-submit --config $(CONFIG) $(if $(NAME),--name $(NAME)) --message "$(MESSAGE)" $(OVERRIDES)

# Speed figures (runs/bench.json); uses ../shared/datasets when present, the demo data otherwise.
bench: $(VENV)/.installed  ## loader, step and progressive-resizing speed figures (runs/bench.json)
	$(PY) benchmarks/bench.py

test: $(VENV)/.installed  ## the whole test suite, CPU only (about 21 minutes on 2 cores)
	$(PY) -m pytest -q

# Slow tests (training subprocesses, several epochs) carry @pytest.mark.slow; see pyproject.toml.
test-fast: $(VENV)/.installed  ## the tests not marked slow (about 3 minutes)
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.installed  ## ruff check src tests benchmarks (rules in pyproject.toml)
	$(PY) -m ruff check src tests benchmarks

docs: $(VENV)/.installed  ## docs/ rendered as a site in site/ (mkdocs, strict: a broken link fails)
	$(PY) -m mkdocs build --strict --quiet --site-dir site

clean:  ## delete runs/, data/demo/ and site/
	rm -rf runs data/demo site
