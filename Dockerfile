# segnet-bvlc in a container: BVLC Caffe built by the project's own install step (tools/install_caffe.sh), the
# same source and patches as `make setup`, for CUDA (default) or CPU.
#
#   docker build -t segnet-bvlc .                              # CUDA 11.8, sm_70..sm_90 + PTX 90, cuDNN off
#   docker build -t segnet-bvlc:cpu --build-arg CAFFE_BUILD=cpu .
#   docker run --gpus all -v /path/CamVid:/segnet-bvlc/data/CamVid -v "$PWD/runs":/segnet-bvlc/runs segnet-bvlc
#   docker run --gpus all ... segnet-bvlc make camvid-train ARCH=segnet PRESET=paper   # any make target / variable
#
# Base image. The NVIDIA CUDA images are deleted from the registries six months after their end of life, so the
# image is built on plain Debian bookworm with Debian's own CUDA 11.8 toolkit (non-free `nvidia-cuda-toolkit`
# 11.8.89~11.8.0-5~deb12u1, checked with apt-cache; CUDA 11.8 targets Volta..Hopper, its nvcc needs g++ <= 11).
# Pinned: debian:bookworm by the digest of its multi-arch index below. It was NOT pulled from here (no Docker
# registry can be reached from the project's machines): it is the digest that public Dockerfiles pinned for
# debian:bookworm in 2026. Refresh it with
#   docker buildx imagetools inspect debian:bookworm --format '{{json .Manifest.Digest}}'
# (or `docker pull debian:bookworm && docker inspect --format '{{index .RepoDigests 0}}' debian:bookworm`).
# Apt packages are not version-pinned beyond the CUDA toolkit: bookworm's point releases only take fixes.
#
# Two stages: `build` has the CUDA toolkit and compiles Caffe; the final image gets the compiled cache, the .venv and
# only the CUDA runtime libraries (cudart, cuBLAS, cuRAND). The toolkit package would also pull Debian's driver
# library (libcuda1), which must not shadow the host driver that `--gpus all` mounts into the container.
# Runtime: NVIDIA Container Toolkit and a driver for CUDA 11.8 (>= 520, or >= 450.80 through minor-version
# compatibility).

FROM debian:bookworm@sha256:8a8cd02c5912770b4980228a54d4aff9e4f986f1eb2525d2d371dec5232cefcc AS build
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
 && rm -rf /var/lib/apt/lists/*

# Only what the install step reads, so that editing the project does not rebuild Caffe.
COPY pyproject.toml ./
COPY tools/install_caffe.sh tools/
COPY layers/ layers/

# PyTorch (the test oracle, a pinned dependency) from its CPU index first: PyPI's x86_64 torch is a CUDA build of
# several GB. The install step then finds torch==2.13.0 satisfied and installs the other pins.
RUN python3 -m venv .venv \
 && .venv/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        "torch==$(sed -n 's/^ *"torch==\([^"]*\)".*/\1/p' pyproject.toml)" \
 && if [ "$CAFFE_BUILD" = cuda ]; then \
        CC=gcc-11 CXX=g++-11 bash tools/install_caffe.sh --cuda; \
    else \
        bash tools/install_caffe.sh; \
    fi \
 && rm -rf /root/.cache/pip /var/lib/apt/lists/*


FROM debian:bookworm@sha256:8a8cd02c5912770b4980228a54d4aff9e4f986f1eb2525d2d371dec5232cefcc
ARG CAFFE_BUILD=cuda
# CAFFE_BUILD stays set in the image: the Makefile's `setup` (run by every make target) then links the CUDA build.
ENV DEBIAN_FRONTEND=noninteractive \
    SEGNET_CACHE=/opt/segnet-bvlc-cache \
    CAFFE_BUILD=${CAFFE_BUILD} \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /segnet-bvlc

# hadolint ignore=DL3008
RUN sed -i 's/^Components: main$/Components: main contrib non-free/' /etc/apt/sources.list.d/debian.sources \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates make python3 python3-venv python3-dev libpython3.11-dev \
 && if [ "$CAFFE_BUILD" = cuda ]; then \
        apt-get install -y --no-install-recommends libcudart11.0 libcublas11 libcurand10; \
    fi \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/segnet-bvlc-cache /opt/segnet-bvlc-cache
COPY --from=build /segnet-bvlc/.venv /segnet-bvlc/.venv
COPY . .

# The same install step once more: it installs Caffe's run-time system packages, finds .venv up to date and the
# compiled Caffe in the cache, and links them (the check at its end imports caffe).
RUN if [ "$CAFFE_BUILD" = cuda ]; then bash tools/install_caffe.sh --cuda; else bash tools/install_caffe.sh; fi \
 && rm -rf /var/lib/apt/lists/*

VOLUME ["/segnet-bvlc/data/CamVid", "/segnet-bvlc/runs"]
CMD ["make", "camvid-train"]
