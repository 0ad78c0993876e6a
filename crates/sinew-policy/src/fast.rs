//! The numeric half of the FAST action tokenizer ("FAST: Efficient Action Tokenization for
//! Vision-Language-Action Models", Pertsch et al., 2025; docs/references.md section 2):
//! an action chunk `[T, D]` is transformed by an orthonormal DCT-II along time, scaled,
//! rounded, flattened frequency-major (all D dimensions of frequency 0 first) and mapped to
//! character codes `max(q - min_token, 0)`. The BPE over those characters is the remaining part.
//!
//! Decoding takes the codes back to integers, reshapes to `(-1, D)` and, when that is not
//! `(T, D)`, either gives up (strict: zeros, as the release does) or pads/truncates (relaxed),
//! then applies the inverse DCT to `q / scale`.

use rustdct::DctPlanner;

use crate::PolicyError;

/// DCT quantiser parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FastQuantizer {
    /// Multiplier before rounding (10 in the release).
    pub scale: f64,
    /// Offset of the character mapping (-354 in the release).
    pub min_token: i64,
}

impl Default for FastQuantizer {
    fn default() -> Self {
        Self {
            scale: 10.0,
            min_token: -354,
        }
    }
}

/// How to treat a code sequence whose length is not `T * D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeMode {
    /// Return `None` (the caller holds or uses zeros).
    Strict,
    /// Pad with zero coefficients or drop the excess.
    Relaxed,
}

fn dct2_ortho(planner: &mut DctPlanner<f64>, x: &mut [f64]) {
    let n = x.len();
    planner.plan_dct2(n).process_dct2(x);
    let (s0, s) = ((1.0 / n as f64).sqrt(), (2.0 / n as f64).sqrt());
    for (k, v) in x.iter_mut().enumerate() {
        *v *= if k == 0 { s0 } else { s };
    }
}

fn dct3_ortho(planner: &mut DctPlanner<f64>, x: &mut [f64]) {
    // rustdct's DCT-III is x_n = X_0 / 2 + sum_k X_k cos(..): rescale to the orthonormal inverse.
    let n = x.len();
    let (s0, s) = ((1.0 / n as f64).sqrt(), (2.0 / n as f64).sqrt());
    for (k, v) in x.iter_mut().enumerate() {
        *v *= if k == 0 { 2.0 * s0 } else { s };
    }
    planner.plan_dct3(n).process_dct3(x);
}

impl FastQuantizer {
    /// Integer coefficients of a chunk given row-major as `[T][D]`, flattened frequency-major.
    pub fn quantize(&self, chunk: &[Vec<f64>]) -> Result<Vec<i64>, PolicyError> {
        let t = chunk.len();
        let d = chunk.first().map_or(0, Vec::len);
        if t == 0 || d == 0 || chunk.iter().any(|r| r.len() != d) {
            return Err(PolicyError::Shape(format!(
                "action chunk must be [T, D] with T, D > 0 (got {t} rows)"
            )));
        }
        if chunk.iter().flatten().any(|v| !v.is_finite()) {
            return Err(PolicyError::NonFinite(
                "action chunk has NaN or infinity".into(),
            ));
        }
        let mut planner = DctPlanner::new();
        let mut out = vec![0i64; t * d];
        let mut col = vec![0.0; t];
        for j in 0..d {
            for (i, c) in col.iter_mut().enumerate() {
                *c = chunk[i][j];
            }
            dct2_ortho(&mut planner, &mut col);
            for (i, c) in col.iter().enumerate() {
                out[i * d + j] = (c * self.scale).round() as i64;
            }
        }
        Ok(out)
    }

    /// Character codes of quantised coefficients.
    pub fn to_codes(&self, q: &[i64]) -> Vec<u32> {
        q.iter()
            .map(|v| (v - self.min_token).max(0) as u32)
            .collect()
    }

    /// Coefficients back from character codes.
    pub fn from_codes(&self, codes: &[u32]) -> Vec<i64> {
        codes.iter().map(|c| *c as i64 + self.min_token).collect()
    }

