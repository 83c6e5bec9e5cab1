#!/usr/bin/env bash
# End-to-end check of the Docker deployment, run by .ci/run after the pytest suite.
#
# Builds the cloud image (air-gapped, from a wheelhouse) and the nginx balancer,
# runs two cloud replicas and the balancer on a private network, the replicas sharing
# one read-write volume as their model repository, and sends predictions through the
# balancer with the real device client (`devtune predict --retries 3`): pushes a tuned
# version once to one replica under load and waits until every replica answers its new
# task, then stops one replica under load, then kills the other under load, and counts
# the requests lost. Also measures the image size and each container's start-to-ready
# time (from `docker run` to the first 200 from GET /readyz).
#
#   docker/test.sh
#
# stdout: one JSON line, {"image_mb": .., "start_to_ready_s": .., "sent": .., "lost": .., ...}
# stderr: progress. Exit 0: passed, or no Docker engine could be started, in which
# case it prints `DOCKER TEST SKIPPED: <reason>`. Any other failure exits non-zero.
#
# Without a reachable engine it starts one (as root) with its data under
# $DEVTUNE_DOCKER_CACHE, so images and build layers survive between runs, and it
# stops that engine on exit. The base image is made with debootstrap (no registry
# needed) unless DEVTUNE_BASE_IMAGE names one the engine already has.
#
# Environment (all optional):
#   DEVTUNE_DOCKER_CACHE     engine data, socket, logs (default /var/cache/devtune-docker)
#   DEVTUNE_BASE_IMAGE       base of both images (default devtune-base:bookworm, made here)
#   DEVTUNE_DEBIAN_MIRROR    mirror for debootstrap (default http://deb.debian.org/debian)
#   DEVTUNE_BUNDLE           bundle to serve (default: a tiny one trained here in seconds)
#   DEVTUNE_DOCKER_TUNE_TASK task the pushed version adds (default quadrant)
#   DEVTUNE_PYTHON           python with the project installed (default .venv/bin/python)
#   DEVTUNE_DOCKER_REQUESTS  predictions per phase, stop and kill (default 400)
#   DEVTUNE_DOCKER_INSTALL   0: never apt-get install docker.io / debootstrap

