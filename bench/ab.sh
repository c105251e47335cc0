#!/usr/bin/env bash
# A/B of two revisions of volley on the same workloads, in the same minutes:
# the base revision is built in a worktree under target/ab/ (its own target
# directory, kept between runs), this checkout as it is into target/release.
# Rounds alternate A and B on each workload; medians of wall time and CPU
# (user+sys of the volley process) per request are printed with B/A ratios.
#
#   bench/ab.sh BASE_REV [ROUNDS]      (default 5 rounds)
#   WORKLOADS="tiny delay" bench/ab.sh BASE_REV   (some of the workloads)
#
# Workloads, against one nginx on loopback (1 worker):
#   docs   the first 20,000 files of the Rust docs (W1's input), bodies hashed,
#          concurrency 64
#   tiny   50,000 requests for a 3-byte response (W2's input), concurrency 64
#   delay  5,000 responses each delayed 100 ms, concurrency 500 (W3; ideal
#          wall 1.0 s, so its req/s ideal is 5,000)
#   rss    peak RSS (MB) of 200,000 tiny inputs from a template (W4's
#          measure at a size a round can afford)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/lib/common.sh
source "$root/scripts/lib/common.sh"
base=${1:?usage: bench/ab.sh BASE_REV [ROUNDS]}
rounds=${2:-5}
port=${PORT:-18771}
work="$root/target/ab"
ensure_packages nginx-light libnginx-mod-http-echo time curl
mkdir -p "$work"

sha=$(git -C "$root" rev-parse --verify "$base^{commit}")
if [ ! -d "$work/base" ]; then
    git -C "$root" worktree add --detach "$work/base" "$sha" >/dev/null
else
    git -C "$work/base" checkout --quiet --detach "$sha"
fi
(cd "$work/base" && CARGO_TARGET_DIR="$work/target" cargo build --quiet --release --locked -p volley-cli)
build_volley "$root"
a="$work/target/release/volley"
b=$VOLLEY

docs="$(rustc --print sysroot)/share/doc/rust/html"
nginx_start "$docs" "$work/nginx" "$port"
trap nginx_stop EXIT
docs_urls "$docs" "$port" 20000 > "$work/docs.txt"
# The docs read once, so that the first timed round does not pay the disk.
xargs -a <(sed "s|^http://127.0.0.1:$port/|$docs/|" "$work/docs.txt") cat > /dev/null
for i in $(seq 1 50000); do echo "http://127.0.0.1:$port/tiny?$i"; done > "$work/tiny.txt"
for i in $(seq 1 5000); do echo "http://127.0.0.1:$port/delay?$i"; done > "$work/delay.txt"

# run BIN WORKLOAD: prints "WALL_S CPU_S RSS_MB" of one fresh job.
run() {
    local db="$work/run.db" input
    rm -f "$db" "$db"-* "$db.lock"
    case $2 in
        delay) input=("$work/delay.txt" --concurrency 500 --per-host 500) ;;
        rss) input=(--template "http://127.0.0.1:$port/tiny?i={1..200000}" --concurrency 64 --per-host 64) ;;
        *) input=("$work/$2.txt" --concurrency 64) ;;
    esac
    /usr/bin/time -f '%e %U %S %M' -o "$work/time.txt" \
        "$1" --db "$db" fetch "${input[@]}" --quiet 2> "$work/run.err" \
        || { cat "$work/run.err" >&2; return 1; }
    awk '{print $1, $2 + $3, $4 / 1024}' "$work/time.txt"
}

printf '%s\n' "A = $base ($(git -C "$root" rev-parse --short "$sha")), B = this checkout ($(git -C "$root" describe --always --dirty))"
printf '%-6s %7s %12s %12s %12s %12s %8s %8s %8s %8s\n' workload n "A req/s" "B req/s" "A us CPU" "B us CPU" "B/A r/s" "B/A CPU" "A MB" "B MB"
for workload in ${WORKLOADS:-docs tiny delay rss}; do
    case $workload in
        rss) n=200000 ;;
        *) n=$(wc -l < "$work/$workload.txt") ;;
    esac
    : > "$work/a.txt"
    : > "$work/b.txt"
    for _ in $(seq 1 "$rounds"); do
        run "$a" "$workload" >> "$work/a.txt"
        run "$b" "$workload" >> "$work/b.txt"
    done
    col() { awk -v c="$1" '{print $c}' "$2" | median; }
    aw=$(col 1 "$work/a.txt"); ac=$(col 2 "$work/a.txt"); am=$(col 3 "$work/a.txt")
    bw=$(col 1 "$work/b.txt"); bc=$(col 2 "$work/b.txt"); bm=$(col 3 "$work/b.txt")
    awk -v w="$workload" -v n="$n" -v aw="$aw" -v ac="$ac" -v bw="$bw" -v bc="$bc" -v am="$am" -v bm="$bm" 'BEGIN {
        printf "%-6s %7d %12.0f %12.0f %12.1f %12.1f %8.3f %8.3f %8.1f %8.1f\n",
            w, n, n / aw, n / bw, 1e6 * ac / n, 1e6 * bc / n, aw / bw, bc / ac, am, bm }'
done
