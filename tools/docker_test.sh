#!/usr/bin/env bash
# `make docker-test`: build the Docker image and run `make test` and a short `make camvid-train` inside it.
#
#   1 engine  a Docker daemon that answers is used as it is. Otherwise (root only) dockerd is started here (apt's
#             docker.io, installed if missing) under `nice`, with no bridge, no iptables rules and no IP forwarding:
#             every build step and container uses the host network. It is stopped at the end, and anything it left
#             (a docker0 bridge, iptables tables, ip_forward, mounts) is removed or restored.
#   2 base    BASE_IMAGE if set; else the Dockerfile's pinned digest when it is present or can be pulled; else a
#             local Debian bookworm base made with debootstrap, in the official image's layout, kept as
#             $LOCAL_BASE for the next run (no registry answers the project's machines).
#   3 build   docker build --build-arg BASE_IMAGE=... --build-arg CAFFE_BUILD=$CAFFE_BUILD. The host's pip settings
#             that apply inside (its CA bundle, http(s) indexes; tools/docker_pip_config.py) go in as BuildKit secrets,
#             mounted for the pip step only; step 4 checks that none of it is in the image.
#   4 check   the image holds no CA of the host's /usr/local/share/ca-certificates and no pip configuration;
#             size and layers (docker history) are logged.
#   5 test    `make test` in the image on CAMVID_DIR (read-only); the test extra is installed there at run time with
#             the host's pip settings mounted read-only (local find-links folders included: PyTorch's CPU wheel).
#   6 train   `make camvid-train MAX_ITER=$DOCKER_TEST_MAX_ITER` on CAMVID_DIR into a mounted runs folder owned by
#             a non-root uid: the entrypoint must adopt that uid (every file written there is checked).
# Logs and a summary (summary-$CAFFE_BUILD.txt): runs/docker-test/. Exit status 0 only if every step passed.
#
# Environment: CAFFE_BUILD (cpu|cuda; default cpu), IMAGE (default segnet-bvlc:$CAFFE_BUILD), BASE_IMAGE,
#   CAMVID_DIR (default data/CamVid), DOCKER_TEST_STEPS (default build,check,test,train; `build,check` for a
#   CUDA image on a machine without a GPU), DOCKER_TEST_MAX_ITER (default 10), DOCKER_TEST_UID (owner of the mounted
#   runs folder; default the calling user, 4242 when that is root), CUDA_ARCH_BIN / CUDA_ARCH_PTX (build
#   arguments, e.g. CUDA_ARCH_BIN=90 for one architecture), DOCKER (the CLI), DOCKER_DATA_ROOT (default
#   /var/lib/docker), DOCKER_NICE (default 10), LOCAL_BASE (default segnet-bvlc-base:bookworm-debootstrap),
#   DEBIAN_MIRROR (default http://deb.debian.org/debian), DOCKER_TEST_PRUNE=1 (remove the image and the build
#   cache at the end).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] && { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; }

