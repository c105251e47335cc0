#!/usr/bin/env bash
# A paginated JSON API walked to the end with `volley fetch --paginate`:
# nginx on loopback serves N static pages (default 5,000) of 10 items, each
# with a "next" link. Then the same walk is killed with SIGKILL mid-chain and
# resumed, and the script checks every page and item was recorded once.
#
#   bench/paginate.sh [PAGES]
#
# Environment: PORT (default 18767).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/lib/common.sh
source "$root/scripts/lib/common.sh"

pages=${1:-5000}
port=${PORT:-18767}
work="$root/target/bench-paginate"
ensure_packages nginx-light time curl sqlite3
build_volley "$root"
volley=$VOLLEY
rm -rf "$work" && mkdir -p "$work/www/api"
python3 - "$work/www/api" "$pages" <<'PY'
import json, sys
out, pages = sys.argv[1], int(sys.argv[2])
for n in range(1, pages + 1):
    body = {
        "items": [{"id": (n - 1) * 10 + i, "page": n, "name": f"item {(n - 1) * 10 + i}"} for i in range(10)],
        "next": f"/api/page-{n + 1}.json" if n < pages else None,
    }
    with open(f"{out}/page-{n}.json", "w") as f:
        json.dump(body, f)
PY
nginx_start "$work/www" "$work/nginx" "$port"
trap nginx_stop EXIT
echo "http://127.0.0.1:$port/api/page-1.json" > "$work/start.txt"
walk=(fetch "$work/start.txt" --paginate json-next=/next --items /items --quiet)

check() { # DB: prints pages, items, distinct items, pages with two outcomes
    sqlite3 "$1" "SELECT (SELECT count(*) FROM outcomes), (SELECT count(*) FROM items), \
        (SELECT count(DISTINCT json_extract(item, '\$.id')) FROM items), \
        (SELECT count(*) FROM (SELECT url FROM tasks GROUP BY url HAVING count(*) > 1))" | tr '|' ' '
}

echo "== full walk of $pages pages"
"$volley" --db "$work/full.db" "${walk[@]}" 2> "$work/full.txt"
grep -E "this run|latency" "$work/full.txt"
read -r n items distinct twice <<< "$(check "$work/full.db")"
echo "pages $n, items $items ($distinct distinct), URLs with two tasks: $twice"

echo "== the same walk, killed with SIGKILL after 1 s, then resumed"
"$volley" --db "$work/resumed.db" "${walk[@]}" 2> /dev/null &
pid=$!
sleep 1
kill -9 "$pid" 2> /dev/null || true
wait "$pid" 2> /dev/null || true
read -r before _ _ _ <<< "$(check "$work/resumed.db")"
echo "pages recorded before the kill: $before"
"$volley" --db "$work/resumed.db" "${walk[@]}" 2> "$work/resumed.txt"
grep -E "this run" "$work/resumed.txt"
read -r n items distinct twice <<< "$(check "$work/resumed.db")"
echo "after resume: pages $n, items $items ($distinct distinct), URLs with two tasks: $twice"
[ "$n" = "$pages" ] && [ "$items" = "$((pages * 10))" ] && [ "$distinct" = "$items" ] && [ "$twice" = 0 ]
echo "ok: every page and every item recorded exactly once"
