//! A BERT encoder (embeddings + transformer layers) on candle, inference only.
//!
//! It reads the tensor names of a Hugging Face `BertModel` checkpoint
//! (`embeddings.*`, `encoder.layer.N.*`) and returns the last hidden state; the
//! pooler is not loaded. Dropout is absent because this only runs inference.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Shape, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// The fields of a Hugging Face BERT `config.json` that the encoder uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Number of rows in the word embedding table.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer inside each transformer layer.
    pub intermediate_size: usize,
    /// Activation of the feed-forward layer; only `gelu` (the exact, erf form) is supported.
    pub hidden_act: String,
    /// Number of learned absolute positions, the longest input the model accepts.
    pub max_position_embeddings: usize,
    /// Number of token type (segment) embeddings.
    pub type_vocab_size: usize,
    /// Epsilon of every layer norm.
    pub layer_norm_eps: f64,
    /// Kind of position embedding; only `absolute` is supported.
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".to_owned()
}

impl BertConfig {
    /// Checks that this encoder can run the configuration, saying what was expected and what came.
    pub fn validate(&self) -> Result<(), String> {
        if self.hidden_act != "gelu" {
            return Err(format!(
                "expected hidden_act \"gelu\", got \"{}\"",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "expected position_embedding_type \"absolute\", got \"{}\"",
                self.position_embedding_type
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "expected hidden_size to be a multiple of num_attention_heads, got {} and {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.type_vocab_size == 0 || self.max_position_embeddings == 0 {
            return Err(format!(
                "expected type_vocab_size and max_position_embeddings above 0, got {} and {}",
                self.type_vocab_size, self.max_position_embeddings
            ));
        }
        Ok(())
    }
}

/// Word, position and token-type embeddings followed by a layer norm.
struct BertEmbeddings {
    /// Word embedding table, `(vocab_size, hidden)`.
    word: Embedding,
    /// Absolute position table, `(max_position_embeddings, hidden)`.
    position: Tensor,
    /// Row 0 of the token-type table, `(1, hidden)`: every input is a single segment.
    token_type0: Tensor,
    /// Layer norm over the summed embeddings.
    norm: LayerNorm,
}

impl BertEmbeddings {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let word = candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("word_embeddings"))?;
        let position = vb.get(
            (cfg.max_position_embeddings, cfg.hidden_size),
            "position_embeddings.weight",
        )?;
        let token_type0 = vb
            .get(
                (cfg.type_vocab_size, cfg.hidden_size),
                "token_type_embeddings.weight",
            )?
            .narrow(0, 0, 1)?;
        let norm = candle_nn::layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("LayerNorm"))?;
        Ok(Self {
            word,
            position,
            token_type0,
            norm,
        })
    }

    /// `ids` is `(batch, seq)` u32; returns `(batch, seq, hidden)`.
    fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let seq = ids.dim(1)?;
        let positions = self
            .position
            .narrow(0, 0, seq)?
            .broadcast_add(&self.token_type0)?;
        let x = self.word.forward(ids)?.broadcast_add(&positions)?;
        self.norm.forward(&x)
    }
}

/// A dense layer whose weight is kept transposed, `(in, out)` and contiguous, so a matmul
/// reads it row by row instead of packing a strided view on every call.
struct Dense {
    /// the weight, `(in, out)`
    wt: Tensor,
    /// the bias, `(out)`
    bias: Tensor,
}

impl Dense {
    fn new(linear: Linear) -> candle_core::Result<Self> {
        let bias = linear
            .bias()
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg("expected a bias on every linear".into()))?;
        Ok(Dense {
            wt: linear.weight().t()?.contiguous()?,
            bias,
        })
    }

    /// `x` is `(rows, in)`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.wt)?.broadcast_add(&self.bias)
    }
}

