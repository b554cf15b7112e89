#!/usr/bin/env bash
# Create or refresh the project environment: Debian packages, .venv, editable bmx.
# Idempotent and cheap when nothing changed (a stamp keyed on the inputs).
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PKGS=(libopenblas-dev libflatbuffers-dev flatbuffers-compiler libgtest-dev dataset-fashion-mnist graphviz)
missing=()
for p in "${DEB_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

PY=${PYTHON:-python3}
stamp=.venv/.bmx-env-stamp
key=$(cat requirements.txt setup.py pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
echo "[setup] installing Python packages into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-build-isolation -e .
echo "$key" > "$stamp"
