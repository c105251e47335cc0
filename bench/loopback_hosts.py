"""Prints N URLs, each on its own loopback address (127.0.1.0 onwards, so
never 127.0.0.0/24 where the other benchmarks' servers live), on PORT.

    python3 loopback_hosts.py N PORT [PATH]"""
import sys

n, port = int(sys.argv[1]), int(sys.argv[2])
path = sys.argv[3] if len(sys.argv) > 3 else "/tiny"
if n > (1 << 24) - 512:
    sys.exit("at most 16,776,704 loopback hosts")
out = sys.stdout
for i in range(256, 256 + n):
    out.write(f"http://127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:{port}{path}\n")
