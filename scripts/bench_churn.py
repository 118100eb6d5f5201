#!/usr/bin/env python3
"""Pushes the same shared benchmark records into a running node ROUNDS times over HTTP (each
round replaces every record with a newer copy) and, after each round, once the index has
caught up and its merges have settled, prints the node's live and held index points, its
segments and merges, and its resident memory; at the end, global recall@10 and p50/p99 of
top-10 searches by the shared queries.

usage: bench_churn.py DATA_DIR URL PID [--rounds 10] [--batch 500]
"""
import argparse, json, threading, time, urllib.request

from bench_common import load, system_batches


def call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("url")
    ap.add_argument("pid", type=int)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=500)
    a = ap.parse_args()
    base, systems, queries, gt = load(a.data)
    n = base.shape[0]
    batches = system_batches(systems, a.batch)

    def push(round_no):
        todo = list(batches)
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    if not todo:
                        return
                    system, idx = todo.pop()
                convs = [
                    {
                        "id": f"r{int(k)}",
                        "content": f"record {int(k)} round {round_no}",
                        "embedding": base[k].tolist(),
                        # the node versions each push by its clock: every round replaces
                        "timestamp": "2026-11-20T10:00:00Z",
                    }
                    for k in idx
                ]
                call(a.url + "/api/v1/ingest", {"system_id": system, "conversations": convs})

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def settle():
        # caught up (no pending point) and no merge for two seconds
        last, still = None, 0
        while True:
            index = call(a.url + "/api/v1/stats")["index"]
            key = (index["points"], index["segments"], index["merges"])
            if index["pending_points"] == 0 and not index.get("merging") and key == last:
                still += 1
                if still >= 4:
                    return index
            else:
                still = 0
            last = key
            time.sleep(0.5)

    for r in range(a.rounds):
        started = time.time()
        push(r)
        pushed = time.time() - started
        index = settle()
        print(json.dumps({
            "round": r + 1,
            "records": n,
            "ingest_rps": round(n / pushed),
            "live_points": index["live_points"],
            "points_held": index["points"],
            "held_per_live": round(index["points"] / max(index["live_points"], 1), 3),
            "segments": index["segments"],
            "merges": index["merges"],
            "rss_mb": round(rss_mb(a.pid)),
        }), flush=True)

    # global top-10 over the last copy
    lat, hits = [], 0
    for qi in range(min(500, queries.shape[0])):
        t = time.time()
        res = call(a.url + "/api/v1/search", {"embedding": queries[qi].tolist(), "limit": 10})
        lat.append((time.time() - t) * 1000)
        got = {int(h["conversation_id"][1:]) for h in res["results"]}
        hits += len(got & set(int(x) for x in gt[qi][:10]))
    lat.sort()
    print(json.dumps({
        "search_recall_at_10": round(hits / (10 * len(lat)), 4),
        "search_p50_ms": round(lat[len(lat) // 2], 2),
        "search_p99_ms": round(lat[int(len(lat) * 0.99) - 1], 2),
    }), flush=True)


if __name__ == "__main__":
    main()
