#!/usr/bin/env bash
# `make container-test`: the worker image built and run for real, with podman, on a machine without GPUs.
#   1. builds the CPU variant of the Dockerfile on a Debian bookworm base (debootstrap'ed once, cached by tag);
#   2. runs `cnntune --help` in it;
#   3. one container creates a study (`search --workers 0`) on the host's PostgreSQL, two worker containers search
#      it (`cnntune worker`), sharing an artifacts folder; the study is then checked from the host;
#   4. the same through deploy/compose.yaml with the CPU override (podman-compose, the `db` profile off: the host's
#      PostgreSQL stands in for it).
# Needs root, apt for the missing tools, and PostgreSQL at CNNTUNE_TEST_POSTGRES_URL (default
# postgresql://postgres@127.0.0.1:5432/test). Settings: VENV (.venv), IMAGE, BASE_IMAGE, TRIALS (4).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

VENV=$(realpath -m "${VENV:-.venv}")
BASE_IMAGE=${BASE_IMAGE:-localhost/cnntune-base:bookworm}
IMAGE=${IMAGE:-localhost/cnntune:cpu}
STORAGE=${CNNTUNE_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}
TRIALS=${TRIALS:-4}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
IMAGE_UID=10001  # the Dockerfile's CNNTUNE_UID: the workers write the artifacts folder as this user
WAIT_S=${WAIT_S:-900}  # longest wait for the containers of one study
# podman's defaults need systemd and limits this kind of machine does not grant (see the file).
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}

step() { printf '\n== container-test: %s (%d s)\n' "$*" "$SECONDS"; }
die() { echo "container-test: $*" >&2; exit 1; }

work=$(mktemp -d /tmp/cnntune-container-test.XXXXXX)
containers=()
project=""
cleanup() {
  local rc=$?
  if ((${#containers[@]})); then podman rm -f -v "${containers[@]}" >/dev/null 2>&1 || true; fi
  if [ -n "$project" ]; then
    (cd deploy && "$VENV/bin/podman-compose" -p "$project" -f compose.yaml -f compose.cpu.yaml down -v \
      >/dev/null 2>&1) || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

step "tools"
missing=()
for tool in podman debootstrap runc docker-compose; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
[ -x "$VENV/bin/podman-compose" ] || die "$VENV/bin/podman-compose is missing: make install (the dev extra) first"
"$VENV/bin/python" -c "
import sys
from tuner.errors import CnntuneError
from tuner.store import open_storage
try:
    open_storage(sys.argv[1])
except CnntuneError as exc:
    sys.exit(f'container-test: {exc}')" "$STORAGE" || die "PostgreSQL must answer at $STORAGE (.ci/run starts it)"

step "base image $BASE_IMAGE"
if podman image exists "$BASE_IMAGE"; then
  echo "cached"
else
  rootfs="$work/rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; die "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import --quiet - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi

step "build $IMAGE (EXTRAS=cpu,postgres)"
# The host's pip settings (index mirrors, CA bundle) are mounted into the build, read-only, never copied into it;
# apt in the build needs no certificates (Debian's mirrors are signed, reached over http).
mkdir -p "$work/pip"
mapfile -t pip_mounts < <("$VENV/bin/python" deploy/pip_mounts.py "$work/pip")
build_start=$SECONDS
# --format docker: podman's default OCI format drops the Dockerfile's SHELL (bash with pipefail).
podman build --format docker --network host "${pip_mounts[@]}" \
  --build-arg BASE="$BASE_IMAGE" --build-arg EXTRAS=cpu,postgres -t "$IMAGE" . >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log"; die "podman build failed"; }
echo "built in $((SECONDS - build_start)) s ($(grep -c -- '--> Using cache' "$work/build.log" || true) steps cached)"
# Images a rebuild left untagged (a changed dependency layer is about 2 GB); the cache of this build stays.
podman image prune -f >/dev/null

step "cnntune --help in the image"
help=$(podman run --rm "$IMAGE" --help)
for command in search worker trials best; do
  grep -q " $command " <<<"$help" || die "cnntune --help in the image does not list $command"
done
echo "ok"

# check STUDY ARTIFACTS_DIR LOG...: deploy/check_study.py on a study, its artifacts folder and its workers' logs.
check() {
  local study=$1 artifacts=$2; shift 2
  local logs=()
  for log in "$@"; do logs+=(--log "$log"); done
  "$VENV/bin/python" deploy/check_study.py --storage "$STORAGE" --study "$study" --trials "$TRIALS" \
    --artifacts "$artifacts" "${logs[@]}" --delete
}

# wait_for CONTAINER...: waits for each to exit (WAIT_S in all), keeps its output in $work/NAME.log, fails on a
# non-zero exit code.
wait_for() {
  local name code
  for name in "$@"; do
    code=$(timeout "$WAIT_S" podman wait "$name") || die "$name did not finish within $WAIT_S s"
    podman logs "$name" >"$work/$name.log" 2>&1 || true
    if [ "$code" != 0 ]; then tail -30 "$work/$name.log"; die "$name exited with $code"; fi
  done
}

step "a study in containers: one creates it, two workers search it"
study="ct-$(date +%Y%m%d-%H%M%S)-$$"
artifacts="$work/artifacts"
mkdir -p "$artifacts" && chown "$IMAGE_UID:$IMAGE_UID" "$artifacts"
podman run --rm --network host --volume "$artifacts:/artifacts" "$IMAGE" \
  search space=improved data=synthetic epochs=1 --trials "$TRIALS" --workers 0 \
  --study "$study" --storage "$STORAGE" --artifacts /artifacts
for i in 1 2; do
  containers+=("$study-w$i")
  podman run -d --name "$study-w$i" --network host --volume "$artifacts:/artifacts" "$IMAGE" \
    worker --study "$study" --storage "$STORAGE" --worker-id "w$i" >/dev/null
done
wait_for "$study-w1" "$study-w2"
"$VENV/bin/cnntune" trials --study "$study" --storage "$STORAGE" >/dev/null  # the host's CLI reads the study
check "$study" "$artifacts" "$work/$study-w1.log" "$work/$study-w2.log"

step "the same through deploy/compose.yaml + deploy/compose.cpu.yaml (podman-compose)"
project="cnntune-ct$$"
study="ct-compose-$(date +%Y%m%d-%H%M%S)-$$"
export CNNTUNE_IMAGE="$IMAGE" CNNTUNE_STORAGE="$STORAGE" CNNTUNE_STUDY="$study" CNNTUNE_TRIALS="$TRIALS" \
  CNNTUNE_WORKERS=2 CNNTUNE_SPACE=improved CNNTUNE_WORDS="data=synthetic epochs=1"
compose=("$VENV/bin/podman-compose" -p "$project" -f compose.yaml -f compose.cpu.yaml)
(cd deploy && "${compose[@]}" up -d) >"$work/compose-up.log" 2>&1 || { tail -30 "$work/compose-up.log"; die "compose up failed"; }
# Containers of a compose service, by the labels podman-compose sets (the name pattern varies by version).
service() {
  podman ps -a --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | sort
}
mapfile -t workers < <(service worker)
[ "${#workers[@]}" = 2 ] || die "compose started ${#workers[@]} workers, not 2: ${workers[*]}"
wait_for "$(service storage-ready)" "$(service create-study)" "${workers[@]}"
volume=$(podman volume inspect --format '{{.Mountpoint}}' "${project}_artifacts")
check "$study" "$volume" "$work/${workers[0]}.log" "$work/${workers[1]}.log"

step "passed"