    /// The chunk `[T][D]` of quantised coefficients; `None` in strict mode when the length is
    /// not `T * D`.
    pub fn dequantize(
        &self,
        q: &[i64],
        t: usize,
        d: usize,
        mode: DecodeMode,
    ) -> Option<Vec<Vec<f64>>> {
        if t == 0 || d == 0 {
            return None;
        }
        if q.len() != t * d && mode == DecodeMode::Strict {
            return None;
        }
        let mut planner = DctPlanner::new();
        let mut out = vec![vec![0.0; d]; t];
        let mut col = vec![0.0; t];
        for j in 0..d {
            for (i, c) in col.iter_mut().enumerate() {
                *c = q.get(i * d + j).map_or(0.0, |v| *v as f64 / self.scale);
            }
            dct3_ortho(&mut planner, &mut col);
            for (row, c) in out.iter_mut().zip(&col) {
                row[j] = *c;
            }
        }
        Some(out)
    }
}

/// `processor_config.json` of a FAST tokenizer (the Hugging Face layout of
/// `physical-intelligence/fast`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FastProcessorConfig {
    /// Multiplier before rounding.
    pub scale: f64,
    /// BPE vocabulary size.
    pub vocab_size: usize,
    /// Offset of the character mapping.
    pub min_token: i64,
    /// Steps per chunk, when fixed.
    #[serde(default)]
    pub time_horizon: Option<usize>,
    /// Dimensions per step, when fixed.
    #[serde(default)]
    pub action_dim: Option<usize>,
    /// `UniversalActionProcessor`.
    #[serde(default = "processor_class")]
    pub processor_class: String,
}

fn processor_class() -> String {
    "UniversalActionProcessor".into()
}

/// The outcome of decoding a FAST token sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct FastDecoded {
    /// `[T][D]` normalised actions (zeros when strict decoding failed).
    pub actions: Vec<Vec<f64>>,
    /// Whether the sequence had exactly `T * D` coefficients.
    pub exact: bool,
    /// Coefficients found.
    pub coefficients: usize,
}

/// The complete FAST tokenizer: DCT quantiser plus byte-level BPE, compatible with the files
/// of `physical-intelligence/fast` (`processor_config.json`, `tokenizer.json`).
pub struct FastTokenizer {
    /// The DCT half.
    pub quantizer: FastQuantizer,
    /// The processor configuration.
    pub config: FastProcessorConfig,
    bpe: tokenizers::Tokenizer,
}

impl std::fmt::Debug for FastTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastTokenizer")
            .field("config", &self.config)
            .finish()
    }
}

fn tk_err(what: &str) -> impl Fn(tokenizers::Error) -> PolicyError + '_ {
    move |e| PolicyError::Model(format!("{what}: {e}"))
}

