#!/usr/bin/env python3
"""faiss HNSW reference for Akosha's ANN benchmark, on the output of shared/bench/vectors.py.

usage: python3 scripts/faiss_reference.py DATA_DIR K EF[,EF...] [--m 32] [--efc 40] [--threads 2]
needs: pip install faiss-cpu numpy

Builds one IndexHNSWFlat (inner product) over base.f32 with all threads, then for each ef:
recall@K against gt.u32, latency of single queries on one thread (p50/p99), and throughput
of the query batch on 1 thread and on --threads threads (faiss parallelises over queries).
Prints one JSON object per line: first {"kind":"build",...}, then {"kind":"search",...} per ef.
"""
import argparse, json, os, time
import numpy as np
import faiss

from bench_common import recall, rss_mib

DIM = 384


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("k", type=int)
    ap.add_argument("efs")
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--efc", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    efs = [int(e) for e in a.efs.split(",") if e]

    base = np.fromfile(os.path.join(a.data, "base.f32"), dtype=np.float32).reshape(-1, DIM)
    queries = np.fromfile(os.path.join(a.data, "queries.f32"), dtype=np.float32).reshape(-1, DIM)
    gt = np.fromfile(os.path.join(a.data, "gt.u32"), dtype=np.uint32).reshape(len(queries), -1)
    rss_data = rss_mib()

    faiss.omp_set_num_threads(a.threads)
    index = faiss.IndexHNSWFlat(DIM, a.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = a.efc
    t0 = time.perf_counter()
    index.add(base)
    build_s = time.perf_counter() - t0
    print(json.dumps({"kind": "build", "impl": "faiss-hnsw", "n": len(base), "m": a.m,
                      "ef_construction": a.efc, "threads": a.threads,
                      "build_s": round(build_s, 3), "build_rate": round(len(base) / build_s),
                      "rss_mib": round(rss_mib()), "index_mib": round(rss_mib() - rss_data)}),
          flush=True)

    for ef in efs:
        index.hnsw.efSearch = ef
        faiss.omp_set_num_threads(1)
        lat = np.empty(len(queries))
        found = np.empty((len(queries), a.k), dtype=np.int64)
        for i in range(len(queries)):
            t = time.perf_counter()
            _, ids = index.search(queries[i:i + 1], a.k)
            lat[i] = time.perf_counter() - t
            found[i] = ids[0]
        t = time.perf_counter()
        index.search(queries, a.k)
        qps1 = len(queries) / (time.perf_counter() - t)
        faiss.omp_set_num_threads(a.threads)
        t = time.perf_counter()
        index.search(queries, a.k)
        qps_n = len(queries) / (time.perf_counter() - t)
        print(json.dumps({"kind": "search", "impl": "faiss-hnsw", "n": len(base), "k": a.k,
                          "ef": ef, "recall": round(recall(found, gt, a.k), 4),
                          "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3),
                          "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3),
                          "qps_1t": round(qps1), "qps_threads": round(qps_n),
                          "threads": a.threads}), flush=True)


if __name__ == "__main__":
    main()
