#!/usr/bin/env bash
# The pictures of README's "A wake you can see": a real Open WebUI in Debian's chromium, in
# front of the proxy and a backend that sleeps until its magic packet (loopback only). Run as
# root on Debian/Ubuntu after ./run-tests (its .venv). open-webui brings several GB of ML
# packages, so it lives in a venv of its own, made once: too heavy for CI.
set -euo pipefail
cd "$(dirname "$0")/.."
OWUI=${OWUI_VENV:-/var/tmp/sleepyllama-openwebui}
[ -x .venv/bin/python ] || { echo "run ./run-tests first (it makes .venv)" >&2; exit 1; }
command -v chromium >/dev/null || { apt-get update -qq; apt-get install -y -qq chromium; }
if [ ! -x "$OWUI/bin/open-webui" ]; then
    python3 -m venv "$OWUI"
    "$OWUI/bin/pip" install -q open-webui playwright  # playwright drives Debian's chromium
fi
exec "$OWUI/bin/python" tools/openwebui_screenshot.py --python .venv/bin/python \
    --open-webui "$OWUI/bin/open-webui" "$@"
