# segnet-bvlc: every command a user types. See README.md.
SHELL := /bin/bash
PY := .venv/bin/python
ARCH ?= segnet-basic
PRESET ?= quick
CAMVID ?= data/CamVid
CAMVID_DIR ?= $(CAMVID)
RUN ?= runs/$(ARCH)-$(PRESET)
WEIGHTS ?= $(RUN)/inference.caffemodel
DEPLOY ?=
INIT_WEIGHTS ?=
CLASS_WEIGHTS ?=
PYTEST_ARGS ?=
# cpu or cuda: which Caffe `make setup` builds and links (the Docker image sets CAFFE_BUILD=cuda).
CAFFE_BUILD ?= cpu

.PHONY: help setup setup-cuda test test-slow prototxt camvid-train camvid-test presets table1 table3 table1-report table3-report \
	benchmark benchmark-memory lint clean

help:
	@echo "make setup          build BVLC Caffe (cached) and .venv"
	@echo "make test           set up, then run the test suite (CAMVID_DIR=path/to/CamVid)"
	@echo "make camvid-train   ARCH=$(ARCH) PRESET=$(PRESET) CAMVID=$(CAMVID) RUN=$(RUN): LMDB, train, BN stats, evaluate"
	@echo "                    (same command again: resumes and finishes; RESTART=1 starts over; BATCH= ITER_SIZE= LR=;"
	@echo "                    DROPOUT=1: Bayesian SegNet's dropout)"
	@echo "make camvid-test    ARCH=... WEIGHTS=... [DEPLOY=... | HEIGHT= WIDTH=] [SAMPLES=N]: evaluate on the CamVid"
	@echo "                    test split (SAMPLES: Monte Carlo dropout of a DROPOUT=1 run, into RUN/eval/test-mcN)"
	@echo "make prototxt       regenerate prototxt/models/*"
	@echo "make demo           the web demo on 127.0.0.1:8000 (RUN=... or WEIGHTS=... DEPLOY=...; docs/demo.md)"
	@echo "make presets        the protocol table: every preset's settings for each architecture family"
	@echo "make table1         PRESET=quick|paper|smoke [WEIGHTING=nf|mfb|both] [ARCHS=a,b] [SHARD=i/n] [RESULTS=results]:"
	@echo "                    train and score every Table 1 variant, report beside the paper (table3: deep nets)"
	@echo "make table1-report  the report of what has finished (table3-report likewise)"
	@echo "make benchmark      the paper's Table 1 / Table 6 comparison on this machine, PyTorch beside it (PEER=);"
	@echo "                    [ARCHS=a,b] [GPU=0] [RESULTS=results]: the Table 1 report reads RESULTS/benchmark"
	@echo "make benchmark-memory  peak memory of training and validation, every architecture and preset"

# EXTRAS: optional dependencies of pyproject.toml to install as well; `make test` (and test-slow, lint) set `test`
# (pytest, torch, hadolint), `make setup` and the run targets install only the run-time pins.
setup:
	@bash tools/install_caffe.sh $(if $(filter cuda,$(CAFFE_BUILD)),--cuda) $(if $(EXTRAS),--extras $(EXTRAS))

test test-slow lint: EXTRAS = test

setup-cuda:
	@bash tools/install_caffe.sh --cuda

test: setup
	CAMVID_DIR=$(CAMVID_DIR) $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test: browser

test-slow: setup
	CAMVID_DIR=$(CAMVID_DIR) $(PY) -m pytest -m slow $(PYTEST_ARGS)

prototxt: setup
	$(PY) -m prototxt --all

camvid-train: setup
	$(PY) -m tools.camvid_pipeline train --arch $(ARCH) --preset $(PRESET) --camvid $(CAMVID) --run $(RUN) \
		$(if $(INIT_WEIGHTS),--init-weights $(INIT_WEIGHTS)) $(if $(CLASS_WEIGHTS),--class-weights $(CLASS_WEIGHTS)) \
		$(if $(BATCH),--batch $(BATCH)) $(if $(ITER_SIZE),--iter-size $(ITER_SIZE)) \
		$(if $(MAX_ITER),--max-iter $(MAX_ITER)) $(if $(LR),--lr $(LR)) $(if $(RESTART),--restart) \
		$(if $(DROPOUT),--dropout)