/// One transformer layer: self-attention and a feed-forward block, each with a
/// residual connection and a post layer norm.
struct BertLayer {
    /// Query, key and value projections fused into one `(3 * hidden, hidden)`
    /// matmul; the query rows are pre-scaled by `1 / sqrt(head_dim)`.
    qkv: Dense,
    /// Projection of the attention output back to the hidden width.
    attn_out: Dense,
    /// Layer norm after the attention residual.
    attn_norm: LayerNorm,
    /// Feed-forward expansion, `hidden -> intermediate`.
    intermediate: Dense,
    /// Feed-forward contraction, `intermediate -> hidden`.
    output: Dense,
    /// Layer norm after the feed-forward residual.
    out_norm: LayerNorm,
    /// Number of attention heads.
    heads: usize,
    /// Width of one head.
    head_dim: usize,
}

impl BertLayer {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let heads = cfg.num_attention_heads;
        let head_dim = h / heads;
        let attn = vb.pp("attention");
        let sa = attn.pp("self");
        let scale = 1.0 / (head_dim as f64).sqrt();
        let q = candle_nn::linear(h, h, sa.pp("query"))?;
        let k = candle_nn::linear(h, h, sa.pp("key"))?;
        let v = candle_nn::linear(h, h, sa.pp("value"))?;
        let bias = |l: &Linear| {
            l.bias()
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg("expected a bias on every linear".into()))
        };
        let weight = Tensor::cat(
            &[
                (q.weight() * scale)?,
                k.weight().clone(),
                v.weight().clone(),
            ],
            0,
        )?;
        let qkv_bias = Tensor::cat(&[(bias(&q)? * scale)?, bias(&k)?, bias(&v)?], 0)?;
        Ok(Self {
            qkv: Dense::new(Linear::new(weight, Some(qkv_bias)))?,
            attn_out: Dense::new(candle_nn::linear(h, h, attn.pp("output").pp("dense"))?)?,
            attn_norm: candle_nn::layer_norm(
                h,
                cfg.layer_norm_eps,
                attn.pp("output").pp("LayerNorm"),
            )?,
            intermediate: Dense::new(candle_nn::linear(
                h,
                cfg.intermediate_size,
                vb.pp("intermediate").pp("dense"),
            )?)?,
            output: Dense::new(candle_nn::linear(
                cfg.intermediate_size,
                h,
                vb.pp("output").pp("dense"),
            )?)?,
            out_norm: candle_nn::layer_norm(
                h,
                cfg.layer_norm_eps,
                vb.pp("output").pp("LayerNorm"),
            )?,
            heads,
            head_dim,
        })
    }

    /// `x` is `(batch * seq, hidden)`, `mask` the additive `(batch, 1, 1, seq)` mask.
    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        batch: usize,
        seq: usize,
    ) -> candle_core::Result<Tensor> {
        let hidden = self.heads * self.head_dim;
        // (b*s, 3h) -> (3, b, heads, s, d)
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((batch, seq, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch * seq, hidden))?;
        let x = self
            .attn_norm
            .forward(&(self.attn_out.forward(&context)? + x)?)?;
        let ff = self.intermediate.forward(&x)?.apply_op1_no_bwd(&GeluErf)?;
        self.out_norm.forward(&(self.output.forward(&ff)? + x)?)
    }
}

/// The BERT encoder: embeddings and the stack of transformer layers.
pub struct BertModel {
    /// Input embeddings.
    embeddings: BertEmbeddings,
    /// Transformer layers, applied in order.
    layers: Vec<BertLayer>,
    /// Width of the hidden states.
    hidden_size: usize,
    /// Device the weights live on; inputs are built there.
    device: Device,
}

