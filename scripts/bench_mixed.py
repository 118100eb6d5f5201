#!/usr/bin/env python3
"""Searches while ingest runs flat out, through one node's HTTP API (scripts/bench-mixed.sh).

usage: python3 scripts/bench_mixed.py DATA_DIR URL [--preload N] [--seconds S]
                                      [--writers 8] [--searchers 4] [--batch 500]

1. preload: N of the shared records (DATA_DIR from shared/bench/vectors.py) pushed by the
   writers, then a wait until every point is in a graph;
2. "alone": the searchers alone for S/3 seconds;
3. "mixed": the writers push new records as fast as they can (batches of --batch records
   of one system, each identity new) while the searchers search, for S seconds; then the
   seconds from the last write until every point is in a graph.
Searchers alternate a global top-10 by embedding (the shared queries) and a text search
(the node embeds the text). The writers run in a process of their own, so the searchers'
timings do not wait on the writers' turn at the interpreter. Prints one JSON object per
phase: records/s, p50/p99 of each kind of search, and the node's own p50/p99 over its
most recent searches of both kinds.

Bodies are encoded once before the clock starts and only their round number is replaced
per push, so the client's own CPU (on the same cores as the node) stays small.
"""
import argparse, http.client, json, multiprocessing, threading, time, urllib.parse

import numpy as np

from bench_common import load

TEXTS = [
    "how did we fix the flaky integration test",
    "database migration failed on startup",
    "rust borrow checker error in the async handler",
    "configure the S3 bucket for uploads",
    "why is the search latency so high",
    "refactor the shard supervisor restart logic",
    "add metrics for ingestion backlog",
    "the docker build runs out of memory",
]


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def post(self, path, body):
        for attempt in range(3):
            try:
                self.conn.request("POST", path, body, {"content-type": "application/json"})
                r = self.conn.getresponse()
                data = r.read()
                return r.status, data
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt == 2:
                    raise

    def get(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        return r.status, json.loads(r.read())


def templates(base, systems, batch, count):
    """`count` ingest bodies of `batch` records each, with @@R@@ where the round goes."""
    out = []
    n = base.shape[0]
    for b in range(count):
        idx = [(b * batch + j) % n for j in range(batch)]
        system = f"sys-{int(systems[idx[0]]):05d}"
        convs = [{
            "id": f"m{i}-@@R@@",
            "content": f"benchmark record {i} round @@R@@",
            "embedding": [round(float(x), 6) for x in base[i]],
        } for i in idx]
        out.append(json.dumps({"system_id": system, "conversations": convs}).encode())
    return out


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * p)))]


def pending(url):
    _, stats = Client(url).get("/api/v1/stats")
    return stats["index"]["pending_points"]


def wait_indexed(url):
    t = time.perf_counter()
    while pending(url) > 0:
        time.sleep(0.1)
    return time.perf_counter() - t