# Scores at the resolution the weights were trained at: their run folder's, DEPLOY's, or HEIGHT x WIDTH.
camvid-test: setup
	$(PY) -m tools.camvid_pipeline test --arch $(ARCH) --weights $(WEIGHTS) --camvid $(CAMVID) --run $(RUN) \
		$(if $(DEPLOY),--deploy $(DEPLOY)) $(if $(HEIGHT),--height $(HEIGHT)) $(if $(WIDTH),--width $(WIDTH)) \
		$(if $(SAMPLES),--samples $(SAMPLES))

# The controlled benchmark: one run folder per (variant, weighting) under $(RESULTS)/table1-$(PRESET), made by the
# same pipeline as camvid-train; the same command again skips finished runs and resumes the others. ARCHS=a,b or
# SHARD=i/n splits the study over machines; `make table1-report` merges what is there.
RESULTS ?= results
WEIGHTING ?=
table1 table3: setup
	$(PY) -m tools.study run --study $@ --preset $(PRESET) --camvid $(CAMVID) --results $(RESULTS) \
		$(if $(WEIGHTING),--weighting $(WEIGHTING)) $(if $(ARCHS),--archs $(ARCHS)) $(if $(SHARD),--shard $(SHARD)) \
		$(if $(INIT_WEIGHTS),--init-weights $(INIT_WEIGHTS))

presets: setup
	@$(PY) -m prototxt --protocols

table1-report table3-report: setup
	$(PY) -m tools.study report --study $(@:-report=) --preset $(PRESET) --results $(RESULTS)

# PEER=torch (default): each architecture in PyTorch too, on the same machine in the same run (tools.torch_peer).
# PyTorch is not a run-time pin: `make setup EXTRAS=test` (or `make test`) installs it; PEER= leaves it out.
PEER ?= torch
benchmark: setup
	$(PY) -m tools.benchmark --camvid $(CAMVID) --out $(RESULTS)/benchmark $(if $(PEER),--peer $(PEER)) \
		$(if $(ARCHS),--arch $(ARCHS)) $(if $(GPU),--gpu $(GPU))

# Peak memory of training and validation, every architecture under both presets (the paper part takes an hour
# on 2 cores; re-running measures only what is missing).
benchmark-memory: setup
	$(PY) -m tools.benchmark_memory --camvid $(CAMVID) --out results/memory

lint: setup
	.venv/bin/hadolint Dockerfile
	for f in tools/*.sh; do bash -n "$$f" || exit 1; done

# Builds the image (CPU unless CAFFE_BUILD=cuda) and runs `make test` and a short `make camvid-train` in it on
# CAMVID_DIR; starts a Docker daemon when none runs and stops it afterwards (tools/docker_test.sh, docs/docker.md).
.PHONY: docker-test
docker-test:
	CAFFE_BUILD=$(CAFFE_BUILD) CAMVID_DIR=$(CAMVID_DIR) bash tools/docker_test.sh

# The web demo (docs/demo.md) over tools.segment's prediction path: every finished run under runs/ and results/,
# RUN= (shown first) or WEIGHTS= [DEPLOY=] (e.g. a converted model), CamVid's test images from CAMVID=; PORT=8000;
# HOST=127.0.0.1 (this machine only; only a HOST= on the command line changes it); SAMPLES= Monte Carlo dropout
# samples the page starts with for dropout models.
.PHONY: demo browser
demo: DEMO_ARGS = --port $(or $(PORT),8000) --host $(if $(filter command line,$(origin HOST)),$(HOST),127.0.0.1) \
	$(if $(filter command line environment,$(origin RUN)),--run $(RUN)) \
	$(if $(filter command line environment,$(origin WEIGHTS)),--weights $(WEIGHTS)) $(if $(DEPLOY),--deploy $(DEPLOY)) \
	$(if $(filter command line environment,$(origin CAMVID)),--camvid $(CAMVID),$(if \
	$(filter command line environment,$(origin CAMVID_DIR)),--camvid $(CAMVID_DIR))) $(if $(SAMPLES),--samples $(SAMPLES))
demo: setup
	$(PY) -m tools.demo $(strip $(DEMO_ARGS))

# Debian's headless Chromium for the demo's browser test (tests/test_demo.py); returns at once when installed.
browser:
	@bash tools/install_browser.sh

clean:
	rm -rf runs results/benchmark .pytest_cache  # results/memory is committed
