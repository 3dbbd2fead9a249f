#!/usr/bin/env bash
# Installs the Debian packages the test suite uses, when they are missing:
# redis-server (the real server the end-to-end tests run), ffmpeg (ffprobe checks
# the program output, and the RTMP test server), docker-compose (static check of
# docker-compose.yml; no Docker engine is needed), chromium (the dashboard's browser test;
# Playwright drives this Debian build, it never downloads a browser).
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v ffprobe >/dev/null || missing+=(ffmpeg)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v chromium >/dev/null || missing+=(chromium)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