CAFFE_BUILD=${CAFFE_BUILD:-cpu}
case "$CAFFE_BUILD" in cpu|cuda) ;; *) echo "docker_test: CAFFE_BUILD must be cpu or cuda" >&2; exit 2 ;; esac
IMAGE=${IMAGE:-segnet-bvlc:$CAFFE_BUILD}
STEPS=${DOCKER_TEST_STEPS:-build,check,test,train}
MAX_ITER=${DOCKER_TEST_MAX_ITER:-10}
NICE=${DOCKER_NICE:-10}
DATA_ROOT=${DOCKER_DATA_ROOT:-/var/lib/docker}
LOCAL_BASE=${LOCAL_BASE:-segnet-bvlc-base:bookworm-debootstrap}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CAMVID=${CAMVID_DIR:-data/CamVid}
case "$CAMVID" in /*) ;; *) CAMVID=$ROOT/$CAMVID ;; esac
LOGS=$ROOT/runs/docker-test
mkdir -p "$LOGS"
SUMMARY=$LOGS/summary-$CAFFE_BUILD.txt
: > "$SUMMARY"
STATE=/run/segnet-docker-test
DOCKER=${DOCKER:-}
STARTED=0
DOCKERD_PID=""
TMPS=()
CONTAINERS=()

log() { printf '[docker-test] %s\n' "$*"; }
note() { printf '%s\n' "$*" >> "$SUMMARY"; log "$*"; }
fail() { printf 'docker_test: FAILED: %s\n' "$*" >&2; exit 1; }
has_step() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
timed() {  # label, command...: runs it, notes its wall time
    local label=$1 start=$SECONDS
    shift
    "$@"
    note "time $label: $((SECONDS - start)) s"
}

# ------------------------------------------------------------------------------------------------ clean-up
links_now() { ls /sys/class/net; }
tables_now() { command -v iptables-save >/dev/null 2>&1 && { iptables-save 2>/dev/null; ip6tables-save 2>/dev/null; } | sed -n 's/^\*//p' | sort -u || true; }

cleanup() {
    local rc=$? c l t
    set +e
    if [ -n "$DOCKER" ]; then
        for c in "${CONTAINERS[@]}"; do "$DOCKER" rm -f "$c" >/dev/null 2>&1; done
    fi
    if [ "${DOCKER_TEST_PRUNE:-0}" = 1 ] && [ -n "$DOCKER" ]; then
        "$DOCKER" image rm -f "$IMAGE" >/dev/null 2>&1
        "$DOCKER" builder prune -af >/dev/null 2>&1
    fi
    rm -f "$STATE/users/$$"
    if [ "$STARTED" = 1 ]; then
        # Another docker-test may share this daemon (CUDA and CPU at once): it is stopped when the last one is done.
        while true; do
            others=""
            for u in "$STATE"/users/*; do
                [ -e "$u" ] || continue
                if kill -0 "${u##*/}" 2>/dev/null; then others="$others ${u##*/}"; else rm -f "$u"; fi
            done
            [ -z "$others" ] && break
            log "waiting for the docker-test that shares this daemon (pid$others)"
            sleep 30
        done
        log "stopping the dockerd started here (pid $DOCKERD_PID)"
        kill -TERM "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
        kill -0 "$DOCKERD_PID" 2>/dev/null && { log "dockerd did not stop in 60 s: SIGKILL"; kill -KILL "$DOCKERD_PID"; }
        wait "$DOCKERD_PID" 2>/dev/null
        # What the daemon may have left: the host is put back as it was found.
        for l in $(comm -13 <(printf '%s\n' "$LINKS_BEFORE" | sort) <(links_now | sort)); do
            case "$l" in docker*|br-*|veth*) ip link delete "$l" && note "host: removed network interface $l" ;; esac
        done
        if [ "$(cat /proc/sys/net/ipv4/ip_forward)" != "$FORWARD_BEFORE" ]; then
            echo "$FORWARD_BEFORE" > /proc/sys/net/ipv4/ip_forward && note "host: net.ipv4.ip_forward restored to $FORWARD_BEFORE"
        fi
        for t in $(comm -13 <(printf '%s\n' "$TABLES_BEFORE" | sort) <(tables_now)); do
            iptables -t "$t" -F 2>/dev/null; iptables -t "$t" -X 2>/dev/null
            ip6tables -t "$t" -F 2>/dev/null; ip6tables -t "$t" -X 2>/dev/null
            if command -v nft >/dev/null 2>&1; then nft delete table ip "$t" 2>/dev/null; nft delete table ip6 "$t" 2>/dev/null; fi
            note "host: iptables table $t (created by dockerd) flushed"
        done
        grep -E " ($DATA_ROOT|$STATE)[/ ]" /proc/mounts | cut -d' ' -f2 | sort -r | while read -r m; do
            umount -l "$m" && note "host: unmounted $m"
        done
        rm -rf "$STATE"
    fi
    for t in "${TMPS[@]}"; do
        if grep -q " $t[/ ]" /proc/mounts; then
            grep " $t[/ ]" /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r umount -l
        fi
        grep -q " $t[/ ]" /proc/mounts || rm -rf "$t"
    done
    if [ "$STARTED" = 1 ]; then
        note "host after: interfaces $(links_now | sort | tr '\n' ' ')(before: $(printf '%s\n' "$LINKS_BEFORE" | sort | tr '\n' ' ')); ip_forward $(cat /proc/sys/net/ipv4/ip_forward) (before: $FORWARD_BEFORE); iptables tables: $(tables_now | tr '\n' ' ')(before: $(printf '%s' "$TABLES_BEFORE" | tr '\n' ' ')); dockerd/containerd running: $( { pgrep -x dockerd; pgrep -x containerd; } | tr '\n' ' ')"
    fi
    note "time total: $SECONDS s, exit status $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------------ 1 engine
