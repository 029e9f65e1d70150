#!/usr/bin/env bash
# The crates' dependency rules (DESIGN.md, "Crates by trust boundary"), from `cargo tree`:
# a crate must not link what its side of the trust boundary has no use for, and the server
# never links the client.
set -euo pipefail
cd "$(dirname "$0")/.."

# crate | what its normal dependencies must not include (extended regex on `name vX` lines)
rules=(
  "blindsight-proto|^(rusqlite|libsqlite3-sys|axum|hyper|hyper-util|reqwest|tokio|memmap2|blindsight-he|blindsight-search|blindsight-embed|blindsight-os|chacha20poly1305|argon2) "
  "blindsight-pir|^(rusqlite|libsqlite3-sys|axum|hyper|reqwest|tokio|memmap2|blindsight-(search|embed|proto|client|server)|blindsight|chacha20poly1305|argon2) "
  "blindsight-os|^(rusqlite|libsqlite3-sys|axum|hyper|reqwest|tokio|memmap2|blindsight-(he|search|embed|proto|client|server)|blindsight) "
  "blindsight-client|^(axum|axum-core|rusqlite|libsqlite3-sys|memmap2|blindsight-server|blindsight) "
  "blindsight-server|^(blindsight-client|blindsight-embed|blindsight|reqwest|argon2|chacha20poly1305|tract-[a-z]+|image|png|jpeg-decoder|zune-jpeg|image-webp|gif) "
)
# crate | crate whose features it must not enable | forbidden feature (hyper's server side)
feature_rules=(
  "blindsight-client|hyper|server"
)

failed=0
for rule in "${rules[@]}"; do
  crate=${rule%%|*}
  forbidden=${rule#*|}
  found=$(cargo tree -p "$crate" -e normal --prefix none | sort -u | grep -E "$forbidden" || true)
  if [ -n "$found" ]; then
    echo "check-deps: $crate must not depend on:" >&2
    echo "$found" >&2
    failed=1
  else
    echo "check-deps: $crate ok"
  fi
done
for rule in "${feature_rules[@]}"; do
  IFS='|' read -r crate dep feature <<<"$rule"
  if ! cargo tree -p "$crate" -e normal --prefix none | grep -qE "^$dep v"; then
    echo "check-deps: $crate does not link $dep: ok"
    continue
  fi
  features=$(cargo tree -p "$crate" -e features -i "$dep" --prefix none | grep -oE "^$dep feature \"[a-z0-9_-]+\"" | sort -u)
  if grep -q "\"$feature\"" <<<"$features"; then
    echo "check-deps: $crate must not enable $dep's \"$feature\" feature:" >&2
    echo "$features" >&2
    failed=1
  else
    echo "check-deps: $crate links $dep without \"$feature\": ok"
  fi
done
exit $failed
