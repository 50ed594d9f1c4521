# segnet-bvlc in a container: BVLC Caffe built by the project's own install step (tools/install_caffe.sh), the
# same source and patches as `make setup`, for CUDA (default) or CPU. Needs BuildKit (the default builder since
# Docker 23; with Debian's docker.io 20.10: DOCKER_BUILDKIT=1). README "Docker" and docs/docker.md have the rest.
#
#   docker build -t segnet-bvlc .                              # CUDA 11.8, sm_70..sm_90 + PTX 90, cuDNN off
#   docker build -t segnet-bvlc:cpu --build-arg CAFFE_BUILD=cpu .
#   docker run --gpus all -v /path/CamVid:/segnet-bvlc/data/CamVid:ro -v "$PWD/runs":/segnet-bvlc/runs segnet-bvlc
#   docker run --gpus all ... segnet-bvlc make camvid-train ARCH=segnet PRESET=paper   # any make target / variable
#   make docker-test                                           # build the CPU image and test it (tools/docker_test.sh)
#
# Base image: Debian bookworm by the digest of its multi-arch index (the ARG below; every FROM uses it, which
# tests/test_docker.py checks). The NVIDIA CUDA images are deleted from the registries six months after their end of
# life, so CUDA comes from Debian's own non-free `nvidia-cuda-toolkit` 11.8 (Volta..Hopper; its nvcc needs g++ <= 11).
#   Taken 2026-11-24 (commit ec473c8), from public Dockerfiles and CI scripts that pin debian:bookworm / debian:12 by
#   this digest (one of them dated 2026-04-28). It could NOT be pulled or verified here: no registry answers the
#   project's machines, where `make docker-test` builds on a local debootstrap base instead (BASE_IMAGE).
#   Refresh, on a machine that reaches Docker Hub:
#     docker buildx imagetools inspect debian:bookworm --format '{{json .Manifest.Digest}}'   # or: crane digest debian:bookworm
#   Verify the new digest before committing it (an index digest that lists linux/amd64 and is Debian 12):
#     docker buildx imagetools inspect debian:bookworm@sha256:NEW        # "MediaType: ...image.index", linux/amd64
#     docker run --rm debian:bookworm@sha256:NEW cat /etc/debian_version  # 12.x
#   then replace it below, update the date above, and run `make docker-test BASE_IMAGE=` (empty: the pinned one).
# Apt packages are not version-pinned beyond the CUDA toolkit: bookworm's point releases only take fixes.
#
# Two stages. `build` has the compilers (and for CUDA the toolkit) and runs the install step; the final image gets
# the compiled Caffe and the .venv from it, and only the run-time libraries (`install_caffe.sh --runtime-only`:
# Caffe's shared-library dependencies, for CUDA cudart/cuBLAS/cuRAND without Debian's driver library, which must not
# shadow the host driver that `--gpus all` mounts). PyTorch, pytest and hadolint (the test extra) are not in the
# image: `make test` inside it installs them (PyTorch's CPU build, through PIP_EXTRA_INDEX_URL below).
# Runtime for CUDA: NVIDIA Container Toolkit and a driver for CUDA 11.8 (>= 520, or >= 450.80 through minor-version
# compatibility).
#
# Build-time pip settings (a proxy's CA, a private index) come in as BuildKit secrets, mounted for the one pip step
# and never written to a layer:  --secret id=pip_conf,src=pip.conf  (a pip configuration file)  and/or
# --secret id=pip_cert,src=ca-bundle.pem  (PIP_CERT). tools/docker_test.sh derives both from the host's settings.

ARG BASE_IMAGE=debian:bookworm@sha256:8a8cd02c5912770b4980228a54d4aff9e4f986f1eb2525d2d371dec5232cefcc

FROM ${BASE_IMAGE} AS build
ARG CAFFE_BUILD=cuda
ARG CUDA_TOOLKIT_VERSION=11.8.89~11.8.0-5~deb12u1
# GPU code for Volta..Hopper (CUDA 11.8 has them all) and PTX 9.0 for newer GPUs (read by tools/install_caffe.sh).
ARG CUDA_ARCH_BIN="70 75 80 86 89 90"
ARG CUDA_ARCH_PTX=90
ENV DEBIAN_FRONTEND=noninteractive \
    SEGNET_CACHE=/opt/segnet-bvlc-cache \
    CUDA_ARCH_BIN=${CUDA_ARCH_BIN} \
    CUDA_ARCH_PTX=${CUDA_ARCH_PTX}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /segnet-bvlc