set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${DEVTUNE_DOCKER_CACHE:-/var/cache/devtune-docker}
BASE_IMAGE=${DEVTUNE_BASE_IMAGE:-devtune-base:bookworm}
MIRROR=${DEVTUNE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BUNDLE=${DEVTUNE_BUNDLE:-}
TUNE_TASK=${DEVTUNE_DOCKER_TUNE_TASK:-quadrant}
PY=${DEVTUNE_PYTHON:-$ROOT/.venv/bin/python}
REQUESTS=${DEVTUNE_DOCKER_REQUESTS:-400}
WORKERS=4             # concurrent device clients
MAX_IMAGE_MB=400      # the cloud image must stay under this
READY_TIMEOUT_S=180
POLL_S=1              # DEVTUNE_CLOUD_POLL_SECONDS of the replicas
CONSISTENT_TIMEOUT_S=60  # a push must reach every replica within this (poll + load, docs/serving.md)

CLOUD_IMAGE=devtune-cloud:test
BUNDLED_IMAGE=devtune-cloud-bundled:test
BALANCER_IMAGE=devtune-balancer:test
PREFIX=devtune-test-$$          # every container and network this run makes
NET=$PREFIX-net
WORK=$(mktemp -d /tmp/devtune-docker-test.XXXXXX)
CONTEXT=$ROOT/docker/.build/context

export DOCKER_BUILDKIT=0        # the legacy builder: no buildx plugin, no frontend image to pull

STARTED_ENGINE=""               # pid of the dockerd this run started, if any
API_KEY="" ADMIN_KEY="" TUNED=""  # set in main
READY_S=""                      # set by run_cloud
FLEET_S=""                      # set by push_once: push to every replica answering the new task
LOAD_SENT=0 LOAD_LOST=0 LOAD_AFTER=0 ACTION_S=0  # set by send_load
CONTAINERS=()
LOAD_PIDS=()

log() { echo "[docker/test.sh] $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
skip() {
    echo "DOCKER TEST SKIPPED: $*"
    exit 0
}

cleanup() {
    local rc=$?
    set +e
    for pid in "${LOAD_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    if [[ ${#CONTAINERS[@]} -gt 0 ]]; then
        docker rm --force --volumes "${CONTAINERS[@]}" >/dev/null 2>&1
    fi
    docker network rm "$NET" >/dev/null 2>&1
    rm -rf "$WORK" "$CONTEXT"
    rmdir "$ROOT/docker/.build" 2>/dev/null
    if [[ -n $STARTED_ENGINE ]]; then
        log "stopping the engine this run started (pid $STARTED_ENGINE)"
        kill "$STARTED_ENGINE" 2>/dev/null
        for _ in $(seq 60); do kill -0 "$STARTED_ENGINE" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$STARTED_ENGINE" 2>/dev/null && kill -9 "$STARTED_ENGINE"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- engine ------------------------------------------------------------------

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

install_packages() {  # apt-get install, if we may and can
    [[ ${DEVTUNE_DOCKER_INSTALL:-1} != 0 && $(id -u) == 0 ]] && command -v apt-get >/dev/null || return 1
    log "apt-get install $*"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >&2
}

start_engine() {
    if [[ -n ${DOCKER_HOST:-} ]] && engine_answers; then
        log "using the engine at DOCKER_HOST=$DOCKER_HOST"; return
    fi
    export DOCKER_HOST=unix:///var/run/docker.sock
    if command -v docker >/dev/null && engine_answers; then
        log "using the engine at $DOCKER_HOST"; return
    fi
    # Our own engine from here on: one run at a time uses it, and stops it.
    [[ $(id -u) == 0 ]] || skip "no Docker engine answers and starting one needs root"
    mkdir -p "$CACHE" 2>/dev/null && [[ -w $CACHE ]] \
        || skip "no Docker engine answers and $CACHE is not writable to start one"
    exec 9>"$CACHE/lock"
    flock --wait 1800 9 || fail "another docker/test.sh has held $CACHE/lock for 30 minutes"
    export DOCKER_HOST=unix://$CACHE/docker.sock
    local pidfile=$CACHE/dockerd.pid
    if command -v docker >/dev/null && engine_answers; then
        # Left running by an earlier run of this script that was killed: adopt it.
        log "adopting the engine at $DOCKER_HOST"
        STARTED_ENGINE=$(cat "$pidfile" 2>/dev/null || true)
        return
    fi
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
        install_packages docker.io || skip "no dockerd, and apt-get install docker.io failed or is not allowed"
    fi
    log "starting dockerd (data in $CACHE)"
    rm -f "$CACHE/docker.sock" "$pidfile"
    # No iptables rules and no default bridge: the host firewall is left alone.
    # Containers talk over a user-defined network; published ports use docker-proxy.
    dockerd --iptables=false --ip6tables=false --bridge=none \
        --data-root "$CACHE/data" --exec-root "$CACHE/exec" --pidfile "$pidfile" \
        --host "$DOCKER_HOST" >"$CACHE/dockerd.log" 2>&1 &
    STARTED_ENGINE=$!
    for _ in $(seq 60); do
        engine_answers && { log "dockerd is up"; return; }
        kill -0 "$STARTED_ENGINE" 2>/dev/null || break
        sleep 1
    done
    local reason
    reason=$(grep -v '^$' "$CACHE/dockerd.log" | tail -n 1 | cut -c1-200)
    kill "$STARTED_ENGINE" 2>/dev/null || true
    STARTED_ENGINE=""
    skip "dockerd did not start: ${reason:-no answer in 60 s}"
}

# --- images ------------------------------------------------------------------

make_base_image() {
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && { log "base image $BASE_IMAGE is cached"; return; }
    [[ $BASE_IMAGE == devtune-base:bookworm ]] || fail "base image $BASE_IMAGE is not in the engine; load it first"
    command -v debootstrap >/dev/null || install_packages debootstrap || fail "debootstrap is needed to make $BASE_IMAGE"
    local rootfs=$CACHE/rootfs.$$
    log "debootstrap bookworm into $rootfs (a minute or two)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -n 20 "$CACHE/debootstrap.log" >&2; rm -rf "$rootfs"; fail "debootstrap failed"; }
    # Package caches, docs and translations: 275 MB down to about 130 MB.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
    find "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/locale -mindepth 1 -delete
    tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    log "made base image $BASE_IMAGE"
}

fill_wheelhouse() {
    # The air-gapped path: every wheel the image needs, fetched here by the host's
    # pip (its index and CA settings), so the build itself runs with --network none.
    local wheelhouse=$ROOT/docker/wheelhouse requirements=$WORK/requirements.txt stamp
    local python_version
    python_version=$(docker run --rm --network none "$BASE_IMAGE" python3 -c \
        'import sys; print("%d.%d" % sys.version_info[:2])')
    {
        "$PY" "$ROOT/docker/pyproject_requirements.py" "$ROOT/pyproject.toml" --extra cloud
        "$PY" "$ROOT/docker/pyproject_requirements.py" "$ROOT/pyproject.toml" --build-system
    } >"$requirements"
    stamp=$( { cat "$requirements"; echo "python $python_version"; } | sha256sum | cut -c1-16)
    if [[ -f $wheelhouse/.stamp && $(cat "$wheelhouse/.stamp") == "$stamp" ]]; then
        log "wheelhouse is up to date ($(find "$wheelhouse" -name "*.whl" | wc -l) wheels)"; return
    fi
    log "pip download into docker/wheelhouse for Python $python_version"
    rm -rf "$wheelhouse"
    mkdir -p "$wheelhouse"
    "$PY" -m pip download --dest "$wheelhouse" --only-binary=:all: \
        --python-version "$python_version" -r "$requirements" >"$WORK/pip-download.log" 2>&1 \
        || { tail -n 30 "$WORK/pip-download.log" >&2; fail "pip download of the cloud wheels"; }
    echo "$stamp" >"$wheelhouse/.stamp"
}

stage_context() {
    # A build context holding only what the images need. The repository root also
    # holds .venv (torch, gigabytes) and the legacy builder would send all of it.
    log "staging the build context in docker/.build/context"
    rm -rf "$CONTEXT"
    mkdir -p "$CONTEXT/bundles"
    (
        cd "$ROOT"
        git ls-files -z --cached --others --exclude-standard \
            | grep -zvE '^(\.venv|\.git|tests|benchmarks|bundles|deploy|docs|results|\.ci|\.github)/|^docker/(wheelhouse|\.build)/|(^|/)__pycache__/|\.egg-info/' \
            | xargs -0 -r tar -c --no-recursion --ignore-failed-read -f - \
            | tar -C "$CONTEXT" -x
    )
    # Hard links when the repository and the context share a file system.
    cp -al "$ROOT/docker/wheelhouse" "$CONTEXT/docker/wheelhouse" 2>/dev/null \
        || { rm -rf "$CONTEXT/docker/wheelhouse"; cp -r "$ROOT/docker/wheelhouse" "$CONTEXT/docker/wheelhouse"; }
    cp -r "$BUNDLE" "$CONTEXT/bundles/default"
}

build_images() {
    local airgapped=(--build-arg "BASE_IMAGE=$BASE_IMAGE"
                     --build-arg "PIP_INSTALL_ARGS=--no-index --find-links /wheelhouse")
    log "building $CLOUD_IMAGE (no network: wheels from docker/wheelhouse)"
    docker build --network none -f "$CONTEXT/docker/cloud.Dockerfile" --target cloud \
        "${airgapped[@]}" -t "$CLOUD_IMAGE" "$CONTEXT" >"$WORK/build-cloud.log" 2>&1 \
        || { tail -n 40 "$WORK/build-cloud.log" >&2; fail "docker build of $CLOUD_IMAGE"; }
    log "building $BUNDLED_IMAGE"
    docker build --network none -f "$CONTEXT/docker/cloud.Dockerfile" --target cloud-bundled \
        "${airgapped[@]}" --build-arg BUNDLE_DIR=bundles/default \
        -t "$BUNDLED_IMAGE" "$CONTEXT" >"$WORK/build-bundled.log" 2>&1 \
        || { tail -n 40 "$WORK/build-bundled.log" >&2; fail "docker build of $BUNDLED_IMAGE"; }
    log "building $BALANCER_IMAGE (apt-get install nginx-light)"
    docker build --network host -f "$ROOT/docker/balancer.Dockerfile" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$BALANCER_IMAGE" "$ROOT/docker" >"$WORK/build-balancer.log" 2>&1 \
        || { tail -n 40 "$WORK/build-balancer.log" >&2; fail "docker build of $BALANCER_IMAGE"; }
    docker image prune --force >/dev/null  # layers of earlier builds that no tag uses any more
}

image_mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.1f", $1 / 1e6}'; }

check_cloud_image() {
    docker run --rm --network none "$CLOUD_IMAGE" python -c "import torch" >/dev/null 2>&1 \
        && fail "torch imports inside $CLOUD_IMAGE; the cloud image must not carry it"
    docker run --rm --network none "$CLOUD_IMAGE" python -c "import cloud_server.app, onnxruntime, fastapi" \
        || fail "the cloud server does not import inside $CLOUD_IMAGE"
    local uid
    uid=$(docker run --rm --network none "$CLOUD_IMAGE" id -u)
    [[ $uid != 0 ]] || fail "$CLOUD_IMAGE runs as root"
    log "image checks: no torch, cloud_server imports, runs as uid $uid"
}

# --- containers ----------------------------------------------------------------

# Prints the seconds from $3 (epoch seconds) until GET $2 answers 200; fails when
# container $1 exits first or after $4 seconds.
wait_ready() {
    "$PY" - "$@" <<'EOF'
import subprocess, sys, time, urllib.request
container, url, t0, limit = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
checked = time.time()
while time.time() - t0 < limit:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            if answer.status == 200:
                print(f"{time.time() - t0:.2f}")
                sys.exit(0)
    except OSError:
        pass
    if time.time() - checked > 1:
        checked = time.time()
        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", container],
                               capture_output=True, text=True).stdout.strip()
        if state != "running":
            sys.exit(f"{container} is {state or 'gone'} before {url} answered")
    time.sleep(0.05)
sys.exit(f"{url} not ready after {limit:.0f} s")
EOF
}

published_port() { docker port "$1" "$2/tcp" | head -n 1 | sed 's/.*://'; }

# Runs a cloud container as docker/compose.yaml does and waits for it; sets
# READY_S to the seconds from `docker run` to the first 200 from /readyz.
run_cloud() {
    local name=$1 image=$2 alias=$3; shift 3
    local t0 port
    t0=$(date +%s.%N)
    CONTAINERS+=("$name")
    docker run --detach --name "$name" --network "$NET" --network-alias "$alias" \
        --read-only --tmpfs /tmp -p 127.0.0.1::8000 "$@" "$image" >/dev/null
    port=$(published_port "$name" 8000)
    READY_S=$(wait_ready "$name" "http://127.0.0.1:$port/readyz" "$t0" "$READY_TIMEOUT_S") \
        || { docker logs --tail 30 "$name" >&2; fail "$name did not become ready"; }
}

wait_healthy() {  # the image's own HEALTHCHECK, as docker and compose see it
    local status
    for _ in $(seq 40); do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$1")
        [[ $status == healthy ]] && return
        sleep 1
    done
    fail "$1 is '$status', not healthy, by its HEALTHCHECK"
}

make_images() {  # a few small seeded PNGs of different sizes for the client
    "$PY" - "$WORK" <<'EOF'
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for i, (h, w) in enumerate([(32, 32), (48, 64), (96, 80), (28, 28)]):
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(f"{sys.argv[1]}/img{i}.png")
EOF
}

# Sends $REQUESTS predictions through the balancer at $1 (key $2) with $WORKERS
# device clients, one image per request, and runs the command "${@:3}" (stop or kill
# a replica) once a quarter of them are answered. Sets LOAD_SENT, LOAD_LOST (not
# answered by the cloud), LOAD_AFTER (answered after the command began) and
# ACTION_S; fails if a client errs or the load ended before the command.
send_load() {
    local lb_port=$1 api_key=$2; shift 2
    local per_worker=$(( (REQUESTS + WORKERS - 1) / WORKERS )) images=() pids=() w i
    for i in $(seq 0 $(( per_worker - 1 ))); do images+=("$WORK/img$(( i % 4 )).png"); done
    rm -f "$WORK"/answers-*.jsonl
    log "sending $(( per_worker * WORKERS )) predictions with $WORKERS clients (--retries 3), then: $*"
    for w in $(seq "$WORKERS"); do
        "$PY" -m devtune predict --bundle "$BUNDLE" --server "http://127.0.0.1:$lb_port" \
            --api-key "$api_key" --retries 3 --json "${images[@]}" \
            >"$WORK/answers-$w.jsonl" 2>"$WORK/client-$w.log" &
        pids+=($!)
    done
    LOAD_PIDS=("${pids[@]}")
    local answered=0 running
    while (( answered < per_worker * WORKERS / 4 )); do
        answered=$(cat "$WORK"/answers-*.jsonl | wc -l)
        running=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=$((running + 1)); done
        (( running > 0 )) || break
        sleep 0.05
    done
    local t0
    t0=$(date +%s.%N)
    "$@" >/dev/null
    ACTION_S=$(awk -v t1="$(date +%s.%N)" -v t0="$t0" 'BEGIN { printf "%.2f", t1 - t0 }')
    local failures=0
    for pid in "${pids[@]}"; do wait "$pid" || failures=$((failures + 1)); done
    LOAD_PIDS=()
    LOAD_SENT=$(( per_worker * WORKERS ))
    # Count answers with the client's own JSON, not a pattern of its spacing.
    LOAD_LOST=$(cat "$WORK"/answers-*.jsonl | "$PY" -c '
import json, sys
answered = sum(1 for line in sys.stdin if line.strip() and json.loads(line)["answered_by"] == "cloud")
print(int(sys.argv[1]) - answered)' "$LOAD_SENT")
    LOAD_AFTER=$(( $(cat "$WORK"/answers-*.jsonl | wc -l) - answered ))
    docker logs "$PREFIX-balancer" >"$WORK/balancer.log" 2>&1
    local per_replica
    per_replica=$(grep -o 'POST /v1/predict.*upstream=[0-9.:]*' "$WORK/balancer.log" \
        | sed 's/.*upstream=//' | sort | uniq -c | awk '{printf "%s%s=%s", sep, $2, $1; sep=" "}')
    log "$answered answered before, $LOAD_AFTER after (${ACTION_S} s to run it); lost $LOAD_LOST;" \
        "balancer log so far, requests per replica: $per_replica"
    if (( failures > 0 )); then
        for w in $(seq "$WORKERS"); do tail -n 5 "$WORK/client-$w.log" >&2; done
        fail "$failures device clients exited with an error"
    fi
    (( LOAD_AFTER > 0 )) || fail "the load ended before '$*' ran; raise DEVTUNE_DOCKER_REQUESTS"
}

# --- bundles -------------------------------------------------------------------

make_tiny_bundle() {  # $1: where. The tiny config of tests/conftest.py: seconds on 2 cores
    "$PY" - "$1" <<'EOF'
import sys
import torch
from models.data import make_shapes
from models.export import export_bundle
from models.model import ModelConfig
from models.train import TrainConfig, train
torch.manual_seed(0)
data = make_shapes("train", count=512)
cfg = ModelConfig(dim=32, depth=1, heads=2, decoder_dim=32, bits=4)
result = train(cfg, TrainConfig(epochs=1, batch_size=64), data, progress=False)
export_bundle(result, data, sys.argv[1], name="tiny")
EOF
}

bundle_key() {  # "<name>/<version>" of the bundle at $1
    "$PY" - "$1" <<'EOF'
import json, sys
manifest = json.load(open(sys.argv[1] + "/manifest.json"))
print(f"{manifest['name']}/{manifest['version']}")
EOF
}

# Pushes $TUNED to replica 1 (its own port, not the balancer) and waits until every
# replica answers a prediction for $TUNE_TASK; sets FLEET_S to the seconds that took.
push_once() {
    local t0 port answered replica
    t0=$(date +%s.%N)
    "$PY" -m devtune push --bundle "$TUNED" --server "http://127.0.0.1:$(published_port "$PREFIX-cloud-1" 8000)" \
        --admin-key "$ADMIN_KEY" >&2 || fail "devtune push to $PREFIX-cloud-1"
    for replica in "$PREFIX-cloud-1" "$PREFIX-cloud-2"; do
        port=$(published_port "$replica" 8000)
        answered=""
        while awk -v t0="$t0" -v now="$(date +%s.%N)" -v max="$CONSISTENT_TIMEOUT_S" 'BEGIN { exit !(now - t0 < max) }'; do
            if "$PY" -m devtune predict --bundle "$BUNDLE" --server "http://127.0.0.1:$port" --api-key "$API_KEY" \
                --tasks "$TUNE_TASK" --json "$WORK/img0.png" 2>/dev/null | grep -q '"answered_by": *"cloud"'; then
                answered=yes; break
            fi
            sleep 0.2
        done
        [[ -n $answered ]] || fail "$replica does not answer $TUNE_TASK ${CONSISTENT_TIMEOUT_S} s after the push"
    done
    FLEET_S=$(awk -v t1="$(date +%s.%N)" -v t0="$t0" 'BEGIN { printf "%.2f", t1 - t0 }')
    log "every replica answers $TUNE_TASK ${FLEET_S} s after the push began"
}

# --- main --------------------------------------------------------------------

main() {
    start_engine  # first: no engine is the one reason to skip
    [[ -x $PY ]] || fail "no python at $PY; make the venv (.venv with .[all]) or set DEVTUNE_PYTHON"
    "$PY" -c "import device_client, PIL" || fail "$PY lacks the project's [device] extra"
    if [[ -z $BUNDLE ]]; then
        BUNDLE=$WORK/tiny
        log "training a tiny bundle into $BUNDLE (seconds; DEVTUNE_BUNDLE serves another)"
        make_tiny_bundle "$BUNDLE" >"$WORK/train.log" 2>&1 \
            || { tail -n 20 "$WORK/train.log" >&2; fail "training the tiny bundle"; }
    fi
    [[ -f $BUNDLE/manifest.json ]] || fail "no bundle at $BUNDLE (DEVTUNE_BUNDLE); make one with devtune train --out"
    TUNED=$WORK/tuned
    log "devtune tune --task $TUNE_TASK: the version that will be pushed"
    "$PY" -m devtune tune --bundle "$BUNDLE" --task "$TUNE_TASK" --count 256 --epochs 1 --out "$TUNED" \
        >"$WORK/tune.log" 2>&1 || { tail -n 20 "$WORK/tune.log" >&2; fail "devtune tune --bundle $BUNDLE"; }
    make_base_image
    fill_wheelhouse
    stage_context
    build_images
    check_cloud_image
    if command -v docker-compose >/dev/null; then  # optional: docker/compose.yaml is valid
        DEVTUNE_API_KEY=check docker-compose -f "$ROOT/docker/compose.yaml" config --quiet \
            || fail "docker-compose rejects docker/compose.yaml"
    fi

    local cloud_mb bundled_mb balancer_mb
    cloud_mb=$(image_mb "$CLOUD_IMAGE")
    bundled_mb=$(image_mb "$BUNDLED_IMAGE")
    balancer_mb=$(image_mb "$BALANCER_IMAGE")
    log "image sizes: cloud ${cloud_mb} MB, bundled ${bundled_mb} MB, balancer ${balancer_mb} MB"

    docker network create "$NET" >/dev/null
    # Listening on 0.0.0.0 the server wants API keys; devices send this one.
    local api_key keys
    api_key=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
    API_KEY=$api_key
    ADMIN_KEY=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
    keys=(-e "DEVTUNE_CLOUD_API_KEYS=[\"$api_key\"]" -e "DEVTUNE_CLOUD_ADMIN_KEYS=[\"$ADMIN_KEY\"]")

    # The baked-in variant serves with no volume at all.
    local bundled_ready
    run_cloud "$PREFIX-bundled" "$BUNDLED_IMAGE" bundled "${keys[@]}"
    bundled_ready=$READY_S
    log "bundled image ready in ${bundled_ready} s"
    docker rm --force --volumes "$PREFIX-bundled" >/dev/null

    # Two replicas sharing one read-write model repository (holding the one bundle, as
    # <name>/<version>/), each polling it, started one after the other so each
    # start-to-ready time is measured alone.
    local repository=$WORK/repository key
    key=$(bundle_key "$BUNDLE")
    mkdir -p "$repository/$key"
    cp -r "$BUNDLE/." "$repository/$key/"
    chown -R 10001:10001 "$repository"  # the image's user
    local volume=(-v "$repository:/bundles" -e "DEVTUNE_CLOUD_POLL_SECONDS=$POLL_S")
    local ready1 ready2
    run_cloud "$PREFIX-cloud-1" "$CLOUD_IMAGE" cloud-1 "${volume[@]}" "${keys[@]}"
    ready1=$READY_S
    run_cloud "$PREFIX-cloud-2" "$CLOUD_IMAGE" cloud-2 "${volume[@]}" "${keys[@]}"
    ready2=$READY_S
    log "replicas ready in ${ready1} s and ${ready2} s after docker run"

    local balancer=$PREFIX-balancer t0 lb_port
    t0=$(date +%s)
    CONTAINERS+=("$balancer")
    docker run --detach --name "$balancer" --network "$NET" --read-only --tmpfs /tmp \
        -p 127.0.0.1::8080 "$BALANCER_IMAGE" >/dev/null
    lb_port=$(published_port "$balancer" 8080)
    wait_ready "$balancer" "http://127.0.0.1:$lb_port/readyz" "$t0" 30 >/dev/null \
        || { docker logs --tail 30 "$balancer" >&2; fail "the balancer does not answer"; }

    # Auth goes through the balancer: no key, no prediction.
    local status
    status=$("$PY" -c '
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b"", method="POST"), timeout=10)
    print(200)
except urllib.error.HTTPError as error:
    print(error.code)' "http://127.0.0.1:$lb_port/v1/predict")
    [[ $status == 401 ]] || fail "POST /v1/predict without a key answered $status through the balancer, not 401"

    make_images
    local sent=0 lost=0 after_stop=0 retried
    # 0. One push under load, to one replica: every replica serves it from the shared repository.
    send_load "$lb_port" "$api_key" push_once
    local push_lost=$LOAD_LOST
    sent=$((sent + LOAD_SENT)); lost=$((lost + LOAD_LOST))
    (( push_lost == 0 )) || fail "$push_lost requests failed while a version was pushed"
    # 1. A graceful stop (SIGTERM: uvicorn drains what it holds), as in a rollout.
    send_load "$lb_port" "$api_key" docker stop --time 30 "$PREFIX-cloud-1"
    local stop_s=$ACTION_S
    sent=$((sent + LOAD_SENT)); lost=$((lost + LOAD_LOST)); after_stop=$((after_stop + LOAD_AFTER))
    # 2. A crash (SIGKILL: connections reset mid-request) of the other replica, with
    #    the first back. The balancer restarts so it resolves cloud-1's address again.
    docker start "$PREFIX-cloud-1" >/dev/null
    wait_ready "$PREFIX-cloud-1" "http://127.0.0.1:$(published_port "$PREFIX-cloud-1" 8000)/readyz" \
        "$(date +%s)" "$READY_TIMEOUT_S" >/dev/null || fail "$PREFIX-cloud-1 did not come back"
    docker restart "$balancer" >/dev/null
    lb_port=$(published_port "$balancer" 8080)
    wait_ready "$balancer" "http://127.0.0.1:$lb_port/readyz" "$(date +%s)" 30 >/dev/null \
        || fail "the balancer did not come back"
    send_load "$lb_port" "$api_key" docker kill "$PREFIX-cloud-2"
    sent=$((sent + LOAD_SENT)); lost=$((lost + LOAD_LOST)); after_stop=$((after_stop + LOAD_AFTER))
    retried=$(grep 'POST /v1/predict' "$WORK/balancer.log" | grep -c 'upstream=[^ ]*, ' || true)

    wait_healthy "$PREFIX-cloud-1"

    printf '{"image_mb": %s, "start_to_ready_s": %s, "sent": %d, "lost": %d, ' \
        "$cloud_mb" "$(printf '%s\n%s\n' "$ready1" "$ready2" | sort -g | tail -n 1)" "$sent" "$lost"
    printf '"replica_ready_s": [%s, %s], "bundled_ready_s": %s, "bundled_image_mb": %s, ' \
        "$ready1" "$ready2" "$bundled_ready" "$bundled_mb"
    printf '"balancer_image_mb": %s, "answered_after_stop": %d, "retried_by_balancer": %d, "stop_s": %s, ' \
        "$balancer_mb" "$after_stop" "$retried" "$stop_s"
    printf '"push_to_every_replica_s": %s, "lost_during_push": %d}\n' "$FLEET_S" "$push_lost"

    (( lost == 0 )) || fail "$lost of $sent requests lost when a replica stopped or crashed"
    awk -v mb="$cloud_mb" -v max="$MAX_IMAGE_MB" 'BEGIN { exit !(mb < max) }' \
        || fail "$CLOUD_IMAGE is $cloud_mb MB, over the $MAX_IMAGE_MB MB target"
    log "passed"
}

main "$@"