pick_cli() {
    # BuildKit (for the secrets) needs the buildx plugin with a CLI >= 23; Debian's docker.io 20.10 CLI has it built in.
    if [ -n "${DOCKER:-}" ]; then echo "$DOCKER"; return; fi
    if docker buildx version >/dev/null 2>&1; then echo docker; return; fi
    local c v
    for c in /usr/bin/docker $(command -v docker || true); do
        [ -x "$c" ] || continue
        v=$("$c" --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')
        [ -n "$v" ] && [ "$v" -lt 23 ] && { echo "$c"; return; }
    done
    echo ""
}

if ! command -v dockerd >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || fail "no Docker engine here; install docker.io (and debootstrap) or start a daemon"
    log "installing docker.io and debootstrap (apt)"
    DEBIAN_FRONTEND=noninteractive nice -n "$NICE" apt-get install -y -qq --no-install-recommends docker.io debootstrap \
        > "$LOGS/apt.log" 2>&1 || { tail -n 20 "$LOGS/apt.log" >&2; fail "apt-get install docker.io debootstrap"; }
    note "host: installed docker.io and debootstrap with apt (left installed)"
fi
DOCKER=$(pick_cli)
[ -n "$DOCKER" ] || fail "BuildKit is needed: install the buildx plugin (apt: docker-buildx) for a Docker CLI >= 23, or use Debian's docker.io"
export DOCKER_BUILDKIT=1

if ! "$DOCKER" info >/dev/null 2>&1 && [ -z "${DOCKER_HOST:-}" ] && DOCKER_HOST=unix://$STATE/docker.sock "$DOCKER" info >/dev/null 2>&1; then
    export DOCKER_HOST=unix://$STATE/docker.sock  # another docker-test's daemon (e.g. a CUDA build): shared, not stopped here
fi
if "$DOCKER" info >/dev/null 2>&1; then
    if [ "${DOCKER_HOST:-}" = "unix://$STATE/docker.sock" ]; then mkdir -p "$STATE/users" && : > "$STATE/users/$$"; fi
    log "using the Docker daemon that is running ($("$DOCKER" info --format '{{.ServerVersion}}' 2>/dev/null)${DOCKER_HOST:+ at $DOCKER_HOST}; not stopped at the end)"
else
    [ "$(id -u)" -eq 0 ] || fail "no Docker daemon answers, and starting one needs root"
    LINKS_BEFORE=$(links_now)
    FORWARD_BEFORE=$(cat /proc/sys/net/ipv4/ip_forward)
    TABLES_BEFORE=$(tables_now)
    mkdir -p "$STATE"
    log "starting dockerd (nice $NICE, data root $DATA_ROOT, host network only; log: $LOGS/dockerd.log)"
    STARTED=1
    nice -n "$NICE" dockerd --data-root "$DATA_ROOT" --exec-root "$STATE/exec" --pidfile "$STATE/dockerd.pid" \
        -H "unix://$STATE/docker.sock" --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
        > "$LOGS/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    export DOCKER_HOST=unix://$STATE/docker.sock
    for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    "$DOCKER" info >/dev/null 2>&1 || { tail -n 20 "$LOGS/dockerd.log" >&2; fail "dockerd did not come up"; }
fi
note "engine: $("$DOCKER" --version) (CLI $DOCKER), server $("$DOCKER" info --format '{{.ServerVersion}} {{.Driver}}')"

# ------------------------------------------------------------------------------------------------ 2 base
make_local_base() {
    command -v debootstrap >/dev/null 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap > "$LOGS/apt.log" 2>&1 \
            || fail "apt-get install debootstrap"; note "host: installed debootstrap with apt (left installed)"; }
    local rootfs
    rootfs=$(mktemp -d /var/tmp/segnet-base.XXXXXX)
    TMPS+=("$rootfs")
    log "debootstrap --variant=minbase bookworm from $MIRROR (log: $LOGS/debootstrap.log)"
    nice -n "$NICE" debootstrap --variant=minbase --arch=amd64 bookworm "$rootfs" "$MIRROR" > "$LOGS/debootstrap.log" 2>&1 \
        || { tail -n 20 "$LOGS/debootstrap.log" >&2; fail "debootstrap"; }
    # The official image's layout: deb822 sources (the Dockerfile's sed expects `Components: main`), apt's
    # docker-clean, no resolv.conf of its own.
    rm -f "$rootfs/etc/apt/sources.list"
    mkdir -p "$rootfs/etc/apt/sources.list.d"
    cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${MIRROR%/}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    nice -n "$NICE" chroot "$rootfs" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq && apt-get clean' \
        >> "$LOGS/debootstrap.log" 2>&1 || fail "apt-get upgrade in the new base (log: $LOGS/debootstrap.log)"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
    : > "$rootfs/etc/resolv.conf"
    if grep -q " $rootfs/" /proc/mounts; then fail "debootstrap left mounts under $rootfs"; fi
    tar -C "$rootfs" --numeric-owner -cf - . | "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["bash"]' \
        --message "debootstrap --variant=minbase bookworm $MIRROR, $(date -u +%F)" - "$LOCAL_BASE" > /dev/null \
        || fail "docker import of the debootstrap base"
}

