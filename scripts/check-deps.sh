#!/usr/bin/env bash
# The crates' dependency rules (DESIGN.md, "Crates by trust boundary"), from `cargo tree`:
# a crate must not link what its side of the trust boundary has no use for.
set -euo pipefail
cd "$(dirname "$0")/.."

# crate | what its normal dependencies must not include (extended regex on crate names)
rules=(
  "blindsight-proto|^(rusqlite|libsqlite3-sys|axum|hyper|hyper-util|reqwest|tokio|memmap2|blindsight-he|blindsight-search|blindsight-embed|chacha20poly1305|argon2) "
)

failed=0
for rule in "${rules[@]}"; do
  crate=${rule%%|*}
  forbidden=${rule#*|}
  found=$(cargo tree -p "$crate" -e normal --prefix none 2>/dev/null | sort -u | grep -E "$forbidden" || true)
  if [ -n "$found" ]; then
    echo "check-deps: $crate must not depend on:" >&2
    echo "$found" >&2
    failed=1
  else
    echo "check-deps: $crate ok"
  fi
done
exit $failed
