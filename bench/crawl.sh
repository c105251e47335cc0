#!/usr/bin/env bash
# W13: crawl the Rust documentation from its root index.html, served by
# nginx on loopback, with volley (--follow), wget -r (one connection),
# wget2 -r (--max-threads = the concurrency) and a Scrapy CrawlSpider, in
# the same run: pages found, wall time, pages/s, CPU and peak RSS, medians
# of ROUNDS; then the set differences between volley's pages and wget's
# files, by kind.
#
#   bench/crawl.sh
#
# Environment: ROUNDS (default 3), CONCURRENCY (default 64), PORT (default
# 18768), PEERS (default "volley wget2 scrapy wget"; wget takes ~90 s a
# round). Output: a Markdown table for bench/RESULTS.md on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/lib/common.sh
source "$root/scripts/lib/common.sh"

rounds=${ROUNDS:-3}
concurrency=${CONCURRENCY:-64}
port=${PORT:-18768}
peers=${PEERS:-volley wget2 scrapy wget}
work="$root/target/bench-crawl"
docs="$(rustc --print sysroot)/share/doc/rust/html"
[ -d "$docs" ] || { echo "no Rust documentation at $docs; rustup component add rust-docs" >&2; exit 1; }
ensure_packages nginx-light time curl sqlite3 wget wget2 python3-venv
build_volley "$root"
volley=$VOLLEY
venv="$root/target/bench-venv"
if [[ " $peers " == *" scrapy "* ]] && [ ! -x "$venv/bin/scrapy" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q scrapy
fi
rm -rf "$work" && mkdir -p "$work"
nginx_start "$docs" "$work/nginx" "$port"
trap nginx_stop EXIT
seed="http://127.0.0.1:$port/index.html"
echo "$seed" > "$work/seed.txt"

# run NAME ROUND CMD...: runs CMD under /usr/bin/time, appends
# "NAME WALL_S USER_S SYS_S RSS_KB" to $work/times.
run() {
    local name=$1 round=$2
    shift 2
    /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" "$@" > "$work/$name-$round.log" 2>&1 || true
    echo "$name $(tail -1 "$work/time.txt")" >> "$work/times"
}

for round in $(seq 1 "$rounds"); do
    for peer in $peers; do
        out="$work/$peer-$round"
        case $peer in
        volley)
            run volley "$round" "$volley" --db "$out.db" fetch "$work/seed.txt" --follow \
                --concurrency "$concurrency" --per-host "$concurrency" --quiet
            sqlite3 "$out.db" "SELECT t.url FROM outcomes o JOIN tasks t ON t.id = o.task_id WHERE o.class = 'ok'" \
                | sort > "$out.urls"
            sqlite3 "$out.db" "SELECT count(*) FROM links" > "$out.edges"
            ;;
        wget)
            run wget "$round" wget --recursive --no-parent --level=inf -nv -P "$out" "$seed"
            (cd "$out"/127.0.0.1* && find . -type f -printf "http://127.0.0.1:$port/%P\n") | sort > "$out.urls"
            ;;
        wget2)
            run wget2 "$round" wget2 --recursive --no-parent --level=0 --max-threads="$concurrency" \
                --no-robots -q -P "$out" "$seed"
            (cd "$out"/127.0.0.1* && find . -type f -printf "http://127.0.0.1:$port/%P\n") | sort > "$out.urls"
            ;;
        scrapy)
            run scrapy "$round" "$venv/bin/scrapy" runspider "$root/bench/peers/scrapy_crawl.py" \
                -a "start=$seed" -a "out=$out.urls.raw" -s "CONCURRENT_REQUESTS=$concurrency" \
                -s "CONCURRENT_REQUESTS_PER_DOMAIN=$concurrency"
            sort -u "$out.urls.raw" > "$out.urls"
            ;;
        esac
        echo "round $round $peer: $(wc -l < "$out.urls") pages, $(tail -1 "$work/times")" >&2
    done
done

python3 - "$work" "$rounds" "$peers" "$concurrency" <<'PY'
import statistics, sys
from pathlib import Path
from urllib.parse import unquote
work, rounds, peers, conc = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
times = {}
for line in (work / "times").read_text().splitlines():
    name, wall, user, sys_, rss = line.split()
    times.setdefault(name, []).append((float(wall), float(user) + float(sys_), int(rss) / 1024))
urls = lambda name: (work / name).read_text().splitlines()
pages = {p: [len(urls(f"{p}-{r}.urls")) for r in range(1, rounds + 1)] for p in peers}
med = lambda xs: statistics.median(xs)
print(f"## W13: crawl of the Rust docs from index.html, concurrency {conc} (medians of {rounds})\n")
print("| tool | pages found | wall s | pages/s | CPU ms/page | peak RSS MB |")
print("|---|---|---|---|---|---|")
rate = {}
for p in peers:
    t = times[p]
    n = med(pages[p])
    wall, cpu, rss = med([x[0] for x in t]), med([x[1] for x in t]), med([x[2] for x in t])
    rate[p] = n / wall
    print(f"| {p} | {n:,.0f} | {wall:.2f} | {n / wall:,.0f} | {cpu * 1000 / n:.3f} | {rss:.0f} |")
if "volley" in peers:
    edges = med([int((work / f"volley-{r}.edges").read_text()) for r in range(1, rounds + 1)])
    print(f"\nvolley recorded every page's outcome and {edges:,.0f} link edges (`links`) in SQLite.")
    for p in peers:
        if p != "volley":
            print(f"volley vs {p}: {rate['volley'] / rate[p]:.2f}x pages/s")
    for peer in ("wget", "wget2"):
        if peer not in peers:
            continue
        norm = lambda u: unquote(u)
        v = {norm(u) for u in urls("volley-1.urls")}
        w = {norm(u) for u in urls(f"{peer}-1.urls")}
        kind = lambda u: ("html" if u.endswith((".html", "/")) else u.rsplit(".", 1)[-1] if "." in u.rsplit("/", 1)[-1] else "none")
        print(f"\nSet differences, volley vs {peer} (round 1): {len(v & w):,} in both, "
              f"{len(v - w):,} only volley, {len(w - v):,} only {peer}.")
        for label, diff in ((f"only {peer}", w - v), ("only volley", v - w)):
            by = {}
            for u in diff:
                by.setdefault(kind(u), []).append(u)
            for k, us in sorted(by.items(), key=lambda kv: -len(kv[1]))[:8]:
                print(f"- {label}, .{k}: {len(us):,} (e.g. {sorted(us)[0]})")
PY
