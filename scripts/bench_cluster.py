#!/usr/bin/env python3
"""Pushes the shared benchmark vectors into a running node or cluster over HTTP and measures
ingest records/s and global top-10 search (p50/p99 on one client, QPS on four, recall@10).

usage: bench_cluster.py DATA_DIR INGEST_URL SEARCH_URL [--queries 500] [--batch 500]
                        [--kill-pid-file FILE]
Prints one JSON line of figures. With --kill-pid-file, then SIGKILLs that process (a member
of the cluster SEARCH_URL belongs to) and adds how long, from the kill, SEARCH_URL took to
declare it dead, to answer whole again (no shard missing: each has a live replica) and to
have every shard at its replication factor again (no shard under-replicated).

usage: bench_cluster.py watch-join N SEARCH_URL URL [URL ...]
Times, from now (a new member was just started), every shard whole at its replication factor
again with the new member holding some, then the members at URL holding exactly two copies of
each of the N records between them (what placement took from the old holders handed back to
the new replicas and removed). Prints one JSON line.
"""
import argparse, json, os, signal, threading, time, urllib.request


from bench_common import load, system_batches


def post(url, body):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("ingest_url")
    ap.add_argument("search_url")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--kill-pid-file")
    a = ap.parse_args()
    base, systems, queries, gt = load(a.data)
    n = base.shape[0]

    # ingest: one batch per system run, in order, two clients
    batches = system_batches(systems, a.batch)
    lock = threading.Lock()
    todo = list(batches)

    def pusher():
        while True:
            with lock:
                if not todo:
                    return
                system, rows = todo.pop()
            convs = [
                {"id": f"r{r}", "content": f"record {r}", "embedding": base[r].tolist(),
                 "timestamp": "2026-11-20T10:00:00Z"}
                for r in rows
            ]
            answer = post(a.ingest_url + "/api/v1/ingest", {"system_id": system, "conversations": convs})
            assert answer.get("stored", 0) + answer.get("unchanged", 0) == len(rows), answer

    started = time.time()
    threads = [threading.Thread(target=pusher) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    ingest_s = time.time() - started

    # let the index catch up: wait until a few queries give stable answers
    time.sleep(2)
    nq = min(a.queries, queries.shape[0])

    def ask(q):
        t = time.time()
        answer = post(a.search_url + "/api/v1/search", {"embedding": queries[q].tolist(), "limit": 10})
        return time.time() - t, answer

    lat, hits = [], 0
    for q in range(nq):
        dt, answer = ask(q)
        lat.append(dt * 1000)
        got = {int(h["conversation_id"][1:]) for h in answer["results"]}
        hits += len(got & set(gt[q][:10].tolist()))
    lat.sort()
    done = [0]

    def client(k):
        for q in range(k, nq, 4):
            ask(q)
            with lock:
                done[0] += 1

    t = time.time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    [x.start() for x in threads]
    [x.join() for x in threads]
    qps = done[0] / (time.time() - t)
    figures = {
        "records": int(n),
        "ingest_records_per_s": round(n / ingest_s),
        "search_p50_ms": round(lat[len(lat) // 2], 2),
        "search_p99_ms": round(lat[int(len(lat) * 0.99) - 1], 2),
        "search_qps_4_clients": round(qps),
        "recall_at_10": round(hits / (nq * 10), 4),
    }
    if a.kill_pid_file:
        figures.update(failover(a.search_url, a.kill_pid_file, queries, n))
    print(json.dumps(figures))


def watch_join(n, url, urls):
    """Seconds until the joined cluster is replicated, then holds two copies only."""
    started = time.time()
    times = {}
    while len(times) < 2:
        now = time.time() - started
        if now > 600:
            raise SystemExit(f"bench: the join did not settle in 600 s: {times}")
        try:
            held = [get(u + "/api/v1/stats")["index"]["live_points"] for u in urls]
            stats = get(url + "/api/v1/stats")
        except OSError:
            time.sleep(0.2)
            continue
        if "join_replicated_s" not in times and min(held) > 0 \
                and stats["under_replicated_shards"] == [] and stats["missing_shards"] == []:
            times["join_replicated_s"] = round(now, 2)
        if "join_replicated_s" in times and sum(held) == 2 * n:
            times["join_two_copies_only_s"] = round(now, 2)
            if stats["records"]["total"] != n:
                raise SystemExit(f"bench: {stats['records']['total']} records after the join, {n} pushed")
        time.sleep(0.2)
    return times


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def failover(url, pid_file, queries, n):
    """SIGKILLs a member and times the survivor's view of it (seconds from the kill)."""
    pid = int(open(pid_file).read().strip())
    victim = os.path.basename(pid_file).rsplit(".", 1)[0]
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    times, q = {}, 0
    while len(times) < 3:
        now = time.time() - killed
        if now > 600:
            raise SystemExit(f"bench: the cluster did not recover from the kill in 600 s: {times}")
        if "declared_dead_s" not in times:
            members = get(url + "/api/v1/cluster")["members"]
            if any(m["node_id"] == victim and m["state"] == "dead" for m in members):
                times["declared_dead_s"] = round(now, 2)
        stats = get(url + "/api/v1/stats")
        answer = post(url + "/api/v1/search", {"embedding": queries[q % len(queries)].tolist(), "limit": 10})
        q += 1
        if "whole_answers_s" not in times and stats["missing_shards"] == [] and not answer["partial"]:
            times["whole_answers_s"] = round(now, 2)
        if "replicated_s" not in times and "declared_dead_s" in times \
                and stats["under_replicated_shards"] == [] and stats["missing_shards"] == []:
            times["replicated_s"] = round(now, 2)
            if stats["records"]["total"] != n:
                raise SystemExit(f"bench: {stats['records']['total']} records after the kill, {n} pushed")
        time.sleep(0.05)
    return {"killed": victim, **times}


if __name__ == "__main__":
    import sys
    if len(sys.argv) > 1 and sys.argv[1] == "watch-join":
        print(json.dumps(watch_join(int(sys.argv[2]), sys.argv[3], sys.argv[4:])))
    else:
        main()
