#!/bin/sh
# The Docker image's entrypoint: runs the command (default `make camvid-train`) as the owner of the runs folder
# when that is a folder mounted from the host and owned by someone other than root, so that the runs, snapshots and
# results written there belong to the user who mounted it, without `--user`.
#
#   root in the container, runs/ owned by uid U  ->  the command runs as U:G (setpriv), HOME a private folder in /tmp
#   started with --user U:G                      ->  the command runs as given (HOME moved to /tmp if not writable)
#   SEGNET_AS_ROOT=1, or runs/ owned by root     ->  the command runs as root
#
# The image's .venv and project folder are writable by every user, so `make setup`/`make test` work as any uid.
# SEGNET_RUNS_DIR names the folder to look at (default: /segnet-bvlc/runs).
set -eu
runs=${SEGNET_RUNS_DIR:-/segnet-bvlc/runs}

if [ "$(id -u)" = 0 ] && [ "${SEGNET_AS_ROOT:-0}" != 1 ] && [ -d "$runs" ]; then
    uid=$(stat -c %u "$runs")
    gid=$(stat -c %g "$runs")
    if [ "$uid" != 0 ]; then
        home=$(mktemp -d /tmp/home-"$uid".XXXXXX)
        chown "$uid:$gid" "$home"
        export HOME="$home" USER="${USER:-uid$uid}"
        exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
    fi
fi
if [ ! -w "${HOME:-/}" ]; then
    HOME=$(mktemp -d /tmp/home.XXXXXX)
    export HOME
fi
exec "$@"
