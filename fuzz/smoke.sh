#!/usr/bin/env bash
# Fuzz smoke run: every target for a short budget, seeded from the vectors.
# A long campaign: SECONDS_PER_TARGET=3600 fuzz/smoke.sh (or see the README).
set -euo pipefail
cd "$(dirname "$0")"
budget="${SECONDS_PER_TARGET:-20}"
export RUSTC_BOOTSTRAP=1 # cargo-fuzz needs nightly flags; stable accepts them with this
for target in frame_verify canonical_roundtrip structured_frames; do
    corpus="corpus/$target"
    mkdir -p "$corpus"
    seeds=()
    [ -d "seeds/$target" ] && seeds=("seeds/$target")
    echo "fuzz: $target for ${budget}s"
    log="$(mktemp)"
    if ! cargo fuzz run "$target" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$budget" -max_len=65536 -rss_limit_mb=2048 -timeout=5 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target FAILED"
        exit 1
    fi
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$log" || true
    rm -f "$log"
done
echo "fuzz: all targets ran clean"