# Python 3.11 from Debian (a shared libpython, which Caffe's embedded interpreter needs) and, for CUDA, the toolkit
# from non-free with the g++-11 its nvcc accepts.
# hadolint ignore=DL3008
RUN case "$CAFFE_BUILD" in cuda|cpu) ;; *) echo "CAFFE_BUILD must be cuda or cpu, not '$CAFFE_BUILD'" >&2; exit 1 ;; esac \
 && sed -i 's/^Components: main$/Components: main contrib non-free/' /etc/apt/sources.list.d/debian.sources \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates make python3 python3-venv python3-dev libpython3.11-dev \
 && if [ "$CAFFE_BUILD" = cuda ]; then \
        apt-get install -y --no-install-recommends "nvidia-cuda-toolkit=$CUDA_TOOLKIT_VERSION" gcc-11 g++-11; \
    fi \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

# Only what the install step reads, so that editing the project does not rebuild Caffe.
COPY pyproject.toml ./
COPY tools/install_caffe.sh tools/
COPY tools/caffe_patches/ tools/caffe_patches/
COPY layers/ layers/

# The run-time pins only (no test extra), the build packages, the compile. The .venv is made writable for every user
# here, where it costs no layer in the final image: a container may run as the owner of the mounted runs/ folder.
RUN --mount=type=secret,id=pip_conf --mount=type=secret,id=pip_cert \
    if [ -f /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi \
 && if [ -f /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && python3 -m venv .venv \
 && if [ "$CAFFE_BUILD" = cuda ]; then \
        CC=gcc-11 CXX=g++-11 bash tools/install_caffe.sh --cuda; \
    else \
        bash tools/install_caffe.sh; \
    fi \
 && rm -rf "$SEGNET_CACHE"/*.tar.gz /root/.cache/pip \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && chmod -R a+rwX .venv


FROM ${BASE_IMAGE}
ARG CAFFE_BUILD=cuda
# CAFFE_BUILD stays set in the image: the Makefile's `setup` (run by every make target) then links the CUDA build.
# PIP_EXTRA_INDEX_URL: `make test` installs PyTorch (the test oracle) as the CPU build, not PyPI's CUDA one of several GB.
ENV DEBIAN_FRONTEND=noninteractive \
    SEGNET_CACHE=/opt/segnet-bvlc-cache \
    CAFFE_BUILD=${CAFFE_BUILD} \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PIP_NO_CACHE_DIR=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /segnet-bvlc

COPY --from=build /opt/segnet-bvlc-cache /opt/segnet-bvlc-cache
COPY --from=build /segnet-bvlc/.venv /segnet-bvlc/.venv
COPY --from=build /segnet-bvlc/pyproject.toml /segnet-bvlc/pyproject.toml
COPY --from=build /segnet-bvlc/tools/install_caffe.sh /segnet-bvlc/tools/install_caffe.sh
COPY --from=build /segnet-bvlc/layers /segnet-bvlc/layers

# Python (no -dev), make, the CA store for pip, libatomic1 (30 kB: the node driver of playwright, which `make test`
# installs with the test extra, needs it; hosts have it through their compilers), and the install step once more
# with --runtime-only: it installs the run-time libraries the compiled Caffe links against, finds .venv up to date
# and Caffe in the cache (it never compiles), and links them (its last check imports caffe).
# hadolint ignore=DL3008
RUN sed -i 's/^Components: main$/Components: main contrib non-free/' /etc/apt/sources.list.d/debian.sources \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates make python3 libatomic1 \
 && if [ "$CAFFE_BUILD" = cuda ]; then bash tools/install_caffe.sh --runtime-only --cuda; \
    else bash tools/install_caffe.sh --runtime-only; fi \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log

COPY . .
# The project's packages installed into .venv (the install step's last stage, now that the whole tree is here; no
# apt, no download). Writable by every user (the container may run as the owner of runs/): the project folder (not
# .venv, done in the build stage: chmod here would copy it into this layer), for runs/, results/ and pytest's
# cache. Bytecode compiled once. A few MB.
RUN if [ "$CAFFE_BUILD" = cuda ]; then bash tools/install_caffe.sh --runtime-only --no-apt --cuda; \
    else bash tools/install_caffe.sh --runtime-only --no-apt; fi \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && .venv/bin/python -m compileall -q layers prototxt segnet_bvlc tools tests \
 && mkdir -p runs results \
 && find /segnet-bvlc -path /segnet-bvlc/.venv -prune -o -exec chmod a+rwX {} +

VOLUME ["/segnet-bvlc/data/CamVid", "/segnet-bvlc/runs"]
ENTRYPOINT ["/bin/sh", "/segnet-bvlc/tools/docker_entrypoint.sh"]
CMD ["make", "camvid-train"]
