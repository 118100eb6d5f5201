//! Offline text embeddings in the all-MiniLM-L6-v2 space (384 floats per text).
//!
//! [`Embedder::load`] reads `config.json`, `tokenizer.json` and
//! `model.safetensors` from a directory (`scripts/fetch-model.sh` puts them
//! there); [`Embedder::embed`] reproduces sentence-transformers'
//! `encode(texts, normalize_embeddings=True)`: WordPiece tokens truncated to
//! [`MAX_SEQ_LEN`], a BERT encoder, mean pooling over the attention mask, then
//! L2 normalisation. Everything runs on the CPU and blocks: call it from a
//! blocking thread, never from an async task.
//!
//! Threads: candle sizes its pools from the environment when first used.
//! Matmuls run on rayon (`RAYON_NUM_THREADS`, default: physical cores);
//! element-wise ops on candle's own spinning pool (`CANDLE_NUM_THREADS`,
//! default: the same). On a busy 2-core machine `CANDLE_NUM_THREADS=1` was
//! faster, because that pool's spinning worker takes the core the matmul needs.
//! [`set_thread_env`] sets both before any thread starts.

mod bert;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use bert::{BertConfig, BertModel};

pub use crate::record::EMBEDDING_DIM;

/// Sets how many threads candle uses, where the operator has not: one for element-wise
/// ops (see the module's notes), and the physical cores for matmuls. Candle reads
/// `RAYON_NUM_THREADS` at every matmul and, when it is unset, counts the physical cores
/// by parsing `/proc/cpuinfo` each time (2% of a node's CPU under mixed load); the count
/// is then made once here. Call it at the start of `main`, before any thread starts:
/// changing the environment races with threads that read it.
pub fn set_thread_env() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var(
            "RAYON_NUM_THREADS",
            num_cpus::get_physical().max(1).to_string(),
        );
    }
}

/// Longest input in tokens, `[CLS]` and `[SEP]` included: sentence-transformers'
/// `max_seq_length` for all-MiniLM-L6-v2; longer texts are cut at the end.
pub const MAX_SEQ_LEN: usize = 256;

/// Texts run through the encoder together; each batch is padded to its longest text.
const BATCH_SIZE: usize = 32;

/// Why a model could not be loaded or texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A model file is not in the model directory.
    #[error(
        "missing model file {path}: expected config.json, tokenizer.json and model.safetensors in the model directory"
    )]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// A model file exists but could not be read.
    #[error("cannot read model file {path}")]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not a BERT config in JSON.
    #[error("invalid model config {path}: expected a bert config.json")]
    ConfigParse {
        /// The config file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// `config.json` describes a model this embedder cannot run.
    #[error("unsupported model config {path}: {reason}")]
    UnsupportedConfig {
        /// The config file.
        path: PathBuf,
        /// What was expected and what came.
        reason: String,
    },
    /// `tokenizer.json` could not be loaded or configured.
    #[error("invalid tokenizer {path}: expected a hugging face tokenizer.json")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizers error.
        #[source]
        source: tokenizers::Error,
    },
    /// `model.safetensors` lacks a tensor the config calls for, or has one of the wrong shape.
    #[error("invalid model weights {path}: expected bert weights matching config.json")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// The candle error.
        #[source]
        source: candle_core::Error,
    },
    /// The tokenizer failed on an input text.
    #[error("failed to tokenize input text")]
    Tokenize {
        /// The tokenizers error.
        #[source]
        source: tokenizers::Error,
    },
    /// The encoder failed while computing embeddings.
    #[error("embedding inference failed")]
    Inference {
        /// The candle error.
        #[from]
        source: candle_core::Error,
    },
}

