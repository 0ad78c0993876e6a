//! The sinew-tiny policy folder: `config.json`, `model.safetensors`, `stats.json` and
//! `tokenizer.json` loaded into a [`Policy`] that preprocesses observations, runs the model and
//! decodes its tokens into actions.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use sinew_core::{ActionChunk, Observation, Policy, PolicyError, PolicySpec, Timings};

use super::{decode_logits, Config, Decode, SinewTiny, TinyInputs};
use crate::bins::BinTokenizer;
use crate::normalize::{lerobot_stats, LeRobotMode, Normalizer};
use crate::weights::{load_checked, load_tokenizer, RecordingBackend};
use crate::{model_err, preprocess};

/// The word tokenizer of sinew-tiny instructions: lower case, split on whitespace and
/// punctuation, one id per word seen in training, `[PAD]` = 0, `[UNK]` = 1. Saved as a Hugging
/// Face `tokenizer.json` (WordLevel).
pub fn build_text_tokenizer<S: AsRef<str>>(
    instructions: &[S],
) -> Result<tokenizers::Tokenizer, PolicyError> {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::normalizers::Lowercase;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    let mut words: Vec<String> = Vec::new();
    for s in instructions {
        for w in s
            .as_ref()
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            if !words.iter().any(|x| x == w) {
                words.push(w.to_owned());
            }
        }
    }
    words.sort();
    let mut vocab = std::collections::HashMap::new();
    vocab.insert("[PAD]".to_owned(), 0u32);
    vocab.insert("[UNK]".to_owned(), 1u32);
    for (i, w) in words.into_iter().enumerate() {
        vocab.insert(w, i as u32 + 2);
    }
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| PolicyError::Config(format!("word vocabulary: {e}")))?;
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_normalizer(Some(Lowercase));
    tok.with_pre_tokenizer(Some(Whitespace {}));
    Ok(tok)
}

/// The sinew-tiny policy folder: `config.json`, `model.safetensors`, `stats.json` (LeRobot
/// layout, min/max of `observation.state` and `action`) and `tokenizer.json` (words).
pub struct SinewTinyPolicy {
    model: SinewTiny,
    tokenizer: tokenizers::Tokenizer,
    state_norm: Option<Normalizer>,
    action_norm: Normalizer,
    bins: BinTokenizer,
    spec: PolicySpec,
    device: Device,
    dir: Option<PathBuf>,
}

impl std::fmt::Debug for SinewTinyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinewTinyPolicy")
            .field("dir", &self.dir)
            .field("spec", &self.spec)
            .finish()
    }
}

/// What a sinew-tiny policy expects and produces.
pub fn spec_of(cfg: &Config) -> PolicySpec {
    PolicySpec {
        architecture: "sinew-tiny".into(),
        cameras: cfg.cameras.clone(),
        image_size: (cfg.image_size as u32, cfg.image_size as u32),
        uses_state: cfg.state_dim > 0,
        state_dim: cfg.state_dim,
        action_kind: cfg.action_kind,
        action_dim: cfg.action_dim,
        chunk_length: cfg.chunk_length,
        control_rate_hz: cfg.control_rate_hz,
        action_tokenizer: "bins".into(),
        n_action_steps: cfg.n_action_steps,
    }
}

/// The tensors `cfg` needs, with their shapes.
pub fn required_tensors(cfg: &Config) -> Result<Vec<(String, Vec<usize>)>, PolicyError> {
    let (vb, rec) = RecordingBackend::var_builder(DType::F32);
    SinewTiny::new(cfg, vb).map_err(model_err)?;
    Ok(rec.requested())
}

/// Reads and validates `dir/config.json` of a sinew-tiny policy.
pub fn load_config(dir: &Path) -> Result<Config, PolicyError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::Io(path.clone(), e))?;
    let cfg: Config =
        serde_json::from_str(&text).map_err(|e| PolicyError::Parse(path.clone(), e.to_string()))?;
    cfg.validate().map_err(|m| PolicyError::Parse(path, m))?;
    Ok(cfg)
}

