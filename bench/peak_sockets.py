"""Samples the sockets held open by a process and its descendants (from
/proc) every 20 ms until it exits; prints the most seen at once.

    python3 peak_sockets.py PID"""
import os
import sys
import time


def tree(pid):
    """pid and its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(f.read().split())
        except OSError:
            pass
    return pids


def sockets(pid):
    n = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


root = sys.argv[1]
peak = 0
while os.path.exists(f"/proc/{root}"):
    peak = max(peak, sum(sockets(p) for p in tree(root)))
    time.sleep(0.02)
print(peak)
