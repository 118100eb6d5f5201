"""What the benchmark clients share: the shared vectors and the batches they are pushed in."""
import os

import numpy as np


def load(data):
    """The base vectors, their systems, the queries and their exact top-100, from DATA_DIR."""
    base = np.fromfile(os.path.join(data, "base.f32"), dtype=np.float32).reshape(-1, 384)
    systems = np.fromfile(os.path.join(data, "systems.u32"), dtype=np.uint32)
    queries = np.fromfile(os.path.join(data, "queries.f32"), dtype=np.float32).reshape(-1, 384)
    gt = np.fromfile(os.path.join(data, "gt.u32"), dtype=np.uint32).reshape(queries.shape[0], -1)
    return base, systems, queries, gt


def system_batches(systems, batch):
    """(system id, record numbers) batches of at most `batch` records of one system each."""
    n = systems.shape[0]
    order = np.argsort(systems, kind="stable")
    batches = []
    i = 0
    while i < n:
        s = systems[order[i]]
        j = i
        while j < n and systems[order[j]] == s and j - i < batch:
            j += 1
        batches.append((f"sys-{s:05d}", order[i:j]))
        i = j
    return batches


def rss_mib():
    """This process's resident memory, MiB (-1 when /proc cannot say)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def recall(found, gt, k):
    """Mean fraction of each row's true top-k among its first k found."""
    hits = 0
    for row, truth in zip(found, gt):
        hits += len(set(row[:k].tolist()) & set(truth[:k].tolist()))
    return hits / (len(gt) * k)
