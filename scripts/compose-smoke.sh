#!/usr/bin/env bash
# Smoke test of the container: `docker compose up -d --build`, wait until the `api` service is
# healthy, post a real digit image, a review and a WAV clip and check the answers, check that an
# over-size body gets 413, print the image size, then `docker compose down`.
#
#   scripts/compose-smoke.sh                          # the models baked into the image (models/)
#   MODELS_DIR=/tmp/models scripts/compose-smoke.sh   # another models dir, mounted read-only
#                                                     # (docker-compose.models.yml)
#
# Environment:
#   PYTHON          client Python with numpy, Pillow, soundfile, httpx (default .venv/bin/python)
#   DATA_DIR        datasets to take the digit and the clip from (default ../shared/datasets)
#   CHECK_LABELS    1 (default): the digit and the clip must get their true labels; 0: only the
#                   shape of the answers is checked (for stand-in models that are not trained)
#   HEALTH_TIMEOUT  seconds to wait for healthy after the container starts (default 120)
#   MAX_IMAGE_MB    fail when the image is bigger (default 450)
#   API_PORT        host port (default 8000)
#   KEEP_UP=1       leave the stack running at the end
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
export DATA_DIR=${DATA_DIR:-../shared/datasets}
export CHECK_LABELS=${CHECK_LABELS:-1}
export API_PORT=${API_PORT:-8000}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-120}
MAX_IMAGE_MB=${MAX_IMAGE_MB:-450}

COMPOSE=(docker compose -f docker-compose.yml)
if [ -n "${MODELS_DIR:-}" ]; then
  export MODELS_DIR
  COMPOSE+=(-f docker-compose.models.yml)
  echo "== models: $MODELS_DIR (bind-mounted read-only over /app/models)"
else
  echo "== models: the ones baked into the image (models/)"
fi

say() { printf '== [%5.1fs] %s\n' "$(($(date +%s%N) / 1000000 - START_MS))e-3" "$*"; }
START_MS=$(($(date +%s%N) / 1000000))

finish() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "== FAILED (exit $rc); last service logs:"
    "${COMPOSE[@]}" logs --no-color --tail 60 api || true
  fi
  if [ "${KEEP_UP:-0}" = 1 ]; then
    echo "== KEEP_UP=1: leaving the stack up (${COMPOSE[*]} down)"
  else
    say "docker compose down"
    "${COMPOSE[@]}" down --timeout 40 2>&1 | sed 's/^/   /'
  fi
  [ "$rc" -eq 0 ] && echo "== SMOKE TEST PASSED" || echo "== SMOKE TEST FAILED"
  exit "$rc"
}
trap finish EXIT

say "docker compose up -d --build"
BUILD_LOG=$(mktemp)
if ! "${COMPOSE[@]}" up -d --build >"$BUILD_LOG" 2>&1; then
  tail -n 60 "$BUILD_LOG"; rm -f "$BUILD_LOG"; exit 1
fi
# the build steps, one line each (CACHED or how long it took), then compose's own lines
awk '/^#[0-9]+ \[/ {step[$1] = substr($0, length($1) + 2, 90)}
     /^#[0-9]+ (CACHED|DONE)/ && ($1 in step) {printf "   %-90s %s\n", step[$1], $2 " " $3}
     /^ [A-Z]/ {print "  " $0}' "$BUILD_LOG"
rm -f "$BUILD_LOG"
UP_MS=$(($(date +%s%N) / 1000000))
say "image built and container started ($(((UP_MS - START_MS) / 1000)) s); waiting for healthy"

CID=$("${COMPOSE[@]}" ps -q api)
[ -n "$CID" ] || { echo "no api container"; exit 1; }
last=""
next_report=5000
while :; do
  status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.Status}}' "$CID")
  elapsed_ms=$(($(date +%s%N) / 1000000 - UP_MS))
  if [ "$status" != "$last" ]; then say "container: $status"; last=$status; fi
  case "$status" in
    healthy*) break ;;
    *exited* | *dead*) echo "container stopped"; exit 1 ;;
  esac
  if [ $((elapsed_ms / 1000)) -ge "$HEALTH_TIMEOUT" ]; then
    echo "not healthy after ${HEALTH_TIMEOUT} s"; exit 1
  fi
  if [ "$elapsed_ms" -ge "$next_report" ]; then
    say "still $status after $((elapsed_ms / 1000)) s"
    next_report=$((next_report + 5000))
  fi
  sleep 0.5
done
HEALTHY_S=$(awk "BEGIN {printf \"%.1f\", $elapsed_ms / 1000}")
say "healthy ${HEALTHY_S} s after the container started (limit 60 s)"
awk "BEGIN {exit !($elapsed_ms <= 60000)}" || { echo "slower than 60 s to healthy"; exit 1; }

say "requests"
"$PYTHON" - <<'PY'
import gzip
import io
import json
import os
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile
from PIL import Image

BASE = f"http://localhost:{os.environ['API_PORT']}"
DATA = Path(os.environ["DATA_DIR"])
CHECK_LABELS = os.environ["CHECK_LABELS"] == "1"
MNIST_INDEX = 0  # the first digit of the MNIST test set (a 7)
CLIP = "speech_commands/yes/0fa1e7a9_nohash_0.flac"  # a test-split speaker in training/
REVIEW = (
    "A wonderful film. Great acting, a moving story and great fun from start to finish; "
    "one of the best films I have seen this year and I loved every minute of it."
)
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"   {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)


