#!/usr/bin/env bash
# Build stock BVLC Caffe (pycaffe for Python 3, Python layers on) for this project, and the project's .venv.
#
# Stages, one line each:
#   1 python venv      (.venv with the pins of pyproject.toml; --extras adds optional ones, e.g. the test extra)
#   2 caffe source     (the cached build if there is one; else Debian's source package
#                       caffe=1.0.0+git20180821.99bd997-8 = BVLC commit 99bd997, else ../shared/vendor/ or
#                       $CAFFE_ORIG_TARBALL; sha256 always checked. With --cuda the toolkit is looked for first.)
#   3 patches          (protobuf 3.21, OpenCV 4, numpy 2: three one-line fixes)
#   4 system packages  (apt, only what is missing: the build packages when Caffe is compiled; with --runtime-only
#                       the run-time libraries of the cached build; nothing else for a cached build)
#   5 build            (the speed patches of tools/caffe_patches, numerics unchanged; CMake, -j$(nproc), installed
#                       into a cache keyed by source, patches, Python, numpy, CPU/CUDA)
#   6 link             (.venv imports caffe and the project; .venv/bin/caffe runs the CLI with Python layers)
#
# Usage: tools/install_caffe.sh [--cuda] [--extras LIST] [--runtime-only] [--configure-only] [--compile-only]
#                               [--venv DIR] [--no-apt] [--no-venv] [--list-packages build|runtime]
#   --cuda            CUDA build (cuDNN off: BVLC does not compile against cuDNN >= 8). Arches from $CUDA_ARCH_BIN
#                     (default: Volta..Hopper that the installed nvcc supports) with PTX for the newest.
#   --extras LIST     also install these optional dependencies of pyproject.toml (comma-separated; `make test`
#                     passes `test`: pytest, torch, hadolint). Without it only the run-time pins are installed.
#   --runtime-only    never compile: the build must be in the cache already (the Docker image copies it from its
#                     build stage), and only the run-time libraries it links against are installed (Debian 12
#                     package names; with --cuda also Debian's CUDA 11.8 cudart/cuBLAS/cuRAND), no compiler or -dev.
#   --configure-only  stop after CMake configure (with --cuda: a check that the CUDA toolchain is usable).
#   --compile-only    build but do not install or link (used to exercise the CUDA build on a machine without a GPU).
#   --venv DIR        the virtual environment to build against and link into (default: .venv in the project).
#   --list-packages K print the apt packages of kind K (build or runtime, as --runtime-only installs them) and exit.
# Environment: SEGNET_CACHE (default ~/.cache/segnet-bvlc), CAFFE_ORIG_TARBALL, CUDA_ARCH_BIN, CUDA_ARCH_PTX,
#   CUDA_HOME (toolkit root; default: found from nvcc), CUDA_EXTRA_ROOT (colon-separated prefixes with include/ and
#   lib/ holding cuBLAS/cuRAND when the toolkit lacks them, e.g. unpacked nvidia-cublas/nvidia-curand wheels).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAFFE_DEB_VERSION="1.0.0+git20180821.99bd997-8"
TARBALL_NAME="caffe_1.0.0+git20180821.99bd997.orig.tar.gz"
TARBALL_SHA256="e0eb3f06794f7402c77b7dec8e8480273ee1a1bb192e9122b621a69d4147ad0c"
# Bump when the patches or the CMake flags change: it is part of the cache key.
PATCH_REV=2
# The same for the CUDA-only patches and flags (part of the CUDA build's key only, so the CPU cache stays valid).
CUDA_PATCH_REV=1
CACHE=${SEGNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/segnet-bvlc}
VENV=$ROOT/.venv
CUDA=0
CONFIGURE_ONLY=0
COMPILE_ONLY=0
RUNTIME_ONLY=0
EXTRAS=""
LIST_PACKAGES=""
DO_APT=1
DO_VENV=1

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --cuda) CUDA=1 ;;
        --configure-only) CONFIGURE_ONLY=1 ;;
        --compile-only) COMPILE_ONLY=1 ;;
        --runtime-only) RUNTIME_ONLY=1 ;;
        --extras) [ $# -ge 2 ] || { echo "install_caffe: --extras needs a list (e.g. test)" >&2; exit 2; }
                  EXTRAS="$EXTRAS${EXTRAS:+,}$2"; shift ;;
        --list-packages) [ $# -ge 2 ] || { echo "install_caffe: --list-packages needs build or runtime" >&2; exit 2; }
                         LIST_PACKAGES=$2; shift ;;
        --venv) VENV=$(realpath -m "$2"); shift ;;
        --no-apt) DO_APT=0 ;;
        --no-venv) DO_VENV=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install_caffe: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