/// Sets how the sinew-tiny policy in `dir` decodes its bins, rewriting `dir/config.json` and
/// keeping its other fields: one value sets `decode` for every dimension (and clears
/// `decode_by_dim`), one per action dimension sets `decode_by_dim`. Returns the new
/// configuration; on an error the file is left as it was.
pub fn set_decode(dir: &Path, decode: &[Decode]) -> Result<Config, PolicyError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::Io(path.clone(), e))?;
    let parse = |e: serde_json::Error| PolicyError::Parse(path.clone(), e.to_string());
    let mut json: serde_json::Value = serde_json::from_str(&text).map_err(parse)?;
    let mut cfg: Config = serde_json::from_value(json.clone()).map_err(parse)?;
    match decode {
        [one] => {
            cfg.decode = *one;
            cfg.decode_by_dim.clear();
        }
        many if many.len() == cfg.action_dim => cfg.decode_by_dim = many.to_vec(),
        many => {
            return Err(PolicyError::Config(format!(
                "{}: {} decodings given for {} action dimensions (give one, or one per dimension)",
                path.display(),
                many.len(),
                cfg.action_dim
            )))
        }
    }
    cfg.validate()
        .map_err(|m| PolicyError::Parse(path.clone(), m))?;
    let fields = json
        .as_object_mut()
        .ok_or_else(|| PolicyError::Parse(path.clone(), "not a JSON object".into()))?;
    fields.insert("decode".into(), cfg.decode.as_str().into());
    if cfg.decode_by_dim.is_empty() {
        fields.remove("decode_by_dim");
    } else {
        let names: Vec<serde_json::Value> = cfg
            .decode_by_dim
            .iter()
            .map(|d| d.as_str().into())
            .collect();
        fields.insert("decode_by_dim".into(), names.into());
    }
    let text = serde_json::to_string_pretty(&json).map_err(parse)?;
    std::fs::write(&path, text).map_err(|e| PolicyError::Io(path.clone(), e))?;
    Ok(cfg)
}

impl SinewTinyPolicy {
    /// Wraps a model built elsewhere (training) with its tokenizer and statistics.
    pub fn from_parts(
        model: SinewTiny,
        tokenizer: tokenizers::Tokenizer,
        state_norm: Option<Normalizer>,
        action_norm: Normalizer,
        device: &Device,
    ) -> Result<Self, PolicyError> {
        let cfg = model.config().clone();
        if action_norm.dim() != cfg.action_dim {
            return Err(PolicyError::Shape(format!(
                "action statistics have {} dimensions, the model {}",
                action_norm.dim(),
                cfg.action_dim
            )));
        }
        if let Some(n) = &state_norm {
            if n.dim() != cfg.state_dim {
                return Err(PolicyError::Shape(format!(
                    "state statistics have {} dimensions, the model {}",
                    n.dim(),
                    cfg.state_dim
                )));
            }
        }
        let bins = BinTokenizer::new(cfg.n_bins as u32, cfg.n_bins as u32)?;
        let spec = spec_of(&cfg);
        Ok(Self {
            model,
            tokenizer,
            state_norm,
            action_norm,
            bins,
            spec,
            device: device.clone(),
            dir: None,
        })
    }

    /// Loads a policy folder.
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self, PolicyError> {
        let cfg = load_config(dir)?;
        let model = load_checked(dir, dtype, device, &required_tensors(&cfg)?, |vb| {
            SinewTiny::new(&cfg, vb)
        })?;
        let tokenizer = load_tokenizer(dir)?;
        let tok_path = dir.join("tokenizer.json");
        if tokenizer.get_vocab_size(true) > cfg.text_vocab_size {
            return Err(PolicyError::Parse(
                tok_path,
                format!(
                    "{} words, more than text_vocab_size {} in config.json",
                    tokenizer.get_vocab_size(true),
                    cfg.text_vocab_size
                ),
            ));
        }
        let stats = dir.join("stats.json");
        let action_norm = lerobot_stats(&stats, "action", LeRobotMode::MinMax, None)?;
        let state_norm = if cfg.state_dim > 0 {
            Some(lerobot_stats(
                &stats,
                "observation.state",
                LeRobotMode::MinMax,
                None,
            )?)
        } else {
            None
        };
        let mut p = Self::from_parts(model, tokenizer, state_norm, action_norm, device)?;
        p.dir = Some(dir.to_owned());
        Ok(p)
    }

