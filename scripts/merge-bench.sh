#!/usr/bin/env bash
# Cost of merging (BENCHMARKS.md, "Merging"), release build:
#   scripts/merge-bench.sh ckks|bfv embedding|pixels DIR
# DIR holds at least 1024 images; the first 1024 by name are ingested as four nightly
# folders of 256 (tiered merging runs after each), then one image is deleted and `compact`
# purges it and merges everything into one segment, re-encrypting the images from their
# sealed source vectors; then the sources are removed (as for images ingested before schema
# 6), another image is deleted, and `compact` rebuilds the segment from the files (the image
# model runs again for an embedding collection).
set -euo pipefail
scheme=$1 kind=$2 dir=$3
B=$(cd "$(dirname "$0")/.." && pwd)/target/release/blindsight
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export BLINDSIGHT_HOME=$work/home
DB=$BLINDSIGHT_HOME/gallery.db
mapfile -t files < <(ls "$dir" | sort | head -1024)
for k in 0 1 2 3; do
  mkdir -p "$work/night$k"
  for f in "${files[@]:$((k * 256)):256}"; do cp "$dir/$f" "$work/night$k/"; done
done
"$B" keygen --scheme "$scheme" >/dev/null
"$B" create --vectors "$kind" >/dev/null
for k in 0 1 2 3; do
  "$B" ingest "$work/night$k" | grep -E "added|merged"
done
first_live() {
  python3 -c "import sqlite3; print(sqlite3.connect('$DB').execute(
    'select id from images where deleted_at is null order by id limit 1').fetchone()[0])"
}
"$B" delete "$(first_live)" >/dev/null
echo "compact, from sealed sources:"
"$B" compact
python3 -c "import sqlite3; c = sqlite3.connect('$DB'); c.execute('update images set source = NULL'); c.commit()"
"$B" delete "$(first_live)" >/dev/null
echo "compact, from the files:"
"$B" compact
