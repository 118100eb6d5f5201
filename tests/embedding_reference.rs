//! The Rust embedder against embeddings made by sentence-transformers itself
//! (tests/fixtures/minilm_reference.json, from scripts/make-embedding-fixture.py).
//!
//! Needs the model: run scripts/fetch-model.sh first (or point AKOSHA_MODEL_DIR
//! at a directory holding it). AKOSHA_SKIP_MODEL_TESTS=1 skips these tests.

use std::path::PathBuf;

use akosha::embedding::{Embedder, EMBEDDING_DIM};
use serde::Deserialize;

/// Lowest cosine similarity to the reference that counts as the same embedding.
const MIN_COSINE: f64 = 0.999;
/// Largest distance of an embedding's L2 norm from 1.
const NORM_TOLERANCE: f64 = 1e-4;

#[derive(Deserialize)]
struct Fixture {
    dim: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    tokens_untruncated: usize,
    embedding: Vec<f32>,
}

fn fixture() -> Fixture {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("invalid fixture {}: {e}", path.display()))
}

/// The model, or `None` when AKOSHA_SKIP_MODEL_TESTS=1 asks to skip.
fn embedder() -> Option<Embedder> {
    if std::env::var("AKOSHA_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!("skipping model test: AKOSHA_SKIP_MODEL_TESTS=1");
        return None;
    }
    let dir = std::env::var_os("AKOSHA_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2")
        });
    match Embedder::load(&dir) {
        Ok(embedder) => Some(embedder),
        Err(e) => {
            let cause =
                std::error::Error::source(&e).map_or_else(String::new, |s| format!(": {s}"));
            panic!(
                "cannot load the embedding model from {}: {e}{cause}; run scripts/fetch-model.sh \
                 to download it, or set AKOSHA_SKIP_MODEL_TESTS=1 to skip model tests",
                dir.display(),
            )
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    dot / (norm(a) * norm(b))
}

fn norm(a: &[f32]) -> f64 {
    a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

#[test]
fn matches_sentence_transformers() {
    let Some(embedder) = embedder() else { return };
    let fixture = fixture();
    assert_eq!(fixture.dim, EMBEDDING_DIM);
    assert!(
        fixture.cases.iter().any(|c| c.tokens_untruncated > 256),
        "the fixture should hold a text longer than 256 tokens"
    );
    let texts: Vec<&str> = fixture.cases.iter().map(|c| c.text.as_str()).collect();
    let got = embedder.embed(&texts).expect("embedding the fixture texts");
    assert_eq!(got.len(), fixture.cases.len());
    for (case, vector) in fixture.cases.iter().zip(&got) {
        assert_eq!(vector.len(), EMBEDDING_DIM);
        let cos = cosine(vector, &case.embedding);
        let n = norm(vector);
        let label: String = case.text.chars().take(40).collect();
        println!(
            "cosine {cos:.9} (1 - cos = {:.1e}, max |diff| {:.1e}) norm {n:.9} tokens {:>3} {label:?}",
            1.0 - cos,
            vector
                .iter()
                .zip(&case.embedding)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max),
            case.tokens_untruncated
        );
        assert!(
            cos >= MIN_COSINE,
            "cosine {cos} < {MIN_COSINE} for {label:?} ({} tokens)",
            case.tokens_untruncated
        );
        assert!((n - 1.0).abs() <= NORM_TOLERANCE, "norm {n} for {label:?}");
    }
}

#[test]
fn one_at_a_time_equals_batched() {
    let Some(embedder) = embedder() else { return };
    let fixture = fixture();
    let texts: Vec<&str> = fixture.cases.iter().map(|c| c.text.as_str()).collect();
    let batched = embedder.embed(&texts).expect("embedding the fixture texts");
    for (text, expected) in texts.iter().zip(&batched) {
        let single = embedder.embed(&[text]).expect("embedding one text");
        assert_eq!(single.len(), 1);
        assert!(
            cosine(&single[0], expected) > 0.99999,
            "padding changed {text:?}"
        );
    }
    assert!(embedder.embed(&[]).expect("embedding no text").is_empty());
}
