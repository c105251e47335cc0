#!/usr/bin/env bash
# A/B of two revisions of volley on the same workloads, in the same minutes:
# the base revision is built in a worktree under target/ab/ (its own target
# directory, kept between runs), this checkout as it is into target/release.
# Rounds alternate A and B on each workload; medians of wall time and CPU
# (user+sys of the volley process) per request are printed with B/A ratios.
#
#   bench/ab.sh BASE_REV [ROUNDS]      (default 5 rounds)
#
# Workloads, against one nginx on loopback (1 worker), concurrency 64:
#   docs   the first 20,000 files of the Rust docs (W1's input), bodies hashed
#   tiny   50,000 requests for a 3-byte response (W2's input)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/lib/common.sh
source "$root/scripts/lib/common.sh"
base=${1:?usage: bench/ab.sh BASE_REV [ROUNDS]}
rounds=${2:-5}
port=${PORT:-18771}
work="$root/target/ab"
ensure_packages nginx-light time curl
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
(cd "$docs" && find . -type f -printf '%P\n' | LC_ALL=C sort | awk 'NR <= 20000') \
    | sed "s|^|http://127.0.0.1:$port/|" > "$work/docs.txt"
# The docs read once, so that the first timed round does not pay the disk.
xargs -a <(sed "s|^http://127.0.0.1:$port/|$docs/|" "$work/docs.txt") cat > /dev/null
for i in $(seq 1 50000); do echo "http://127.0.0.1:$port/tiny?$i"; done > "$work/tiny.txt"

# run BIN LIST: prints "WALL_S CPU_S" of one fresh job.
run() {
    local db="$work/run.db"
    rm -f "$db" "$db"-* "$db.lock"
    /usr/bin/time -f '%e %U %S' -o "$work/time.txt" \
        "$1" --db "$db" fetch "$2" --quiet --concurrency 64 2> "$work/run.err" \
        || { cat "$work/run.err" >&2; return 1; }
    awk '{print $1, $2 + $3}' "$work/time.txt"
}

median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

printf '%s\n' "A = $base ($(git -C "$root" rev-parse --short "$sha")), B = this checkout ($(git -C "$root" describe --always --dirty))"
printf '%-6s %6s %12s %12s %12s %12s %8s %8s\n' workload n "A req/s" "B req/s" "A us CPU" "B us CPU" "B/A r/s" "B/A CPU"
for workload in docs tiny; do
    list="$work/$workload.txt"
    n=$(wc -l < "$list")
    : > "$work/a.txt"
    : > "$work/b.txt"
    for _ in $(seq 1 "$rounds"); do
        run "$a" "$list" >> "$work/a.txt"
        run "$b" "$list" >> "$work/b.txt"
    done
    aw=$(awk '{print $1}' "$work/a.txt" | median); ac=$(awk '{print $2}' "$work/a.txt" | median)
    bw=$(awk '{print $1}' "$work/b.txt" | median); bc=$(awk '{print $2}' "$work/b.txt" | median)
    awk -v w="$workload" -v n="$n" -v aw="$aw" -v ac="$ac" -v bw="$bw" -v bc="$bc" 'BEGIN {
        printf "%-6s %6d %12.0f %12.0f %12.1f %12.1f %8.3f %8.3f\n",
            w, n, n / aw, n / bw, 1e6 * ac / n, 1e6 * bc / n, aw / bw, bc / ac }'
done
