#!/usr/bin/env bash
# Peak RSS of `volley fetch` against a tiny fixed response, for inputs of N
# distinct URLs (default 1,000,000): memory must stay flat as N grows, since
# the frontier lives in SQLite, not in RAM.
#
#   bench/memory.sh [N...]        e.g. bench/memory.sh 10000 100000 1000000
#
# Environment: PORT (default 18766), CONCURRENCY (default 64).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/lib/common.sh
source "$root/scripts/lib/common.sh"

port=${PORT:-18766}
concurrency=${CONCURRENCY:-64}
work="$root/target/bench-memory"
ensure_packages nginx-light time curl bc sqlite3
build_volley "$root"
volley=$VOLLEY
rm -rf "$work" && mkdir -p "$work"
nginx_start "$work" "$work/nginx" "$port"
trap nginx_stop EXIT

[ $# -eq 0 ] && set -- 1000000
printf '%10s  %10s  %12s  %12s  %s\n' inputs wall_s requests/s peak_rss_MB outcomes
for n in "$@"; do
    urls="$work/urls-$n.txt"
    seq 1 "$n" | sed "s|^|http://127.0.0.1:$port/tiny?i=|" > "$urls"
    rm -f "$work"/volley.db*
    /usr/bin/time -v -o "$work/time-$n.txt" "$volley" --db "$work/volley.db" fetch "$urls" \
        --quiet --concurrency "$concurrency" --per-host "$concurrency" 2> "$work/summary-$n.txt"
    rss_kb=$(awk -F': ' '/Maximum resident/ {print $2}' "$work/time-$n.txt")
    read -r wall rate <<< "$(summary_figures "$work/summary-$n.txt")"
    outcomes=$(sqlite3 "$work/volley.db" "SELECT class || ' ' || count(*) FROM outcomes GROUP BY class" 2>/dev/null | paste -sd, - || echo "?")
    printf '%10s  %10s  %12s  %12.1f  %s\n' "$n" "$wall" "$rate" "$(echo "$rss_kb / 1024" | bc -l)" "$outcomes"
done
