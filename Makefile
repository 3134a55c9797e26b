# podium: make demo | make test | make folds | make train FOLD=k | make cv | make oof | make submit
# Every stage takes CONFIG=path/to/x.yaml and OVERRIDES="key=value ...".

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/default.yaml
OVERRIDES ?=
FOLD   ?= 0
NPROC  ?=
FRESH  ?=
ACCELERATE_CONFIG ?=
PODIUM := $(PY) -m podium.cli

TRAIN_FLAGS = $(if $(NPROC),--nproc $(NPROC)) $(if $(FRESH),--fresh) \
              $(if $(ACCELERATE_CONFIG),--accelerate-config $(ACCELERATE_CONFIG))

.PHONY: help install demo demo-data check folds train cv oof submit test clean
.DEFAULT_GOAL := help

help:
	@echo "make demo            the whole pipeline on the demo competition"
	@echo "make test            the test suite (CPU)"
	@echo "make folds | train FOLD=k | cv | oof | submit   [CONFIG=... OVERRIDES=\"k=v ...\"]"

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
PARALLEL = $(filter -j%,$(MAKEFLAGS))$(findstring j,$(firstword -$(MAKEFLAGS)))
cv: $(VENV)/.installed folds
	@$(MAKE) --no-print-directory $(addprefix cv-fold-,$(shell seq 0 $$(( $(N_SPLITS) - 1 ))))

cv-fold-%:
	@echo "== fold $* of $(N_SPLITS) =="
	$(if $(PARALLEL),PODIUM_PIN_GPU=1) $(PODIUM) train --config $(CONFIG) --fold $* $(TRAIN_FLAGS) $(OVERRIDES)

oof: $(VENV)/.installed
	$(PODIUM) oof --config $(CONFIG) $(OVERRIDES)

submit: $(VENV)/.installed
	$(PODIUM) submit --config $(CONFIG) $(OVERRIDES)

demo: $(VENV)/.installed
	$(PODIUM) demo-data
	$(MAKE) --no-print-directory cv
	$(PODIUM) oof --config $(CONFIG) $(OVERRIDES)
	$(PODIUM) submit --config $(CONFIG) $(OVERRIDES)

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf runs data/demo
