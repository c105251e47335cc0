"""volley's benchmark harness: volley and its peers on the same URL lists in
one run, against nginx (one worker) on loopback. Writes bench/RESULTS.md.
Every throughput table has each tool's CPU per request: user + system CPU
of its process (children included) divided by the requests.

Run it through bench/run.sh, which installs what it needs. Workloads:
  W1  20,000 real files of the Rust docs, concurrency 64
  W1-tls  W1's files over HTTPS: nginx with TLS and HTTP/2 (ALPN), a
      certificate signed by a test CA made for the run
  W14 the internet's latency: W1's files on 2,000 hosts (127.1.0.1 onwards,
      a Zipf spread) over HTTPS through bench/delay-proxy, 20 ms each way,
      at most 2 requests per host and 256 in all; wall, CPU, RSS, sockets
  W2  50,000 tiny responses, concurrency 64
  W3  5,000 responses delayed 100 ms, concurrency 500 (ideal wall 1.0 s)
  W4  peak RSS by input size, against the tiny response
  W5  one 2 GiB body streamed to disk
  W6  50 hosts (127.0.0.2-51), per-host rate limit 20 requests/s
  W7  many hosts: 30,000 and 200,000 URLs each on its own loopback address
      (volley, aiohttp, curl at 30,000; volley alone beyond), peak RSS and
      the most sockets open at once
  W8  PostgreSQL: 50,000 tiny responses on 50 hosts (per-host limit 8),
      tasks recorded/s for SQLite (1 process), PostgreSQL with 1 worker and
      with 4 workers, and how the 2 cores were split between volley,
      PostgreSQL and nginx
  W10 refresh: 20,000 Rust-docs files (a copy) fetched, then fetched again
      with --refresh (304s), then again after 100 files changed
  W11 the Python package: W2's 50,000 tiny responses and W1's 20,000 docs
      files fetched from one Python process by volley.fetch_all and by an
      Engine job streamed with `async for`, against aiohttp (with and
      without uvloop) and httpx; peak RSS at 10,000, 100,000 and 1,000,000 inputs
  W9  volley serve: 50,000 tiny responses submitted through the API vs
      `volley fetch` on the same list (the server's overhead), and 20 jobs of
      5,000 submitted at once plus a 10-URL job after them (fairness: the
      spread of their finishing times)
  W15 a job's status at 10,000,000 tasks (`volley status`, and GET
      /v1/jobs/{name} one at a time), and 100 wrk connections polling the
      status of a job the server is fetching, against /healthz
  W16 PostgreSQL a network away: W8's tiny URLs (50,000) recorded by one
      `volley fetch` through bench/delay-proxy at 0, 1 and 5 ms round trips
"""
import argparse
import http.client
import ast
import collections
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "bench"
PEERS = ROOT / "bench" / "peers"
VOLLEY = ROOT / "target" / "release" / "volley"
VENV = ROOT / "target" / "bench-venv"
PY = VENV / "bin" / "python"
PORT = int(os.environ.get("PORT", "18770"))
# W7's server answers on every loopback address at this port.
HOSTS_PORT = PORT + 1
# W10's copy of the docs, served with an access log of bytes sent.
REFRESH_PORT = PORT + 2
# The same, sending each response at most 512 KiB/s (nginx limit_rate): a
# link where bodies cost time, as they do off loopback.
REFRESH_SLOW_PORT = PORT + 3
REFRESH_DOCS = WORK / "w10-docs"
# W1-tls and W14: the docs over TLS (HTTP/2 by ALPN), with a test CA's
# certificate; W14 reaches it through bench/delay-proxy on W14_HOSTS
# addresses (127.1.0.1 onwards) at W14_PORT.
TLS_PORT = PORT + 4
W14_PORT = PORT + 5
W14_HOSTS = 2000
W14_DELAY_MS = 20
# Mild enough that the busiest host's queue (2 at a time) is not what
# bounds the wall time, 256 in flight is: curl 7.88 cannot cap a host.
W14_ZIPF = 0.4
TLS = WORK / "tls"
WORKLOADS = ["W1", "W1-tls", "W14", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "W11", "W15", "W16", "W17"]
DELAY_PROXY = ROOT / "target" / "release" / "delay-proxy"
FLEET = [f"127.0.0.{i}" for i in range(2, 52)]
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"


def sh(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, text=True, capture_output=True, **kw).stdout.strip()


class Measured(tuple):
    """(wall seconds, peak RSS MB, stderr), and `.cpu`: the command's user +
    system CPU seconds (its children's included, as /usr/bin/time counts)."""
    cpu = 0.0


def measure(cmd, env=None, sockets=None):
    """Runs cmd under /usr/bin/time; returns (wall seconds, peak RSS MB, stderr)
    with the CPU seconds it used as `.cpu` (see `Measured`).
    With `sockets` (a list), appends the most sockets the command held open
    at once, sampled from /proc every 20 ms."""
    out = WORK / "time.txt"
    started = time.monotonic()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-f", "%M %U %S", "-o", str(out)] + [str(c) for c in cmd],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    sampler = None
    if sockets is not None:
        sampler = subprocess.Popen([sys.executable, str(ROOT / "bench" / "peak_sockets.py"), str(proc.pid)],
                                   stdout=subprocess.PIPE, text=True)
    _, stderr = proc.communicate()
    wall = time.monotonic() - started
    if sampler is not None:
        sockets.append(int(sampler.communicate()[0].strip() or 0))
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {stderr[-2000:]}")
    rss_kb, user, system = out.read_text().strip().splitlines()[-1].split()
    result = Measured((wall, int(rss_kb) / 1024, stderr))
    result.cpu = float(user) + float(system)
    return result


# ---------------------------------------------------------------- nginx

def nginx_conf(docs):
    fleet_listens = "\n".join(f"        listen {ip}:{PORT};" for ip in FLEET)
    return f"""
load_module {ECHO_MODULE};
worker_processes 1;
daemon off;
{"user root;" if os.geteuid() == 0 else ""}
pid {WORK}/nginx.pid;
error_log {WORK}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {WORK}/tmp;
    proxy_temp_path {WORK}/tmp;
    fastcgi_temp_path {WORK}/tmp;
    uwsgi_temp_path {WORK}/tmp;
    scgi_temp_path {WORK}/tmp;
    log_format arrivals '$msec $server_addr';
    log_format refresh '$status $bytes_sent';
    server {{
        listen 127.0.0.1:{PORT};
        root {docs};
        location = /tiny {{ return 200 "ok\\n"; }}
        location = /delay {{ echo_sleep 0.1; echo "ok"; }}
        # W17: connections accepted, over all servers.
        location = /nginx_status {{ stub_status; }}
        location /big/ {{ alias {WORK}/big/; }}
    }}
    server {{
{fleet_listens}
        access_log {WORK}/fleet.log arrivals;
        location / {{ return 200 "ok\\n"; }}
    }}
    server {{
        # W10: a copy of the docs whose files can change; each response's
        # status and bytes sent (headers included) are logged.
        listen 127.0.0.1:{REFRESH_PORT};
        root {REFRESH_DOCS};
        access_log {WORK}/w10.log refresh;
    }}
    server {{
        listen 127.0.0.1:{REFRESH_SLOW_PORT};
        root {REFRESH_DOCS};
        limit_rate 512k;
        access_log {WORK}/w10.log refresh;
    }}
    server {{
        # W1-tls and W14: the docs over TLS, HTTP/2 offered by ALPN.
        listen 127.0.0.1:{TLS_PORT} ssl http2;
        ssl_certificate {TLS}/server.pem;
        ssl_certificate_key {TLS}/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:TLS:10m;
        root {docs};
    }}
    server {{
        # W7: every loopback address is a host of its own.
        listen {HOSTS_PORT};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def w14_hosts():
    """W14's loopback addresses: 127.1.0.1 onwards."""
    first = (127 << 24) | (1 << 16) | 1
    return [".".join(str(first + i >> shift & 255) for shift in (24, 16, 8, 0)) for i in range(W14_HOSTS)]


def test_ca():
    """A test certificate authority and a server certificate it signs (EC
    P-256, 30 days) for localhost, 127.0.0.1 and W14's addresses, in TLS/:
    ca.pem (what clients trust), server.pem and server.key (nginx's)."""
    TLS.mkdir(parents=True, exist_ok=True)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    sh(["openssl", "req", "-x509", *curve, "-keyout", TLS / "ca.key", "-out", TLS / "ca.pem", "-days", "30",
        "-subj", "/CN=volley bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign"])
    names = ["DNS:localhost", "IP:127.0.0.1"] + [f"IP:{ip}" for ip in w14_hosts()]
    (TLS / "server.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                    "extendedKeyUsage=serverAuth\nsubjectAltName=" + ",".join(names) + "\n")
    sh(["openssl", "req", *curve, "-keyout", TLS / "server.key", "-out", TLS / "server.csr", "-subj", "/CN=localhost"])
    sh(["openssl", "x509", "-req", "-in", TLS / "server.csr", "-CA", TLS / "ca.pem", "-CAkey", TLS / "ca.key",
        "-CAcreateserial", "-out", TLS / "server.pem", "-days", "30", "-extfile", TLS / "server.ext"])
    return TLS / "ca.pem"


class Nginx:
    def __init__(self, docs):
        (WORK / "tmp").mkdir(parents=True, exist_ok=True)
        conf = WORK / "nginx.conf"
        conf.write_text(nginx_conf(docs))
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-e", str(WORK / "nginx-error.log")])
        for _ in range(100):
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited at start (a port in use? PORT={PORT}); see {WORK}/nginx-error.log")
            if subprocess.run(["curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{PORT}/tiny"],
                              capture_output=True).returncode == 0:
                time.sleep(0.2)
                if self.proc.poll() is not None:
                    raise RuntimeError(f"another server answers on port {PORT}; stop it or set PORT")
                return
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not start; see {WORK}/nginx-error.log")

    def reopen_logs(self):
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.2)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


# ---------------------------------------------------------------- tools

def volley_cmd(urls, concurrency, extra=(), per_host=None, ca=None):
    db = WORK / "volley.db"
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    trust = ["--ca-cert", ca] if ca else []
    return [VOLLEY, "--db", db, "fetch", urls, "--quiet", "--concurrency", concurrency,
            "--per-host", per_host or concurrency, *trust, *extra]


