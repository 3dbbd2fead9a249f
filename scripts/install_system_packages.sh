#!/usr/bin/env bash
# Installs the Debian packages the test suite uses, when they are missing:
# redis-server (the real server the end-to-end tests run), ffmpeg (ffprobe checks
# the program output, and the RTMP test server), docker-compose (static check of
# docker-compose.yml; no Docker engine is needed), chromium (the dashboard's browser test;
# Playwright drives this Debian build, it never downloads a browser), GStreamer's RTSP server with its
# Python bindings and codec plugins (the real RTSP cameras of the tests, benches and `demo --rtsp`).
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v ffprobe >/dev/null || missing+=(ffmpeg)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v chromium >/dev/null || missing+=(chromium)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null \
  && gst-inspect-1.0 rtph265pay >/dev/null 2>&1 && gst-inspect-1.0 h265parse >/dev/null 2>&1 \
  || missing+=(python3-gst-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-tools)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
