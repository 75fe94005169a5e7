#!/usr/bin/env bash
# The README's first command: install the dependencies (Debian 12), build,
# and run the demo (a real model on real images through both edge hosts).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
exec build/tools/twinedge-demo "$@"