    /// Writes the policy folder: config, weights from `varmap`, statistics and tokenizer.
    /// `stats` is the LeRobot `stats.json` content (with `action` and `observation.state`).
    pub fn save_folder(
        dir: &Path,
        cfg: &Config,
        varmap: &VarMap,
        tokenizer: &tokenizers::Tokenizer,
        stats: &serde_json::Value,
    ) -> Result<(), PolicyError> {
        std::fs::create_dir_all(dir).map_err(|e| PolicyError::Io(dir.to_owned(), e))?;
        let write = |name: &str, text: String| -> Result<(), PolicyError> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| PolicyError::Io(p, e))
        };
        write(
            "config.json",
            serde_json::to_string_pretty(cfg).map_err(|e| PolicyError::Config(e.to_string()))?,
        )?;
        write(
            "stats.json",
            serde_json::to_string_pretty(stats).map_err(|e| PolicyError::Config(e.to_string()))?,
        )?;
        let tok = dir.join("tokenizer.json");
        tokenizer
            .save(&tok, true)
            .map_err(|e| PolicyError::Parse(tok, e.to_string()))?;
        // Write to a temporary name first so a crash never leaves a half-written checkpoint.
        let w = dir.join("model.safetensors");
        let tmp = dir.join("model.safetensors.partial");
        varmap
            .save(&tmp)
            .map_err(|e| PolicyError::Weights(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &w).map_err(|e| PolicyError::Io(w, e))
    }

    /// The network.
    pub fn model(&self) -> &SinewTiny {
        &self.model
    }

    /// Word ids (padded to `max_text_len`), mask, and whether the instruction was cut.
    pub fn text_ids(&self, instruction: &str) -> Result<(Vec<u32>, Vec<f32>, bool), PolicyError> {
        let n = self.model.cfg.max_text_len;
        let enc = self
            .tokenizer
            .encode(instruction, false)
            .map_err(|e| PolicyError::Model(format!("tokenizer: {e}")))?;
        let mut ids: Vec<u32> = enc.get_ids().to_vec();
        let cut = ids.len() > n;
        ids.truncate(n);
        let mut mask = vec![1f32; ids.len()];
        ids.resize(n, 0);
        mask.resize(n, 0.0);
        Ok((ids, mask, cut))
    }

    /// Model inputs for one observation.
    pub fn inputs(&self, obs: &Observation) -> Result<(TinyInputs, Vec<String>), PolicyError> {
        let cfg = &self.model.cfg;
        let s = cfg.image_size as u32;
        let mut cams = Vec::new();
        for cam in &cfg.cameras {
            let img = preprocess::camera_frame(obs, cam)?;
            let rgb = preprocess::prepared_rgb(img, cam, s, s, cfg.crops.get(cam))?;
            cams.push(preprocess::normalize(
                &rgb,
                [0.5; 3],
                [0.5; 3],
                &self.device,
            )?);
        }
        let images = Tensor::stack(&cams, 1).map_err(model_err)?; // (1, n_cam, 3, S, S)
        let mut warnings = Vec::new();
        let (ids, mask, cut) = self.text_ids(&obs.instruction)?;
        if cut {
            warnings.push(format!(
                "instruction cut to its first {} words",
                cfg.max_text_len
            ));
        }
        let state = match &self.state_norm {
            Some(n) => {
                if obs.joint_positions.len() < cfg.state_dim {
                    return Err(PolicyError::Observation(format!(
                        "joint state has {} positions, the policy reads {}",
                        obs.joint_positions.len(),
                        cfg.state_dim
                    )));
                }
                let raw = &obs.joint_positions[..cfg.state_dim];
                if raw.iter().any(|v| !v.is_finite()) {
                    return Err(PolicyError::NonFinite(
                        "joint state has NaN or infinity".into(),
                    ));
                }
                n.normalize(raw)?.into_iter().map(|v| v as f32).collect()
            }
            None => Vec::new(),
        };
        let t = |r: candle_core::Result<Tensor>| r.map_err(model_err);
        Ok((
            TinyInputs {
                images,
                text_ids: t(Tensor::from_vec(ids, (1, cfg.max_text_len), &self.device))?,
                text_mask: t(Tensor::from_vec(mask, (1, cfg.max_text_len), &self.device))?,
                state: t(Tensor::from_vec(state, (1, cfg.state_dim), &self.device))?,
                prefix: None,
            },
            warnings,
        ))
    }

    /// Actions `[T][D]` (un-normalised) of bin tokens `[T][D]`.
    pub fn decode_tokens(&self, tokens: &[Vec<u32>]) -> Result<Vec<Vec<f64>>, PolicyError> {
        tokens
            .iter()
            .map(|row| self.action_norm.unnormalize(&self.bins.decode(row)))
            .collect()
    }

    /// The bin tokenizer (tokens are the class indices of the head).
    pub fn bins(&self) -> &BinTokenizer {
        &self.bins
    }
}

