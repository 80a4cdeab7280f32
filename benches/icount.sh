#!/usr/bin/env bash
# Instruction counts of the hot paths under callgrind, per event, against
# the committed baseline (benches/icount-baseline.txt). Counts repeat for the
# same binary and input whatever else the machine does, so CI can gate on
# them where wall-clock time would only measure the neighbours.
#   benches/icount.sh            measure and compare; exit 1 if any workload
#                                costs more than ICOUNT_THRESHOLD_PERCENT (5) over its baseline
#   benches/icount.sh --update   measure and rewrite the baseline
# The baseline belongs to one toolchain (Cargo.lock, rustc) and one CPU
# kind: update it, in its own commit, when either changes.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=benches/icount-baseline.txt
threshold="${ICOUNT_THRESHOLD_PERCENT:-5}"
update=false
[ "${1:-}" = "--update" ] && update=true

command -v valgrind >/dev/null || { echo "icount: valgrind is not installed" >&2; exit 2; }
cargo build -q --release -p z4j-benches --example icount
bin="$PWD/target/release/examples/icount"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Total instructions callgrind collected running "$@".
ir() {
    if ! valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$@" \
        >"$work/out.log" 2>"$work/vg.log"; then
        cat "$work/out.log" "$work/vg.log" >&2
        echo "icount: $* failed under callgrind" >&2
        exit 1
    fi
    awk '/^summary:/ { print $2; found = 1; exit } END { if (!found) exit 1 }' "$work/cg.out"
}

# name, events per frame, frames
workloads=(
    "verify-b1 1 2000"
    "verify-b50 50 40"
    "verify-b500 500 4"
    "ingest-b1 1 300"
    "ingest-b50 50 12"
    "ingest-b500 500 4"
)

# The ingest process's own start and stop, measured with no frames.
"$bin" prepare "$work/empty" 1 0 >/dev/null
ingest_start="$(ir "$bin" ingest "$work/empty")"

declare -A now
for w in "${workloads[@]}"; do
    read -r name per frames <<<"$w"
    events=$((per * frames))
    case "$name" in
        verify-*) total="$(ir --toggle-collect='*verify_frames*' "$bin" verify "$per" "$frames")"
                  net="$total" ;;
        ingest-*) "$bin" prepare "$work/$name" "$per" "$frames" >/dev/null
                  total="$(ir "$bin" ingest "$work/$name")"
                  net=$((total - ingest_start)) ;;
    esac
    now[$name]=$((net / events))
done

if $update; then
    {
        echo "# Instructions per event (callgrind Ir), written by benches/icount.sh --update."
        echo "# rustc: $(rustc --version)"
        echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
        for w in "${workloads[@]}"; do
            read -r name _ <<<"$w"
            echo "$name ${now[$name]}"
        done
    } >"$baseline"
    echo "icount: baseline written to $baseline"
fi

failed=0
printf '%-12s %14s %14s %9s\n' workload baseline now change
for w in "${workloads[@]}"; do
    read -r name _ <<<"$w"
    base="$(awk -v n="$name" '$1 == n { print $2 }' "$baseline")"
    if [ -z "$base" ]; then
        printf '%-12s %14s %14s %9s\n' "$name" "-" "${now[$name]}" "no baseline"
        failed=1
        continue
    fi
    change="$(awk -v b="$base" -v n="${now[$name]}" 'BEGIN { printf "%+.2f", (n - b) * 100 / b }')"
    verdict=""
    if awk -v c="$change" -v t="$threshold" 'BEGIN { exit !(c > t) }'; then
        verdict="  REGRESSION (over +$threshold %)"
        failed=1
    elif awk -v c="$change" -v t="$threshold" 'BEGIN { exit !(c < -t) }'; then
        verdict="  faster: run benches/icount.sh --update"
    fi
    printf '%-12s %14s %14s %8s%%%s\n' "$name" "$base" "${now[$name]}" "$change" "$verdict"
done
if [ "$failed" -ne 0 ]; then
    echo "icount: instruction counts regressed (threshold +$threshold % per event)"
    exit 1
fi
echo "icount: every workload within +$threshold % of its baseline"