STAGE=0
# The stage being worked on: set at the start of each stage, reported by die.
stage() { printf '[setup %d/6] %s\n' "$STAGE" "$*"; }
die() { printf 'install_caffe: FAILED at stage %d: %s\n' "$STAGE" "$*" >&2; exit 1; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# What compiling Caffe needs (distribution-neutral names: Debian and Ubuntu).
BUILD_PACKAGES="build-essential patch cmake pkg-config libboost-system-dev libboost-thread-dev libboost-filesystem-dev
libboost-regex-dev libboost-python-dev libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev
libhdf5-dev liblmdb-dev libleveldb-dev libsnappy-dev libopenblas-dev libopencv-dev debian-archive-keyring"
# What the compiled Caffe (libcaffe, _caffe.so, the tools) links against, Debian 12 names: the packages of its
# direct shared-library dependencies, less libc6/libgcc-s1/libstdc++6 which every Debian has. tests/test_docker.py
# checks this list against the cached build's ELF dependencies. Used by --runtime-only (the Docker image).
RUNTIME_PACKAGES="libboost-filesystem1.74.0 libboost-python1.74.0 libboost-thread1.74.0 libgflags2.2
libgomp1 libgoogle-glog0v6 libhdf5-103-1 libhdf5-hl-100 libleveldb1d liblmdb0 libopenblas0-pthread libopencv-core406
libopencv-imgcodecs406 libopencv-imgproc406 libprotobuf32 libpython3.11"
# With --cuda: the CUDA 11.8 run-time libraries of Debian 12's non-free nvidia-cuda-toolkit (no driver library).
CUDA_RUNTIME_PACKAGES="libcudart11.0 libcublas11 libcurand10"

if [ -n "$LIST_PACKAGES" ]; then
    case "$LIST_PACKAGES" in
        build) echo $BUILD_PACKAGES ;;
        runtime) if [ "$CUDA" -eq 1 ]; then echo $RUNTIME_PACKAGES $CUDA_RUNTIME_PACKAGES; else echo $RUNTIME_PACKAGES; fi ;;
        *) echo "install_caffe: --list-packages takes build or runtime, not '$LIST_PACKAGES'" >&2; exit 2 ;;
    esac
    exit 0
fi
if [ "$RUNTIME_ONLY" -eq 1 ] && { [ "$CONFIGURE_ONLY" -eq 1 ] || [ "$COMPILE_ONLY" -eq 1 ]; }; then
    echo "install_caffe: --runtime-only never compiles; it cannot be combined with --configure-only/--compile-only" >&2
    exit 2
fi

apt_install() {  # what: label; packages...: installs the missing ones (or dies under --no-apt)
    local what=$1 missing="" p
    shift
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -z "$missing" ]; then
        stage "system packages: $what all present"
    elif [ "$DO_APT" -eq 0 ]; then
        stage "system packages: $what missing$missing (--no-apt given)"; die "install them first"
    else
        stage "system packages: installing $what$missing"
        $SUDO apt-get update -qq || die "apt-get update failed"
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null \
            || die "apt-get install failed for:$missing"
    fi
}