def show(response: httpx.Response) -> dict:
    body = response.json()
    summary = {k: body[k] for k in ("model", "version") if k in body}
    preds = body.get("predictions") or []
    for p in preds:
        top = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in p.get("top_k", []))
        print(f"        {summary} -> label {p['label']!r} p={p['probability']:.3f} "
              f"abstain={p['abstain']} top: {top}")
    if not preds:
        print(f"        {json.dumps(body)[:300]}")
    return body


def prediction_ok(response: httpx.Response, expected: str | None, what: str) -> None:
    check(response.status_code == 200, f"{what}: HTTP {response.status_code}")
    if response.status_code != 200:
        print("       ", response.text[:500])
        return
    body = show(response)
    label = body["predictions"][0]["label"]
    if expected is None or not CHECK_LABELS:
        check(isinstance(label, str), f"{what}: answered {label!r} (label not checked)")
    else:
        check(label == expected, f"{what}: label {label!r}, expected {expected!r}")


def mnist_digit(index: int) -> tuple[bytes, str]:
    with gzip.open(DATA / "mnist/t10k-images-idx3-ubyte.gz") as f:
        pixels = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[index]
    with gzip.open(DATA / "mnist/t10k-labels-idx1-ubyte.gz") as f:
        label = int(np.frombuffer(f.read(), np.uint8, offset=8)[index])
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue(), str(label)


def wav_clip(path: Path) -> bytes:
    samples, rate = soundfile.read(path, dtype="float32")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


with httpx.Client(base_url=BASE, timeout=30) as client:
    r = client.get("/healthz")
    check(r.status_code == 200, f"GET /healthz: HTTP {r.status_code} {r.text}")
    r = client.get("/readyz")
    check(r.status_code == 200 and r.json()["ready"], f"GET /readyz: HTTP {r.status_code} {r.text}")
    r = client.get("/models")
    for m in r.json()["models"]:
        print(f"        model {m['name']} {m['version']} ({m['task']}): {m['status']}")
    for name in ("mnist", "imdb", "speech"):
        detail = client.get(f"/models/{name}").json()
        facts = detail["runtime"][detail["version"]]
        print(f"        {name} version {detail['version']} runs on {facts.get('providers')}")

    png, digit = mnist_digit(MNIST_INDEX)
    r = client.post(
        "/predict/image",
        files={"files": (f"mnist-test-{MNIST_INDEX}.png", png, "image/png")},
        data={"model": "mnist", "top_k": "3"},
    )
    prediction_ok(r, digit, f"POST /predict/image: MNIST test digit #{MNIST_INDEX} "
                  f"(a {digit}, {len(png)} B PNG)")

    r = client.post("/predict/sentiment", json={"text": REVIEW})
    prediction_ok(r, "positive", "POST /predict/sentiment: a glowing review")

    wav = wav_clip(DATA / CLIP)
    r = client.post(
        "/predict/speech", files={"files": (Path(CLIP).with_suffix(".wav").name, wav, "audio/wav")}
    )
    prediction_ok(r, "yes", f"POST /predict/speech: {CLIP} as a {len(wav)} B WAV")

    big = os.urandom(11 * 1024 * 1024)  # over the default SMS_MAX_BODY_BYTES (10 MiB)
    started = time.monotonic()
    try:
        r = client.post(
            "/predict/image", files={"files": ("big.png", big, "image/png")},
            data={"model": "mnist"},
        )
        code, text = r.status_code, r.text
    except httpx.HTTPError as exc:  # the server may answer before reading the whole body
        code, text = None, repr(exc)
    error = json.loads(text).get("error", {}) if code == 413 else {}
    check(code == 413 and error.get("code") is not None,
          f"POST /predict/image with an 11 MiB body: HTTP {code} "
          f"{error.get('code')!r} in {time.monotonic() - started:.2f} s")
    if code != 413:
        print("       ", text[:300])

    r = client.get("/readyz")
    check(r.status_code == 200, "still ready after the over-size request")

if failures:
    print(f"   {len(failures)} check(s) failed")
    sys.exit(1)
PY

say "inside the container"
"${COMPOSE[@]}" exec -T api python -c "
import importlib.util, os
uid = os.getuid()
print(f'   {\"ok  \" if uid else \"FAIL\"} runs as uid {uid}, PID 1 is', open('/proc/1/cmdline').read().replace(chr(0), ' ').strip())
missing = [m for m in ('torch', 'pytest', 'tests') if importlib.util.find_spec(m) is None]
print(f'   {\"ok  \" if len(missing) == 3 else \"FAIL\"} not importable: {missing}')
raise SystemExit(0 if uid and len(missing) == 3 else 1)
"

IMAGE=$(docker inspect -f '{{.Config.Image}}' "$CID")
BYTES=$(docker image inspect -f '{{.Size}}' "$IMAGE")
MB=$(awk "BEGIN {printf \"%.1f\", $BYTES / 1e6}")
say "image $IMAGE: $MB MB ($BYTES bytes; limit $MAX_IMAGE_MB MB)"
docker images "${IMAGE%%:*}" --format '{{.Repository}}:{{.Tag}}  {{.Size}}  {{.ID}}' | sed 's/^/   /'
awk "BEGIN {exit !($BYTES <= $MAX_IMAGE_MB * 1e6)}" || { echo "image over $MAX_IMAGE_MB MB"; exit 1; }
