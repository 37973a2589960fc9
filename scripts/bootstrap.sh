#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian 12 machine: the Debian packages (pcscd with the
# vpcd driver, PostgreSQL, Xvfb, fonts, espeak-ng, the build tools pyscard needs), uv in a private
# tools venv, and .venv from uv.lock. Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-tk            # interpreter for a machine without one; Tk for the kiosk UI
  gcc python3-dev swig libpcsclite-dev       # pyscard builds from source (C extension)
  pcscd vsmartcard-vpcd pcsc-tools           # real PC/SC daemon + the vpcd virtual reader driver
  postgresql                                 # production database, tested for real
  haproxy curl                               # the replicas' load balancer (scripts/cluster.sh) and its checks
  xvfb xdotool imagemagick fonts-noto-cjk    # kiosk UI without a display, driven and photographed
  chromium chromium-driver                   # operations console tests in a real headless browser
  espeak-ng alsa-utils                       # spoken prompts (pyttsx3 drives espeak-ng and plays with aplay)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# uv lives in its own small venv so that `uv sync` never removes it from .venv.
UV_VERSION=0.13.9
if [ ! -x .tools/bin/uv ] || ! .tools/bin/uv --version | grep -q "$UV_VERSION"; then
  echo "bootstrap: installing uv $UV_VERSION into .tools/"
  python3 -m venv .tools
  .tools/bin/pip install -q "uv==$UV_VERSION"
fi

# Prefer a Python 3.11 already on the machine (Debian 12's, or pyenv's); never download one.
if [ ! -f .venv/.synced ] || [ uv.lock -nt .venv/.synced ] || [ pyproject.toml -nt .venv/.synced ]; then
  echo "bootstrap: syncing .venv from uv.lock"
  # --compile-bytecode: every CLI start (organiser imports, simulators) skips compiling the
  # dependencies; without it an import of SQLAlchemy alone costs over a second when the
  # environment forbids writing bytecode at run time.
  UV_PYTHON_DOWNLOADS=never .tools/bin/uv sync --frozen --python 3.11 --quiet --compile-bytecode
  touch .venv/.synced
fi