/// A loaded all-MiniLM-L6-v2 model: tokenizer and BERT encoder. `Send + Sync`,
/// so one instance can be shared by every blocking thread.
pub struct Embedder {
    /// WordPiece tokenizer, set to truncate at `max_len` and not to pad.
    tokenizer: Tokenizer,
    /// The encoder, weights in memory.
    model: BertModel,
    /// Longest token sequence fed to the model, special tokens included.
    max_len: usize,
    /// Where the model was loaded from, for `Debug`.
    model_dir: PathBuf,
}

// `Embedder` is shared across blocking threads: keep it `Send + Sync`.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Embedder>();
};

impl fmt::Debug for Embedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedder")
            .field("model_dir", &self.model_dir)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads config.json, tokenizer.json and model.safetensors from a directory.
    pub fn load(model_dir: &Path) -> Result<Self, EmbedError> {
        let config_path = model_dir.join("config.json");
        let tokenizer_path = model_dir.join("tokenizer.json");
        let weights_path = model_dir.join("model.safetensors");

        let config_bytes = read(&config_path)?;
        let config: BertConfig =
            serde_json::from_slice(&config_bytes).map_err(|source| EmbedError::ConfigParse {
                path: config_path.clone(),
                source,
            })?;
        let unsupported = |reason: String| EmbedError::UnsupportedConfig {
            path: config_path.clone(),
            reason,
        };
        config.validate().map_err(unsupported)?;
        if config.hidden_size != EMBEDDING_DIM {
            return Err(unsupported(format!(
                "expected hidden_size {EMBEDDING_DIM}, got {}",
                config.hidden_size
            )));
        }
        let max_len = MAX_SEQ_LEN.min(config.max_position_embeddings);

        let tokenizer = load_tokenizer(&tokenizer_path, max_len)?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > config.vocab_size {
            return Err(unsupported(format!(
                "expected vocab_size of at least {vocab} (the tokenizer's), got {}",
                config.vocab_size
            )));
        }

        let weights = read(&weights_path)?;
        let device = Device::Cpu;
        let model = VarBuilder::from_buffered_safetensors(weights, bert::DTYPE, &device)
            .and_then(|vb| BertModel::load(vb, &config))
            .map_err(|source| EmbedError::Weights {
                path: weights_path,
                source,
            })?;

        Ok(Self {
            tokenizer,
            model,
            max_len,
            model_dir: model_dir.to_path_buf(),
        })
    }

    /// Embeds texts: mean pooling over the attention mask, then L2-normalised, 384 floats each.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|source| EmbedError::Tokenize { source })?;

        // Batch texts of similar length together so little compute goes to padding.
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());

        let mut out = vec![Vec::new(); encodings.len()];
        for chunk in order.chunks(BATCH_SIZE) {
            let batch: Vec<&Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
            let vectors = self.embed_batch(&batch)?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Runs one batch, padded to its longest encoding.
    fn embed_batch(&self, batch: &[&Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let seq = batch
            .iter()
            .map(|e| e.get_ids().len().min(self.max_len))
            .max()
            .unwrap_or(0)
            .max(1);
        let mut ids = vec![0u32; batch.len() * seq];
        let mut mask = vec![0f32; batch.len() * seq];
        for (row, encoding) in batch.iter().enumerate() {
            let tokens = &encoding.get_ids()[..encoding.get_ids().len().min(seq)];
            ids[row * seq..row * seq + tokens.len()].copy_from_slice(tokens);
            mask[row * seq..row * seq + tokens.len()].fill(1.0);
        }
        let device = self.model.device();
        let ids = Tensor::from_vec(ids, (batch.len(), seq), device)?;
        let mask = Tensor::from_vec(mask, (batch.len(), seq), device)?;
        let pooled = self.model.forward_mean_pooled(&ids, &mask)?;
        Ok(bert::l2_normalize(&pooled)?.to_vec2::<f32>()?)
    }
}

/// Embeds texts `batch` at a time, each batch on a blocking thread, so the async runtime is
/// never held up; the vectors come in the texts' order. The error says what failed.
pub async fn embed_in_batches(
    embedder: &Arc<Embedder>,
    texts: Vec<String>,
    batch: usize,
) -> Result<Vec<Vec<f32>>, String> {
    let total = texts.len();
    let mut out = Vec::with_capacity(total);
    let mut rest = texts.into_iter();
    loop {
        let chunk: Vec<String> = rest.by_ref().take(batch.max(1)).collect();
        if chunk.is_empty() {
            break;
        }
        let embedder = Arc::clone(embedder);
        let vectors = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            embedder.embed(&refs)
        })
        .await
        .map_err(|e| format!("embedding task failed: {e}"))?
        .map_err(|e| format!("embedding failed: {e}"))?;
        out.extend(vectors);
    }
    if out.len() != total {
        return Err(format!(
            "embedder returned {} vectors for {total} texts",
            out.len()
        ));
    }
    Ok(out)
}