impl BertModel {
    /// Builds the encoder from the weights in `vb` (names as in Hugging Face's `BertModel`).
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let embeddings = BertEmbeddings::load(vb.pp("embeddings"), cfg)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| BertLayer::load(vb.pp(format!("encoder.layer.{i}")), cfg))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            hidden_size: cfg.hidden_size,
            device: vb.device().clone(),
        })
    }

    /// Device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the encoder and mean-pools over the mask.
    ///
    /// `ids` is `(batch, seq)` u32 token ids and `mask` `(batch, seq)` f32 with
    /// 1 for real tokens and 0 for padding; returns `(batch, hidden)`.
    pub fn forward_mean_pooled(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        // 0 where attended, the lowest f32 where padded (as Hugging Face does):
        // mask * -MIN + MIN is exactly 0 for 1 and MIN for 0.
        let min = f64::from(f32::MIN);
        let additive = mask.affine(-min, min)?.reshape((batch, 1, 1, seq))?;
        let mut x = self
            .embeddings
            .forward(ids)?
            .reshape((batch * seq, self.hidden_size))?;
        for layer in &self.layers {
            x = layer.forward(&x, &additive, batch, seq)?;
        }
        let x = x.reshape((batch, seq, self.hidden_size))?;
        let summed = x.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
        let counts = mask.sum_keepdim(1)?.clamp(1e-9, f64::INFINITY)?;
        summed.broadcast_div(&counts)
    }
}

/// L2-normalises each row of a `(batch, dim)` tensor, as `torch.nn.functional.normalize` does.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norms = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    x.broadcast_div(&norms)
}

/// Exact (erf) GELU on f32, as a custom op: candle's `gelu_erf` calls a scalar,
/// branchy `erf` per element, which took a fifth of the encoder's time; this one
/// is a branch-free rational approximation that the compiler vectorises.
struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "akosha-gelu-erf"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            return Err(candle_core::Error::Msg(format!(
                "gelu: expected f32 input, got {:?}",
                storage.dtype()
            )));
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            return Err(candle_core::Error::Msg(
                "gelu: expected a contiguous tensor, got a strided one".into(),
            ));
        };
        let out: Vec<f32> = data[start..end].iter().map(|&x| gelu(x)).collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// `x * Φ(x)` with the exact (erf) normal CDF, as PyTorch's `gelu` computes it.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `erf` for f32, absolute error below 5e-7: an odd/even rational
/// approximation on [-4, 4] (beyond it erf is ±1 in f32), the form Eigen and
/// XLA use. No branch and no `mul_add` (a libm call without target FMA), so
/// loops over it vectorise.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p - 2.101_024e-6;
    p = x2 * p - 5.692_506_4e-5;
    p = x2 * p - 7.349_906e-4;
    p = x2 * p - 2.954_600_1e-3;
    p = x2 * p - 1.609_603_3e-2;
    let p = x * p;
    let mut q = x2 * -1.456_607_2e-5 - 2.133_740_6e-4;
    q = x2 * q - 1.682_827e-3;
    q = x2 * q - 7.373_329e-3;
    q = x2 * q - 1.426_474e-2;
    p / q
}

/// The dtype the encoder computes in: f32 is the fastest on CPU.
pub const DTYPE: DType = DType::F32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_candle_exact_gelu() -> candle_core::Result<()> {
        let xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 5e-5).collect();
        let x = Tensor::new(xs.as_slice(), &Device::Cpu)?;
        let ours = x.apply_op1_no_bwd(&GeluErf)?.to_vec1::<f32>()?;
        let reference = x.gelu_erf()?.to_vec1::<f32>()?;
        // erf is off by at most 5e-7, so gelu by at most |x| * 2.5e-7 (plus rounding).
        let worst = xs
            .iter()
            .zip(ours.iter().zip(&reference))
            .map(|(x, (a, b))| (a - b).abs() / x.abs().max(1.0))
            .fold(0f32, f32::max);
        assert!(worst < 5e-7, "largest difference per unit of |x|: {worst}");
        Ok(())
    }

    #[test]
    fn erf_saturates_and_is_odd() {
        assert_eq!(erf(0.0), 0.0);
        assert!((erf(10.0) - 1.0).abs() < 1e-6);
        assert!((erf(-10.0) + 1.0).abs() < 1e-6);
        assert!((erf(0.5) + erf(-0.5)).abs() < 1e-7);
        // erf(1) = 0.8427007929497149
        assert!((erf(1.0) - 0.842_700_8).abs() < 1e-6);
    }
}