impl Policy for SinewTinyPolicy {
    fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    fn infer(&mut self, obs: &Observation) -> Result<ActionChunk, PolicyError> {
        let t0 = Instant::now();
        let (inputs, warnings) = self.inputs(obs)?;
        let t1 = Instant::now();
        let logits = self.model.forward(&inputs).map_err(model_err)?;
        self.chunk_of(&logits, obs, warnings, t0, t1)
    }

    fn prefix_capacity(&self) -> usize {
        self.model.config().prefix_max
    }

    /// The chunk conditioned on `prefix` (policies trained with `prefix_max`); its first
    /// `prefix.len()` actions are `prefix` exactly.
    fn infer_with_prefix(
        &mut self,
        obs: &Observation,
        prefix: &[Vec<f64>],
    ) -> Result<ActionChunk, PolicyError> {
        if prefix.is_empty() {
            return self.infer(obs);
        }
        let cfg = self.model.config();
        let (k, t, d) = (prefix.len(), cfg.chunk_length, cfg.action_dim);
        if k > cfg.prefix_max {
            return Err(PolicyError::Shape(format!(
                "{k} committed actions; this policy conditions on at most {} (prefix_max)",
                cfg.prefix_max
            )));
        }
        let t0 = Instant::now();
        let mut values = vec![0f32; t * d];
        let mut committed = vec![0f32; t];
        let mut rows = Vec::with_capacity(k);
        for (i, a) in prefix.iter().enumerate() {
            if a.len() != d {
                return Err(PolicyError::Shape(format!(
                    "committed action {i} has {} values, the policy's actions {d}",
                    a.len()
                )));
            }
            if a.iter().any(|v| !v.is_finite()) {
                return Err(PolicyError::NonFinite(format!(
                    "committed action {i} has NaN or infinity"
                )));
            }
            let n = self.action_norm.normalize(a)?;
            rows.push(self.bins.encode(&n)?);
            for (j, v) in n.iter().enumerate() {
                values[i * d + j] = v.clamp(-1.0, 1.0) as f32;
            }
            committed[i] = 1.0;
        }
        let (mut inputs, warnings) = self.inputs(obs)?;
        let t = |r: candle_core::Result<Tensor>| r.map_err(model_err);
        inputs.prefix = Some((
            t(Tensor::from_vec(
                values,
                (1, cfg.chunk_length, d),
                &self.device,
            ))?,
            t(Tensor::from_vec(
                committed,
                (1, cfg.chunk_length, 1),
                &self.device,
            ))?,
        ));
        let t1 = Instant::now();
        let logits = self.model.forward(&inputs).map_err(model_err)?;
        let mut chunk = self.chunk_of(&logits, obs, warnings, t0, t1)?;
        // The committed actions are what the robot executes: the chunk carries them as given.
        for (i, (a, r)) in prefix.iter().zip(rows).enumerate() {
            if let Some(slot) = chunk.actions.get_mut(i) {
                slot.clone_from(a);
            }
            for (j, tok) in r.into_iter().enumerate() {
                if let Some(slot) = chunk.tokens.get_mut(i * d + j) {
                    *slot = tok;
                }
            }
        }
        Ok(chunk)
    }

