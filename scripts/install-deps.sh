#!/usr/bin/env bash
# install-deps.sh: installs the Debian 12 (bookworm) packages cascadefs needs.
#
# Usage: scripts/install-deps.sh build|bench
#   build  compilers, tools and libraries to build and test cascadefs
#   bench  the build set plus the reference systems bench/ measures against
#
# Idempotent: it asks dpkg which packages are missing and runs apt-get only for those, so
# it prints nothing when all are installed. It runs as root (as in CI) or through sudo.
# On failure it prints one line on stderr naming the cause and the apt log, and exits 1.
set -euo pipefail

readonly prog="install-deps.sh"

# Every name below was checked with `apt-cache policy` against bookworm. ARCHITECTURE.md
# ("Dependencies") says why each library is used; nothing is vendored.
readonly build_packages=(
  cmake make g++ pkg-config
  clang-14 clang-format clang-tidy libclang-rt-14-dev  # libFuzzer and clang's sanitizers
  liburing-dev libfuse3-dev fuse3
  libzstd-dev libxxhash-dev libssl-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev libspdlog-dev
  # tests/mount: the real programs run in the mount (git, sqlite3, tar + diff, make + gcc),
  # xz for tarballs, and mkfs.ext4 + mount for the ENOSPC test's loop-mounted store.
  git sqlite3 tar diffutils xz-utils gcc e2fsprogs mount
)
# The anchors: measured side by side in bench/, never linked into the product.
readonly bench_packages=(
  fio librocksdb-dev rocksdb-tools libleveldb-dev bindfs rsync syncthing
)

die() {
  echo "${prog}: $*" >&2
  exit 1
}

case "${1:-}" in
  build) wanted=("${build_packages[@]}") ;;
  bench) wanted=("${build_packages[@]}" "${bench_packages[@]}") ;;
  *)
    echo "usage: ${prog} build|bench" >&2
    exit 2
    ;;
esac

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script supports Debian 12 only"

missing=()
for pkg in "${wanted[@]}"; do
  # A removed package keeps a status such as "deinstall ok config-files": not installed.
  status="$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)"
  if [[ "${status}" != "install ok installed" ]]; then
    missing+=("${pkg}")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  die "need root to install: ${missing[*]} (run as root, or install sudo)"
fi

echo "${prog}: installing ${missing[*]}" >&2
log="$(mktemp "${TMPDIR:-/tmp}/cfs-install-deps.XXXXXX.log")"

# apt_get COMMAND ARGS...: runs apt-get quietly into the log; on failure names the command,
# apt's first error line and the log, and exits. Waits for a dpkg lock held by another apt.
apt_get() {
  local step="$1"
  if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get -o DPkg::Lock::Timeout=120 "$@" </dev/null >>"${log}" 2>&1; then
    local cause
    cause="$(grep -m1 '^E: ' "${log}" || tail -n1 "${log}")"
    die "apt-get ${step} failed: ${cause:-no output} (full log: ${log})"
  fi
}

apt_get update -qq
apt_get install -y -qq --no-install-recommends "${missing[@]}"
rm -f "${log}"
