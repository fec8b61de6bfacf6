"""Memory after a burst: starts `polymeter up` (release build), sends 24
concurrent Weave batches of ~30 MiB each, and prints the process's resident
memory before, right after, and 10 s after the burst.

    cargo build --release -p polymeter
    python3 scripts/memory-burst.py target/release/polymeter
"""

import base64
import concurrent.futures
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request


def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/polymeter"
    data = tempfile.mkdtemp(prefix="polymeter-burst-")
    up = subprocess.Popen(
        [binary, "up", "--data-dir", data, "--gateway-listen", "127.0.0.1:0",
         "--ingest-listen", "127.0.0.1:0", "--stats-listen", "127.0.0.1:0",
         "--feedback-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    key = gateway = None
    while gateway is None:
        line = up.stdout.readline()
        if not line:
            sys.exit("polymeter up exited")
        found = re.search(r"(pm-[A-Za-z0-9]+)", line)
        key = key or (found and found.group(1))
        found = re.search(r"gateway\s+http://(\S+)", line)
        gateway = found and found.group(1)
    auth = "Basic " + base64.b64encode(f"api:{key}".encode()).decode()
    body = json.dumps({"batch": [
        {"id": f"b{i}", "op_name": "x" * 1000, "trace_id": "t",
         "started_at": "2024-05-01T10:00:00Z", "ended_at": "2024-05-01T10:00:01Z",
         "inputs": {"big": "y" * 20000}, "output": None, "summary": {}}
        for i in range(1500)]}).encode()

    def post(_):
        request = urllib.request.Request(
            f"http://{gateway}/v2/bench/burst/calls/complete", data=body,
            headers={"Authorization": auth, "Content-Type": "application/json"})
        return urllib.request.urlopen(request, timeout=120).status

    print(f"rss before: {rss(up.pid)} MiB; 24 batches of {len(body) >> 20} MiB")
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        statuses = list(pool.map(post, range(24)))
    print(f"answers: {sorted(set(statuses))}")
    print(f"rss right after: {rss(up.pid)} MiB")
    time.sleep(10)
    print(f"rss 10 s later: {rss(up.pid)} MiB")
    up.kill()


if __name__ == "__main__":
    main()
