#!/usr/bin/env python3
"""USearch HNSW reference for Akosha's ANN benchmark, on the output of shared/bench/vectors.py.

usage: python3 scripts/usearch_reference.py DATA_DIR K EF[,EF...] [--m 16] [--efc 40]
                                            [--threads 2] [--dtype i8]
needs: pip install usearch numpy (this script installs nothing)

Builds one usearch Index (metric "ip", connectivity --m, expansion_add --efc) over base.f32,
adding keys 0..n-1 on --threads threads, then for each ef (expansion_search): recall@K
against gt.u32, latency of single queries on one thread (p50/p99), and throughput of the
query batch on 1 thread and on --threads threads (usearch parallelises over queries).
Prints one JSON object per line, with the fields of faiss_reference.py: first
{"kind":"build","impl":"usearch-hnsw-<dtype>",...}, then {"kind":"search",...} per ef.

--dtype i8 (the default) is the like-for-like choice: Akosha's own index walks its graph on
int8 codes too (and then rescores the best candidates with f16 copies; usearch does not
rescore). Beware that usearch codes a vector as int8 by scaling it to unit length and
truncating each component times 127, so the components of a 384-d unit vector (about +-0.05)
get only a few levels each, far coarser than Akosha's codes (scale 127 / 0.31): this caps
int8 recall (an exact int8 scan finds 0.937 of the true top 10 at 100k records). --dtype f16
and f32 store the vectors as they are and show usearch's graph without that error.

Defaults: --m 16 as Akosha's index (level 0 keeps 2m links in both, as in faiss), and --efc 40
as faiss_reference.py (Akosha builds with 24-32): at 100k, int8 recall@10 at ef 128 was 0.905
with efc 24, 0.925 with 40 and 0.931 with usearch's own default of 128, which builds 2.6x
slower than 40.

No filtered search is measured: usearch's Python binding (2.x) takes no predicate or filter
in Index.search (the C++ core's filtered_search is exposed to C, Rust and others, not to
Python), and a Python callback per visited node would measure the interpreter, not usearch.
"""
import argparse, json, os, time
import numpy as np
import usearch
from usearch.index import Index

from bench_common import recall, rss_mib

DIM = 384


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("k", type=int)
    ap.add_argument("efs")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="i8", choices=["i8", "f16", "f32"])
    a = ap.parse_args()
    efs = [int(e) for e in a.efs.split(",") if e]
    impl = "usearch-hnsw-" + a.dtype

    base = np.fromfile(os.path.join(a.data, "base.f32"), dtype=np.float32).reshape(-1, DIM)
    queries = np.fromfile(os.path.join(a.data, "queries.f32"), dtype=np.float32).reshape(-1, DIM)
    gt = np.fromfile(os.path.join(a.data, "gt.u32"), dtype=np.uint32).reshape(len(queries), -1)
    rss_data = rss_mib()

    index = Index(ndim=DIM, metric="ip", dtype=a.dtype, connectivity=a.m,
                  expansion_add=a.efc, expansion_search=max(efs))
    keys = np.arange(len(base), dtype=np.uint64)
    t0 = time.perf_counter()
    index.add(keys, base, threads=a.threads)
    build_s = time.perf_counter() - t0
    print(json.dumps({"kind": "build", "impl": impl, "n": len(base), "m": a.m,
                      "ef_construction": a.efc, "threads": a.threads,
                      "build_s": round(build_s, 3), "build_rate": round(len(base) / build_s),
                      "rss_mib": round(rss_mib()), "index_mib": round(rss_mib() - rss_data),
                      "usearch_mib": round(index.memory_usage / 2**20),
                      "simd": index.hardware_acceleration, "usearch": usearch.__version__}),
          flush=True)

    for ef in efs:
        index.expansion_search = ef
        lat = np.empty(len(queries))
        found = np.empty((len(queries), a.k), dtype=np.int64)
        for i in range(len(queries)):
            t = time.perf_counter()
            m = index.search(queries[i], a.k, threads=1)
            lat[i] = time.perf_counter() - t
            row = np.full(a.k, -1, dtype=np.int64)
            row[:len(m.keys)] = m.keys
            found[i] = row
        t = time.perf_counter()
        index.search(queries, a.k, threads=1)
        qps1 = len(queries) / (time.perf_counter() - t)
        t = time.perf_counter()
        index.search(queries, a.k, threads=a.threads)
        qps_n = len(queries) / (time.perf_counter() - t)
        print(json.dumps({"kind": "search", "impl": impl, "n": len(base), "k": a.k,
                          "ef": ef, "recall": round(recall(found, gt, a.k), 4),
                          "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3),
                          "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3),
                          "qps_1t": round(qps1), "qps_threads": round(qps_n),
                          "threads": a.threads}), flush=True)


if __name__ == "__main__":
    main()
