#!/usr/bin/env bash
# Fuzz run: every target of a project for a fixed budget, seeded from the
# committed seeds (vectors, and the minimised corpora of earlier campaigns).
#   fuzz/smoke.sh                            protocol targets, 20 s each (CI)
#   fuzz/smoke.sh brain                      the brain's targets (builds the brain: ~12 min)
#   SECONDS_PER_TARGET=3600 fuzz/smoke.sh    a long campaign (see the README)
set -euo pipefail
cd "$(dirname "$0")"
budget="${SECONDS_PER_TARGET:-20}"
export RUSTC_BOOTSTRAP=1 # cargo-fuzz needs nightly flags; stable accepts them with this
case "${1:-protocol}" in
    protocol) targets=(frame_verify canonical_roundtrip structured_frames); project=. ;;
    # One target directory for both projects: the brain's build reuses the
    # dependencies the protocol build compiled.
    brain) targets=(request_headers settings_values http_requests); project=brain ;;
    *) echo "usage: $0 [protocol|brain]" >&2; exit 2 ;;
esac
target_dir="$PWD/target"
cd "$project"
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    mkdir -p "$corpus"
    seeds=()
    [ -d "seeds/$target" ] && seeds=("seeds/$target")
    echo "fuzz: $target for ${budget}s"
    log="$(mktemp)"
    if ! cargo fuzz run --fuzz-dir . --target-dir "$target_dir" "$target" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$budget" -max_len=65536 -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target FAILED"
        exit 1
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs" "$log" || true
    echo "fuzz: $target corpus $(find "$corpus" -type f | wc -l) files"
    rm -f "$log"
done
echo "fuzz: all targets ran clean"