PINNED=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile | head -n1)
[ -n "$PINNED" ] || fail "the Dockerfile has no ARG BASE_IMAGE=... default"
if [ -n "${BASE_IMAGE:-}" ]; then
    BASE=$BASE_IMAGE
    "$DOCKER" image inspect "$BASE" >/dev/null 2>&1 || "$DOCKER" pull "$BASE" > /dev/null || fail "BASE_IMAGE=$BASE: not here and cannot be pulled"
elif "$DOCKER" image inspect "$PINNED" >/dev/null 2>&1 || timeout 120 "$DOCKER" pull "$PINNED" > "$LOGS/pull.log" 2>&1; then
    BASE=$PINNED
else
    log "the pinned base $PINNED cannot be pulled ($(tail -n1 "$LOGS/pull.log" 2>/dev/null)): a local debootstrap base"
    BASE=$LOCAL_BASE
    if "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
        log "reusing $BASE ($("$DOCKER" image inspect --format '{{.Comment}}' "$BASE"))"
    else
        timed "base (debootstrap + import)" make_local_base
    fi
fi
note "base: $BASE ($("$DOCKER" image inspect --format '{{.Size}}' "$BASE" | awk '{printf "%.0f MB", $1/1e6}'))"

# ------------------------------------------------------------------------------------------------ 3 build
PIPDIR=$(mktemp -d /tmp/segnet-docker-pip.XXXXXX)
TMPS+=("$PIPDIR")
HOSTPY=python3
[ -x "$ROOT/.venv/bin/python" ] && "$ROOT/.venv/bin/python" -m pip --version >/dev/null 2>&1 && HOSTPY=$ROOT/.venv/bin/python
{ "$HOSTPY" -m pip config list 2>/dev/null || true; } | python3 tools/docker_pip_config.py "$PIPDIR" 2> "$LOGS/pip-config.log" \
    || fail "tools/docker_pip_config.py (log: $LOGS/pip-config.log)"
