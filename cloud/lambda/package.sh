#!/bin/sh
# Build the detector Lambda zip (build/lambda/detector.zip) with its dependencies for python3.12 x86_64.
# Called by `make package-lambda`; arguments are passed on (e.g. --output PATH, --no-dependencies).
set -eu
cd "$(dirname "$0")/../.."
exec "${PYTHON:-python3}" -m cloud.packaging "$@"
