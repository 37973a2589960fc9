#!/usr/bin/env bash
# `make demo`: the whole product on this machine, from the repository alone.
#
# Starts (through `checkin-kiosk run-scenario scenarios/demo.toml --ui`): a private pcscd with the vpcd
# driver and virtual cards, the ID card, arm and UWB gateway simulators, the platform as its own
# process on a SQLite file under var/demo/ (seeded with the demo batch, rooms, bands, invited experts
# and their reference photos), and the kiosk's real touch UI, which then shows three demo visitors:
# an invited expert who checks in, one who is not invited, and nobody in front of the camera.
# Faces: ../shared/data/faces when it is beside the repository, otherwise scikit-image's
# public-domain astronaut portrait. With no $DISPLAY it runs under a private Xvfb and writes a
# screenshot of every screen to demo-output/. Ctrl-C stops everything. See docs/demo.md.
# With a webcam and a display it runs the live demo instead (`checkin-kiosk demo-live`): the person
# at the camera is enrolled as a demo expert and checks in as themself.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

WORK="$PWD/var/demo"
SHOTS="$PWD/demo-output"
mkdir -p "$WORK"
rm -rf "$SHOTS" && mkdir -p "$SHOTS"

if [ -d ../shared/data/faces ]; then
  echo "demo: faces from ../shared/data/faces"
else
  echo "demo: ../shared/data/faces is absent: the expert's face is scikit-image's astronaut (public domain)"
fi
if [ -z "${DISPLAY:-}" ]; then
  echo "demo: no \$DISPLAY: the kiosk UI runs under a private Xvfb; screenshots go to $SHOTS"
else
  echo "demo: the kiosk UI opens on $DISPLAY; screenshots also go to $SHOTS"
fi
webcam=""
if python -c 'import cv2,sys; c=cv2.VideoCapture(0); ok=c.isOpened() and c.read()[0]; c.release(); sys.exit(0 if ok else 1)' 2>/dev/null; then
  webcam="0"
fi
if [ -n "$webcam" ] && [ -n "${DISPLAY:-}" ] && [ -z "${DEMO_SCRIPTED:-}" ]; then
  # A person is here with a webcam and a screen: enrol them live and let them check in as themself.
  echo "demo: webcam found: look at the camera and do what it asks (blink, or turn your head) to be enrolled as the demo expert 演示专家"
  echo "demo: then press 登记办理 on the kiosk; the window beside it plays the bank card and the wristband"
  echo "demo: (DEMO_SCRIPTED=1 make demo runs the scripted visitors instead)"
  exec checkin-kiosk demo-live --camera "$webcam" --work "$PWD/var/demo-live" --scenario scenarios/demo.toml
fi
if [ -n "$webcam" ]; then
  echo "demo: a webcam is present but no display: the live demo needs one; running the scripted visitors"
fi

# The operations console runs beside the platform on the same database; the demo's check-ins
# appear on its live board as they happen.
CONSOLE_LISTEN="${CONSOLE_LISTEN:-127.0.0.1:8080}"
export SCENARIO_CONSOLE_LISTEN="$CONSOLE_LISTEN"
batch=$(python -c 'import tomllib; print(tomllib.load(open("scenarios/demo.toml","rb")).get("world", {}).get("batch", "DEMO-2026-001"))')
echo "demo: operations console (运营控制台) at http://$CONSOLE_LISTEN/  sign in as: demo / demo-console-only"
echo "demo: live board of the demo batch: http://$CONSOLE_LISTEN/batches/$batch"

child=""
stop() {
  trap - INT TERM
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    echo "demo: stopping" >&2
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  exit 130
}
trap stop INT TERM

set +e
checkin-kiosk run-scenario scenarios/demo.toml --work "$WORK" --ui --screenshots "$SHOTS" &
child=$!
wait "$child"
status=$?
set -e
trap - INT TERM

count=$(find "$SHOTS" -name '*.png' | wc -l)
echo "demo: $count screenshots written to $SHOTS/ (one per screen, in order)"
echo "demo: the platform's database and logs are in $WORK/ (platform.db, platform.log, runner.log)"
exit "$status"
