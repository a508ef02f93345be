"""`diffuse serve` under load, on loopback, bounded in time: status requests at 100 a second while a generation runs,
1,000 malformed requests, 50 jobs queued and half of them cancelled. Checks that no request is lost (every one gets
an answer), that malformed ones get a 4xx (never a 5xx), that the server stays up, that the queue keeps its order,
and that its memory stays flat; prints the requests, errors, latency percentiles and the RSS range.

Usage:  python3 scripts/serve_load.py [--diffuse .build/release/diffuse] [--seconds 20]
Exit status 0 when every check passes. Only Python's standard library.
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def request(base, method, path, body=None, raw=None):
    """(status, parsed JSON or None, seconds); status 0 when no answer came."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        text, status = e.read(), e.code
    except Exception:
        return 0, None, time.perf_counter() - start
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    return status, parsed, time.perf_counter() - start


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


MALFORMED = [
    (b"not json", "POST", "/sdapi/v1/txt2img"), (b"{", "POST", "/jobs"), (b"[]", "POST", "/jobs"), (b"null", "POST", "/sdapi/v1/txt2img"),
    (b'{"steps": "many"}', "POST", "/sdapi/v1/txt2img"), (b'{"steps": 1e300}', "POST", "/sdapi/v1/txt2img"),
    (b'{"steps": -1}', "POST", "/sdapi/v1/txt2img"), (b'{"seed": 99999999999999999999999}', "POST", "/sdapi/v1/txt2img"),
    (b'{"cfg_scale": "NaN"}', "POST", "/sdapi/v1/txt2img"), (b'{"model": "../../etc/passwd"}', "POST", "/sdapi/v1/txt2img"),
    (b'{"sampler_name": "\\u0000"}', "POST", "/sdapi/v1/txt2img"), (b'{"type": "train", "name": "/abs"}', "POST", "/jobs"),
    (b'{"type": "train", "name": "x", "data": "mnist:../../"}', "POST", "/jobs"), (b'{"type": 7}', "POST", "/jobs"),
    (None, "GET", "/jobs/-1"), (None, "GET", "/jobs/99999999999999999999"), (None, "DELETE", "/jobs/abc"),
    (None, "GET", "/outputs/..%2F..%2Fetc%2Fpasswd"), (None, "GET", "/api/runs/..%2F/log"), (None, "GET", "/page/%00"),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--diffuse", default=".build/release/diffuse")
    parser.add_argument("--seconds", type=float, default=20, help="how long status requests run beside a generation")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="serve-load-")
    failures = []
    subprocess.run([args.diffuse, "train", "--data", "shapes", "--preset", "tiny", "--image-size", "16", "--examples", "200",
                    "--steps", "10", "--sample-every", "0", "--out", f"{work}/runs/tiny"], check=True, capture_output=True)
    server = subprocess.Popen([args.diffuse, "serve", "--port", "0", "--runs", f"{work}/runs", "--outputs", f"{work}/outputs"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(server.stdout.readline().strip().rsplit(":", 1)[1])
        base = f"http://127.0.0.1:{port}"
        rss = []
        stop = threading.Event()

        def sample_memory():
            while not stop.is_set():
                rss.append(rss_mb(server.pid))
                time.sleep(0.5)
        threading.Thread(target=sample_memory, daemon=True).start()

        # 1. Status requests at 100 a second (4 threads at 25 each) while long generations run.
        long = {"type": "generate", "model": "runs/tiny", "steps": 1000, "sampler_name": "DDPM", "batch_size": 16}
        running = [request(base, "POST", "/jobs", long)[1]["id"] for _ in range(3)]
        latencies, lost, statuses = [], 0, {}
        lock = threading.Lock()

        def poll(deadline):
            nonlocal lost
            next_at = time.perf_counter()
            while time.perf_counter() < deadline:
                path = random.choice(["/sdapi/v1/progress", f"/jobs/{running[0]}", "/jobs", "/api/models"])
                status, _, seconds = request(base, "GET", path)
                with lock:
                    latencies.append(seconds)
                    statuses[status] = statuses.get(status, 0) + 1
                    lost += status == 0
                next_at += 1 / 25
                time.sleep(max(0, next_at - time.perf_counter()))
        deadline = time.perf_counter() + args.seconds
        threads = [threading.Thread(target=poll, args=(deadline,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        status_count = len(latencies)
        print(f"status requests: {status_count} in {args.seconds:.0f} s beside a generation ({status_count / args.seconds:.0f}/s), "
              f"answers {statuses}, latency p50 {1000 * percentile(latencies, 50):.1f} ms, p95 {1000 * percentile(latencies, 95):.1f} ms, "
              f"p99 {1000 * percentile(latencies, 99):.1f} ms, max {1000 * max(latencies):.1f} ms")
        if lost or set(statuses) != {200}:
            failures.append(f"status requests: {lost} lost, answers {statuses}")
        for job in running:
            request(base, "DELETE", f"/jobs/{job}")

        # 2. 1,000 malformed requests: each a 4xx with a JSON error.
        bad, bad_latencies = {}, []
        for i in range(1000):
            raw, method, path = MALFORMED[i % len(MALFORMED)]
            if i >= len(MALFORMED) and raw is not None:
                raw = bytes(random.randrange(256) for _ in range(random.randrange(1, 64))) if i % 3 == 0 else raw
            status, parsed, seconds = request(base, method, path, raw=raw)
            bad_latencies.append(seconds)
            bad[status] = bad.get(status, 0) + 1
            if not (400 <= status < 500) or not isinstance(parsed, dict) or "error" not in parsed:
                failures.append(f"malformed {method} {path} {raw!r:.60}: {status} {parsed}")
        print(f"malformed requests: 1000, answers {dict(sorted(bad.items()))}, latency p50 {1000 * percentile(bad_latencies, 50):.1f} ms, "
              f"p99 {1000 * percentile(bad_latencies, 99):.1f} ms")

        # 3. 50 small jobs queued, every other one cancelled at once: the rest run in the order they came.
        small = {"type": "generate", "model": "runs/tiny", "steps": 3, "batch_size": 2}
        ids = []
        for i in range(50):
            ids.append(request(base, "POST", "/jobs", dict(small, seed=i))[1]["id"])
            if i % 2 == 1:
                request(base, "DELETE", f"/jobs/{ids[-1]}")
        finished = {}
        deadline = time.perf_counter() + 300
        while len(finished) < 50 and time.perf_counter() < deadline:
            for job in ids:
                if job not in finished:
                    status, parsed, _ = request(base, "GET", f"/jobs/{job}")
                    if parsed and parsed.get("state") in ("done", "failed", "cancelled"):
                        finished[job] = parsed
            time.sleep(0.1)
        states = [finished.get(job, {}).get("state") for job in ids]
        images = [finished[job]["images"][0] for job in ids[0::2] if finished.get(job, {}).get("images")]
        in_order = images == sorted(images)
        print(f"queue: 50 jobs, {states.count('done')} done, {states.count('cancelled')} cancelled, "
              f"{states.count('failed')} failed, {50 - len(finished)} unfinished; done in the order queued: {in_order}")
        if states != ["done", "cancelled"] * 25 or not in_order:
            failures.append(f"queue: states {states}, images {images}")

        stop.set()
        if server.poll() is not None:
            failures.append(f"the server ended (status {server.returncode})")
        warm = rss[len(rss) // 4:]
        print(f"server RSS: {min(rss):.0f}–{max(rss):.0f} MB over the run, {min(warm):.0f}–{max(warm):.0f} MB after the first quarter "
              f"({len(rss)} samples)")
    finally:
        server.terminate()
        server.wait(timeout=10)
    for failure in failures[:20]:
        print("FAILED:", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