SECRETS=(--secret "id=pip_conf,src=$PIPDIR/build.conf")
[ -f "$PIPDIR/cert.pem" ] && SECRETS+=(--secret "id=pip_cert,src=$PIPDIR/cert.pem")

if has_step build; then
    ARGS=(--build-arg "BASE_IMAGE=$BASE" --build-arg "CAFFE_BUILD=$CAFFE_BUILD")
    [ -n "${CUDA_ARCH_BIN:-}" ] && ARGS+=(--build-arg "CUDA_ARCH_BIN=$CUDA_ARCH_BIN")
    [ -n "${CUDA_ARCH_PTX:-}" ] && ARGS+=(--build-arg "CUDA_ARCH_PTX=$CUDA_ARCH_PTX")
    log "docker build -t $IMAGE ${ARGS[*]} (log: $LOGS/build-$CAFFE_BUILD.log)"
    build() {
        nice -n "$NICE" "$DOCKER" build --network host --progress=plain "${SECRETS[@]}" "${ARGS[@]}" -t "$IMAGE" "$ROOT" \
            > "$LOGS/build-$CAFFE_BUILD.log" 2>&1 || { tail -n 40 "$LOGS/build-$CAFFE_BUILD.log" >&2; fail "docker build (log: $LOGS/build-$CAFFE_BUILD.log)"; }
    }
    timed "build $IMAGE" build
fi
"$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1 || fail "no image $IMAGE (DOCKER_TEST_STEPS=$STEPS has no build)"
note "image $IMAGE: $("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB (%.2f GB)", $1/1e6, $1/1e9}')"
"$DOCKER" history --no-trunc --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | cut -c1-200 > "$LOGS/history-$CAFFE_BUILD.txt"
{ echo "layers (docker history, newest first):"; awk -F'\t' '{printf "  %8s  %s\n", $1, substr($2, 1, 110)}' "$LOGS/history-$CAFFE_BUILD.txt"; } >> "$SUMMARY"