# ---------------------------------------------------------------------------------------------- 1
STAGE=1
PY=$VENV/bin/python
if [ "$DO_VENV" -eq 1 ]; then
    BASE_PY=${PYTHON:-python3}
    [ -x "$PY" ] || "$BASE_PY" -m venv "$VENV" || die "could not create a venv at $VENV with $BASE_PY"
    pins() {  # the pinned requirements: the dependencies, and those of the extras named in $1 (comma-separated)
        "$PY" - "$ROOT/pyproject.toml" "$1" <<'EOF'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
optional = p.get("optional-dependencies", {})
extras = [e for e in sys.argv[2].split(",") if e]
unknown = [e for e in extras if e not in optional]
if unknown:
    sys.exit(f"unknown extra {', '.join(unknown)} (pyproject.toml has: {', '.join(optional)})")
print("\n".join(p["dependencies"] + [r for e in extras for r in optional[e]]))
EOF
    }
    reqs=$(pins "$EXTRAS") || die "cannot read the pins${EXTRAS:+ with extras $EXTRAS} in $ROOT/pyproject.toml"
    base_reqs=$(pins "") || die "cannot read the pins in $ROOT/pyproject.toml"
    stamp_of() { printf '%s' "$VENV/.segnet-deps-$(printf '%s' "$1" | sha256sum | cut -c1-16)"; }
    stamp=$(stamp_of "$reqs")
    what="pinned packages${EXTRAS:+ and extras $EXTRAS}"
    if [ -f "$stamp" ]; then
        stage "python venv: $VENV up to date ($what)"
    else
        stage "python venv: installing $what into $VENV"
        printf '%s\n' "$reqs" > "$VENV/requirements.lock"
        "$PY" -m pip install -q --disable-pip-version-check -r "$VENV/requirements.lock" > "$VENV/pip.log" 2>&1 \
            || { grep -v '^WARNING: Location' "$VENV/pip.log" | tail -n 20 >&2; die "pip install failed (log: $VENV/pip.log)"; }
        rm -f "$VENV"/.segnet-deps-*
        # The run-time pins are installed too (a later `make setup` need not run pip).
        touch "$stamp" "$(stamp_of "$base_reqs")"
    fi
else
    stage "python venv: skipped (--no-venv), building against $PY"
fi
[ -x "$PY" ] || die "no python at $PY"
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
NPVER=$("$PY" -c 'import numpy; print(numpy.__version__)') || die "numpy is not installed in $VENV"

# ---------------------------------------------------------------------------------------------- 2
STAGE=2
FLAVOUR=cpu
[ "$CUDA" -eq 1 ] && FLAVOUR=cuda
KEY="bvlc-99bd997-${TARBALL_SHA256:0:12}-p${PATCH_REV}-py${PYVER}-np${NPVER}-${FLAVOUR}"
[ "$CUDA" -eq 1 ] && KEY="$KEY$CUDA_PATCH_REV"
PREFIX=$CACHE/$KEY
mkdir -p "$CACHE"
COMPILE=1
[ -f "$PREFIX/.complete" ] && [ "$CONFIGURE_ONLY" -eq 0 ] && [ "$COMPILE_ONLY" -eq 0 ] && COMPILE=0

