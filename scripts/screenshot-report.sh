#!/usr/bin/env bash
# Renders an HTML report of blindsight (`search --report`, or the page `demo` writes) in
# headless Chromium and saves a screenshot, to check that the page shows the query and the
# decrypted matches. Installs Debian's `chromium` package if it is missing (needs root and
# the Debian archive); the page itself is self-contained, so Chromium runs with no network.
#
# Usage: scripts/screenshot-report.sh REPORT.html OUT.png [WIDTH HEIGHT]
set -euo pipefail
page=${1:?usage: $0 REPORT.html OUT.png [WIDTH HEIGHT]}
out=${2:?usage: $0 REPORT.html OUT.png [WIDTH HEIGHT]}
width=${3:-1400}
height=${4:-2400}
[ -f "$page" ] || { echo "$page: no such file" >&2; exit 1; }
if ! command -v chromium >/dev/null; then
  echo "installing Debian's chromium" >&2
  apt-get install -y -q chromium >/dev/null
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
abs=$(cd "$(dirname "$page")" && pwd)/$(basename "$page")
mkdir -p "$(dirname "$out")"
out_abs=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
# the flags of a closed machine: no sandbox as root, no GPU, no background connections
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size="$width,$height" \
  --screenshot="$out_abs" "file://$abs" 2>/dev/null
[ -s "$out_abs" ] || { echo "chromium wrote no screenshot" >&2; exit 1; }
echo "$out_abs"
