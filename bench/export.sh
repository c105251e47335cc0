#!/usr/bin/env bash
# Exporting N outcomes (default 1,000,000 tiny responses from nginx on
# loopback): JSON Lines, CSV and Parquet, each timed with its peak RSS and
# output size, rounds interleaved, medians printed.
#
#   bench/export.sh [N]      (ROUNDS=3)
#
# Environment: ROUNDS, PORT (default 18773), CONCURRENCY (default 64).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/lib/common.sh
source "$root/scripts/lib/common.sh"
n=${1:-1000000}
rounds=${ROUNDS:-3}
port=${PORT:-18773}
concurrency=${CONCURRENCY:-64}
work="$root/target/bench-export"
ensure_packages nginx-light time curl bc
build_volley "$root"
volley=$VOLLEY
rm -rf "$work" && mkdir -p "$work"
nginx_start "$work" "$work/nginx" "$port"
trap nginx_stop EXIT
seq 1 "$n" | sed "s|^|http://127.0.0.1:$port/tiny?i=|" > "$work/urls.txt"
"$volley" --db "$work/volley.db" fetch "$work/urls.txt" --quiet \
    --concurrency "$concurrency" --per-host "$concurrency" 2> /dev/null
echo "export of $n outcomes, $rounds rounds" >&2
for round in $(seq 1 "$rounds"); do
    for format in jsonl csv parquet; do
        /usr/bin/time -f '%e %M' -o "$work/time.txt" \
            "$volley" --db "$work/volley.db" export --format "$format" > "$work/out.$format"
        read -r wall rss < "$work/time.txt"
        printf '%s\t%s\t%s\n' "$wall" "$rss" "$(stat -c %s "$work/out.$format")" >> "$work/$format.tsv"
    done
done
printf '| format | wall s | rows/s | peak RSS MB | bytes |\n|---|---|---|---|---|\n'
for format in jsonl csv parquet; do
    wall=$(cut -f1 "$work/$format.tsv" | median)
    rss=$(cut -f2 "$work/$format.tsv" | median)
    size=$(cut -f3 "$work/$format.tsv" | median)
    printf '| %s | %.2f | %.0f | %.1f | %.0f |\n' "$format" "$wall" "$(echo "$n / $wall" | bc -l)" \
        "$(echo "$rss / 1024" | bc -l)" "$size"
done