# ------------------------------------------------------------------------------------------------ 4 check
if has_step check; then
    # Needles: a line from the body of every local CA the host trusts (the pip configuration's own lines are too
    # generic to grep for: its files are looked for by name below).
    : > "$PIPDIR/needles"
    for crt in /usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/*/*.crt; do
        [ -f "$crt" ] && sed -n '3p' "$crt" >> "$PIPDIR/needles"
    done
    CONTAINERS+=(segnet-docker-test-check)
    out=$("$DOCKER" run --rm --name segnet-docker-test-check --network none --entrypoint /bin/sh \
        -v "$PIPDIR/needles:/needles:ro" "$IMAGE" -c '
            found=""
            for f in /etc/pip.conf /etc/xdg/pip/pip.conf /root/.pip/pip.conf /root/.config/pip/pip.conf /run/secrets/pip_conf /run/secrets/pip_cert; do
                [ -e "$f" ] && found="$found $f"
            done
            [ -s /needles ] && found="$found $(grep -rlF -f /needles / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev --exclude=needles 2>/dev/null | tr "\n" " ")"
            echo "$found"') || fail "the leak check could not run in $IMAGE"
    if [ -n "$(echo "$out" | tr -d ' ')" ]; then fail "the image holds host pip settings or CA material: $out"; fi
    if "$DOCKER" history --no-trunc --format '{{.CreatedBy}}' "$IMAGE" | grep -qE 'BEGIN CERTIFICATE|pip_cert|pip_conf'; then
        fail "the image's history mentions the pip secrets"
    fi
    note "check: no host CA ($(grep -c . "$PIPDIR/needles") needles), no pip configuration in the image or its history"
fi

# ------------------------------------------------------------------------------------------------ 5 test, 6 train
RUN=(--rm --network host)
while IFS=$'\t' read -r src dst; do RUN+=(-v "$src:$dst:ro"); done < "$PIPDIR/run.mounts"
RUN+=(-e PIP_CONFIG_FILE=/run/host-pip/pip.conf)
# The image names PyTorch's CPU index; where it cannot be reached pip would retry it for every package.
if ! timeout 20 python3 -c 'import ssl, sys, urllib.request; urllib.request.urlopen("https://download.pytorch.org/whl/cpu/", timeout=10, context=ssl.create_default_context(cafile=sys.argv[1] or None))' \
        "$( [ -f "$PIPDIR/cert.pem" ] && echo "$PIPDIR/cert.pem")" >/dev/null 2>&1; then
    RUN+=(-e PIP_EXTRA_INDEX_URL=)
    note "PyTorch's CPU index is not reachable from here: PIP_EXTRA_INDEX_URL cleared (the host's find-links provide torch)"
fi
if has_step test || has_step train; then
    [ -f "$CAMVID/train.txt" ] || fail "no CamVid at $CAMVID (set CAMVID_DIR)"
    RUN+=(-v "$CAMVID:/segnet-bvlc/data/CamVid:ro")
fi

if has_step test; then
    log "make test in $IMAGE (log: $LOGS/test-$CAFFE_BUILD.log)"
    CONTAINERS+=(segnet-docker-test-test)
    run_test() {
        nice -n "$NICE" "$DOCKER" run "${RUN[@]}" --name segnet-docker-test-test "$IMAGE" make test CAMVID_DIR=data/CamVid \
            > "$LOGS/test-$CAFFE_BUILD.log" 2>&1 || { tail -n 40 "$LOGS/test-$CAFFE_BUILD.log" >&2; fail "make test in the image (log: $LOGS/test-$CAFFE_BUILD.log)"; }
    }
    timed "make test in the image" run_test
    note "make test: $(grep -E '^=+ .*(passed|failed|error).* =+$' "$LOGS/test-$CAFFE_BUILD.log" | tail -n1)"
fi

if has_step train; then
    uid=${DOCKER_TEST_UID:-${SUDO_UID:-$(id -u)}}
    [ "$uid" = 0 ] && uid=4242
    runs=$(mktemp -d /var/tmp/segnet-docker-runs.XXXXXX)
    TMPS+=("$runs")
    chown "$uid:$uid" "$runs"
    log "make camvid-train MAX_ITER=$MAX_ITER in $IMAGE, runs/ owned by uid $uid (log: $LOGS/train-$CAFFE_BUILD.log)"
    CONTAINERS+=(segnet-docker-test-train)
    run_train() {
        nice -n "$NICE" "$DOCKER" run "${RUN[@]}" --name segnet-docker-test-train -v "$runs:/segnet-bvlc/runs" "$IMAGE" \
            make camvid-train MAX_ITER="$MAX_ITER" > "$LOGS/train-$CAFFE_BUILD.log" 2>&1 \
            || { tail -n 40 "$LOGS/train-$CAFFE_BUILD.log" >&2; fail "make camvid-train in the image (log: $LOGS/train-$CAFFE_BUILD.log)"; }
    }
    timed "make camvid-train MAX_ITER=$MAX_ITER in the image" run_train
    other=$(find "$runs" ! -uid "$uid" | head -n 5)
    [ -z "$other" ] || fail "files in the mounted runs folder not owned by uid $uid: $other"
    run=$runs/segnet-basic-quick
    [ -f "$run/last.caffemodel" ] || [ -f "$run/inference.caffemodel" ] || fail "camvid-train left no weights in $run"
    note "camvid-train: $(find "$runs" -type f | wc -l) files, all owned by uid $uid; $(grep -hE '^\[(train|pipeline|evaluate)\]' "$LOGS/train-$CAFFE_BUILD.log" | tail -n 1)"
fi
log "all steps passed ($STEPS); summary: $SUMMARY"
