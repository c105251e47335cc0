#!/usr/bin/env bash
# W13b: memory of a crawl as its frontier grows. nginx on loopback serves a
# generated site, a tree of fan-out 10: page /p/N links to /p/N0 … /p/N9
# (and back to /p/). volley crawls it from /p/ to depth D (--max-depth D),
# which finds 1 + 10 + … + 10^D pages; peak RSS is measured at each depth,
# so its growth with the number of discovered URLs shows.
#
#   bench/crawl-flat.sh [DEPTHS]     (default "4 5 6": 11,111 to 1,111,111 pages)
#
# Environment: PORT (default 18769), CONCURRENCY (default 64).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/lib/common.sh
source "$root/scripts/lib/common.sh"

depths=${1:-4 5 6}
port=${PORT:-18769}
concurrency=${CONCURRENCY:-64}
work="$root/target/bench-crawl-flat"
ensure_packages nginx-light time curl sqlite3
build_volley "$root"
volley=$VOLLEY
rm -rf "$work" && mkdir -p "$work/www"
links=""
# nginx names regex captures $1 to $9, so "$10" is capture 1 and a 0.
for d in 0 1 2 3 4 5 6 7 8 9; do links="$links<a href=\"/p/\$1$d\">$d</a> "; done
NGINX_EXTRA="location ~ ^/p/([0-9]*)\$ { default_type text/html; return 200 '<html><body>$links<a href=\"/p/\">home</a></body></html>'; }"
export NGINX_EXTRA
nginx_start "$work/www" "$work/nginx" "$port"
trap nginx_stop EXIT
echo "http://127.0.0.1:$port/p/" > "$work/seed.txt"
echo "| max depth | pages found | wall s | pages/s | peak RSS MB | database MB |"
echo "|---|---|---|---|---|---|"
for depth in $depths; do
    db="$work/d$depth.db"
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$volley" --db "$db" fetch "$work/seed.txt" --follow \
        --max-depth "$depth" --concurrency "$concurrency" --per-host "$concurrency" --quiet
    read -r wall rss < "$work/time.txt"
    pages=$(sqlite3 "$db" "SELECT count(*) FROM outcomes WHERE class = 'ok'")
    size=$(du -m "$db" | cut -f1)
    python3 -c "print(f'| $depth | {$pages:,} | {$wall:.1f} | {$pages / $wall:,.0f} | {$rss / 1024:.0f} | $size |')"
done