def write_flat_out(url, bodies, writers, first_round, records_per_body, stop, written, errors):
    """`writers` threads pushing bodies until `stop` is set (in a process of their own, so
    that the searchers' timings do not wait on the writers' share of the interpreter)."""
    lock = threading.Lock()
    next_body = [0]

    def writer():
        c = Client(url)
        while not stop.is_set():
            with lock:
                k = next_body[0]
                next_body[0] += 1
            body = bodies[k % len(bodies)].replace(b"@@R@@", str(first_round + k // len(bodies)).encode())
            status, data = c.post("/api/v1/ingest", body)
            if status != 200:
                errors.put(f"ingest {status}: {data[:200]!r}")
                continue
            with written.get_lock():
                written.value += records_per_body

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def node_latency(url):
    """The node's own search p50/p99 over its most recent searches."""
    _, stats = Client(url).get("/api/v1/stats")
    m = stats.get("activity", {})
    return m.get("search_p50_ms"), m.get("search_p99_ms")


def run(url, bodies, writers, searchers, seconds, queries, first_round, records_per_body):
    """Writers and searchers for `seconds` (writers 0: searchers alone)."""
    stop = threading.Event()
    lat = {"embedding": [], "text": []}
    errors = []
    wstop = multiprocessing.Event()
    written = multiprocessing.Value("q", 0)
    werrors = multiprocessing.Queue()

    def searcher(s):
        c = Client(url)
        q = s
        while not stop.is_set():
            if q % 2 == 0:
                kind = "embedding"
                body = json.dumps({"embedding": [float(x) for x in queries[q % len(queries)]], "limit": 10})
            else:
                kind = "text"
                body = json.dumps({"query": TEXTS[q % len(TEXTS)], "limit": 10})
            t = time.perf_counter()
            status, data = c.post("/api/v1/search", body)
            ms = (time.perf_counter() - t) * 1000
            if status != 200:
                errors.append(f"search {status}: {data[:200]!r}")
            else:
                lat[kind].append(ms)
            q += searchers

    proc = None
    if writers:
        proc = multiprocessing.Process(target=write_flat_out, args=(
            url, bodies, writers, first_round, records_per_body, wstop, written, werrors))
    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(searchers)]
    max_pending = 0
    t0 = time.perf_counter()
    if proc:
        proc.start()
    for t in threads:
        t.start()
    while time.perf_counter() - t0 < seconds:
        time.sleep(0.5)
        if writers:
            max_pending = max(max_pending, pending(url))
    node_p50, node_p99 = node_latency(url)
    stop.set()
    wstop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if proc:
        proc.join()
    while not werrors.empty():
        errors.append(werrors.get())
    extra = {"node_search_p50_ms": node_p50, "node_search_p99_ms": node_p99}
    return written.value / elapsed, lat, errors, max_pending, extra


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("url")
    ap.add_argument("--preload", type=int, default=200_000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--searchers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=500)
    a = ap.parse_args()
    base, systems, queries, _ = load(a.data)
    count = max(8, min(200, base.shape[0] // a.batch))
    bodies = templates(base, systems, a.batch, count)

    # preload: each body once per round until N records
    rounds = max(1, a.preload // (a.batch * count))
    t = time.perf_counter()
    c = Client(a.url)
    for r in range(rounds):
        for b in bodies:
            status, data = c.post("/api/v1/ingest", b.replace(b"@@R@@", f"p{r}".encode()))
            assert status == 200, data[:300]
    pre_s = time.perf_counter() - t
    built_s = wait_indexed(a.url)
    print(json.dumps({"bench": "mixed_preload", "records": rounds * count * a.batch,
                      "records_per_s": round(rounds * count * a.batch / pre_s),
                      "seconds_after_last_write_until_indexed": round(built_s, 2)}), flush=True)

    def report(phase, rate, lat, errors, extra):
        row = {"bench": phase, "writers": a.writers if phase == "mixed" else 0,
               "searchers": a.searchers, "records_per_s": round(rate)}
        for kind, xs in lat.items():
            row[f"{kind}_searches"] = len(xs)
            row[f"{kind}_p50_ms"] = round(pct(xs, 0.5), 2)
            row[f"{kind}_p99_ms"] = round(pct(xs, 0.99), 2)
        row.update(extra)
        row["errors"] = len(errors)
        print(json.dumps(row), flush=True)
        for e in errors[:5]:
            print(json.dumps({"error": e}), flush=True)

    rate, lat, errors, _, extra = run(a.url, bodies, 0, a.searchers, a.seconds / 3, queries, 0, a.batch)
    report("mixed_search_alone", rate, lat, errors, extra)
    rate, lat, errors, max_pending, extra = run(a.url, bodies, a.writers, a.searchers, a.seconds,
                                                queries, 1_000, a.batch)
    indexed = wait_indexed(a.url)
    report("mixed", rate, lat, errors, {
        **extra,
        "max_points_waiting_for_a_graph": max_pending,
        "seconds_after_last_write_until_indexed": round(indexed, 2)})


if __name__ == "__main__":
    main()