    /// One forward pass for every observation: the inputs are stacked along the batch
    /// dimension. Each chunk's timings are the whole batch's.
    fn infer_batch(
        &mut self,
        observations: &[&Observation],
    ) -> Vec<Result<ActionChunk, PolicyError>> {
        if observations.len() < 2 {
            return observations.iter().map(|o| self.infer(o)).collect();
        }
        let t0 = Instant::now();
        // Observations that fail preprocessing get their error; the rest share the pass.
        let mut prepared = Vec::with_capacity(observations.len());
        let mut results: Vec<Option<Result<ActionChunk, PolicyError>>> =
            (0..observations.len()).map(|_| None).collect();
        for (i, o) in observations.iter().enumerate() {
            match self.inputs(o) {
                Ok((inp, w)) => prepared.push((i, inp, w)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let stacked = (|| -> candle_core::Result<TinyInputs> {
            let cat = |f: &dyn Fn(&TinyInputs) -> &Tensor| {
                Tensor::cat(
                    &prepared.iter().map(|(_, x, _)| f(x)).collect::<Vec<_>>(),
                    0,
                )
            };
            Ok(TinyInputs {
                images: cat(&|x| &x.images)?,
                text_ids: cat(&|x| &x.text_ids)?,
                text_mask: cat(&|x| &x.text_mask)?,
                state: cat(&|x| &x.state)?,
                prefix: None,
            })
        })();
        let t1 = Instant::now();
        let logits = stacked.and_then(|x| self.model.forward(&x));
        for (b, (i, _, warnings)) in prepared.into_iter().enumerate() {
            let r = match &logits {
                Ok(l) => l
                    .narrow(0, b, 1)
                    .map_err(model_err)
                    .and_then(|row| self.chunk_of(&row, observations[i], warnings, t0, t1)),
                Err(e) => Err(PolicyError::Model(e.to_string())),
            };
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(PolicyError::Model("no result".into()))))
            .collect()
    }
}

impl SinewTinyPolicy {
    /// The chunk of one observation's logits (batch of one).
    fn chunk_of(
        &self,
        logits: &Tensor,
        obs: &Observation,
        warnings: Vec<String>,
        t0: Instant,
        t1: Instant,
    ) -> Result<ActionChunk, PolicyError> {
        let cfg = self.model.config();
        let all_argmax = (0..cfg.action_dim).all(|k| cfg.decode_of(k) == Decode::Argmax);
        let (rows, actions, t2) = if all_argmax {
            let tokens: Vec<Vec<Vec<u32>>> = SinewTiny::greedy(logits)
                .and_then(|t| t.to_vec3())
                .map_err(model_err)?;
            let t2 = Instant::now();
            let rows = tokens.into_iter().next().unwrap_or_default();
            let actions = self.decode_tokens(&rows)?;
            (rows, actions, t2)
        } else {
            let flat: Vec<f32> = logits
                .to_dtype(DType::F32)
                .and_then(|l| l.flatten_all())
                .and_then(|l| l.to_vec1())
                .map_err(model_err)?;
            let t2 = Instant::now();
            let values: Vec<f64> = flat
                .chunks(cfg.n_bins)
                .enumerate()
                .map(|(i, l)| decode_logits(l, cfg.decode_of(i % cfg.action_dim.max(1))))
                .collect();
            let mut rows = Vec::with_capacity(cfg.chunk_length);
            let mut actions = Vec::with_capacity(cfg.chunk_length);
            for v in values.chunks(cfg.action_dim) {
                rows.push(self.bins.encode(v)?);
                actions.push(self.action_norm.unnormalize(v)?);
            }
            (rows, actions, t2)
        };
        let t3 = Instant::now();
        Ok(ActionChunk {
            kind: Some(self.spec.action_kind),
            actions,
            tokens: rows.into_iter().flatten().collect(),
            timings: Timings::from_marks([t0, t1, t2, t3]),
            observation_stamp_s: obs.stamp_s,
            warnings,
            label: None,
        })
    }
}
