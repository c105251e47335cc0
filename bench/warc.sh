#!/usr/bin/env bash
# W12: the README's main job (every file of the Rust docs, via nginx on
# loopback) archived with --warc, against the same job without it and
# against wget 1.21's --warc-file on the same list; then a --refresh of the
# archived job, which should write only revisit records. Rounds are
# interleaved; medians are printed.
#
#   bench/warc.sh            (ROUNDS=3, LIMIT=0 for every file)
#
# Environment: ROUNDS, LIMIT (first N files), PORT (default 18772),
# CONCURRENCY (default 64), PEERS ("wget" or "" to skip it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/lib/common.sh
source "$root/scripts/lib/common.sh"
rounds=${ROUNDS:-3}
limit=${LIMIT:-0}
port=${PORT:-18772}
concurrency=${CONCURRENCY:-64}
peers=${PEERS-wget}
work="$root/target/bench-warc"
docs="$(rustc --print sysroot)/share/doc/rust/html"
ensure_packages nginx-light time curl wget
build_volley "$root"
volley=$VOLLEY
rm -rf "$work" && mkdir -p "$work"
nginx_start "$docs" "$work/nginx" "$port"
trap nginx_stop EXIT
docs_urls "$docs" "$port" "$limit" > "$work/urls.txt"
n=$(wc -l < "$work/urls.txt")
echo "W12: $n files of the Rust docs, concurrency $concurrency, $rounds rounds" >&2

# run NAME CMD...: wall s, CPU s (user+sys) and peak RSS MB, one line to $work/NAME.tsv
run() {
    local name=$1
    shift
    /usr/bin/time -f '%e %U %S %M' -o "$work/time.txt" "$@" > /dev/null 2> "$work/$name.err" || {
        echo "$name failed; see $work/$name.err" >&2
        tail -5 "$work/$name.err" >&2
        exit 1
    }
    awk '{printf "%s\t%.2f\t%.1f\n", $1, $2 + $3, $4 / 1024}' "$work/time.txt" >> "$work/$name.tsv"
}

for round in $(seq 1 "$rounds"); do
    echo "round $round" >&2
    rm -rf "$work"/plain.db* "$work"/warc.db* "$work/archive" "$work/wget"
    # Deleting the last round's files leaves the kernel work to do: let it
    # finish before timing anything.
    sync
    plain() {
        run plain "$volley" --db "$work/plain.db" fetch "$work/urls.txt" --quiet \
            --concurrency "$concurrency" --per-host "$concurrency"
    }
    # Alternate which goes first, so neither always meets a cold start.
    [ $((round % 2)) -eq 1 ] && plain
    run warc "$volley" --db "$work/warc.db" fetch "$work/urls.txt" --quiet --job first \
        --concurrency "$concurrency" --per-host "$concurrency" --warc "$work/archive/first"
    [ $((round % 2)) -eq 0 ] && plain
    sync
    du -cb "$work"/archive/first-*.warc.gz | tail -1 | cut -f1 >> "$work/warc-bytes.txt"
    run refresh "$volley" --db "$work/warc.db" fetch "$work/urls.txt" --quiet --job second --refresh \
        --concurrency "$concurrency" --per-host "$concurrency" --warc "$work/archive/second"
    du -cb "$work"/archive/second-*.warc.gz | tail -1 | cut -f1 >> "$work/refresh-bytes.txt"
    sqlite3 "$work/warc.db" "SELECT kind, count(*) FROM warc_records r JOIN warc_files f ON f.id = r.file_id \
        JOIN jobs j ON j.id = f.job_id WHERE j.name = 'second' GROUP BY kind" | paste -sd, - > "$work/refresh-kinds.txt"
    if [[ " $peers " == *" wget "* ]]; then
        mkdir -p "$work/wget"
        (cd "$work/wget" && run wget wget --quiet --input-file "$work/urls.txt" --warc-file=docs \
            --warc-cdx=off --no-warc-keep-log --delete-after --no-directories)
        du -cb "$work"/wget/docs*.warc.gz | tail -1 | cut -f1 >> "$work/wget-bytes.txt"
    fi
done

col() { cut -f"$2" "$work/$1.tsv" | median; }
bytes() { median < "$work/$1-bytes.txt"; }
printf '| run | wall s | pages/s | CPU µs/page | peak RSS MB | WARC bytes |\n|---|---|---|---|---|---|\n'
for name in plain warc refresh wget; do
    [ -f "$work/$name.tsv" ] || continue
    wall=$(col "$name" 1)
    cpu=$(col "$name" 2)
    size=-
    [ "$name" = plain ] || size=$(bytes "$name")
    printf '| %s | %.2f | %.0f | %.0f | %.1f | %s |\n' "$name" "$wall" "$(echo "$n / $wall" | bc -l)" \
        "$(echo "$cpu * 1000000 / $n" | bc -l)" "$(col "$name" 3)" "$size"
done
w=$(col warc 1)
p=$(col plain 1)
echo "warc/plain wall: $(echo "$w / $p" | bc -l | cut -c1-5)×; refresh WARC bytes / first: $(echo "$(bytes refresh) / $(bytes warc) * 100" | bc -l | cut -c1-5) %; refresh records: $(cat "$work/refresh-kinds.txt")"
