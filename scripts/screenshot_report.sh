#!/usr/bin/env bash
# Renders a neuronpath HTML report to a PNG with headless Chromium (Debian: apt-get install chromium).
# Usage: scripts/screenshot_report.sh REPORT.html OUT.png [WIDTH [HEIGHT]]
# Network stays off: the report must render from the file alone (no CDN, no web fonts).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 REPORT.html OUT.png [WIDTH [HEIGHT]]" >&2
    exit 2
fi
report=$(realpath "$1")
out=$(realpath -m "$2")
width=${3:-1400}
height=${4:-3000}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    echo "no chromium found (Debian: apt-get install -y chromium)" >&2
    exit 1
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" \
    --window-size="$width,$height" --screenshot="$out" "file://$report" 2>/dev/null
test -s "$out" && echo "$out"
