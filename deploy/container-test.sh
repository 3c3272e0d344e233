#!/usr/bin/env bash
# `make container-test`: the worker image built and run for real, with podman, on a machine without GPUs; workers
# that share nothing but the database and a bucket.
#   1. builds the CPU variant of the Dockerfile on a Debian bookworm base (debootstrap'ed once, cached by tag), with
#      the object-storage clients (EXTRAS=cpu,postgres,cloud);
#   2. runs `cnntune --help` in it;
#   3. starts an S3-protocol server on the host (moto's server mode, from the dev extra, on 127.0.0.1) and a bucket;
#   4. kill -9: one container creates a study on the host's PostgreSQL with its artifacts in the bucket; worker w1
#      (no volume, no mount: checked with `podman inspect`) trains until the bucket holds a checkpoint of epoch 2 or
#      later, and is killed with SIGKILL; worker w2 runs the other trials, waits past the heartbeat grace for w1's
#      trial, and runs its retry, which resumes from w1's checkpoint in the bucket. The study must end with exactly
#      TRIALS complete searched trials; `best --export s3://...` in a container writes a model that loads on the host;
#   5. SIGTERM: the same with `podman stop` (SIGTERM, then SIGKILL after STOP_GRACE s): the worker must exit 130
#      within the grace with its trial recorded as interrupted and the checkpoint of its last whole epoch in the
#      bucket; another worker resumes it;
#   6. deploy/compose.yaml with the CPU override (podman-compose, the `db` profile off: the host's PostgreSQL and
#      the host's S3 server stand in for the bundled ones), two workers, artifacts in the bucket.
# Needs root, apt for the missing tools, and PostgreSQL at CNNTUNE_TEST_POSTGRES_URL (default
# postgresql://postgres@127.0.0.1:5432/test). Settings: VENV (.venv), IMAGE, BASE_IMAGE, TRIALS (3), STOP_GRACE (60).
# Time on 2 cores: 150 s with the base image and the image's dependency layer cached (kill -9 about 45 s, SIGTERM
# about 40 s, compose about 60 s); a changed pyproject.toml rebuilds the dependency layer (about 2 minutes), and a new
# machine first installs podman and debootstraps the base image. Every wait is bounded by WAIT_S.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

VENV=$(realpath -m "${VENV:-.venv}")
BASE_IMAGE=${BASE_IMAGE:-localhost/cnntune-base:bookworm}
IMAGE=${IMAGE:-localhost/cnntune:cpu}
STORAGE=${CNNTUNE_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}
TRIALS=${TRIALS:-3}
STOP_GRACE=${STOP_GRACE:-60}  # the manifests' terminationGracePeriodSeconds / stop_grace_period
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WAIT_S=${WAIT_S:-900}  # longest wait for the containers of one study
# podman's defaults need systemd and limits this kind of machine does not grant (see the file).
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}
export TF_CPP_MIN_LOG_LEVEL=3  # the host's checks that load TensorFlow

step() { printf '\n== container-test: %s (%d s)\n' "$*" "$SECONDS"; }
die() { echo "container-test: $*" >&2; exit 1; }