def curl_cmd(urls, concurrency, ca=None, per_host=None):
    """curl --parallel over a config file of the URLs. `per_host` is
    ignored: curl 7.88 (Debian 12) has no --parallel-max-host, which came in
    8.16; the tables say so where it matters (W14)."""
    config = WORK / "curl.conf"
    with open(urls) as src, open(config, "w") as dst:
        for line in src:
            dst.write(f'url = "{line.strip()}"\noutput = "/dev/null"\n')
    trust = ["--cacert", ca] if ca else []
    return ["curl", "--parallel", "--parallel-immediate", "--parallel-max", concurrency,
            "-s", *trust, "-K", config]


def aiohttp_cmd(urls, concurrency, ca=None, per_host=None, uvloop=False):
    return [PY, PEERS / "aiohttp_fetch.py", urls, concurrency,
            *(["--uvloop"] if uvloop else []),
            *(["--ca", ca] if ca else []),
            *(["--per-host", per_host] if per_host else [])]


def scrapy_cmd(urls, concurrency):
    return [VENV / "bin" / "scrapy", "runspider", PEERS / "scrapy_spider.py", "-a", f"urls={urls}",
            "-s", f"CONCURRENT_REQUESTS={concurrency}",
            "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={concurrency}",
            "-s", "REACTOR_THREADPOOL_MAXSIZE=20"]


PEER_COMMANDS = {
    "volley": volley_cmd,
    "aiohttp": aiohttp_cmd,
    "aiohttp+uvloop": lambda u, c, **o: aiohttp_cmd(u, c, uvloop=True, **o),
    "httpx": lambda u, c: [PY, PEERS / "httpx_fetch.py", u, c],
    "volley.fetch_all": lambda u, c: [PY, PEERS / "volley_py_fetch.py", u, c],
    "volley.Engine stream": lambda u, c: [PY, PEERS / "volley_py_fetch.py", u, c, "--stream"],
    "scrapy": scrapy_cmd,
    "curl --parallel": curl_cmd,
}


def wrk(paths_file, concurrency, seconds):
    """wrk's requests/s over `seconds`, and its CPU seconds per request."""
    timing = WORK / "wrk-time.txt"
    out = sh(["/usr/bin/time", "-f", "%U %S", "-o", str(timing),
              "wrk", "-t", "2", "-c", str(concurrency), "-d", f"{seconds}s", "-s",
              str(PEERS / "urls.lua"), f"http://127.0.0.1:{PORT}", "--", str(paths_file)])
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not match or not total:
        raise RuntimeError(f"wrk printed no rate: {out}")
    user, system = timing.read_text().strip().splitlines()[-1].split()
    return float(match.group(1)), (float(user) + float(system)) / int(total.group(1))


# ---------------------------------------------------------------- workloads

def write_urls(name, urls):
    path = WORK / name
    path.write_text("\n".join(urls) + "\n")
    return path


def throughput(name, urls_file, paths_file, n, concurrency, runs, tools, wrk_seconds, sockets=False, **options):
    """Median requests/s, CPU per request and peak RSS per tool over `runs`
    runs (with `sockets`, also the most sockets each held open at once).
    The runs go in rounds (each tool once a round), so a slow spell of the
    machine falls on every tool rather than on one tool's runs."""
    walls = {tool: [] for tool in tools}
    rss = {tool: [] for tool in tools}
    cpu = {tool: [] for tool in tools}
    socks = {tool: [] for tool in tools}
    for _ in range(runs):
        for tool in tools:
            run = measure(PEER_COMMANDS[tool](urls_file, concurrency, **options),
                          sockets=socks[tool] if sockets else None)
            all_ok(tool, run[2], n)
            walls[tool].append(run[0])
            rss[tool].append(run[1])
            cpu[tool].append(run.cpu / n)
    results = {}
    for tool in tools:
        results[tool] = {"rps": n / statistics.median(walls[tool]), "wall": statistics.median(walls[tool]),
                         "rss": statistics.median(rss[tool]), "cpu_us": 1e6 * statistics.median(cpu[tool]),
                         "runs": [round(n / w) for w in walls[tool]]}
        if sockets:
            results[tool]["sockets"] = max(socks[tool])
        print(f"{name} {tool}: {results[tool]['wall']:.2f} s, {results[tool]['rps']:.0f} req/s, "
              f"{results[tool]['cpu_us']:.1f} µs CPU/req, {results[tool]['rss']:.0f} MB"
              + (f", {results[tool]['sockets']} sockets" if sockets else ""), flush=True)
    if paths_file is not None:
        rates = [wrk(paths_file, concurrency, wrk_seconds) for _ in range(runs)]
        results["wrk (ceiling)"] = {"rps": statistics.median(r for r, _ in rates), "wall": None, "rss": None,
                                    "cpu_us": 1e6 * statistics.median(c for _, c in rates),
                                    "runs": [round(r) for r, _ in rates]}
        print(f"{name} wrk: {results['wrk (ceiling)']['rps']:.0f} req/s", flush=True)
    return results


def all_ok(tool, stderr, n):
    """The Python peers print their counts by status last on stderr: a run
    where any request failed (a certificate not trusted, say) would time
    nothing worth reporting."""
    if tool.startswith(("aiohttp", "httpx", "volley.")):
        lines = stderr.strip().splitlines()
        counts = ast.literal_eval(lines[-1]) if lines else {}
        if counts != {200: n}:
            raise RuntimeError(f"{tool}: not every request answered 200: {counts}")


