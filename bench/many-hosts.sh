#!/usr/bin/env bash
# W7 alone, for volley: N URLs each on its own loopback address (so N hosts,
# each needing its own connection) against one nginx answering on every
# address of 127.0.0.0/8. Reports wall time, requests/s, peak RSS and the
# most sockets volley held open at once (sampled from /proc every 20 ms).
#
#   bench/many-hosts.sh [N...]      e.g. bench/many-hosts.sh 30000 200000 1000000
#
# Environment: PORT (default 18783), CONCURRENCY (default 64).
# bench/run.sh --only W7 runs the same workload against aiohttp and curl.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/lib/common.sh
source "$root/scripts/lib/common.sh"

port=${PORT:-18783}
concurrency=${CONCURRENCY:-64}
work="$root/target/bench-hosts"
ensure_packages nginx-light time curl sqlite3
build_volley "$root"
volley=$VOLLEY
rm -rf "$work" && mkdir -p "$work"
# Listening on the wildcard address reaches every 127.x.y.z; only loopback
# addresses are ever asked.
NGINX_LISTEN="$port" nginx_start "$work" "$work/nginx" "$port"
trap nginx_stop EXIT

[ $# -eq 0 ] && set -- 30000
printf '%10s  %8s  %12s  %12s  %12s  %s\n' hosts wall_s requests/s peak_rss_MB peak_sockets outcomes
for n in "$@"; do
    urls="$work/urls-$n.txt"
    python3 "$root/bench/loopback_hosts.py" "$n" "$port" > "$urls"
    rm -f "$work"/volley.db*
    /usr/bin/time -v -o "$work/time-$n.txt" "$volley" --db "$work/volley.db" fetch "$urls" \
        --quiet --concurrency "$concurrency" 2> "$work/summary-$n.txt" &
    pid=$!
    peak=$(python3 "$root/bench/peak_sockets.py" "$pid")
    wait "$pid"
    rss_kb=$(awk -F': ' '/Maximum resident/ {print $2}' "$work/time-$n.txt")
    read -r wall rate <<< "$(summary_figures "$work/summary-$n.txt")"
    outcomes=$(sqlite3 "$work/volley.db" "SELECT class || ' ' || count(*) FROM outcomes GROUP BY class" | paste -sd, -)
    printf '%10s  %8s  %12s  %12.1f  %12s  %s\n' "$n" "$wall" "$rate" "$(echo "$rss_kb / 1024" | bc -l)" "$peak" "$outcomes"
done