impl FastTokenizer {
    /// Loads `dir/processor_config.json` and `dir/tokenizer.json`.
    pub fn load(dir: &std::path::Path) -> Result<Self, PolicyError> {
        let cfg_path = dir.join("processor_config.json");
        let text =
            std::fs::read_to_string(&cfg_path).map_err(|e| PolicyError::Io(cfg_path.clone(), e))?;
        let config: FastProcessorConfig = serde_json::from_str(&text)
            .map_err(|e| PolicyError::Parse(cfg_path.clone(), e.to_string()))?;
        if !(config.scale.is_finite() && config.scale > 0.0) {
            return Err(PolicyError::Parse(
                cfg_path,
                "scale must be a positive number".into(),
            ));
        }
        let tok_path = dir.join("tokenizer.json");
        let bpe = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| PolicyError::Parse(tok_path, e.to_string()))?;
        Ok(Self::from_parts(config, bpe))
    }

    fn from_parts(config: FastProcessorConfig, bpe: tokenizers::Tokenizer) -> Self {
        Self {
            quantizer: FastQuantizer {
                scale: config.scale,
                min_token: config.min_token,
            },
            config,
            bpe,
        }
    }

    /// Writes `processor_config.json` and `tokenizer.json` into `dir` (created if needed).
    pub fn save(&self, dir: &std::path::Path) -> Result<(), PolicyError> {
        std::fs::create_dir_all(dir).map_err(|e| PolicyError::Io(dir.to_owned(), e))?;
        let cfg_path = dir.join("processor_config.json");
        let text = serde_json::to_string_pretty(&self.config)
            .map_err(|e| PolicyError::Config(e.to_string()))?;
        std::fs::write(&cfg_path, text).map_err(|e| PolicyError::Io(cfg_path, e))?;
        let tok_path = dir.join("tokenizer.json");
        self.bpe
            .save(&tok_path, true)
            .map_err(|e| PolicyError::Parse(tok_path, e.to_string()))
    }

    /// The BPE as Hugging Face `tokenizer.json` text.
    pub fn bpe_json(&self) -> Result<String, PolicyError> {
        self.bpe.to_string(false).map_err(tk_err("tokenizer"))
    }

    /// BPE vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.bpe.get_vocab_size(true)
    }

    /// Fits a FAST tokenizer on normalised chunks `[N][T][D]` as the released `fit` does:
    /// `min_token` is the smallest rounded coefficient, the BPE is byte-level with the whole
    /// coefficient range as its initial alphabet, `min_frequency` 2.
    pub fn fit(
        chunks: &[Vec<Vec<f64>>],
        scale: f64,
        vocab_size: usize,
    ) -> Result<Self, PolicyError> {
        use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::{
            DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper,
            PreTokenizerWrapper, TokenizerImpl,
        };

        if chunks.is_empty() {
            return Err(PolicyError::Shape("no action chunks to fit on".into()));
        }
        let (t, d) = (chunks[0].len(), chunks[0].first().map_or(0, Vec::len));
        let raw = FastQuantizer {
            scale,
            min_token: 0,
        };
        let mut all = Vec::with_capacity(chunks.len());
        for (i, c) in chunks.iter().enumerate() {
            let q = raw
                .quantize(c)
                .map_err(|e| PolicyError::Shape(format!("chunk {i}: {e}")))?;
            all.push(q);
        }
        let (min, max) = all
            .iter()
            .flatten()
            .fold((i64::MAX, i64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let range = (max - min) as usize;
        if range > vocab_size {
            return Err(PolicyError::Config(format!(
                "the coefficients span {range} values, more than the vocabulary of {vocab_size}: raise --vocab-size or lower --scale"
            )));
        }
        let alphabet = (0..=range as u32).filter_map(char::from_u32).collect();
        let quant = FastQuantizer {
            scale,
            min_token: min,
        };
        let strings: Vec<String> = all
            .iter()
            .map(|q| {
                quant
                    .to_codes(q)
                    .into_iter()
                    .filter_map(char::from_u32)
                    .collect()
            })
            .collect();
        let mut trainer = tokenizers::models::TrainerWrapper::BpeTrainer(
            BpeTrainerBuilder::new()
                .vocab_size(vocab_size)
                .min_frequency(2)
                .show_progress(false)
                .special_tokens(vec![])
                .initial_alphabet(alphabet)
                .max_token_length(Some(10000))
                .build(),
        );
        let mut tk: TokenizerImpl<
            ModelWrapper,
            NormalizerWrapper,
            PreTokenizerWrapper,
            PostProcessorWrapper,
            DecoderWrapper,
        > = TokenizerImpl::new(ModelWrapper::BPE(BPE::default()));
        tk.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, true, true,
        ))));
        tk.with_post_processor(Some(PostProcessorWrapper::ByteLevel(ByteLevel::new(
            true, false, true,
        ))));
        tk.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::new(
            true, true, true,
        ))));
        tk.train(&mut trainer, strings.iter())
            .map_err(tk_err("BPE training"))?;
        let config = FastProcessorConfig {
            scale,
            vocab_size,
            min_token: min,
            time_horizon: Some(t),
            action_dim: Some(d),
            processor_class: processor_class(),
        };
        Ok(Self::from_parts(config, tk.into()))
    }

    /// BPE token ids of a normalised chunk `[T][D]`.
    pub fn encode(&self, chunk: &[Vec<f64>]) -> Result<Vec<u32>, PolicyError> {
        let q = self.quantizer.quantize(chunk)?;
        let s: String = self
            .quantizer
            .to_codes(&q)
            .into_iter()
            .map(|c| char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();
        let enc = self.bpe.encode(s, true).map_err(tk_err("BPE encode"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The chunk `[t][d]` of token ids. Strict mode gives zeros (and `exact: false`) when the
    /// sequence does not hold exactly `t * d` coefficients, as the release does; relaxed mode
    /// pads with zero coefficients or truncates.
    pub fn decode(&self, ids: &[u32], t: usize, d: usize, mode: DecodeMode) -> FastDecoded {
        let codes: Vec<u32> = match self.bpe.decode(ids, false) {
            Ok(s) => s.chars().map(|c| c as u32).collect(),
            Err(_) => Vec::new(),
        };
        let q = self.quantizer.from_codes(&codes);
        let exact = q.len() == t * d;
        let actions = match self.quantizer.dequantize(&q, t, d, mode) {
            Some(a) => a,
            None => vec![vec![0.0; d]; t],
        };
        FastDecoded {
            actions,
            exact,
            coefficients: q.len(),
        }
    }
}
