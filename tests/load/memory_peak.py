#!/usr/bin/env python3
"""Peak memory of `ostore up` under many large writes at once.

Starts the release build of `ostore up` with the tutorial application
(spin.toml) on a fresh data directory, sends CONCURRENCY writes of
10 MiB each (a value just under the default 10 MiB limit) at the same moment (`POST /store`, the tutorial route,
which needs no credential), and prints the answers by status, the peak RSS
(VmHWM) and the RSS after the writes. Extra arguments go to `ostore up`, e.g.

    python3 tests/load/memory_peak.py                          # the default budget
    python3 tests/load/memory_peak.py --memory-budget 1048576  # budget 1 TiB: unbounded

Build first: cargo build --release -p ostore and the guests
(cargo build --release --target wasm32-wasip2 --manifest-path guest/Cargo.toml).
"""

import collections
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

CONCURRENCY = 64
VALUE_BYTES = (10 << 20) - 64
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    binary = os.path.join(ROOT, "target/release/ostore")
    data = tempfile.mkdtemp(prefix="ostore-memory-")
    log = open(os.path.join(data, "host.log"), "w+")
    host = subprocess.Popen(
        [binary, "up", "-f", os.path.join(ROOT, "spin.toml"), "--data-dir", data,
         "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *sys.argv[1:]],
        stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        addr = None
        deadline = time.time() + 60
        while addr is None and time.time() < deadline:
            line = host.stdout.readline()
            match = re.match(r"Serving http://(\S+)", line)
            if match:
                addr = match.group(1)
        if addr is None:
            raise SystemExit("ostore did not start")
        hostname, port = addr.rsplit(":", 1)
        value = "v" * VALUE_BYTES
        barrier = threading.Barrier(CONCURRENCY)
        statuses = collections.Counter()
        lock = threading.Lock()

        def write(i):
            body = f'{{"key": "big-{i}", "value": "{value}"}}'.encode()
            conn = http.client.HTTPConnection(hostname, int(port), timeout=120)
            barrier.wait()
            try:
                conn.request("POST", "/store", body, {"content-type": "application/json"})
                status = conn.getresponse().status
            except OSError as e:
                status = type(e).__name__
            with lock:
                statuses[status] += 1

        started = time.time()
        threads = [threading.Thread(target=write, args=(i,)) for i in range(CONCURRENCY)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - started
        time.sleep(1)
        peak = status_kib(host.pid, "VmHWM") / 1024
        after = status_kib(host.pid, "VmRSS") / 1024
        print(f"{CONCURRENCY} writes of {len(value) / (1 << 20):.2f} MiB, args {' '.join(sys.argv[1:]) or '(defaults)'}")
        print(f"  answers: {dict(sorted(statuses.items(), key=str))} in {elapsed:.1f} s")
        print(f"  peak RSS {peak:.0f} MiB, RSS after {after:.0f} MiB")
        log.seek(0)
        guests = log.read().count("memory budget cannot spare")
        print(f"  guests refused memory while running: {guests}")
    finally:
        host.terminate()
        host.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