/// Reads a whole model file, telling a missing file from an unreadable one.
fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => EmbedError::MissingFile {
            path: path.to_path_buf(),
        },
        _ => EmbedError::Read {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Loads tokenizer.json, truncating at `max_len` tokens and never padding.
///
/// The file shipped with all-MiniLM-L6-v2 says truncate at 128 and pad every
/// input to 128; sentence-transformers overrides both, and so do we.
fn load_tokenizer(path: &Path, max_len: usize) -> Result<Tokenizer, EmbedError> {
    let bytes = read(path)?;
    let invalid = |source| EmbedError::Tokenizer {
        path: path.to_path_buf(),
        source,
    };
    let mut tokenizer = Tokenizer::from_bytes(bytes).map_err(invalid)?;
    tokenizer
        .with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: max_len,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(invalid)?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh empty directory under the system temp dir.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("akosha-embed-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a temp dir");
        dir
    }

    const MINILM_CONFIG: &str = r#"{"vocab_size": 30522, "hidden_size": 384,
        "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536,
        "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12}"#;

    #[test]
    fn missing_directory_names_the_missing_file() {
        let dir = scratch_dir("missing").join("nope");
        let err = Embedder::load(&dir).expect_err("no model there");
        assert!(
            matches!(err, EmbedError::MissingFile { ref path } if path.ends_with("config.json"))
        );
        assert!(err.to_string().starts_with("missing model file "));
    }

    #[test]
    fn malformed_config_is_a_parse_error() {
        let dir = scratch_dir("malformed");
        std::fs::write(dir.join("config.json"), "{not json").expect("writing config");
        let err = Embedder::load(&dir).expect_err("bad config");
        assert!(matches!(err, EmbedError::ConfigParse { .. }), "{err:?}");
    }

    #[test]
    fn other_models_are_refused_with_what_came() {
        let dir = scratch_dir("wide");
        let config = MINILM_CONFIG.replace("\"hidden_size\": 384", "\"hidden_size\": 768");
        std::fs::write(dir.join("config.json"), config).expect("writing config");
        let err = Embedder::load(&dir).expect_err("wrong width");
        assert!(
            err.to_string()
                .ends_with("expected hidden_size 384, got 768"),
            "{err}"
        );

        let config = MINILM_CONFIG.replace("\"gelu\"", "\"relu\"");
        std::fs::write(dir.join("config.json"), config).expect("writing config");
        let err = Embedder::load(&dir).expect_err("wrong activation");
        assert!(
            err.to_string()
                .ends_with("expected hidden_act \"gelu\", got \"relu\""),
            "{err}"
        );
    }

    #[test]
    fn missing_tokenizer_comes_after_a_good_config() {
        let dir = scratch_dir("no-tokenizer");
        std::fs::write(dir.join("config.json"), MINILM_CONFIG).expect("writing config");
        let err = Embedder::load(&dir).expect_err("no tokenizer");
        assert!(
            matches!(err, EmbedError::MissingFile { ref path } if path.ends_with("tokenizer.json")),
            "{err:?}"
        );
    }
}
