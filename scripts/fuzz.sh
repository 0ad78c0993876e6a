#!/usr/bin/env bash
# Bounded fuzz run of the CDR decoders (sinew-msgs/fuzz). Usage: scripts/fuzz.sh [SECONDS]
# cargo-fuzz needs nightly features; on a stable toolchain RUSTC_BOOTSTRAP=1 enables them.
set -euo pipefail
secs=${1:-120}
cd "$(dirname "$0")/../crates/sinew-msgs"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p fuzz/corpus/decode
# Seed the corpus with the reference fixtures' payloads.
python3 - <<'PY'
import json, pathlib
d = json.load(open("tests/fixtures/cdr_fixtures.json"))
for c in d["cases"]:
    pathlib.Path("fuzz/corpus/decode", c["name"]).write_bytes(bytes.fromhex(c["cdr_hex"]))
PY
RUSTC_BOOTSTRAP=1 cargo fuzz run decode fuzz/corpus/decode -- -max_total_time="$secs" -rss_limit_mb=512 -malloc_limit_mb=64
