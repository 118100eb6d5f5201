"""Drives a running akosha-node with the official MCP Python SDK (PyPI `mcp`) over Streamable HTTP.

Usage: sdk_client.py URL MODE   (MODE: auto = discover then initialize, as `Client(url)` does;
legacy = the initialize handshake only)

Initializes, lists the tools, stores a few hundred memories with batch_store_memories (some
with embeddings made by generate_batch_embeddings, the rest embedded by the node), searches
with text and checks that the right memory comes first, filters by metadata, and makes bad
calls. Prints one JSON line with what it saw; exits non-zero on the first failed check.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.shared.exceptions import MCPError

COLOURS = ["amber", "azure", "crimson", "ivory", "jade", "olive", "scarlet", "teal", "violet", "umber"]
ANIMALS = ["otter", "heron", "badger", "lynx", "walrus", "gecko", "falcon", "bison", "marmot", "ibis"]
PLACES = ["harbour", "orchard", "library", "quarry"]

# memories a query must find first, with the paraphrase that looks for each
TARGETS = [
    ("tls-rotation", "Rotating the TLS certificates on the Kafka brokers means restarting each broker one at a time so producers keep a leader.",
     "how do I rotate kafka broker certificates without downtime"),
    ("sqlite-wal", "SQLite in WAL mode lets readers keep reading while one writer appends to the write-ahead log; checkpoint it during quiet periods.",
     "sqlite write ahead log concurrent readers"),
    ("borrow-checker", "The borrow checker rejected the closure because it captured the vector mutably while an iterator over it was still alive.",
     "rust closure mutable borrow error while iterating a vec"),
]


def check(cond, what):
    if not cond:
        print(json.dumps({"ok": False, "failed": what}))
        sys.exit(1)


def structured(result):
    check(not result.is_error, f"tool answered isError: {result.content}")
    check(result.structured_content is not None, "no structuredContent")
    text = result.content[0].text
    check(json.loads(text) == result.structured_content, "text content differs from structuredContent")
    return result.structured_content


async def main(url, mode):
    seen = {}
    async with Client(url, mode=mode) as client:
        info = client.server_info
        check(info is not None and info.name == "akosha", f"server info {info}")
        seen["protocol_version"] = client.protocol_version

        if client.protocol_version != "2026-07-28":
            # ping is gone from the 2026-07-28 revision (the SDK itself says so)
            await client.send_ping()

        tools = (await client.list_tools()).tools
        names = sorted(t.name for t in tools)
        check(names == sorted([
            "search_all_systems", "generate_embedding", "generate_batch_embeddings", "store_memory",
            "batch_store_memories", "store_reflection", "get_system_metrics", "create_entity",
            "create_relation", "query_knowledge_graph", "find_path", "get_graph_statistics",
            "analyze_trends", "detect_anomalies", "correlate_systems",
        ]), f"tools {names}")
        for t in tools:
            check(t.input_schema.get("type") == "object", f"{t.name} schema")
        seen["tools"] = len(tools)

        fillers = [f"The {c} {a} waited by the {p} while the build ran." for c in COLOURS for a in ANIMALS for p in PLACES]
        # the first 100 carry embeddings made through the tool; the rest are embedded by the node
        emb = structured(await client.call_tool("generate_batch_embeddings", {"texts": fillers[:100], "batch_size": 16}))
        check(emb["count"] == 100 and emb["embedding_dim"] == 384, "batch embeddings shape")
        memories = []
        for i, text in enumerate(fillers):
            m = {"memory_id": f"{mode}-filler-{i}", "text": text,
                 "metadata": {"source": f"sdk-{mode}", "project": "alpha" if i % 2 == 0 else "beta", "type": "conversation"}}
            if i < 100:
                m["embedding"] = emb["embeddings"][i]
            memories.append(m)
        for key, text, _ in TARGETS:
            memories.append({"memory_id": f"{mode}-{key}", "text": text,
                             "metadata": {"source": f"sdk-{mode}", "project": "targets", "created_at": "2026-11-20T10:00:00"}})
        stored = 0
        for start in range(0, len(memories), 100):
            r = structured(await client.call_tool("batch_store_memories", {"memories": memories[start:start + 100]}))
            check(r["status"] == "completed" and r["failed"] == 0, f"batch {start}: {r}")
            stored += r["stored"]
        check(stored == len(memories), f"stored {stored} of {len(memories)}")
        seen["stored"] = stored

        for key, _, query in TARGETS:
            r = structured(await client.call_tool("search_all_systems", {"query": query, "limit": 5, "threshold": 0.0}))
            check(r["partial"] is False and r["missing_shards"] == [], f"partial answer {r}")
            check(r["results"], f"no results for {query!r}")
            top = r["results"][0]
            check(top["conversation_id"] == f"{mode}-{key}", f"{query!r} found {top['conversation_id']} first")
            check(top["system_id"] == f"sdk-{mode}", f"system {top['system_id']}")
            check(top["timestamp"].startswith("2026-11-20T10:00:00"), f"timestamp {top['timestamp']}")
        seen["searches"] = len(TARGETS)

        r = structured(await client.call_tool("search_all_systems", {
            "query": "an animal waiting while the build ran", "limit": 20, "threshold": 0.0,
            "system_id": f"sdk-{mode}", "metadata": {"project": "beta"}}))
        check(len(r["results"]) == 20, f"filtered results {len(r['results'])}")
        check(all(h["metadata"]["project"] == "beta" for h in r["results"]), "metadata filter let another project through")

        metrics = structured(await client.call_tool("get_system_metrics", {}))
        check(metrics["records"]["hot"] >= stored, f"metrics records {metrics['records']}")
        check(metrics["ingestion"]["pushed_records"] >= stored, "metrics pushed records")

        # bad calls: a failed result with a message, or a protocol error for an unknown tool
        bad = await client.call_tool("batch_store_memories", {"memories": [{"memory_id": "x", "text": "y"}] * 1001})
        check(bad.is_error and "at most 1000" in bad.structured_content["error"], f"1001 memories: {bad}")
        bad = await client.call_tool("search_all_systems", {"limit": 5})
        check(bad.is_error and "query" in bad.content[0].text, f"missing query: {bad}")
        try:
            await client.call_tool("no_such_tool", {})
            check(False, "unknown tool was accepted")
        except MCPError as e:
            check("unknown tool" in str(e), f"unknown tool error: {e}")
    print(json.dumps({"ok": True, **seen}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