def fleet_stats(log, rate):
    arrivals = collections.defaultdict(list)
    for line in log.read_text().splitlines():
        t, addr = line.split()
        arrivals[addr].append(float(t))
    busiest, spans = 0, []
    total = sum(len(v) for v in arrivals.values())
    first = min(v[0] for v in arrivals.values())
    last = max(v[-1] for v in arrivals.values())
    for times in arrivals.values():
        times.sort()
        j = 0
        for i in range(len(times)):
            while times[i] - times[j] >= 1.0:
                j += 1
            busiest = max(busiest, i - j + 1)
        spans.append((len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0)
    aggregate = total / (last - first) if last > first else 0
    return {"hosts": len(arrivals), "requests": total, "aggregate": aggregate,
            "allowed": rate * len(arrivals), "busiest_second": busiest,
            "median_host_rate": statistics.median(spans)}


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, one run: a smoke test")
    parser.add_argument("--only", default=",".join(WORKLOADS))
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite RESULTS.md from the last run's target/bench/report.json")
    args = parser.parse_args()
    if args.report_only:
        write_results(json.loads((WORK / "report.json").read_text()))
        return
    runs = 1 if args.quick else args.runs
    only = set(args.only.split(","))
    WORK.mkdir(parents=True, exist_ok=True)
    docs = Path(sh(["rustc", "--print", "sysroot"])) / "share" / "doc" / "rust" / "html"
    ca = test_ca()
    nginx = Nginx(docs)
    peers = ["volley", "aiohttp", "aiohttp+uvloop", "httpx", "scrapy", "curl --parallel"]
    report = {"runs": runs, "quick": args.quick}
    previous = WORK / "report.json"
    unknown = only - set(WORKLOADS)
    if unknown:
        parser.error(f"--only: no workload {', '.join(sorted(unknown))} (there are {', '.join(WORKLOADS)})")
    partial = only != set(WORKLOADS)
    if partial and previous.exists():
        # A partial re-run updates the last full report, and says so.
        report = json.loads(previous.read_text())
        # The newest re-run of a workload replaces its older ones.
        reruns = [dict(r, workloads=[w for w in r["workloads"] if w not in only])
                  for r in report.get("reruns", [])]
        report["reruns"] = [r for r in reruns if r["workloads"]]
        report["reruns"].append({"workloads": sorted(only), "commit": commit_now()})
    try:
        base = f"http://127.0.0.1:{PORT}"
        if "W1" in only:
            warm_cache(docs)
            n = 2000 if args.quick else 20000
            paths = ["/" + f for f in docs_files(docs, n)]
            urls = write_urls("w1-urls.txt", [base + p for p in paths])
            report["W1"] = throughput("W1", urls, write_urls("w1-paths.txt", paths), n, 64, runs, peers,
                                      5 if args.quick else 10)
        if "W1-tls" in only:
            warm_cache(docs)
            n = 2000 if args.quick else 20000
            urls = write_urls("w1-tls-urls.txt", [f"https://127.0.0.1:{TLS_PORT}/{f}" for f in docs_files(docs, n)])
            report["W1-tls"] = throughput("W1-tls", urls, None, n, 64, runs,
                                          ["volley", "aiohttp", "aiohttp+uvloop", "curl --parallel"], 0, ca=ca)
        if "W14" in only:
            report["W14"] = latency_workload(docs, ca, args.quick, runs)
        if "W2" in only:
            n = 5000 if args.quick else 50000
            paths = [f"/tiny?i={i}" for i in range(n)]
            urls = write_urls("w2-urls.txt", [base + p for p in paths])
            report["W2"] = throughput("W2", urls, write_urls("w2-paths.txt", paths), n, 64, runs, peers,
                                      5 if args.quick else 10)
        if "W3" in only:
            n = 5000
            urls = write_urls("w3-urls.txt", [f"{base}/delay?i={i}" for i in range(n)])
            report["W3"] = throughput("W3", urls, None, n, 500, runs,
                                      ["volley", "aiohttp", "aiohttp+uvloop", "httpx", "curl --parallel"], 0)
        if "W4" in only:
            sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000, 10_000_000]
            rows = []
            for n in sizes:
                template = f"{base}/tiny?i={{1..{n}}}"
                db = WORK / "w4.db"
                for suffix in ("", "-wal", "-shm", ".lock"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                wall, rss, _ = measure([VOLLEY, "--db", db, "fetch", "--template", template, "--quiet",
                                        "--concurrency", 64, "--per-host", 64])
                row = {"inputs": n, "volley_rss": rss, "volley_rps": n / wall}
                if n <= 100_000:
                    urls = write_urls("w4-urls.txt", [f"{base}/tiny?i={i}" for i in range(n)])
                    _, arss, _ = measure([PY, PEERS / "aiohttp_fetch.py", urls, 64])
                    row["aiohttp_rss"] = arss
                rows.append(row)
                print(f"W4 {n}: volley {rss:.1f} MB, aiohttp {row.get('aiohttp_rss', '-')}", flush=True)
            report["W4"] = rows
        if "W5" in only:
            big = WORK / "big"
            big.mkdir(exist_ok=True)
            size = (256 if args.quick else 2048) << 20
            with open(big / "body.bin", "wb") as f:
                f.truncate(size)
            url = f"{base}/big/body.bin"
            res = {}
            for tool in ("volley", "curl"):
                walls, rss = [], []
                for _ in range(runs):
                    out = WORK / "w5-out"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    if tool == "volley":
                        cmd = volley_cmd(write_urls("w5-urls.txt", [url]), 1, ["--save-bodies", out,
                                                                                  "--timeout", "600s"])
                    else:
                        cmd = ["curl", "-s", "-o", out / "body.bin", url]
                    wall, peak, _ = measure(cmd)
                    walls.append(wall)
                    rss.append(peak)
                    shutil.rmtree(out, ignore_errors=True)
                res[tool] = {"mbps": (size >> 20) / statistics.median(walls), "rss": statistics.median(rss),
                             "runs": [round((size >> 20) / w) for w in walls]}
                print(f"W5 {tool}: {res[tool]['mbps']:.0f} MB/s, {res[tool]['rss']:.1f} MB", flush=True)
            res["size_mb"] = size >> 20
            report["W5"] = res
            (big / "body.bin").unlink()
        if "W6" in only:
            per_host = 40 if args.quick else 100
            urls = [f"http://{ip}:{PORT}/r{i}" for i in range(per_host) for ip in FLEET]
            urls_file = write_urls("w6-urls.txt", urls)
            stats = []
            for _ in range(runs):
                (WORK / "fleet.log").unlink(missing_ok=True)
                nginx.reopen_logs()
                measure(volley_cmd(urls_file, 500, ["--rate", "20/s"], per_host=8))
                nginx.reopen_logs()
                stats.append(fleet_stats(WORK / "fleet.log", 20))
            median = sorted(stats, key=lambda s: s["aggregate"])[len(stats) // 2]
            median["busiest_second"] = max(s["busiest_second"] for s in stats)
            report["W6"] = median
            print(f"W6: {median}", flush=True)
        if "W7" in only:
            report["W7"] = many_hosts(args.quick, runs)
        if "W8" in only:
            report["W8"] = postgres_scaling(nginx, args.quick, runs)
        if "W9" in only:
            report["W9"] = serve_workloads(args.quick, runs)
        if "W10" in only:
            report["W10"] = refresh_workload(nginx, docs, args.quick, runs, REFRESH_PORT)
            report["W10-slow"] = refresh_workload(nginx, docs, args.quick, runs, REFRESH_SLOW_PORT, copy=False)
        if "W11" in only:
            report.update(python_workloads(base, docs, args.quick, runs))
        if "W15" in only:
            report["W15"] = status_workload(base, args.quick, runs)
        if "W16" in only:
            report["W16"] = postgres_distance(args.quick, runs)
        if "W17" in only:
            report["W17"] = pool_workload(docs, ca, args.quick, runs)
    finally:
        nginx.stop()
    commit = report.get("machine", {}).get("commit")
    report["machine"] = machine()
    if partial and commit:
        report["machine"]["commit"] = commit
    if partial and (not previous.exists() or report.get("partial")):
        # No full report to update (target/ is new): rewriting RESULTS.md
        # with these workloads alone would drop every other one.
        report["partial"] = sorted(set(report.get("partial", [])) | only)
    (WORK / "report.json").write_text(json.dumps(report, indent=1))
    write_results(report)


def zipf_counts(n, hosts, s):
    """`n` spread over `hosts` ranks in proportion to 1 / rank^s, rounded
    by largest remainder so the counts add up to `n` exactly."""
    weights = [1 / (k ** s) for k in range(1, hosts + 1)]
    total = sum(weights)
    exact = [n * w / total for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(hosts), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[:n - sum(counts)]:
        counts[i] += 1
    return counts


def latency_workload(docs, ca, quick, runs):
    """W14: the internet's latency on loopback. bench/delay-proxy listens on
    W14_HOSTS addresses and forwards to nginx's TLS port, each chunk
    W14_DELAY_MS later each way; 20,000 Rust-docs URLs spread over the
    hosts by a Zipf law (exponent W14_ZIPF), in a shuffled order, fetched
    with at most 2 requests per host (aiohttp: limit_per_host=2) and 256 in
    all. curl 7.88 has no per-host cap (see `curl_cmd`)."""
    n = 2000 if quick else 20000
    files = docs_files(docs, n)
    hosts = w14_hosts()
    counts = zipf_counts(n, len(hosts), W14_ZIPF)
    urls = []
    for host, count in zip(hosts, counts):
        start = len(urls)
        urls.extend(f"https://{host}:{W14_PORT}/{f}" for f in files[start:start + count])
    import random
    random.Random(14).shuffle(urls)
    urls_file = write_urls("w14-urls.txt", urls)
    rtt = 2 * W14_DELAY_MS / 1000
    # No tool can beat its busiest host's queue (2 at a time, a round trip
    # each, one more for the TLS handshake) nor 256 requests in flight.
    ideal = max((counts[0] + 1) // 2 * rtt + rtt, n * rtt / 256)
    proxy = subprocess.Popen([DELAY_PROXY, "--delay", f"{W14_DELAY_MS}ms", "--upstream", f"127.0.0.1:{TLS_PORT}",
                              "--listen", f"{hosts[0]}:{W14_PORT}", "--hosts", str(len(hosts))],
                             stdout=subprocess.PIPE, text=True)
    try:
        if proxy.stdout.readline().strip() != "ready":
            raise RuntimeError("delay-proxy did not start")
        out = throughput("W14", urls_file, None, n, 256, runs, ["volley", "aiohttp", "curl --parallel"], 0,
                         sockets=True, ca=ca, per_host=2)
        out.update({"n": n, "hosts": len(hosts), "busiest": counts[0], "delay_ms": W14_DELAY_MS,
                    "zipf": W14_ZIPF, "ideal": ideal})
        return out
    finally:
        proxy.terminate()
        proxy.wait()


def loopback_hosts(n, path="/tiny"):
    """n URLs, each on its own loopback address (127.0.1.0 onwards)."""
    return [f"http://127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:{HOSTS_PORT}{path}"
            for i in range(256, 256 + n)]


def many_hosts(quick, runs):
    """W7: one URL per host. volley, aiohttp and curl --parallel at the
    smallest size; volley alone beyond. Also volley on the same count of URLs
    on one host, for the RSS comparison."""
    sizes = [3000, 20000] if quick else [30000, 200000, 1000000]
    rows = []
    for n in sizes:
        urls = write_urls("w7-urls.txt", loopback_hosts(n))
        tools = ["volley", "aiohttp", "curl --parallel"] if n == sizes[0] else ["volley"]
        row = {"hosts": n}
        for tool in tools:
            walls, rss, socks, cpu = [], [], [], []
            for _ in range(1 if n >= 1000000 else runs):
                run = measure(PEER_COMMANDS[tool](urls, 64), sockets=socks)
                walls.append(run[0])
                rss.append(run[1])
                cpu.append(run.cpu / n)
            row[tool] = {"rps": n / statistics.median(walls), "rss": statistics.median(rss),
                         "cpu_us": 1e6 * statistics.median(cpu),
                         "sockets": max(socks), "runs": [round(n / w) for w in walls]}
            print(f"W7 {n} hosts {tool}: {row[tool]['rps']:.0f} req/s, {row[tool]['rss']:.0f} MB, "
                  f"{row[tool]['sockets']} sockets", flush=True)
        if n <= 200000:
            one = write_urls("w7-one-host.txt", [f"http://127.0.0.1:{PORT}/tiny?i={i}" for i in range(n)])
            _, peak, _ = measure(volley_cmd(one, 64))
            row["volley_one_host_rss"] = peak
            print(f"W7 {n} URLs on one host: volley {peak:.0f} MB", flush=True)
        rows.append(row)
    return rows


def docs_files(docs, n=None):
    """The first `n` (all, without it) files under `docs`, as paths
    relative to it, in sorted order: the same list for every workload."""
    return sorted(str(p.relative_to(docs)) for p in docs.rglob("*") if p.is_file())[:n]


def warm_cache(docs):
    """Reads every file under `docs` once, so that no tool's first run is
    the one that pulls the files from disk into the page cache."""
    for path in docs.rglob("*"):
        if path.is_file():
            path.read_bytes()


def commit_now():
    """HEAD's short hash, with "+changes" when the tree differs from it."""
    head = sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return f"{head}+changes" if dirty else head


def python_workloads(base, docs, quick, runs):
    """W11: volley's Python package against the asyncio clients, each in a
    Python process of its own."""
    tools = ["volley.fetch_all", "volley.Engine stream", "aiohttp", "aiohttp+uvloop", "httpx", "volley"]
    warm_cache(docs)
    n_tiny = 5000 if quick else 50000
    tiny = write_urls("w11-tiny.txt", [f"{base}/tiny?i={i}" for i in range(n_tiny)])
    files = docs_files(docs)
    n_docs = 2000 if quick else 20000
    docs_urls = write_urls("w11-docs.txt", [f"{base}/{f}" for f in files[:n_docs]])
    out = {"W11-tiny": throughput("W11 tiny", tiny, None, n_tiny, 64, runs, tools, 0),
           "W11-docs": throughput("W11 docs", docs_urls, None, n_docs, 64, runs, tools, 0)}
    rss = []
    sizes = [10_000, 30_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    for n in sizes:
        urls = write_urls("w11-rss.txt", [f"{base}/tiny?i={i}" for i in range(n)])
        row = {"inputs": n}
        for tool in ("volley.fetch_all", "volley.Engine stream", "aiohttp"):
            if tool == "aiohttp" and n > 100_000:
                row[tool] = None  # grows per URL (W4): 1.6 GB at a million
                continue
            _, peak, _ = measure(PEER_COMMANDS[tool](urls, 64))
            row[tool] = peak
        print(f"W11 RSS {n}: {row}", flush=True)
        rss.append(row)
    out["W11-rss"] = rss
    return out


def cpu_seconds(pid):
    """CPU seconds (user + system) of process `pid` and its children, the
    children that exited included (reaped: in `pid`'s cutime and cstime)."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(p):
        try:
            text = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            return None
        fields = text.rsplit(")", 1)[1].split()
        return int(fields[1]), [int(x) for x in fields[11:15]]  # ppid; utime stime cutime cstime

    total = sum(stat(pid)[1]) if stat(pid) else 0
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            st = stat(entry)
            if st and st[0] == pid:
                total += st[1][0] + st[1][1]
    return total / tick


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def start_postgres(pg_dir):
    """A fresh PostgreSQL server in `pg_dir` (scripts/pg.sh, durable
    defaults), stopping one left there by an earlier run; returns its URL."""
    if pg_dir.exists():
        subprocess.run([ROOT / "scripts" / "pg.sh", "stop", pg_dir], check=False)
    return sh([ROOT / "scripts" / "pg.sh", "start", pg_dir])


def idle_postgres(url, databases):
    """Drops `databases` (names; the list is emptied) and takes a
    checkpoint, so that the next run starts on an idle server: neither the
    autovacuum of the last run's tables nor a checkpoint its WAL is due for
    lands in it."""
    while databases:
        sh(["psql", url, "-qAtc", f"DROP DATABASE {databases.pop()} WITH (FORCE)"])
    sh(["psql", url, "-qAtc", "CHECKPOINT"])


def postgres_scaling(nginx, quick, runs):
    """W8: the same job (tiny responses on 50 hosts, per-host limit 8,
    concurrency 64 per process) on SQLite, on PostgreSQL with one process,
    and on PostgreSQL with four (`fetch` ingesting and working, three `work`
    joining as soon as the job exists). Tasks recorded per second are inputs
    divided by the wall time from the first process's start to the last
    one's exit. PostgreSQL runs with its durable defaults (fsync on).
    Each PostgreSQL run starts on an idle server (`idle_postgres`). Its CPU
    is read once its server processes have exited (a connection's process
    outlives the client by a moment)."""
    n = 10000 if quick else 50000
    urls = write_urls("w8-urls.txt", [f"http://{FLEET[i % len(FLEET)]}:{PORT}/w8/{i}" for i in range(n)])
    pg_dir = Path("/tmp/volley-bench-pg")
    url = start_postgres(pg_dir)
    postmaster = int((pg_dir / "data" / "postmaster.pid").read_text().split()[0])
    common = ["--quiet", "--concurrency", "64"]
    fresh = iter(range(1, 1000))
    last = []

    def database():
        name = f"w8_{next(fresh)}"
        sh(["psql", url, "-qAtc", f"CREATE DATABASE {name}"])
        last.append(name)
        return url.rsplit("/", 1)[0] + "/" + name

    def sqlite():
        started = time.monotonic()
        measure(volley_cmd(urls, 64, per_host=8))
        return time.monotonic() - started

    def postgres(workers):
        db = database()
        started = time.monotonic()
        procs = [subprocess.Popen([VOLLEY, "--db", db, "fetch", urls, "--job", "w8", "--per-host", "8", *common],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)]
        if workers > 1:
            # The job exists once the first process has migrated the schema
            # and opened it.
            while subprocess.run(["psql", db, "-qAtc", "SELECT count(*) FROM jobs WHERE name = 'w8'"],
                                 capture_output=True, text=True).stdout.strip() != "1":
                time.sleep(0.02)
            procs += [subprocess.Popen([VOLLEY, "--db", db, "work", "--job", "w8", *common],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                      for _ in range(workers - 1)]
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"volley exited {p.returncode}: {err[-2000:]}")
        wall = time.monotonic() - started
        got = sh(["psql", db, "-qAtc", "SELECT count(*) FROM outcomes"])
        if int(got) != n:
            raise RuntimeError(f"W8: {got} outcomes for {n} inputs")
        name = db.rsplit("/", 1)[1]
        for _ in range(500):
            if sh(["psql", url, "-qAtc", f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'"]) == "0":
                break
            time.sleep(0.01)
        return wall

    configs = {"SQLite, 1 process": sqlite, "PostgreSQL, 1 worker": lambda: postgres(1),
               "PostgreSQL, 4 workers": lambda: postgres(4)}
    rows = {}
    try:
        for name, run in configs.items():
            walls, split = [], []
            for _ in range(runs):
                idle_postgres(url, last)
                before = (children_cpu(), cpu_seconds(postmaster), cpu_seconds(nginx.proc.pid))
                wall = run()
                after = (children_cpu(), cpu_seconds(postmaster), cpu_seconds(nginx.proc.pid))
                walls.append(wall)
                split.append([(a - b) / (wall * os.cpu_count()) for a, b in zip(after, before)])
            mid = sorted(range(runs), key=lambda i: walls[i])[runs // 2]
            rows[name] = {"rps": n / walls[mid], "runs": [round(n / w) for w in walls],
                          "cpu": {"volley": split[mid][0], "postgres": split[mid][1], "nginx": split[mid][2]}}
            print(f"W8 {name}: {rows[name]['rps']:.0f} tasks/s, cpu {rows[name]['cpu']}", flush=True)
    finally:
        subprocess.run([ROOT / "scripts" / "pg.sh", "stop", pg_dir], check=False)
    return {"inputs": n, "rows": rows}


def accepted_connections():
    """Connections nginx has accepted since it started (stub_status)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/nginx_status", timeout=10) as response:
        return int(response.read().decode().splitlines()[2].split()[0])


def pool_workload(docs, ca, quick, runs):
    """W17: one connection pool for a server's jobs. 100 jobs of 10 of W1's
    files each over HTTPS (nginx, TLS 1.3, HTTP/2 by ALPN), created through
    the API one after another, on a server with --per-host 2. Shared: all
    jobs with the same options, so they share the server's client. One
    client per job: each job with its own User-Agent, so no two share one,
    as every job had its own client before. Wall from the first creation
    to the last job's last outcome, and the connections nginx accepted
    (stub_status; its own status requests included, one each side)."""
    jobs = 20 if quick else 100
    files = docs_files(docs, jobs * 10)
    rows = {"shared": [], "one client per job": []}
    for _ in range(runs):
        for how in rows:
            server = Serve(per_host=2, extra=("--ca-cert", str(ca)))
            try:
                before = accepted_connections()
                started = time.time()
                names = set()
                for j in range(jobs):
                    name = f"j{j:03}"
                    options = {} if how == "shared" else {"user_agent": f"volley-bench/{j}"}
                    server.call("POST", "/v1/jobs", {
                        "name": name, "options": options,
                        "urls": [f"https://127.0.0.1:{TLS_PORT}/{f}" for f in files[j * 10:(j + 1) * 10]]})
                    names.add(name)
                done = server.finished(names)
                wall = max(j["finished_at_ms"] for j in done.values()) / 1000 - started
                if any(j["counts"]["done"] != 10 for j in done.values()):
                    raise RuntimeError(f"W17: {[j['counts'] for j in done.values()]}")
                connections = accepted_connections() - before - 1
            finally:
                server.stop()
            rows[how].append({"wall": wall, "connections": connections})
            print(f"W17 {how}: {wall:.2f} s, {connections} connections", flush=True)
    out = {"jobs": jobs, "per_host": 2}
    for how, runs_of in rows.items():
        mid = sorted(runs_of, key=lambda r: r["wall"])[len(runs_of) // 2]
        out[how] = dict(mid, runs=[round(r["wall"], 2) for r in runs_of],
                        connection_runs=[r["connections"] for r in runs_of])
    return out


def postgres_distance(quick, runs):
    """W16: PostgreSQL a network away. One `volley fetch` (W8's tiny URLs on
    50 hosts, per-host limit 8, concurrency 64) records into PostgreSQL
    through bench/delay-proxy at 0, 0.5 and 2.5 ms each way (round trips
    of about 0, 1 and 5 ms added; the proxy times each delay with a
    timerfd, and the round trip measured with `SELECT 1` is reported too).
    Each database has the schema already (a first run on an empty list
    makes it), as a deployed one has. Two rates: inputs over the
    process's wall time (connecting, opening the job and the first ingest
    included, each several round trips), and the recording rate, outcomes
    over the span of their commit times. As in W8, each run starts on an
    idle server (`idle_postgres`), so that the later delays do not inherit
    the earlier runs' autovacuum."""
    n = 5000 if quick else 50000
    urls = write_urls("w16-urls.txt", [f"http://{FLEET[i % len(FLEET)]}:{PORT}/w16/{i}" for i in range(n)])
    pg_dir = Path("/tmp/volley-bench-pg16")
    url = start_postgres(pg_dir)
    upstream = url.split("@", 1)[1].split("/", 1)[0]
    proxy_port = PORT + 16
    fresh = iter(range(1, 1000))
    last = []
    rows = {}
    try:
        for delay in (0, 0.5, 2.5):
            proxy = subprocess.Popen([DELAY_PROXY, "--delay", f"{delay}ms", "--upstream", upstream,
                                      "--listen", f"127.0.0.1:{proxy_port}"], stdout=subprocess.PIPE, text=True)
            try:
                if proxy.stdout.readline().strip() != "ready":
                    raise RuntimeError("delay-proxy did not start")
                via = url.replace(upstream, f"127.0.0.1:{proxy_port}")
                timing = sh(["psql", via, "-qAt", "-c", "\\timing on"] + ["-c", "SELECT 1"] * 50)
                rtts = sorted(float(m) for m in re.findall(r"Time: ([\d.]+) ms", timing))
                rates, recording = [], []
                for _ in range(runs):
                    name = f"w16_{next(fresh)}"
                    sh(["psql", url, "-qAtc", f"CREATE DATABASE {name}"])
                    db = via.rsplit("/", 1)[0] + "/" + name
                    measure([VOLLEY, "--db", db, "fetch", "/dev/null", "--job", "schema", "--quiet"])
                    idle_postgres(url, last)
                    wall = measure([VOLLEY, "--db", db, "fetch", urls, "--job", "w16", "--quiet",
                                    "--concurrency", 64, "--per-host", 8])[0]
                    got, span_ms = sh(["psql", url.rsplit("/", 1)[0] + "/" + name, "-qAtF", " ", "-c",
                                       "SELECT count(*), max(finished_at_ms) - min(finished_at_ms) FROM outcomes"]).split()
                    if int(got) != n:
                        raise RuntimeError(f"W16: {got} outcomes for {n} inputs")
                    last.append(name)
                    rates.append(n / wall)
                    recording.append((n - 1) / (int(span_ms) / 1000))
                    print(f"W16 {delay} ms each way: {rates[-1]:,.0f} tasks/s, recording {recording[-1]:,.0f}/s",
                          flush=True)
                rows[str(delay)] = {"delay_ms": delay, "rtt_ms": rtts[len(rtts) // 2],
                                    "rps": statistics.median(rates), "runs": [round(r) for r in rates],
                                    "recording": statistics.median(recording),
                                    "recording_runs": [round(r) for r in recording]}
            finally:
                proxy.terminate()
                proxy.wait()
    finally:
        subprocess.run([ROOT / "scripts" / "pg.sh", "stop", pg_dir], check=False)
    return {"inputs": n, "rows": rows}


class Serve:
    """`volley serve` on a fresh SQLite file and a free loopback port, with
    a budget of concurrency 64 and per-host limit 64 (as `fetch` gets in
    W2)."""

    TOKEN = "bench-token"

    def __init__(self, db=None, per_host=64, extra=()):
        """On `db` as it is, or on a fresh SQLite file; with `extra` flags."""
        if db is None:
            db = WORK / "serve.db"
            for suffix in ("", "-wal", "-shm", ".lock"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        env = dict(os.environ, VOLLEY_TOKEN=self.TOKEN)
        self.proc = subprocess.Popen(
            [VOLLEY, "--db", db, "serve", "--listen", "127.0.0.1:0", "--allow-private", "127.0.0.0/8",
             "--concurrency", "64", "--per-host", str(per_host), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.base = None
        for line in self.proc.stderr:
            match = re.search(r"on (http://[0-9.:]+)/", line)
            if match:
                self.base = match.group(1)
                break
        if not self.base:
            raise RuntimeError("volley serve did not say where it listens")
        threading.Thread(target=lambda: self.proc.stderr.read(), daemon=True).start()

    def call(self, method, path, body=None, content_type="application/json"):
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.TOKEN}", "Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read() or b"null")

    def finished(self, names):
        """Waits until every job of `names` is done; returns their JSON by name."""
        while True:
            jobs = {j["name"]: j for j in self.call("GET", "/v1/jobs")["jobs"] if j["name"] in names}
            if len(jobs) == len(names) and all(j["state"] == "done" for j in jobs.values()):
                return jobs
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def serve_workloads(quick, runs):
    """W9. Overhead: the same list of tiny URLs through `volley fetch` (wall:
    process start to exit) and through the API (wall: from creating the job,
    then streaming the list to /inputs, to the job's last outcome). Fairness:
    20 jobs of 5,000 tiny URLs created at once, each with its own list, then
    one of 10; finishing times from the first creation."""
    n = 5000 if quick else 50000
    base = f"http://127.0.0.1:{PORT}"
    urls = write_urls("w9-urls.txt", [f"{base}/tiny?i={i}" for i in range(n)])
    fetch_walls, serve_walls = [], []
    for _ in range(runs):
        fetch_walls.append(measure(volley_cmd(urls, 64))[0])
        server = Serve()
        try:
            started = time.time()
            server.call("POST", "/v1/jobs", {"name": "w9", "options": {"concurrency": 64, "per_host": 64}})
            server.call("POST", "/v1/jobs/w9/inputs", urls.read_bytes(), "text/plain")
            job = server.finished({"w9"})["w9"]
            if job["counts"]["done"] != n:
                raise RuntimeError(f"W9: {job['counts']} for {n} inputs")
            serve_walls.append(job["finished_at_ms"] / 1000 - started)
        finally:
            server.stop()
        print(f"W9 overhead: fetch {fetch_walls[-1]:.2f} s, serve {serve_walls[-1]:.2f} s", flush=True)
    fetch_wall, serve_wall = statistics.median(fetch_walls), statistics.median(serve_walls)
    jobs, size = (20, 500) if quick else (20, 5000)
    spreads = []
    for _ in range(runs):
        server = Serve()
        try:
            lists = {f"j{j:02}": [f"{base}/tiny?j={j}&i={i}" for i in range(size)] for j in range(jobs)}
            started = time.time()
            threads = [threading.Thread(target=server.call, args=("POST", "/v1/jobs", {"name": name, "urls": urls}))
                       for name, urls in lists.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            small_at = time.time()
            server.call("POST", "/v1/jobs", {"name": "small", "urls": [f"{base}/tiny?small={i}" for i in range(10)]})
            done = server.finished(set(lists) | {"small"})
        finally:
            server.stop()
        ends = sorted(done[name]["finished_at_ms"] / 1000 - started for name in lists)
        creations = sorted(done[name]["created_at_ms"] / 1000 - started for name in lists)
        spreads.append({"first": ends[0], "median": statistics.median(ends), "last": ends[-1],
                        "created_last": creations[-1],
                        "rps": (jobs * size + 10) / ends[-1],
                        "small": done["small"]["finished_at_ms"] / 1000 - small_at})
        print(f"W9 fairness: {spreads[-1]}", flush=True)
    mid = sorted(spreads, key=lambda x: x["last"])[len(spreads) // 2]
    return {"inputs": n, "fetch_rps": n / fetch_wall, "serve_rps": n / serve_wall,
            "fetch_runs": [round(n / w) for w in fetch_walls], "serve_runs": [round(n / w) for w in serve_walls],
            "jobs": jobs, "job_size": size, "fairness": mid,
            "fairness_runs": [round(x["last"], 2) for x in spreads],
            "spread_runs": [round(x["last"] - x["first"], 2) for x in spreads]}


def status_workload(base, quick, runs):
    """W15. A job's status at size: a job of 10,000,000 tiny URLs fetched by
    `volley fetch` (W4's database when W4 ran at that size just before),
    then `volley status` (wall, process start included) and, through
    `volley serve` on that database, GET /v1/jobs/{name} one request at a
    time on one kept-alive connection (milliseconds, median and p99).
    Under load: 100 wrk connections polling a job's status while the
    server fetches that job (400,000 tiny URLs), against /healthz in the
    same setting; with the job's own rate during each poll."""
    n = 100_000 if quick else 10_000_000
    db = WORK / "w4.db"
    reuse = db.exists() and sh(["sqlite3", db, "SELECT count(*) FROM outcomes"]) == str(n)
    if not reuse:
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        measure([VOLLEY, "--db", db, "fetch", "--template", f"{base}/tiny?i={{1..{n}}}", "--quiet",
                 "--concurrency", 64, "--per-host", 64])
    status_walls = [measure([VOLLEY, "--db", db, "status"])[0] for _ in range(5)]
    server = Serve(db)
    try:
        name = server.call("GET", "/v1/jobs")["jobs"][0]["name"]
        host, port = server.base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port))
        headers = {"Authorization": f"Bearer {Serve.TOKEN}"}
        times = {}
        for path in (f"/v1/jobs/{name}", "/v1/jobs"):
            ms = []
            for _ in range(1000):
                started = time.perf_counter()
                conn.request("GET", path, headers=headers)
                body = conn.getresponse().read()
                ms.append((time.perf_counter() - started) * 1000)
            ms.sort()
            times[path] = {"p50": ms[len(ms) // 2], "p99": ms[int(len(ms) * 0.99)]}
            if b'"done":' not in body:
                raise RuntimeError(f"W15: {path} answered {body[:200]}")
        conn.close()
        counts = json.loads(body)["jobs"][0]["counts"]
        if counts["done"] + counts["failed"] != n:
            raise RuntimeError(f"W15: {counts} for {n} inputs")
    finally:
        server.stop()
    polled = []
    for _ in range(runs):
        server = Serve()
        try:
            # Large enough to outlast both polls on a fast machine (a job
            # that finishes first fails the check below).
            size = 50_000 if quick else 400_000
            server.call("POST", "/v1/jobs", {"name": "polled", "template": f"{base}/tiny?i={{1..{size}}}",
                                             "options": {"concurrency": 64, "per_host": 64}})
            while server.call("GET", "/v1/jobs/polled")["counts"]["done"] == 0:
                time.sleep(0.01)
            rates = {}
            for path in ("/v1/jobs/polled", "/healthz"):
                before = (time.monotonic(), server.call("GET", "/v1/jobs/polled")["counts"]["done"])
                out = sh(["wrk", "-t", "1", "-c", "100", "-d", "3s", "--latency",
                          "-H", f"Authorization: Bearer {Serve.TOKEN}", server.base + path])
                after = (time.monotonic(), server.call("GET", "/v1/jobs/polled")["counts"]["done"])
                rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
                p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
                p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
                if re.search(r"Non-2xx or 3xx responses", out):
                    raise RuntimeError(f"W15: {path} answered errors under load: {out}")
                rates[path] = {"rps": rps, "p99_ms": p99_ms,
                               "job_rps": (after[1] - before[1]) / (after[0] - before[0])}
            if rates["/v1/jobs/polled"]["job_rps"] <= 0:
                raise RuntimeError("W15: the job finished before the polls ended; make it larger")
            polled.append(rates)
            print(f"W15 polled: {rates}", flush=True)
        finally:
            server.stop()
    mid = sorted(polled, key=lambda r: r["/v1/jobs/polled"]["rps"])[len(polled) // 2]
    result = {"inputs": n, "reused_w4": reuse, "status_wall": statistics.median(status_walls),
              "get": times, "polled": mid, "polled_runs": [round(r["/v1/jobs/polled"]["rps"]) for r in polled]}
    print(f"W15: {result}", flush=True)
    return result


def refresh_workload(nginx, docs, quick, runs, port, copy=True):
    """W10: the Rust docs behind nginx (a copy, so files can change): a first
    job, a --refresh job, then 100 files changed and a --refresh job again.
    Bytes on the wire are nginx's $bytes_sent (headers included) summed over
    each job's responses."""
    n = 2000 if quick else 20000
    files = docs_files(docs, n)
    if copy:
        shutil.rmtree(REFRESH_DOCS, ignore_errors=True)
        for f in files:
            (REFRESH_DOCS / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(docs / f, REFRESH_DOCS / f)
    base = f"http://127.0.0.1:{port}/"
    urls = write_urls("w10-urls.txt", [base + f for f in files])
    log = WORK / "w10.log"
    db = WORK / "w10.db"

    def job(name, extra=()):
        log.unlink(missing_ok=True)
        nginx.reopen_logs()
        wall, rss, _ = measure([VOLLEY, "--db", db, "fetch", urls, "--job", name, "--quiet",
                                "--concurrency", 64, "--per-host", 64, *extra])
        nginx.reopen_logs()
        sent = [line.split() for line in log.read_text().splitlines()]
        counts = sh(["sqlite3", db, "SELECT o.class, count(*) FROM outcomes o JOIN jobs j ON j.id = o.job_id "
                     f"WHERE j.name = '{name}' GROUP BY o.class"])
        classes = dict(row.split("|") for row in counts.splitlines())
        return {"wall": wall, "rss": rss, "bytes": sum(int(b) for _, b in sent), "responses": len(sent),
                "classes": {k: int(v) for k, v in classes.items()}}

    rows = []
    for run in range(runs):
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        first = job("first")
        again = job("refresh", ["--refresh"])
        changed_files = files[run::max(1, len(files) // 100)][:100]
        for f in changed_files:
            path = REFRESH_DOCS / f
            with open(path, "ab") as out:
                out.write(f"\n<!-- changed in run {run} -->\n".encode())
            stat = path.stat()
            os.utime(path, (stat.st_atime, stat.st_mtime + 1000))
        changed = job("changed", ["--refresh"])
        flagged = sh(["sqlite3", db, "SELECT t.url FROM outcomes o JOIN tasks t ON t.id = o.task_id JOIN jobs j "
                      "ON j.id = o.job_id WHERE j.name = 'changed' AND o.changed = 1"]).splitlines()
        exact = sorted(flagged) == sorted(base + f for f in changed_files)
        row = {"first": first, "refresh": again, "changed": changed, "changed_files": len(changed_files),
               "flagged": len(flagged), "exact": exact}
        rows.append(row)
        print(f"W10 port {port} run {run}: first {first['wall']:.2f} s {first['bytes']:,} B; refresh {again['wall']:.2f} s "
              f"{again['bytes']:,} B {again['classes']}; changed {changed['classes']}, "
              f"{len(flagged)} flagged, exact {exact}", flush=True)
    by_ratio = sorted(rows, key=lambda r: r["refresh"]["wall"] / r["first"]["wall"])
    return {"inputs": n, "runs": rows, "median": by_ratio[len(by_ratio) // 2]}


def machine():
    mem = next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    pkgs = sh([PY, "-c", "import aiohttp, uvloop, httpx, scrapy; print(f'aiohttp {aiohttp.__version__}, "
                         "uvloop {uvloop.__version__}, httpx {httpx.__version__}, scrapy {scrapy.__version__}')"])
    return {
        "cores": os.cpu_count(), "memory_gib": round(int(mem) / 2**20, 1), "cpu": cpu,
        "kernel": platform.release(), "python": platform.python_version(), "peers": pkgs,
        "curl": sh(["curl", "--version"]).splitlines()[0].split(" (")[0],
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0].split(" [")[0],
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "volley": sh([VOLLEY, "--version"]),
        "commit": commit_now(),
    }


def cpu_cell(v):
    """User + system CPU of the tool's process per request, in µs; "-" for
    runs from before the harness measured it."""
    return f"{v['cpu_us']:.1f}" if v.get("cpu_us") is not None else "-"


def write_results(r):
    m = r["machine"]
    lines = ["# volley benchmark results", "",
             f"Generated by `bench/run.sh{' --quick' if r['quick'] else ''}` at commit `{m['commit']}`: "
             f"medians of {r['runs']} run(s) per tool, all tools against the same nginx, on the same machine, in "
             "the same run. Requests/s is inputs divided by wall time (process start to exit), every outcome "
             "recorded in SQLite for volley. wrk runs for a fixed time over the same URL list: it is the ceiling "
             "of what this machine's loopback and nginx can serve.", "",
             *([f"Re-run since: {', '.join(f'{x} at `{c}`' for c, x in ((r['commit'], '+'.join(r['workloads'])) for r in r.get('reruns', [])))}.", ""]
               if r.get("reruns") else []),
             f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}. "
             f"{m['nginx']} (1 worker). {m['volley']}; {m['peers']} on Python {m['python']}; {m['curl']}; {m['wrk']}.",
             ""]
    verdicts = []

    def table(key, title, n_label):
        res = r.get(key)
        if not res:
            return
        ceiling = res.get("wrk (ceiling)", {}).get("rps")
        base = res["aiohttp"]["rps"]
        lines.extend([f"## {title}", "", f"| tool | requests/s | × aiohttp | × wrk | CPU µs/request | peak RSS MB "
                      "| runs (req/s) |", "|---|---|---|---|---|---|---|"])
        for tool, v in sorted(res.items(), key=lambda kv: -kv[1]["rps"]):
            wrk_ratio = f"{v['rps'] / ceiling:.2f}" if ceiling else "-"
            rss = f"{v['rss']:.0f}" if v["rss"] else "-"
            lines.append(f"| {tool} | {v['rps']:,.0f} | {v['rps'] / base:.2f} | {wrk_ratio} | {cpu_cell(v)} | {rss} | "
                         f"{', '.join(f'{x:,}' for x in v['runs'])} |")
        lines.append("")
        return res["volley"]["rps"], ceiling

    w1 = table("W1", "W1: 20,000 real files of the Rust docs, concurrency 64", "files")
    if w1 and w1[1]:
        verdicts.append(("W1 ≥ 0.6 × wrk", f"{w1[0] / w1[1]:.2f} × wrk", w1[0] / w1[1] >= 0.6))
    for key, speed in (("W1", 1.2), ("W2", 1.5)):
        res = r.get(key)
        if res and res["volley"].get("cpu_us") is not None:
            v, c = res["volley"], res["curl --parallel"]
            verdicts.append((f"{key} ≥ {speed} × curl's requests/s, CPU per request ≤ curl's",
                             f"{v['rps'] / c['rps']:.2f} ×, {v['cpu_us']:.1f} µs vs {c['cpu_us']:.1f} µs",
                             v["rps"] >= speed * c["rps"] and v["cpu_us"] <= c["cpu_us"]))
    w2 = table("W2", "W2: 50,000 tiny responses, concurrency 64", "responses")
    if "W1-tls" in r:
        res = r["W1-tls"]
        table("W1-tls", "W1-tls: W1's 20,000 files over HTTPS (nginx TLS 1.3, HTTP/2 by ALPN, a test CA), "
              "concurrency 64", "files")
        ratio = res["volley"]["rps"] / res["curl --parallel"]["rps"]
        verdicts.append(("W1-tls ≥ curl", f"{ratio:.2f} × curl", ratio >= 1))
    if "W14" in r:
        w = r["W14"]
        lines.extend([f"## W14: {w['n']:,} Rust-docs URLs over HTTPS on {w['hosts']:,} hosts, {w['delay_ms']} ms "
                      f"each way ({2 * w['delay_ms']} ms round trip, bench/delay-proxy)", "",
                      f"URLs per host follow a Zipf law of exponent {w['zipf']} (the busiest host has {w['busiest']}), "
                      f"in a shuffled order; at most 2 requests per host (`--per-host 2`, aiohttp `limit_per_host=2`) "
                      f"and 256 in all. No tool can finish in less than about {w['ideal']:.1f} s (ideal). curl 7.88 "
                      f"has no `--parallel-max-host` (it came in 8.16): it is not held to 2 per host.", "",
                      "| tool | wall s | × ideal | requests/s | × aiohttp | CPU µs/request | peak RSS MB | most sockets open | runs (req/s) |",
                      "|---|---|---|---|---|---|---|---|---|"])
        base = w["aiohttp"]["rps"]
        for tool in sorted((t for t in w if isinstance(w[t], dict)), key=lambda t: w[t]["wall"]):
            v = w[tool]
            lines.append(f"| {tool} | {v['wall']:.2f} | {v['wall'] / w['ideal']:.2f} | {v['rps']:,.0f} | "
                         f"{v['rps'] / base:.2f} | {cpu_cell(v)} | {v['rss']:.0f} | {v['sockets']:,} | "
                         f"{', '.join(f'{x:,}' for x in v['runs'])} |")
        lines.append("")
        a = w["volley"]["rps"] / base
        c = w["volley"]["rps"] / w["curl --parallel"]["rps"]
        verdicts.append(("W14 ≥ 2 × aiohttp and ≥ 1.2 × curl", f"{a:.2f} × aiohttp, {c:.2f} × curl", a >= 2 and c >= 1.2))
    for key, title in (("W11-tiny", "W11: from Python, 50,000 tiny responses, concurrency 64"),
                       ("W11-docs", "W11: from Python, 20,000 Rust-docs files, concurrency 64")):
        if key in r:
            table(key, title, "inputs")
            res = r[key]
            for tool in ("volley.fetch_all", "volley.Engine stream"):
                ratio = res[tool]["rps"] / res["aiohttp"]["rps"]
                verdicts.append((f"{key} {tool} ≥ 2.5 × aiohttp", f"{ratio:.2f} ×", ratio >= 2.5))
    if "W11-rss" in r:
        rows = r["W11-rss"]
        tools = ("volley.fetch_all", "volley.Engine stream", "aiohttp")
        lines.extend(["## W11: peak RSS (MB) from Python by input size (tiny response, concurrency 64)", "",
                      "| inputs | " + " | ".join(tools) + " |", "|---|---|---|---|"])
        for row in rows:
            lines.append(f"| {row['inputs']:,} | " + " | ".join(
                "not run (grows per URL)" if row[t] is None else f"{row[t]:.0f}" for t in tools) + " |")

        def growth(tool, a, b):
            """Bytes per URL between rows a and b."""
            return (rows[b][tool] - rows[a][tool]) * 1024 * 1024 / (rows[b]["inputs"] - rows[a]["inputs"])

        if len(rows) >= 3:
            volleys = ("volley.fetch_all", "volley.Engine stream")
            early = {t: growth(t, 0, 1) for t in tools}
            late = {t: growth(t, 1, 2) for t in volleys}
            lines.append(
                f"\nGrowth per URL from {rows[0]['inputs']:,} to {rows[1]['inputs']:,} inputs: "
                + ", ".join(f"{t} {g:.0f} bytes" for t, g in early.items())
                + f" (volley's SQLite page caches fill, as in W4); from {rows[1]['inputs']:,} to "
                f"{rows[2]['inputs']:,}: " + ", ".join(f"{t} {g:.0f} bytes" for t, g in late.items())
                + ". volley reads its input lazily (a generator over the file) and fetch_all's outcomes are "
                "read from disk as they are used; aiohttp's gather holds a coroutine, then a result, per URL.")
            for t in volleys:
                verdicts.append((f"W11 {t} RSS flat in input size (< 100 bytes/URL beyond "
                                 f"{rows[1]['inputs']:,})", f"{late[t]:.0f} bytes/URL", late[t] < 100))
        lines.append("")
    if w2 and w2[1]:
        verdicts.append(("W2 ≥ 0.4 × wrk", f"{w2[0] / w2[1]:.2f} × wrk", w2[0] / w2[1] >= 0.4))
    if "W3" in r:
        res = r["W3"]
        lines.extend(["## W3: 5,000 responses delayed 100 ms, concurrency 500 (ideal wall 1.0 s)", "",
                      "| tool | wall s | × ideal | CPU µs/request | peak RSS MB |", "|---|---|---|---|---|"])
        for tool, v in sorted(res.items(), key=lambda kv: kv[1]["wall"]):
            lines.append(f"| {tool} | {v['wall']:.2f} | {v['wall'] / 1.0:.2f} | {cpu_cell(v)} | {v['rss']:.0f} |")
        lines.append("")
        verdicts.append(("W3 ≤ 1.08 × ideal", f"{res['volley']['wall']:.2f} × ideal", res["volley"]["wall"] <= 1.08))
    if "W4" in r:
        lines.extend(["## W4: peak RSS by input size (tiny response, concurrency 64)", "",
                      "| inputs | volley MB | volley requests/s | aiohttp MB |", "|---|---|---|---|"])
        for row in r["W4"]:
            a = f"{row['aiohttp_rss']:.0f}" if "aiohttp_rss" in row else "not run (grows per URL)"
            lines.append(f"| {row['inputs']:,} | {row['volley_rss']:.1f} | {row['volley_rps']:,.0f} | {a} |")
        rows = r["W4"]
        with_a = [x for x in rows if "aiohttp_rss" in x]
        per_url_a = 0.0
        if len(with_a) >= 2:
            per_url_a = (with_a[-1]["aiohttp_rss"] - with_a[0]["aiohttp_rss"]) * 1024 / (with_a[-1]["inputs"] - with_a[0]["inputs"])
            lines.append(f"\naiohttp grows by {per_url_a:.2f} KB per URL (all coroutines are created up front by gather).")
        lines.append("")
        big = [x["volley_rss"] for x in rows if x["inputs"] >= 1_000_000]
        verdicts.append(("W4 ≤ 100 MB at 1M and 10M", f"{', '.join(f'{b:.1f}' for b in big)} MB",
                         bool(big) and max(big) <= 100))
        # Flat means no state per URL: compare the two largest inputs. (From
        # 10k up, fixed-size caches fill first: SQLite's 16 MiB page cache.)
        a, b = rows[-2], rows[-1]
        per_url = (b["volley_rss"] - a["volley_rss"]) * 2**20 / (b["inputs"] - a["inputs"])
        verdicts.append((f"W4 flat (no growth per URL; aiohttp: {per_url_a:.2f} KB/URL)" if with_a and len(with_a) >= 2 else "W4 flat",
                         f"{per_url:.2f} bytes/URL from {a['inputs']:,} to {b['inputs']:,} inputs; "
                         f"{rows[0]['volley_rss']:.0f} MB at {rows[0]['inputs']:,} as caches fill",
                         per_url <= 8))
    if "W5" in r:
        res = r["W5"]
        lines.extend([f"## W5: one {res['size_mb']:,} MiB body streamed to disk", "",
                      "| tool | MB/s | peak RSS MB | runs (MB/s) |", "|---|---|---|---|"])
        for tool in ("volley", "curl"):
            v = res[tool]
            lines.append(f"| {tool} | {v['mbps']:,.0f} | {v['rss']:.1f} | {', '.join(map(str, v['runs']))} |")
        lines.extend(["", "volley also computes the body's SHA-256 and names the file by it; curl only writes.", ""])
        ratio = res["volley"]["mbps"] / res["curl"]["mbps"]
        verdicts.append(("W5 RSS ≤ 64 MB, ≥ 0.8 × curl", f"{res['volley']['rss']:.1f} MB, {ratio:.2f} × curl",
                         res["volley"]["rss"] <= 64 and ratio >= 0.8))
    if "W6" in r:
        v = r["W6"]
        lines.extend(["## W6: 50 hosts, per-host rate limit 20 requests/s", "",
                      "| hosts | requests | allowed aggregate/s | achieved aggregate/s | median host rate/s | busiest host-second (any run) |",
                      "|---|---|---|---|---|---|",
                      f"| {v['hosts']} | {v['requests']:,} | {v['allowed']:,.0f} | {v['aggregate']:,.0f} | "
                      f"{v['median_host_rate']:.2f} | {v['busiest_second']} |", ""])
        verdicts.append(("W6 ≥ 95 % of allowed, no host above 20 in any second",
                         f"{100 * v['aggregate'] / v['allowed']:.1f} %, busiest {v['busiest_second']}",
                         v["aggregate"] >= 0.95 * v["allowed"] and v["busiest_second"] <= 20))
    if "W7" in r:
        lines.extend(["## W7: many hosts, each URL on its own loopback address (concurrency 64)", "",
                      "| hosts | tool | requests/s | × aiohttp | CPU µs/request | peak RSS MB | most sockets open "
                      "| runs (req/s) |", "|---|---|---|---|---|---|---|---|"])
        for row in r["W7"]:
            base = row.get("aiohttp", {}).get("rps")
            for tool in ("volley", "aiohttp", "curl --parallel"):
                if tool not in row:
                    continue
                v = row[tool]
                ratio = f"{v['rps'] / base:.2f}" if base else "-"
                lines.append(f"| {row['hosts']:,} | {tool} | {v['rps']:,.0f} | {ratio} | {cpu_cell(v)} | {v['rss']:.0f} | "
                             f"{v['sockets']:,} | {', '.join(f'{x:,}' for x in v['runs'])} |")
        lines.append("")
        for row in r["W7"]:
            if "volley_one_host_rss" in row:
                lines.append(f"- {row['hosts']:,} URLs on one host: volley peaks at {row['volley_one_host_rss']:.0f} MB.")
        lines.append("")
        first = r["W7"][0]
        if "aiohttp" in first:
            ratio = first["volley"]["rps"] / first["aiohttp"]["rps"]
            verdicts.append(("W7 throughput ≥ 3 × aiohttp", f"{ratio:.2f} × at {first['hosts']:,} hosts", ratio >= 3))
        big = next((x for x in r["W7"] if x["hosts"] == 200000), None)
        if big:
            rss, one = big["volley"]["rss"], big["volley_one_host_rss"]
            verdicts.append(("W7 RSS at 200,000 hosts ≤ 100 MB and ≤ 1.5 × one host",
                             f"{rss:.0f} MB, {rss / one:.2f} × one host ({one:.0f} MB)",
                             rss <= 100 and rss <= 1.5 * one))
        socks = max(x["volley"]["sockets"] for x in r["W7"])
        verdicts.append(("W7 sockets ≤ 1,000 at concurrency 64", f"at most {socks:,}", socks <= 1000))
    if "W8" in r:
        res = r["W8"]
        rows = res["rows"]
        lines.extend([f"## W8: PostgreSQL, {res['inputs']:,} tiny responses on 50 hosts (per-host limit 8, "
                      "concurrency 64 per process)", "",
                      "Tasks recorded/s: inputs over wall time, first process start to last exit. CPU: share of "
                      "the machine's cores used by each, over that wall time.", "",
                      "| store | tasks recorded/s | × SQLite | CPU volley | CPU PostgreSQL | CPU nginx | "
                      "CPU µs per task (volley + PostgreSQL) | runs |",
                      "|---|---|---|---|---|---|---|---|"])
        base = rows["SQLite, 1 process"]["rps"]
        cores = r.get("machine", {}).get("cores") or os.cpu_count()
        for name, v in rows.items():
            c = v["cpu"]
            per_task = (c["volley"] + c["postgres"]) * cores * 1e6 / v["rps"]
            lines.append(f"| {name} | {v['rps']:,.0f} | {v['rps'] / base:.2f} | {100 * c['volley']:.0f} % | "
                         f"{100 * c['postgres']:.0f} % | {100 * c['nginx']:.0f} % | {per_task:.0f} | "
                         f"{', '.join(f'{x:,}' for x in v['runs'])} |")
        lines.append("")
        latency = ROOT / "bench" / "lease-latency.md"  # bench/pg-lease-latency.sh
        if latency.exists():
            lines.append(latency.read_text())
        one, four = rows["PostgreSQL, 1 worker"]["rps"], rows["PostgreSQL, 4 workers"]["rps"]
        verdicts.append(("W8 PostgreSQL 1 worker ≥ 0.75 × SQLite", f"{one / base:.3f} ×", one >= 0.75 * base))
        verdicts.append(("W8 PostgreSQL 4 workers ≥ 1 worker and ≥ 5,000 tasks/s",
                         f"{four:,.0f} tasks/s, {four / one:.2f} × 1 worker", four >= one and four >= 5000))
    if "W9" in r:
        res = r["W9"]
        over = res["fetch_rps"] / res["serve_rps"] - 1
        f = res["fairness"]
        lines.extend([f"## W9: volley serve, {res['inputs']:,} tiny responses (concurrency 64, per-host limit 64)", "",
                      "| how | requests/s | runs |", "|---|---|---|",
                      f"| `volley fetch` (process start to exit) | {res['fetch_rps']:,.0f} | "
                      f"{', '.join(f'{x:,}' for x in res['fetch_runs'])} |",
                      f"| through the API (create, stream the list to /inputs, last outcome) | {res['serve_rps']:,.0f} | "
                      f"{', '.join(f'{x:,}' for x in res['serve_runs'])} |", "",
                      f"The server's overhead: {100 * over:.1f} % more wall time than `fetch`.", "",
                      f"Fairness: {res['jobs']} jobs of {res['job_size']:,} URLs created at once on one budget, then a "
                      f"10-URL job. Seconds from the first creation to each job's last outcome: first {f['first']:.2f}, "
                      f"median {f['median']:.2f}, last {f['last']:.2f} (spread {f['last'] - f['first']:.2f} s, "
                      f"{100 * (f['last'] - f['first']) / f['last']:.0f} % of the whole); {f['rps']:,.0f} requests/s in "
                      f"all. The last of the 20 was created {f.get('created_last', 0):.2f} s after the first (each creation stores "
                      f"its 5,000 URLs). The 10-URL job finished {f['small']:.2f} s after it was created. Runs: last "
                      f"finish {', '.join(str(x) for x in res['fairness_runs'])} s; spread "
                      f"{', '.join(str(x) for x in res.get('spread_runs', []))} s.", ""])
        verdicts.append(("W9 serve overhead ≤ 10 % of `fetch`", f"{100 * over:.1f} %", over <= 0.10))
    if "W15" in r:
        res = r["W15"]
        get = res["get"]
        job_path = next(p for p in get if p != "/v1/jobs")
        polled = res["polled"]
        status, health = polled["/v1/jobs/polled"], polled["/healthz"]
        lines.extend([f"## W15: a job's status at {res['inputs']:,} tasks, and under 100 pollers", "",
                      f"The job: {res['inputs']:,} tiny URLs fetched by `volley fetch` "
                      f"({'W4' + chr(39) + 's database' if res['reused_w4'] else 'made for this workload'}). "
                      "Each GET one at a time on one kept-alive connection to `volley serve` on that database, "
                      "1,000 times.", "",
                      "| read | p50 ms | p99 ms |", "|---|---|---|",
                      f"| `volley status` (process start to exit, median of 5) | {1000 * res['status_wall']:.1f} | |",
                      f"| GET {job_path.replace('/v1/jobs/', '/v1/jobs/{name} (')}) | {get[job_path]['p50']:.2f} | "
                      f"{get[job_path]['p99']:.2f} |",
                      f"| GET /v1/jobs | {get['/v1/jobs']['p50']:.2f} | {get['/v1/jobs']['p99']:.2f} |", "",
                      "Under load: wrk with 100 connections for 3 s against the status of a job the same server is "
                      "fetching (tiny URLs, concurrency 64), and against /healthz in the same setting.", "",
                      "| polled | requests/s | p99 ms | the job's own tasks/s meanwhile |", "|---|---|---|---|",
                      f"| GET /v1/jobs/{{name}} | {status['rps']:,.0f} | {status['p99_ms']:.1f} | {status['job_rps']:,.0f} |",
                      f"| GET /healthz | {health['rps']:,.0f} | {health['p99_ms']:.1f} | {health['job_rps']:,.0f} |", "",
                      f"Runs (status requests/s): {', '.join(f'{x:,}' for x in res['polled_runs'])}.", ""])
        verdicts.append((f"W15 status of a {res['inputs']:,}-task job ≤ 5 ms", f"{get[job_path]['p50']:.2f} ms p50, "
                         f"{get[job_path]['p99']:.2f} ms p99", get[job_path]["p99"] <= 5))
        verdicts.append(("W15 ≥ 10,000 status requests/s from 100 clients while a job runs",
                         f"{status['rps']:,.0f}/s", status["rps"] >= 10_000))
    if "W17" in r:
        res = r["W17"]
        lines.extend([f"## W17: one connection pool for a server's jobs ({res['jobs']} jobs of 10 URLs to one "
                      f"HTTPS host, --per-host {res['per_host']})", "",
                      "Jobs created through the API one after another on one `volley serve`; each job 10 of W1's "
                      "files from nginx over TLS 1.3 and HTTP/2. Wall: first creation to the last job's last "
                      "outcome. Connections: what nginx accepted (stub_status).", "",
                      "| jobs | wall s | connections | runs (wall s; connections) |", "|---|---|---|---|"])
        for how in ("shared", "one client per job"):
            v = res[how]
            label = ("with the same options (one client, shared)" if how == "shared"
                     else "each with its own User-Agent (a client each, as before)")
            lines.append(f"| {label} | {v['wall']:.2f} | {v['connections']} | "
                         f"{', '.join(str(x) for x in v['runs'])}; {', '.join(str(x) for x in v['connection_runs'])} |")
        lines.append("")
        shared, each = res["shared"], res["one client per job"]
        verdicts.append((f"W17 {res['jobs']} jobs open ≤ --per-host connections in all, and finish faster than "
                         "a client per job", f"{shared['connections']} connections, {shared['wall']:.2f} s against "
                         f"{each['connections']} and {each['wall']:.2f} s",
                         shared["connections"] <= res["per_host"] and shared["wall"] < each["wall"]))
    if "W16" in r:
        res = r["W16"]
        rows = list(res["rows"].values())
        lines.extend([f"## W16: PostgreSQL a network away ({res['inputs']:,} tiny URLs on 50 hosts, one "
                      "`volley fetch`, concurrency 64)", "",
                      "Through bench/delay-proxy between volley and PostgreSQL. Round trip: median of 50 "
                      "`SELECT 1` through the proxy (psql's timing).", "",
                      "| delay each way | round trip ms | recording rate/s | × at 0 ms | inputs/wall s | × at 0 ms | "
                      "runs (recording; inputs/wall) |", "|---|---|---|---|---|---|---|"])
        base, base_wall = rows[0]["recording"], rows[0]["rps"]
        for row in rows:
            lines.append(f"| {row['delay_ms']} ms | {row['rtt_ms']:.2f} | {row['recording']:,.0f} | "
                         f"{row['recording'] / base:.2f} | {row['rps']:,.0f} | {row['rps'] / base_wall:.2f} | "
                         f"{', '.join(f'{x:,}' for x in row['recording_runs'])}; "
                         f"{', '.join(f'{x:,}' for x in row['runs'])} |")
        lines.extend(["", "The recording rate is outcomes over the span of their commit times; inputs/wall "
                      "includes the process's start (connecting, registering the worker, opening the job, the "
                      "first ingest batch), a fixed number of round trips.", ""])
        far = rows[-1]
        verdicts.append(("W16 at +5 ms round trip ≥ 0.9 × the recording rate at 0 ms", f"{far['recording'] / base:.2f} × "
                         f"(round trip {far['rtt_ms']:.1f} ms; inputs/wall {far['rps'] / base_wall:.2f} ×)",
                         far["recording"] >= 0.9 * base))
    for key, link in (("W10", "loopback"), ("W10-slow", "each response sent at most 512 KiB/s (nginx `limit_rate`)")):
        if key not in r:
            continue
        res = r[key]
        m = res["median"]
        first, again, changed = m["first"], m["refresh"], m["changed"]
        nm = again["classes"].get("not_modified", 0)
        lines.extend([f"## {key}: refresh, {res['inputs']:,} Rust-docs files behind nginx, {link} (concurrency 64)", "",
                      "| job | wall s | bytes sent by nginx | responses | classes |", "|---|---|---|---|---|"])
        for name, j in (("first", first), ("`--refresh`", again), ("`--refresh` after 100 files changed", changed)):
            classes = ", ".join(f"{k} {v:,}" for k, v in sorted(j["classes"].items()))
            lines.append(f"| {name} | {j['wall']:.2f} | {j['bytes']:,} | {j['responses']:,} | {classes} |")
        lines.extend(["", f"The run with the median wall ratio of {len(res['runs'])}. Wall ratios (refresh / first): "
                      + ", ".join(f"{x['refresh']['wall'] / x['first']['wall']:.2f}" for x in res["runs"])
                      + "; byte ratios: "
                      + ", ".join(f"{100 * x['refresh']['bytes'] / x['first']['bytes']:.2f} %" for x in res["runs"])
                      + f". After the change, `changed = 1` on {m['flagged']} outcomes, "
                      + ("exactly the changed files." if m["exact"] else "**not** exactly the changed files."), ""])
        verdicts.append((f"{key} refresh ≥ 99 % not_modified", f"{100 * nm / res['inputs']:.2f} %",
                         nm >= 0.99 * res["inputs"]))
        verdicts.append((f"{key} refresh bytes ≤ 2 % of the first run", f"{100 * again['bytes'] / first['bytes']:.2f} %",
                         again["bytes"] <= 0.02 * first["bytes"]))
        verdicts.append((f"{key} refresh wall ≤ 0.6 × the first run", f"{again['wall'] / first['wall']:.2f} ×",
                         again["wall"] <= 0.6 * first["wall"]))
        verdicts.append((f"{key} 100 files changed: exactly those are `changed`", f"{m['flagged']} flagged",
                         m["exact"] and all(x["exact"] for x in res["runs"])))
    lines.extend(["## Targets", "", "| target | measured | met |", "|---|---|---|"])
    lines.extend(f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in verdicts)
    lines.append("")
    lines.extend(["## Commands", "", "```sh", "bench/run.sh            # everything, 3 runs each",
                  "bench/run.sh --quick    # a smaller smoke run", "```", "",
                  "Each tool's exact command line is in `bench/harness.py` (`PEER_COMMANDS`, `wrk`, the W4-W6 blocks).",
                  ""])
    notes = ROOT / "bench" / "NOTES.md"
    if notes.exists():
        lines.extend([notes.read_text()])
    name = "RESULTS-quick.md" if r["quick"] else "RESULTS.md"
    if r.get("partial"):
        name = "RESULTS-" + "-".join(r["partial"]) + ".md"
        print(f"no full report in {WORK} to update: {name} holds only {', '.join(r['partial'])}; "
              "bench/RESULTS.md is left as it was", flush=True)
    out = ROOT / "bench" / name
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