work=$(mktemp -d /tmp/cnntune-container-test.XXXXXX)
containers=()
project=""
s3_pid=""
cleanup() {
  local rc=$?
  if ((${#containers[@]})); then podman rm -f -v "${containers[@]}" >/dev/null 2>&1 || true; fi
  if [ -n "$s3_pid" ]; then kill "$s3_pid" 2>/dev/null || true; fi
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
for tool in podman-compose moto_server; do
  [ -x "$VENV/bin/$tool" ] || die "$VENV/bin/$tool is missing: make install (the dev extra) first"
done
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

step "build $IMAGE (EXTRAS=cpu,postgres,cloud)"
# The host's pip settings (index mirrors, CA bundle) are mounted into the build, read-only, never copied into it;
# apt in the build needs no certificates (Debian's mirrors are signed, reached over http).
mkdir -p "$work/pip"
mapfile -t pip_mounts < <("$VENV/bin/python" deploy/pip_mounts.py "$work/pip")
build_start=$SECONDS
# --format docker: podman's default OCI format drops the Dockerfile's SHELL (bash with pipefail).
podman build --format docker --network host "${pip_mounts[@]}" \
  --build-arg BASE="$BASE_IMAGE" --build-arg EXTRAS=cpu,postgres,cloud -t "$IMAGE" . >"$work/build.log" 2>&1 \
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

step "S3-protocol server on the host, and a bucket"
s3_port=$("$VENV/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$work/s3.log" 2>&1 &
s3_pid=$!
export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port" AWS_ACCESS_KEY_ID=cnntune-ct AWS_SECRET_ACCESS_KEY=cnntune-ct-secret \
  AWS_DEFAULT_REGION=us-east-1
bucket="s3://cnntune-ct-$$"
for _ in $(seq 100); do
  "$VENV/bin/python" -c "import boto3, os; boto3.client('s3').create_bucket(Bucket='${bucket#s3://}')" \
    >/dev/null 2>&1 && break
  sleep 0.3
done
"$VENV/bin/python" -c "from tuner.store import Location; Location.of('$bucket/probe').check_writable()" \
  || die "no S3 server at $AWS_ENDPOINT_URL"
echo "$bucket at $AWS_ENDPOINT_URL"
# The containers get the bucket's endpoint and credentials as a cloud worker gets them, from the environment.
aws_env=(-e AWS_ENDPOINT_URL -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_DEFAULT_REGION)

# check STUDY ARTIFACTS CHECK_STUDY_ARGS...: deploy/check_study.py on a study (deleted once it passed).
check() {
  local study=$1 artifacts=$2; shift 2
  "$VENV/bin/python" deploy/check_study.py --storage "$STORAGE" --study "$study" --trials "$TRIALS" \
    --artifacts "$artifacts" "$@" --delete
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

# A study slow enough to stop a worker in the middle of a trial: BaseNet, 6 epochs of 50 generated classes.
SLOW_WORDS=(space=basenet data=synthetic classes=50 epochs=6 learning_rate=0.001)
# create_study STUDY: the study, its artifacts in the bucket, created by a container that runs no trial.
create_study() {
  podman run --rm --network host "${aws_env[@]}" "$IMAGE" search "${SLOW_WORDS[@]}" --trials "$TRIALS" \
    --workers 0 --heartbeat-grace 10 --study "$1" --storage "$STORAGE" --artifacts "$bucket/ct" -q
}
# start_worker STUDY ID: a worker container of STUDY; nothing mounted, nothing shared with the host or another worker.
start_worker() {
  containers+=("$1-$2")
  podman run -d --name "$1-$2" --network host "${aws_env[@]}" "$IMAGE" \
    worker --study "$1" --storage "$STORAGE" --worker-id "$2" >/dev/null
  local mounts
  mounts=$(podman inspect --format '{{len .Mounts}}' "$1-$2")
  [ "$mounts" = 0 ] || die "worker $1-$2 has $mounts mounts; it must share nothing but the database and the bucket"
}
# checkpoint_at STUDY MIN_EPOCH CONTAINER: waits until the bucket holds a checkpoint of STUDY of MIN_EPOCH epochs or
# more (listing the bucket's objects, reading the checkpoint's record); prints "KEY EPOCH".
checkpoint_at() {
  "$VENV/bin/python" - "$bucket/ct/$1/checkpoints" "$2" "$3" "$WAIT_S" <<'PY'
import subprocess, sys, time
import fsspec
from tuner.trial import read_meta
folder, least, container, wait = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
fs, path = fsspec.core.url_to_fs(folder, endpoint_url=__import__("os").environ["AWS_ENDPOINT_URL"])
deadline = time.monotonic() + wait
while time.monotonic() < deadline:
    fs.invalidate_cache()
    for key in (fs.find(path) if fs.exists(path) else []):
        meta = read_meta("s3://" + key.rsplit("/", 1)[0])
        if meta and meta["epoch"] >= least:
            print(key, meta["epoch"])
            sys.exit(0)
    state = subprocess.run(["podman", "inspect", "--format", "{{.State.Running}}", container],
                           capture_output=True, text=True).stdout.strip()
    if state != "true":
        sys.exit(f"container-test: {container} stopped before a checkpoint of epoch {least}")
    time.sleep(0.2)
sys.exit(f"container-test: no checkpoint of epoch {least} in {folder} within {wait} s")
PY
}

step "kill -9: a worker killed mid-trial, its trial resumed from the bucket by another worker"
study="ct-kill-$(date +%Y%m%d-%H%M%S)-$$"
create_study "$study"
start_worker "$study" w1
read -r key epoch < <(checkpoint_at "$study" 2 "$study-w1") || die "no checkpoint to kill at"
podman kill -s KILL "$study-w1" >/dev/null
echo "killed w1 with SIGKILL; the bucket holds $key (epoch $epoch)"
start_worker "$study" w2
wait_for "$study-w2"
export_url="$bucket/ct/$study-best.keras"
podman run --rm --network host "${aws_env[@]}" "$IMAGE" best --study "$study" --storage "$STORAGE" \
  --export "$export_url" >"$work/export.log" 2>&1 || { cat "$work/export.log"; die "best --export failed"; }
"$VENV/bin/python" - "$export_url" <<'PY' || die "the exported model does not load on the host"
import json, sys
import numpy as np
import keras
from tuner.store import Location
with Location.of(sys.argv[1]).fetched() as path:
    model = keras.saving.load_model(path)
    info = json.loads(__import__("zipfile").ZipFile(path).read("cnntune.json"))
out = model.predict(np.zeros((2, *info["input_shape"]), dtype="uint8"), verbose=0)
assert out.shape == (2, len(info["class_names"])), out.shape
print(f"{sys.argv[1]}: trial {info['trial']}, loads and predicts {out.shape}")
PY
check "$study" "$bucket/ct/$study" --log "$work/$study-w2.log" --resumed-from 2 --not-by w1

step "SIGTERM: a stopped worker keeps its last epoch in the bucket, another worker resumes it"
study="ct-term-$(date +%Y%m%d-%H%M%S)-$$"
create_study "$study"
start_worker "$study" w3
read -r key epoch < <(checkpoint_at "$study" 2 "$study-w3") || die "no checkpoint to stop at"
sleep 0.3  # into the next epoch
stop_start=$("$VENV/bin/python" -c "import time; print(time.monotonic())")
podman stop -t "$STOP_GRACE" "$study-w3" >/dev/null
took=$("$VENV/bin/python" -c "import time; print(f'{time.monotonic() - $stop_start:.2f}')")
code=$(podman inspect --format '{{.State.ExitCode}}' "$study-w3")
podman logs "$study-w3" >"$work/$study-w3.log" 2>&1 || true
[ "$code" = 130 ] || { tail -20 "$work/$study-w3.log"; die "w3 exited with $code after SIGTERM, not 130"; }
"$VENV/bin/python" - "$STORAGE" "$study" "$bucket/ct/$study/checkpoints" "$epoch" <<'PY' || die "SIGTERM check failed"
import sys
from tuner import api
from tuner.trial import read_meta
storage, study, folder, epoch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
stopped = [r for r in api.trials(study=study, storage=storage).records if r.kind and r.kind.value == "interrupted"]
assert len(stopped) == 1, f"expected one interrupted trial, found {stopped}"
meta = read_meta(f"{folder}/trial_{stopped[0].number:04d}")
assert meta is not None and meta["epoch"] >= epoch, f"checkpoint {meta and meta['epoch']}, epoch {epoch} was stored"
print(f"trial {stopped[0].number} recorded as interrupted; its checkpoint in the bucket: epoch {meta['epoch']}")
PY
echo "SIGTERM to exit: $took s (grace $STOP_GRACE s), exit code 130"
start_worker "$study" w4
wait_for "$study-w4"
check "$study" "$bucket/ct/$study" --log "$work/$study-w4.log" --resumed-from 2 --not-by w3

step "the same through deploy/compose.yaml + deploy/compose.cpu.yaml (podman-compose), artifacts in the bucket"
project="cnntune-ct$$"
study="ct-compose-$(date +%Y%m%d-%H%M%S)-$$"
export CNNTUNE_IMAGE="$IMAGE" CNNTUNE_STORAGE="$STORAGE" CNNTUNE_STUDY="$study" CNNTUNE_TRIALS="$TRIALS" \
  CNNTUNE_WORKERS=2 CNNTUNE_SPACE=improved CNNTUNE_WORDS="data=synthetic epochs=1" CNNTUNE_ARTIFACTS="$bucket/compose"
compose=("$VENV/bin/podman-compose" -p "$project" -f compose.yaml -f compose.cpu.yaml)
(cd deploy && "${compose[@]}" up -d) >"$work/compose-up.log" 2>&1 || { tail -30 "$work/compose-up.log"; die "compose up failed"; }
# Containers of a compose service, by the labels podman-compose sets (the name pattern varies by version).
service() {
  podman ps -a --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | sort
}
mapfile -t workers < <(service worker)
[ "${#workers[@]}" = 2 ] || die "compose started ${#workers[@]} workers, not 2: ${workers[*]}"
wait_for "$(service storage-ready)" "$(service artifacts-ready)" "$(service create-study)" "${workers[@]}"
check "$study" "$bucket/compose/$study" --log "$work/${workers[0]}.log" --log "$work/${workers[1]}.log"

step "passed"