check_sha() { [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$TARBALL_SHA256" ]; }

find_cuda_toolkit() {
    # nvcc: $CUDA_HOME/bin/nvcc, else the one on PATH. The toolkit root: $CUDA_HOME, else nvcc's parent
    # (Debian: /usr/bin/nvcc -> /usr), else the TOP that nvcc itself reports (a wrapper script such as
    # /usr/local/bin/nvcc -> /usr/local/cuda-13.0). FindCUDA given a wrong root finds no cudart, and BVLC then
    # silently builds CPU_ONLY; hence the check after configure.
    if [ -n "${CUDA_HOME:-}" ]; then NVCC=$CUDA_HOME/bin/nvcc; else NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc); fi
    [ -x "$NVCC" ] || die "--cuda: no nvcc at $NVCC (install the CUDA toolkit, put nvcc on PATH or set CUDA_HOME)"
    CUDA_ROOT=${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$NVCC")")")}
    if [ ! -f "$CUDA_ROOT/include/cuda_runtime.h" ] && [ -z "${CUDA_HOME:-}" ]; then
        top=$(echo | "$NVCC" -x cu --dryrun -c - -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -n1)
        [ -n "$top" ] && CUDA_ROOT=$(realpath -m "$top")
    fi
    [ -f "$CUDA_ROOT/include/cuda_runtime.h" ] || die "--cuda: no CUDA toolkit headers under $CUDA_ROOT (set CUDA_HOME)"
    CUDA_MAJOR=$("$NVCC" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
}

fetch_source() {
    # A private apt configuration: one deb-src line for bullseye on the mirror the system already uses.
    # The system's own sources are never touched.
    local tmp mirror
    if [ ! -f /usr/share/keyrings/debian-archive-keyring.gpg ]; then
        [ "$DO_APT" -eq 1 ] || return 1
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            debian-archive-keyring >/dev/null || return 1
    fi
    tmp=$(mktemp -d)
    mirror=$( { sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources
                sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\([^[:space:]]*\).*/\2/p' /etc/apt/sources.list
              } 2>/dev/null | tr ' ' '\n' | grep -E '^https?://.*/debian/?$' | head -n1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/parts" "$tmp/dl"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} bullseye main" \
        > "$tmp/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=$tmp/parts"
                -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o "APT::Sandbox::User=root")
    if timeout 120 apt-get -qq "${opts[@]}" update >/dev/null 2>&1 &&
       (cd "$tmp/dl" && timeout 300 apt-get -qq "${opts[@]}" source --download-only \
            "caffe=$CAFFE_DEB_VERSION" >/dev/null 2>&1) &&
       [ -f "$tmp/dl/$TARBALL_NAME" ]; then
        mv "$tmp/dl/$TARBALL_NAME" "$1"
        rm -rf "$tmp"
        return 0
    fi
    rm -rf "$tmp"
    return 1
}

if [ "$COMPILE" -eq 0 ]; then
    stage "caffe source: cached build $KEY"
    STAGE=3
    stage "patches: already applied in the cached build"
else
    [ "$RUNTIME_ONLY" -eq 0 ] || die "--runtime-only: no compiled Caffe $KEY in $CACHE (it never compiles: build it without --runtime-only, or copy the cache)"
    # The toolkit first: without it nothing below is of use.
    [ "$CUDA" -eq 0 ] || find_cuda_toolkit
    TARBALL=$CACHE/$TARBALL_NAME
    if [ -f "$TARBALL" ] && check_sha "$TARBALL"; then
        stage "caffe source: $TARBALL (sha256 ok)"
    else
        rm -f "$TARBALL"
        src=""
        if [ -n "${CAFFE_ORIG_TARBALL:-}" ]; then
            [ -f "$CAFFE_ORIG_TARBALL" ] || { stage "caffe source"; die "CAFFE_ORIG_TARBALL=$CAFFE_ORIG_TARBALL does not exist"; }
            check_sha "$CAFFE_ORIG_TARBALL" || { stage "caffe source"; die "$CAFFE_ORIG_TARBALL: sha256 is not $TARBALL_SHA256; refusing it"; }
            cp "$CAFFE_ORIG_TARBALL" "$TARBALL.part" && mv "$TARBALL.part" "$TARBALL"
            src="CAFFE_ORIG_TARBALL=$CAFFE_ORIG_TARBALL"
        elif fetch_source "$TARBALL.part"; then
            src="Debian source package caffe=$CAFFE_DEB_VERSION"
            check_sha "$TARBALL.part" || { rm -f "$TARBALL.part"; stage "caffe source"; die "the Debian tarball's sha256 is not $TARBALL_SHA256; refusing it"; }
            mv "$TARBALL.part" "$TARBALL"
        else
            vendor=$ROOT/../shared/vendor/$TARBALL_NAME
            [ -f "$vendor" ] || { stage "caffe source"; die "Debian's source package could not be fetched and there is no $vendor; set CAFFE_ORIG_TARBALL to a copy of $TARBALL_NAME"; }
            check_sha "$vendor" || { stage "caffe source"; die "$vendor: sha256 is not $TARBALL_SHA256; refusing it"; }
            cp "$vendor" "$TARBALL.part" && mv "$TARBALL.part" "$TARBALL"
            src="$vendor (Debian's source package was not reachable)"
        fi
        stage "caffe source: $src (sha256 ok)"
    fi

    # ------------------------------------------------------------------------------------------ 3
    STAGE=3
    BUILD=$CACHE/build-$KEY
    rm -rf "$BUILD"
    mkdir -p "$BUILD"
    SRC=$BUILD/src
    mkdir -p "$SRC"
    tar -xzf "$TARBALL" -C "$SRC" || die "cannot unpack $TARBALL"
    # Debian's orig tarball has the tree at its top level; a GitHub archive has one folder.
    [ -f "$SRC/CMakeLists.txt" ] || SRC=$(find "$SRC" -mindepth 1 -maxdepth 1 -type d | head -n1)
    patch_line() {  # file, sed expression, the text that must be present before
        grep -q -- "$3" "$SRC/$1" || die "patch target '$3' not found in $1 (unexpected source tree)"
        sed -i "$2" "$SRC/$1"
        ! grep -q -- "$3" "$SRC/$1" || die "patch of $1 did not apply"
    }
    # 1. protobuf >= 3.21 dropped the two-argument SetTotalBytesLimit; behaviour is unchanged.
    patch_line src/caffe/util/io.cpp 's/SetTotalBytesLimit(kProtoReadBytesLimit, 536870912)/SetTotalBytesLimit(kProtoReadBytesLimit)/' \
        'SetTotalBytesLimit(kProtoReadBytesLimit, 536870912)'
    # 2. OpenCV 4 removed the C constants.
    for f in src/caffe/util/io.cpp src/caffe/layers/window_data_layer.cpp; do
        patch_line "$f" 's/CV_LOAD_IMAGE_COLOR/cv::IMREAD_COLOR/g; s/CV_LOAD_IMAGE_GRAYSCALE/cv::IMREAD_GRAYSCALE/g' \
            'CV_LOAD_IMAGE_'
    done
    # 3. numpy 2 removed tostring/fromstring on bytes.
    patch_line python/caffe/io.py 's/\.tostring()/.tobytes()/g; s/np\.fromstring(/np.frombuffer(/g' '\.tostring()'
    # 4. Speed, numerics unchanged: tools/caffe_patches, applied at stage 5 (`patch` is a build package).
    if [ "$CUDA" -eq 1 ]; then
        # 5. (CUDA only) CUDA 13 removed cudaDeviceProp::clockRate, ::deviceOverlap and ::kernelExecTimeoutEnabled,
        #    used only by `caffe device_query`. The replacements (cudaDeviceGetAttribute, asyncEngineCount) exist
        #    since CUDA 5, so the patched file builds on every CUDA that can target Volta..Hopper.
        patch_line src/caffe/common.cpp \
            's/prop\.clockRate/[\&]{ int v = 0; cudaDeviceGetAttribute(\&v, cudaDevAttrClockRate, device); return v; }()/;
             s/prop\.deviceOverlap/(prop.asyncEngineCount > 0)/;
             s/prop\.kernelExecTimeoutEnabled/[\&]{ int v = 0; cudaDeviceGetAttribute(\&v, cudaDevAttrKernelExecTimeout, device); return v; }()/' \
            'prop\.clockRate'
        stage "patches: protobuf 3.21, OpenCV 4, numpy 2 applied (rev $PATCH_REV; the speed patches at stage 5); CUDA 13 device_query (rev $CUDA_PATCH_REV)"
    else
        stage "patches: protobuf 3.21, OpenCV 4, numpy 2 applied (rev $PATCH_REV; the speed patches at stage 5)"
    fi

fi

# ---------------------------------------------------------------------------------------------- 4
STAGE=4
if [ "$COMPILE" -eq 1 ]; then
    # shellcheck disable=SC2086
    apt_install "(build)" $BUILD_PACKAGES
elif [ "$RUNTIME_ONLY" -eq 1 ]; then
    # shellcheck disable=SC2086
    if [ "$CUDA" -eq 1 ]; then apt_install "(run-time)" $RUNTIME_PACKAGES $CUDA_RUNTIME_PACKAGES
    else apt_install "(run-time)" $RUNTIME_PACKAGES; fi
else
    stage "system packages: none needed for the cached build"
fi

# ---------------------------------------------------------------------------------------------- 5
STAGE=5
if [ "$COMPILE" -eq 0 ]; then
    stage "build: reusing $PREFIX"
else
    # The speed patches (each file says what and why; -DUSE_OPENMP=ON below). Here, not at stage 3, because
    # `patch` comes with the build packages of stage 4.
    for p in "$ROOT"/tools/caffe_patches/*.patch; do
        patch -p1 --quiet --forward -d "$SRC" < "$p" > "$BUILD/patch.log" 2>&1 \
            || { cat "$BUILD/patch.log" >&2; die "patch $(basename "$p") did not apply"; }
    done
    PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    PYLIB=$("$PY" -c 'import sysconfig, os; print(os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")))')
    [ -f "$PYLIB" ] || die "Python was not built with a shared libpython ($PYLIB missing); Caffe's embedded interpreter needs it"
    CMAKE_FLAGS=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" -DUSE_NCCL=OFF
        -DBUILD_python=ON -DBUILD_python_layer=ON -Dpython_version=3 -DPYTHON_EXECUTABLE="$PY"
        -DPYTHON_INCLUDE_DIR="$PYINC" -DPYTHON_LIBRARY="$PYLIB" -DBLAS=Open -DUSE_OPENMP=ON -DUSE_OPENCV=ON
        -DUSE_LEVELDB=ON -DUSE_LMDB=ON -DUSE_HDF5=ON -DBUILD_docs=OFF -DBUILD_matlab=OFF)
    if [ "$CUDA" -eq 1 ]; then
        # CUDA 13 dropped Volta (sm_70); keep every arch from Volta to Hopper that this nvcc still has.
        if [ -z "${CUDA_ARCH_BIN:-}" ]; then
            if [ "${CUDA_MAJOR:-0}" -ge 13 ]; then CUDA_ARCH_BIN="75 80 86 89 90"; else CUDA_ARCH_BIN="70 75 80 86 89 90"; fi
        fi
        CMAKE_FLAGS+=(-DCPU_ONLY=OFF -DUSE_CUDNN=OFF -DCUDA_ARCH_NAME=Manual -DCUDA_ARCH_BIN="$CUDA_ARCH_BIN"
            -DCUDA_ARCH_PTX="${CUDA_ARCH_PTX:-90}" -DCUDA_TOOLKIT_ROOT_DIR="$CUDA_ROOT")
        # CUDA >= 13's Thrust/CUB (used by math_functions.cu, softmax_layer.cu) require C++17; BVLC sets no standard
        # and gcc's default is C++17 already, so only nvcc needs telling.
        NVCC_EXTRA=""
        [ "${CUDA_MAJOR:-0}" -ge 13 ] && NVCC_EXTRA="-std=c++17"
        # cuBLAS/cuRAND outside the toolkit (a minimal toolkit, or NVIDIA's pip wheels): headers, and the libraries
        # through links (the wheels ship only libcublas.so.13, no libcublas.so) in a folder FindCUDA's find_library
        # searches via CMAKE_LIBRARY_PATH (FindCUDA resets -DCUDA_cublas_LIBRARY=... on a first configure). The
        # folder is kept beside the cache so the RUNPATH stays valid.
        CXX_EXTRA=""
        IFS=: read -r -a extra_roots <<< "${CUDA_EXTRA_ROOT:-}"
        if [ "${#extra_roots[@]}" -gt 0 ]; then
            extra_lib=$CACHE/cuda-extra-$KEY/lib
            mkdir -p "$extra_lib"
            CMAKE_FLAGS+=(-DCMAKE_LIBRARY_PATH="$extra_lib")
        fi
        for r in "${extra_roots[@]}"; do
            [ -d "$r/include" ] || die "CUDA_EXTRA_ROOT: $r has no include/ folder"
            NVCC_EXTRA="$NVCC_EXTRA -I$r/include"; CXX_EXTRA="$CXX_EXTRA -isystem $r/include"
            for f in "$r"/lib*/lib*.so*; do
                [ -f "$f" ] || continue
                # The unversioned name for find_library, the versioned one for the linker's DT_NEEDED lookups
                # (libcublas.so.13 needs libcublasLt.so.13 when the executables are linked).
                ln -sf "$(realpath "$f")" "$extra_lib/$(basename "$f")"
                ln -sf "$(realpath "$f")" "$extra_lib/$(basename "$f" | sed 's/\.so\..*/.so/')"
            done
        done
        [ -n "$NVCC_EXTRA" ] && CMAKE_FLAGS+=(-DCUDA_NVCC_FLAGS="${NVCC_EXTRA# }")
        [ -n "$CXX_EXTRA" ] && CMAKE_FLAGS+=(-DCMAKE_CXX_FLAGS="${CXX_EXTRA# }")
    else
        CMAKE_FLAGS+=(-DCPU_ONLY=ON)
    fi
    mkdir -p "$BUILD/build"
    (cd "$BUILD/build" && cmake "${CMAKE_FLAGS[@]}" "$SRC" > "$BUILD/cmake.log" 2>&1) \
        || { tail -n 30 "$BUILD/cmake.log" >&2
             if [ "$CUDA" -eq 1 ] && grep -qE 'CUDA_(cublas|curand)_LIBRARY' "$BUILD/cmake.log"; then
                 die "--cuda: cuBLAS/cuRAND not found in $CUDA_ROOT; install them or set CUDA_EXTRA_ROOT (log: $BUILD/cmake.log)"
             fi
             die "CMake configure failed (log: $BUILD/cmake.log)"; }
    # BVLC's CMake falls back to CPU_ONLY with only a warning when FindCUDA fails: make that an error.
    if [ "$CUDA" -eq 1 ] && ! grep -q '^-- CUDA detected' "$BUILD/cmake.log"; then
        die "--cuda: CMake's FindCUDA did not accept the toolkit at $CUDA_ROOT (see $BUILD/cmake.log); set CUDA_HOME"
    fi
    if [ "$CONFIGURE_ONLY" -eq 1 ]; then
        stage "build: configured $FLAVOUR build in $BUILD/build (--configure-only; not compiled)"
        exit 0
    fi
    JOBS=$(nproc)
    start=$(date +%s)
    echo "[setup 5/6] build: compiling BVLC Caffe ($FLAVOUR, -j$JOBS; CPU: about 4 min on 2 cores, CUDA: far longer) ..."
    (cd "$BUILD/build" && make -j"$JOBS" > "$BUILD/make.log" 2>&1) \
        || { grep -m5 -B2 -A5 -E 'error|Error' "$BUILD/make.log" >&2 || tail -n 30 "$BUILD/make.log" >&2
             die "compilation failed (log: $BUILD/make.log)"; }
    if [ "$COMPILE_ONLY" -eq 1 ]; then
        stage "build: compiled $FLAVOUR build in $BUILD/build in $(( $(date +%s) - start )) s (--compile-only; not installed)"
        exit 0
    fi
    # The prefix cannot be moved afterwards (absolute RUNPATHs), so it is installed in place and marked
    # complete only at the end; an unmarked prefix is a failed install and is rebuilt.
    rm -rf "$PREFIX"
    (cd "$BUILD/build" && make install > "$BUILD/install.log" 2>&1) || die "make install failed (log: $BUILD/install.log)"
    # The configure and compile logs stay with the build (compiler warnings, the arch list); the tree goes.
    mkdir -p "$PREFIX/share/segnet-bvlc"
    cp "$BUILD/cmake.log" "$BUILD/make.log" "$PREFIX/share/segnet-bvlc/"
    # The patched sources, as compiled (tests/test_caffe_patches.py reads them).
    cp "$SRC/src/caffe/util/im2col.cpp" "$PREFIX/share/segnet-bvlc/"
    warnings=$(grep -ciE 'warning[:# ]' "$BUILD/make.log" || true)
    echo "$KEY" > "$PREFIX/.complete"
    rm -rf "$BUILD"
    stage "build: BVLC Caffe $FLAVOUR built in $(( $(date +%s) - start )) s ($warnings compiler warnings; logs in $PREFIX/share/segnet-bvlc), installed in $PREFIX"
fi

# ---------------------------------------------------------------------------------------------- 6
STAGE=6
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# Written only when different, so that a set-up .venv may be read-only (a container run as another user).
write_if_changed() {  # file; the content on stdin
    local content
    content=$(cat)
    [ -f "$1" ] && [ "$(cat "$1")" = "$content" ] && return 0
    printf '%s\n' "$content" > "$1" || die "cannot write $1"
}
# pycaffe on the venv's path (the build's own python/ folder: the prefix cannot move, see stage 5).
rm -f "$SITE/segnet_bvlc.pth"  # earlier set-ups also put the whole repository root on the path
echo "$PREFIX/python" | write_if_changed "$SITE/segnet_bvlc_caffe.pth"
# The project itself: an editable install of the packages pyproject.toml declares (tools, segnet_bvlc, prototxt,
# layers), importable from any folder with nothing else of the repository on the path. Redone when
# pyproject.toml changes (its package list is what the install maps). The Docker image's first layers hold only
# the install step and layers/: there the project is installed by the same step once the whole tree is copied in.
# The venv's own setuptools builds it when it has editable installs and its own bdist_wheel (>= 71), so no
# download is needed then; an older one (a fresh venv's 65, without wheel) gets an isolated build through pip.
WHOLE_TREE=0
[ -f "$ROOT/segnet_bvlc/__init__.py" ] && WHOLE_TREE=1
project_stamp="$VENV/.segnet-project-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ "$WHOLE_TREE" -eq 1 ] && [ ! -f "$project_stamp" ]; then
    isolation=""
    "$PY" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 71)' 2>/dev/null \
        && isolation="--no-build-isolation"
    # shellcheck disable=SC2086
    "$PY" -m pip install -q --disable-pip-version-check --no-deps $isolation -e "$ROOT" > "$VENV/pip-project.log" 2>&1 \
        || { tail -n 20 "$VENV/pip-project.log" >&2; die "pip install -e $ROOT failed (log: $VENV/pip-project.log)"; }
    rm -f "$VENV"/.segnet-project-*
    touch "$project_stamp"
fi
# OpenMP threads (the im2col patch) sleep as soon as a parallel loop ends instead of spinning: spinning, they
# take the cores from OpenBLAS's own threads, and a 90x120 training step got 20 % slower than without OpenMP
# (results/cpu-speed). libgomp reads this when libcaffe loads, so it is set when the interpreter starts; a value
# the user set is kept.
echo 'import os; os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")' | write_if_changed "$SITE/segnet_bvlc_threads.pth"
# The caffe binary embeds the pyenv interpreter, which does not know the venv: give it the venv's paths.
write_if_changed "$VENV/bin/caffe" <<EOF
#!/bin/sh
# Generated by tools/install_caffe.sh: BVLC Caffe's CLI with pycaffe, the project and the venv importable.
export OMP_WAIT_POLICY="\${OMP_WAIT_POLICY:-PASSIVE}"
PYTHONPATH="$PREFIX/python:$ROOT:$SITE\${PYTHONPATH:+:\$PYTHONPATH}" exec "$PREFIX/bin/caffe" "\$@"
EOF
[ -x "$VENV/bin/caffe" ] || chmod +x "$VENV/bin/caffe"
echo "$PREFIX" | write_if_changed "$VENV/.caffe-prefix"
project="import caffe"
[ "$WHOLE_TREE" -eq 1 ] && project="import caffe, layers, segnet_bvlc, tools, prototxt"
(cd / && "$PY" -c "$project") 2>/dev/null || die "'import caffe' or the project fails in $VENV: run '$PY -c \"import caffe, segnet_bvlc\"' to see why"
stage "link: $VENV/bin/python imports caffe; $VENV/bin/caffe ready ($FLAVOUR, $KEY)"
