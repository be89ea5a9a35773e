#!/usr/bin/env bash
# passthrough_cascadefs.sh: a stand-in for the `cascadefs` binary that speaks its mount and
# umount command lines over libfuse's passthrough_ll, so that tests/mount can be checked on a
# real FUSE mount (fork/exec of a foreground daemon, waiting for the mount, umount, kill -9)
# before or apart from our daemon. Not a cascadefs test: it validates the tests.
#
#   CFS_CASCADEFS_BIN=tests/mount/passthrough_cascadefs.sh \
#   CFS_PASSTHROUGH_LL=build/release/bench/passthrough_ll build/debug/tests/mount_test
#
#   mount [--transport T] --store DIR [-f] MOUNTPOINT
#                                       passthrough_ll over DIR/data (foreground with -f);
#                                       --transport dev-fuse only (libfuse 3.14 has no other)
#   umount MOUNTPOINT                   fusermount3 -u, then waits for the daemon to exit
#   status MOUNTPOINT --json            {"transport":"dev-fuse"} when MOUNTPOINT is mounted
set -euo pipefail
pll="${CFS_PASSTHROUGH_LL:-build/release/bench/passthrough_ll}"
case "${1:-}" in
  mount)
    shift
    store="" foreground=()
    while (($# > 1)); do
      case "$1" in
        --store) store="$2"; shift 2 ;;
        -f) foreground=(-f); shift ;;
        --transport)
          [[ "$2" == dev-fuse ]] || { echo "passthrough_cascadefs: --transport $2: only dev-fuse" >&2; exit 2; }
          shift 2 ;;
        *) echo "passthrough_cascadefs: unknown option $1" >&2; exit 2 ;;
      esac
    done
    [[ -n "$store" && $# -eq 1 ]] || { echo "usage: mount --store DIR [-f] MOUNTPOINT" >&2; exit 2; }
    mkdir -p "$store/data"
    # As root: allow_other and default_permissions, as cascadefs does (the kernel checks
    # permissions for every user).
    exec "$pll" "${foreground[@]}" -o "source=$store/data,xattr,allow_other,default_permissions" "$1"
    ;;
  umount)
    pid=$(pgrep -f -- "source=.*[ ]$2\$" | head -n1 || true)
    fusermount3 -u "$2"
    # Exited, or a zombie waiting for its parent (the test fixture) to reap it.
    gone() { [[ -z "$pid" ]] || [[ ! -e /proc/$pid ]] || [[ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" == Z ]]; }
    for _ in $(seq 600); do gone && exit 0; sleep 0.1; done
    echo "passthrough_cascadefs: daemon $pid still running" >&2; exit 1
    ;;
  status)
    mountpoint -q "$2" || { echo "passthrough_cascadefs: $2: not mounted" >&2; exit 1; }
    echo '{"transport":"dev-fuse"}'
    ;;
  *) echo "usage: passthrough_cascadefs.sh mount|umount|status ..." >&2; exit 2 ;;
esac
