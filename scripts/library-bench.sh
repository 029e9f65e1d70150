#!/usr/bin/env bash
# Ingests a photo library through a `serve` process on loopback (so that the client's memory
# is measured alone) and prints one line per run: files, images added, seconds, photos per
# second, the client's peak RSS (GNU time's maximum resident set size), and the same for an
# unchanged re-ingest.
#
# Usage: scripts/library-bench.sh LIBRARY [BLINDSIGHT_BINARY] [create options…]
#   e.g. cargo build --release && scripts/library-bench.sh /tmp/library
# The library: `cargo run --release -p blindsight --example make_library -- PHOTOS LIB N LARGE`.
set -euo pipefail
lib=${1:?usage: $0 LIBRARY [BINARY] [create options]}
bin=${2:-target/release/blindsight}
shift $(( $# >= 2 ? 2 : 1 ))
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
export BLINDSIGHT_HOME="$work/home"
"$bin" serve --db "$work/server.db" --listen 127.0.0.1:0 >"$work/serve.log" 2>/dev/null &
server=$!
for _ in $(seq 100); do
  grep -q "admin token" "$work/serve.log" 2>/dev/null && break
  sleep 0.1
done
url=$(grep -o 'http://[0-9.:]*' "$work/serve.log" | head -1)
"$bin" create --server "$url" --admin-token-file "$work/server.db.admin-token" "$@" >/dev/null 2>&1

files=$(find "$lib" -type f | wc -l)
bytes=$(du -sb "$lib" | cut -f1)
run() {
  local label=$1
  /usr/bin/time -f "%e %M %P" -o "$work/time" "$bin" ingest "$lib" --server "$url" --json \
    >"$work/out.json" 2>"$work/err" || true
  read -r seconds rss_kb cpu < <(tail -1 "$work/time")
  python3 - "$label" "$files" "$bytes" "$seconds" "$rss_kb" "$cpu" "$work/out.json" <<'PY'
import json, sys
label, files, size, seconds, rss_kb, cpu, out = sys.argv[1:]
r = json.load(open(out))
s = float(seconds)
print(json.dumps({
    "run": label, "files": int(files), "library_bytes": int(size),
    "added": r["added"], "present": r["duplicates"], "failed": len(r["failed"]),
    "left_out": len(r["left_out"]), "seconds": s,
    "photos_per_s": round(r["added"] / s, 1) if r["added"] else None,
    "files_per_s": round(int(files) / s, 1),
    "client_peak_rss_mb": round(int(rss_kb) / 1024, 1), "client_cpu": cpu,
}))
PY
}
run first
run unchanged
