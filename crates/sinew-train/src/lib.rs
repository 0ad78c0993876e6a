//! Behaviour cloning of sinew-tiny on a LeRobotDataset v3.0, with candle on the CPU (or GPU).
//!
//! Each sample is one frame: both cameras (augmented: random shifts of a few pixels, brightness
//! and contrast jitter), the instruction as words, the normalised joint state, and as targets the
//! next `chunk_length` actions of the episode (the last one repeated past the episode's end),
//! min/max-normalised to [-1, 1] and cut into `n_bins` bins. The loss is the cross-entropy of
//! the bin head. Episodes are split into training and validation sets by a seeded shuffle.
//!
//! The optimiser is AdamW written here (candle-nn's keeps its moments private, and resuming
//! needs them): linear warm-up, then cosine decay to `min_lr`. A checkpoint is the weights, the
//! optimiser moments, the step and the random generator's state, written atomically; a run
//! resumed from it continues exactly as the uninterrupted run would have.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use sinew_core::ActionKind;
use sinew_data::{Dataset, Frame};
use sinew_policy::models::sinew_tiny::{
    build_text_tokenizer, decode_logits, token_centre, Config, Decode, SinewTiny, SinewTinyPolicy,
    TinyInputs,
};
use sinew_policy::normalize::{lerobot_stats, LeRobotMode};
use sinew_policy::{BinTokenizer, Normalizer};

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The dataset.
    #[error(transparent)]
    Data(#[from] sinew_data::DataError),
    /// The model or its folder.
    #[error(transparent)]
    Policy(#[from] sinew_core::PolicyError),
    /// candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// A file.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The configuration or a checkpoint.
    #[error("{0}")]
    Config(String),
}

/// Camera augmentations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Largest shift, pixels (edges replicated).
    pub shift_px: u32,
    /// Brightness offset range, in [-1, 1] image units: uniform in ±brightness.
    pub brightness: f32,
    /// Contrast factor range: uniform in 1 ± contrast.
    pub contrast: f32,
    /// Per-channel gain range (colour balance): uniform in 1 ± color.
    pub color: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Self {
            shift_px: 4,
            brightness: 0.1,
            contrast: 0.15,
            color: 0.05,
        }
    }
}

/// Training configuration (`--config FILE`, TOML; every field has a default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimiser steps.
    pub steps: u64,
    /// Frames per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine decay.
    pub min_lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Fraction of episodes held out for validation (at least one when there are two or more).
    pub val_fraction: f64,
    /// Validate every this many steps.
    pub val_every: u64,
    /// Checkpoint every this many steps.
    pub checkpoint_every: u64,
    /// Seed of the split, the sampling and the augmentations.
    pub seed: u64,
    /// Augmentations.
    pub augment: Augment,
    /// Model width.
    pub d_model: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// MLP width.
    pub mlp_dim: usize,
    /// Actions per chunk.
    pub chunk_length: usize,
    /// Bins per action dimension.
    pub n_bins: usize,
    /// Width (in bins) of the Gaussian soft labels of the cross-entropy ("HL-Gauss": the
    /// target is a Gaussian around the continuous action, so neighbouring bins count as nearly
    /// right); 0 trains on one-hot bins.
    pub label_sigma_bins: f32,
    /// Give sinew-tiny its Gaussian bin head (`Config::gaussian_head`).
    pub gaussian_head: bool,
    /// How the trained policy decodes its bins (`Config::decode`; validation reports all).
    pub decode: Decode,
    /// The action space learned: `joint_position` (the dataset's actions) or `joint_delta`
    /// (each action minus the one before it, the first minus the measured state; normalised by
    /// the min/max of those deltas, written to the policy's stats.json).
    pub action_space: ActionKind,
    /// Condition sinew-tiny's CNN on the instruction (`Config::film`).
    pub film: bool,
    /// Group-normalise sinew-tiny's CNN stages (`Config::cnn_norm`); keep it on, above all
    /// with `film`.
    pub cnn_norm: bool,
    /// Give sinew-tiny's CNN pixel-coordinate channels (`Config::coords`).
    pub coords: bool,
    /// Spatial-softmax keypoints per camera (`Config::keypoints`; 0 for none).
    pub keypoints: usize,
    /// Feed the joint state to the policy. Off, the policy sees only the cameras and the
    /// instruction (as OpenVLA and RT-1 do): with the state, behaviour cloning learns to copy
    /// it ("copycat", Wen et al. 2020), since the next target is nearly the current position
    /// on most frames, and the images go unused.
    pub use_state: bool,
    /// Patch tokens besides the keypoints (`Config::patch_tokens`).
    pub patch_tokens: bool,
    /// One token for all keypoints of a camera (`Config::pool_keypoints`).
    pub pool_keypoints: bool,
    /// Inverse temperature of the keypoint heat maps (`Config::keypoint_gain`).
    pub keypoint_gain: f64,
    /// Weight of the auxiliary goal loss (0: no auxiliary head). Besides its action chunk,
    /// every frame then predicts where its episode goes: the normalised joint targets at the
    /// episode's key frame (the first frame the gripper has closed or opened half-way, or the
    /// last frame when it never does) and at its last frame, by mean squared error through
    /// `Config::aux_dim`. On the first frames, where the arm has not moved yet, only the named
    /// cube's and the target's places in the image answer that, so the loss pushes the encoder
    /// to find them; behaviour cloning alone learns to continue the arm's visible motion.
    pub aux_weight: f64,
    /// Frames at the start of each training episode that `early_fraction` draws from.
    pub early_frames: usize,
    /// Fraction of each batch drawn from the first `early_frames` frames of the training
    /// episodes (0: all frames alike). The first move, made before the arm's motion gives
    /// anything away, is where the policy must read the scene.
    pub early_fraction: f64,
    /// Draw each sample's episode uniformly, then a frame of it, instead of every frame
    /// alike: short episodes (a reach is 15 frames, a pick-and-place 60) weigh as much as
    /// long ones.
    pub by_episode: bool,
    /// Chunk entries the written policy asks the runtime to execute per inference
    /// (`Config::n_action_steps`; unset: half the chunk).
    pub n_action_steps: Option<usize>,
    /// Real-time chunking (`Config::prefix_max`, 0 for none): each training sample is given
    /// its first `k` target actions as committed, `k` drawn uniformly from 0 to this
    /// (0 included, so the policy still acts alone); validation gives none.
    pub prefix_max: usize,
    /// Longest instruction in words the model reads (`Config::max_text_len`); longer ones
    /// are cut, with a warning at inference.
    pub max_text_len: usize,
    /// Text robustness: the probability that each word of a training sample's instruction
    /// is replaced by `[UNK]`, the id every word outside the vocabulary gets at inference
    /// (words in `keep_words` excepted). A policy trained so has seen unknown words in
    /// every position and learns to act on the words it knows ("word dropout"); validation
    /// reads the instructions as written.
    pub word_dropout: f64,
    /// Text robustness: the probability that a training sample's instruction gets one
    /// `[UNK]` inserted at a random position (a second one with the same probability
    /// again), as a filler word the policy never saw would be ("could you", "please").
    pub unk_insert: f64,
    /// Words `word_dropout` never replaces: the ones that decide the task (colours, zone
    /// names). Each must be in the dataset's instructions.
    pub keep_words: Vec<String>,
    /// Exponential moving average of the weights (0: none). After every step each weight's
    /// average moves towards it by `1 - min(ema_decay, (1 + t) / (10 + t))` at step `t`, and
    /// the written policy (and validation) uses the averages: a policy at the end of a run is
    /// then the mean of its last ~`1 / (1 - ema_decay)` steps' weights rather than wherever the
    /// last batches left it.
    pub ema_decay: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 4000,
            batch_size: 32,
            lr: 1e-3,
            min_lr: 2e-5,
            warmup_steps: 200,
            weight_decay: 0.01,
            val_fraction: 0.05,
            val_every: 250,
            checkpoint_every: 250,
            seed: 0,
            augment: Augment::default(),
            d_model: 128,
            n_layers: 4,
            n_heads: 4,
            mlp_dim: 256,
            chunk_length: 10,
            n_bins: 256,
            label_sigma_bins: 2.0,
            gaussian_head: false,
            decode: Decode::Mode,
            action_space: ActionKind::JointPosition,
            film: false,
            cnn_norm: true,
            coords: true,
            keypoints: 0,
            use_state: true,
            patch_tokens: true,
            pool_keypoints: false,
            keypoint_gain: 1.0,
            aux_weight: 0.0,
            early_frames: 0,
            early_fraction: 0.0,
            by_episode: false,
            n_action_steps: None,
            prefix_max: 0,
            max_text_len: 16,
            word_dropout: 0.0,
            unk_insert: 0.0,
            keep_words: Vec::new(),
            ema_decay: 0.0,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::Io(path.to_owned(), e))?;
        toml::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
    }

    /// The learning rate at `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
        self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// The generator of splits, sampling and augmentations (its state is saved in checkpoints).
pub use sinew_core::rng::SplitMix64 as Rng;

/// Uniform in [-1, 1).
fn sym(r: &mut Rng) -> f32 {
    (r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
}

/// What a checkpoint holds besides the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps done.
    pub step: u64,
    /// The generator after those steps.
    pub rng: Rng,
    /// The configuration it was trained with.
    pub config: TrainConfig,
    /// The dataset it was trained on.
    pub dataset: PathBuf,
    /// Loss history: (step, training loss, validation loss or NaN).
    pub history: Vec<(u64, f32, f32)>,
}

/// One step's report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Step just done (1-based).
    pub step: u64,
    /// Training loss of the batch.
    pub loss: f32,
    /// Learning rate used.
    pub lr: f64,
    /// Mean absolute error of the batch's auxiliary goal prediction (normalised units), when
    /// trained with one.
    pub aux_mae: Option<f32>,
}

/// Validation result.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// Mean cross-entropy.
    pub loss: f32,
    /// Bin accuracy.
    pub accuracy: f32,
    /// Mean absolute error of the first action of the chunk (decoded as the policy will), in
    /// the normalised [-1, 1] units.
    pub first_action_mae: f32,
    /// The same per action dimension (joint).
    pub first_action_mae_per_dim: Vec<f32>,
    /// The first-action error under each decoding, in the order of `Decode::ALL` (argmax, mode,
    /// expectation).
    pub first_action_mae_by_decode: [f32; 3],
    /// Mean absolute error of the auxiliary goal prediction (normalised units), when trained
    /// with one.
    pub aux_mae: Option<f32>,
}

/// A batch's targets: the bins, and the soft labels when `label_sigma_bins > 0`.
struct Targets {
    bins: Tensor,
    soft: Option<Tensor>,
    /// The normalised values behind the bins.
    values: Vec<f32>,
    /// The auxiliary goal targets `(B, aux_dim)`, when trained with them.
    aux: Option<Tensor>,
}

/// Gaussian soft labels over the tokens of a `BinTokenizer::new(n, n)` for each normalised
/// value: token `k >= 1` is bin `n - 1 - k` (centre `-1 + (i + 0.5) w`, `w = 2 / (n - 1)`);
/// token 0 (exactly +1, decoded like token 1) gets no weight. Rows sum to 1.
fn soft_labels(values: &[f32], n: usize, sigma_bins: f32) -> Vec<f32> {
    let w = 2.0 / (n as f32 - 1.0);
    let sigma = sigma_bins * w;
    // The nearest centre (at most half a bin away) always falls inside the cut.
    let cut = 4f32.max(0.6 / sigma_bins);
    let mut out = vec![0f32; values.len() * n];
    for (row, x) in out.chunks_mut(n).zip(values) {
        let mut sum = 0f32;
        for (k, p) in row.iter_mut().enumerate().skip(1) {
            let z = (token_centre(n, k) as f32 - x) / sigma;
            *p = if z.abs() < cut {
                (-0.5 * z * z).exp()
            } else {
                0.0
            };
            sum += *p;
        }
        if sum > 0.0 {
            row.iter_mut().for_each(|p| *p /= sum);
        }
    }
    out
}

struct Sample {
    /// Decoded RGB per camera.
    images: Vec<Vec<u8>>,
    text: usize,
    state: Vec<f32>,
    /// Target bins `[T * D]`.
    targets: Vec<u32>,
    /// The normalised (clipped) actions behind them `[T * D]`.
    values: Vec<f32>,
    /// Auxiliary goal targets (`TrainConfig::aux_weight`), normalised: the actions at the
    /// episode's key frame and last frame `[2 * D]`.
    aux: Vec<f32>,
}

/// A training run.
pub struct Trainer {
    cfg: TrainConfig,
    model_cfg: Config,
    device: Device,
    varmap: VarMap,
    model: SinewTiny,
    vars: Vec<(String, Var)>,
    /// Adam's first and second moments of each variable (flat, in `vars` order).
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    /// The weights' moving averages (`ema_decay`; in `vars` order). Empty until the first
    /// step (or without averaging): they start from the weights the run starts from.
    ema: Vec<Vec<f32>>,
    samples: Vec<Sample>,
    train: Vec<usize>,
    /// Training frames among the first `early_frames` of their episode.
    early: Vec<usize>,
    /// Frame ranges of the training episodes.
    train_episodes: Vec<std::ops::Range<usize>>,
    val: Vec<usize>,
    texts: Vec<TaskText>,
    /// Word ids `word_dropout` leaves alone (`keep_words`).
    kept_ids: Vec<u32>,
    tokenizer: tokenizers::Tokenizer,
    stats: serde_json::Value,
    state: TrainState,
    /// One single-threaded pool per data-parallel worker (empty: the step runs on the calling
    /// thread, with candle's own threading). See [`Trainer::with_workers`].
    workers: Vec<rayon::ThreadPool>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("step", &self.state.step)
            .finish()
    }
}

fn normalizer(stats_path: &Path, feature: &str) -> Result<Normalizer, TrainError> {
    Ok(lerobot_stats(
        stats_path,
        feature,
        LeRobotMode::MinMax,
        None,
    )?)
}

/// `f` on each item, item `k` on worker `k`'s pool (one item per worker at most), all at once;
/// the results in item order. A worker that panics gives an error.
fn on_workers<I, T, F>(
    workers: &[rayon::ThreadPool],
    items: Vec<I>,
    f: F,
) -> Vec<Result<T, TrainError>>
where
    I: Send,
    T: Send,
    F: Fn(I) -> Result<T, TrainError> + Sync,
{
    if items.len() > workers.len() {
        return items
            .iter()
            .map(|_| {
                Err(TrainError::Config(
                    "more shares than training workers".into(),
                ))
            })
            .collect();
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .into_iter()
            .zip(workers)
            .map(|(item, pool)| scope.spawn(move || pool.install(|| f(item))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(TrainError::Config("a training worker panicked".into()))
                })
            })
            .collect()
    })
}

/// One AdamW step's constants (step `t` from 1, bias corrections folded in).
#[derive(Debug, Clone, Copy)]
struct Adam {
    b1: f32,
    b2: f32,
    c1: f32,
    c2: f32,
    eps: f32,
    lr: f32,
    decay: f32,
}

/// One variable's update: its gradient and its moments.
struct AdamJob<'a> {
    var: &'a Var,
    g: Tensor,
    m: &'a mut [f32],
    v: &'a mut [f32],
    /// The variable's moving average, and its decay this step.
    ema: Option<(&'a mut [f32], f32)>,
}

impl Adam {
    fn at(t: u64, lr: f64, weight_decay: f64) -> Self {
        let (b1, b2) = (0.9f64, 0.999f64);
        let t = i32::try_from(t).unwrap_or(i32::MAX);
        Self {
            b1: b1 as f32,
            b2: b2 as f32,
            c1: (1.0 - b1.powi(t)) as f32,
            c2: (1.0 - b2.powi(t)) as f32,
            eps: 1e-8,
            lr: lr as f32,
            decay: (1.0 - lr * weight_decay) as f32,
        }
    }

    /// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
    /// `w = w (1 - lr wd) - lr (m / c1) / (sqrt(v / c2) + eps)`.
    fn apply(&self, j: AdamJob<'_>, device: &Device) -> Result<(), TrainError> {
        let w_t = j.var.as_tensor();
        let shape = w_t.shape().clone();
        let mut w = w_t.flatten_all()?.to_vec1::<f32>()?;
        let g = j.g.flatten_all()?.to_vec1::<f32>()?;
        if g.len() != w.len() || j.m.len() != w.len() || j.v.len() != w.len() {
            return Err(TrainError::Config(format!(
                "a gradient of {} values for a variable of {}",
                g.len(),
                w.len()
            )));
        }
        for (((w, g), m), v) in w.iter_mut().zip(&g).zip(j.m.iter_mut()).zip(j.v.iter_mut()) {
            *m = self.b1 * *m + (1.0 - self.b1) * g;
            *v = self.b2 * *v + (1.0 - self.b2) * g * g;
            let update = (*m / self.c1) / ((*v / self.c2).sqrt() + self.eps);
            *w = *w * self.decay - self.lr * update;
        }
        if let Some((ema, d)) = j.ema {
            if ema.len() != w.len() {
                return Err(TrainError::Config(format!(
                    "a moving average of {} values for a variable of {}",
                    ema.len(),
                    w.len()
                )));
            }
            for (e, w) in ema.iter_mut().zip(&w) {
                *e = d * *e + (1.0 - d) * w;
            }
        }
        j.var.set(&Tensor::from_vec(w, shape, device)?)?;
        Ok(())
    }
}

impl Trainer {
    /// Prepares a run on `dataset` (decoding every frame once). `image_size` must be the
    /// dataset's image side.
    pub fn new(dataset: &Path, cfg: TrainConfig, device: &Device) -> Result<Self, TrainError> {
        Self::with_stats(dataset, cfg, device, None)
    }

    /// Like [`Trainer::new`], but normalising with the statistics file `stats` (a policy
    /// folder's `stats.json`) instead of the dataset's. Fine-tuning a policy on new data keeps
    /// its normalisation this way, so its weights mean what they meant: with the new data's
    /// min/max, every target would shift under them.
    pub fn with_stats(
        dataset: &Path,
        cfg: TrainConfig,
        device: &Device,
        stats: Option<&Path>,
    ) -> Result<Self, TrainError> {
        Self::prepare(dataset, cfg, device, stats, None)
    }

    /// A run that fine-tunes the policy folder `init` (then [`Trainer::init_from`] it): its
    /// normalisation statistics (see [`Trainer::with_stats`]) and its word vocabulary. The
    /// dataset's instructions may use fewer words than the policy knows (takeover data, where
    /// some templates never came up), never a word it does not know.
    pub fn with_init(
        dataset: &Path,
        cfg: TrainConfig,
        device: &Device,
        init: &Path,
    ) -> Result<Self, TrainError> {
        let tok_path = init.join("tokenizer.json");
        let tok = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| TrainError::Config(format!("{}: {e}", tok_path.display())))?;
        Self::prepare(
            dataset,
            cfg,
            device,
            Some(&init.join("stats.json")),
            Some((tok, tok_path)),
        )
    }

    fn prepare(
        dataset: &Path,
        cfg: TrainConfig,
        device: &Device,
        stats: Option<&Path>,
        policy_tokenizer: Option<(tokenizers::Tokenizer, PathBuf)>,
    ) -> Result<Self, TrainError> {
        let ds = Dataset::open(dataset)?;
        let frames = ds.read_frames()?;
        let mine = build_text_tokenizer(&ds.tasks)?;
        let tokenizer = match policy_tokenizer {
            None => mine,
            Some((tok, path)) => {
                let known = tok.get_vocab(true);
                let mut unknown: Vec<String> = mine
                    .get_vocab(true)
                    .into_keys()
                    .filter(|w| !known.contains_key(w))
                    .collect();
                if !unknown.is_empty() {
                    unknown.sort();
                    return Err(TrainError::Config(format!(
                        "{}: the dataset's instructions use words this policy does not know: {}",
                        path.display(),
                        unknown.join(", ")
                    )));
                }
                tok
            }
        };
        let (model_cfg, delta) = model_config(&ds, &frames, &cfg, tokenizer.get_vocab_size(true))?;
        let action_dim = model_cfg.action_dim;
        let data_stats_path = dataset.join("meta/stats.json");
        let stats_path = stats.map_or_else(|| data_stats_path.clone(), Path::to_path_buf);
        let state_norm = normalizer(&stats_path, sinew_data::STATE)?;
        let all_stats = read_json(&stats_path)?;
        let (raw, goals) = chunk_targets(&ds, &frames, cfg.chunk_length, action_dim, delta);
        // Goals are absolute actions; a joint_delta policy's stats.json holds deltas, so its
        // goals keep the dataset's scale.
        let goal_norm = normalizer(
            if delta { &data_stats_path } else { &stats_path },
            sinew_data::ACTION,
        )?;
        let (action_norm, action_stats) = action_normalizer(
            delta,
            stats.is_some(),
            &stats_path,
            &all_stats,
            &raw,
            action_dim,
        )?;
        let stats = serde_json::json!({
            sinew_data::STATE: all_stats[sinew_data::STATE],
            sinew_data::ACTION: action_stats,
        });
        let norms = Norms {
            state: state_norm,
            action: action_norm,
            goal: goal_norm,
            bins: BinTokenizer::new(cfg.n_bins as u32, cfg.n_bins as u32)?,
        };
        let texts = task_texts(&tokenizer, &ds.tasks, model_cfg.max_text_len)?;
        let kept_ids = kept_word_ids(&tokenizer, &cfg.keep_words)?;
        let samples = build_samples(&ds, &frames, &raw, &goals, &norms, &model_cfg)?;
        let split = split_episodes(&ds, &cfg)?;
        let varmap = seeded_varmap(&model_cfg, cfg.seed ^ 0x1A17_1A17, device)?;
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = SinewTiny::new(&model_cfg, vb)?;
        let mut vars: Vec<(String, Var)> = match varmap.data().lock() {
            Ok(d) => d.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return Err(TrainError::Config("variable map poisoned".into())),
        };
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let m: Vec<Vec<f32>> = vars
            .iter()
            .map(|(_, v)| vec![0f32; v.as_tensor().elem_count()])
            .collect();
        let v = m.clone();
        Ok(Self {
            state: TrainState {
                step: 0,
                rng: Rng(cfg.seed),
                config: cfg.clone(),
                dataset: dataset.to_owned(),
                history: Vec::new(),
            },
            cfg,
            model_cfg,
            device: device.clone(),
            varmap,
            model,
            vars,
            m,
            v,
            ema: Vec::new(),
            samples,
            train: split.train,
            early: split.early,
            train_episodes: split.train_episodes,
            val: split.val,
            texts,
            kept_ids,
            tokenizer,
            stats,
            workers: Vec::new(),
        })
    }

    /// Splits each step's batch over `n` worker threads, each running its share's forward and
    /// backward pass single-threaded; their gradients are averaged (weighted by share) before
    /// the one optimiser update, so a step means what it means with one worker, up to the
    /// order of floating-point sums. On a CPU this beats candle's own threading, whose
    /// element-wise kernels gain little from more threads (docs/training.md, "Training
    /// speed"); run it with `CANDLE_NUM_THREADS=1`, or candle's shared kernel pool serialises
    /// the workers. `n <= 1` runs the step on the calling thread.
    pub fn with_workers(mut self, n: usize) -> Result<Self, TrainError> {
        self.workers = if n <= 1 {
            Vec::new()
        } else {
            (0..n)
                .map(|i| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .thread_name(move |_| format!("train-worker-{i}"))
                        .build()
                        .map_err(|e| {
                            TrainError::Config(format!("starting training worker {i}: {e}"))
                        })
                })
                .collect::<Result<_, _>>()?
        };
        Ok(self)
    }

    /// Data-parallel workers (1 when the step runs on the calling thread).
    pub fn workers(&self) -> usize {
        self.workers.len().max(1)
    }

    /// The model configuration.
    pub fn model_config(&self) -> &Config {
        &self.model_cfg
    }

    /// Steps done.
    pub fn step(&self) -> u64 {
        self.state.step
    }

    /// Training and validation frames.
    pub fn split(&self) -> (usize, usize) {
        (self.train.len(), self.val.len())
    }

    /// Parameters.
    pub fn parameters(&self) -> usize {
        self.vars
            .iter()
            .map(|(_, v)| v.as_tensor().elem_count())
            .sum()
    }

    /// Loss history so far.
    pub fn history(&self) -> &[(u64, f32, f32)] {
        &self.state.history
    }

    /// The inputs and targets of frames `idx`. `augment_seed`: `(seed, first)` augments them (images,
    /// words, committed prefixes), sample `bi` with a generator of its own seeded from `seed`
    /// and its place `first + bi` in the step's whole batch, so a batch split over workers is
    /// augmented exactly as the whole; `None`: as recorded (validation).
    fn batch(
        &self,
        idx: &[usize],
        augment_seed: Option<(u64, usize)>,
    ) -> Result<(TinyInputs, Targets), TrainError> {
        let cfg = &self.model_cfg;
        let s = cfg.image_size;
        let n_cam = cfg.cameras.len();
        let b = idx.len();
        let mut images = vec![0f32; b * n_cam * 3 * s * s];
        let mut ids = Vec::with_capacity(b * cfg.max_text_len);
        let mut mask = Vec::with_capacity(b * cfg.max_text_len);
        let mut state = Vec::with_capacity(b * cfg.state_dim);
        let mut targets = Vec::with_capacity(b * cfg.chunk_length * cfg.action_dim);
        let mut values = Vec::with_capacity(b * cfg.chunk_length * cfg.action_dim);
        let mut aux = Vec::with_capacity(b * cfg.aux_dim);
        let (t_len, a_dim) = (cfg.chunk_length, cfg.action_dim);
        // Committed actions (training only): the first k targets of each sample.
        let with_prefix = cfg.prefix_max > 0 && augment_seed.is_some();
        let mut committed_values = vec![0f32; if with_prefix { b * t_len * a_dim } else { 0 }];
        let mut committed = vec![0f32; if with_prefix { b * t_len } else { 0 }];
        for (bi, &i) in idx.iter().enumerate() {
            let mut sample_rng = augment_seed.map(|(seed, first)| {
                let mut r = Rng(seed ^ ((first + bi) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                r.next_u64();
                r
            });
            let smp = &self.samples[i];
            for (c, rgb) in smp.images.iter().enumerate() {
                let out =
                    &mut images[((bi * n_cam + c) * 3 * s * s)..((bi * n_cam + c + 1) * 3 * s * s)];
                match sample_rng.as_mut() {
                    Some(r) => augment(rgb, s, &self.cfg.augment, r, out),
                    None => augment(
                        rgb,
                        s,
                        &Augment {
                            shift_px: 0,
                            brightness: 0.0,
                            contrast: 0.0,
                            color: 0.0,
                        },
                        &mut Rng(0),
                        out,
                    ),
                }
            }
            let (ti, tm) = &self.texts[smp.text];
            match sample_rng.as_mut() {
                Some(r) if self.cfg.word_dropout > 0.0 || self.cfg.unk_insert > 0.0 => {
                    let (ai, am) = augment_text(ti, tm, &self.kept_ids, &self.cfg, r);
                    ids.extend_from_slice(&ai);
                    mask.extend_from_slice(&am);
                }
                _ => {
                    ids.extend_from_slice(ti);
                    mask.extend_from_slice(tm);
                }
            }
            if cfg.state_dim > 0 {
                state.extend_from_slice(&smp.state);
            }
            if with_prefix {
                if let Some(r) = sample_rng.as_mut() {
                    let k = r
                        .below(cfg.prefix_max + 1)
                        .min(smp.values.len() / a_dim.max(1));
                    let row = bi * t_len * a_dim;
                    committed_values[row..row + k * a_dim]
                        .copy_from_slice(&smp.values[..k * a_dim]);
                    for c in &mut committed[bi * t_len..bi * t_len + k] {
                        *c = 1.0;
                    }
                }
            }
            targets.extend_from_slice(&smp.targets);
            values.extend_from_slice(&smp.values);
            aux.extend_from_slice(&smp.aux);
        }
        let d = &self.device;
        let n = targets.len();
        let soft = if self.cfg.label_sigma_bins > 0.0 {
            let nb = cfg.n_bins;
            let probs = soft_labels(&values, nb, self.cfg.label_sigma_bins);
            Some(Tensor::from_vec(probs, (n, nb), d)?)
        } else {
            None
        };
        Ok((
            TinyInputs {
                images: Tensor::from_vec(images, (b, n_cam, 3, s, s), d)?,
                text_ids: Tensor::from_vec(ids, (b, cfg.max_text_len), d)?,
                text_mask: Tensor::from_vec(mask, (b, cfg.max_text_len), d)?,
                state: Tensor::from_vec(state, (b, cfg.state_dim), d)?,
                prefix: if with_prefix {
                    Some((
                        Tensor::from_vec(committed_values, (b, t_len, a_dim), d)?,
                        Tensor::from_vec(committed, (b, t_len, 1), d)?,
                    ))
                } else {
                    None
                },
            },
            Targets {
                bins: Tensor::from_vec(targets, n, d)?,
                soft,
                values,
                aux: if cfg.aux_dim > 0 {
                    Some(Tensor::from_vec(aux, (b, cfg.aux_dim), d)?)
                } else {
                    None
                },
            },
        ))
    }

    /// The loss, the flat logits `(B * T * D, n_bins)` and the auxiliary mean absolute error.
    fn loss(
        &self,
        x: &TinyInputs,
        targets: &Targets,
    ) -> Result<(Tensor, Tensor, Option<Tensor>), TrainError> {
        let (logits, aux_pred) = self.model.forward_with_aux(x)?;
        let flat = logits.reshape((targets.bins.dim(0)?, self.model_cfg.n_bins))?;
        let loss = match &targets.soft {
            Some(p) => {
                let logp = candle_nn::ops::log_softmax(&flat, candle_core::D::Minus1)?;
                (p * logp)?.sum(candle_core::D::Minus1)?.mean_all()?.neg()?
            }
            None => candle_nn::loss::cross_entropy(&flat, &targets.bins)?,
        };
        match (aux_pred, &targets.aux) {
            (Some(p), Some(t)) => {
                let diff = (p - t)?;
                let mse = diff.sqr()?.mean_all()?;
                let mae = diff.abs()?.mean_all()?.detach();
                let loss = (loss + (mse * self.cfg.aux_weight)?)?;
                Ok((loss, flat, Some(mae)))
            }
            _ => Ok((loss, flat, None)),
        }
    }

    /// The batch `idx` split over the workers: each builds (augmented as the whole batch would
    /// be, from one seed drawn from `rng`) and differentiates its share; the loss, the
    /// gradient of every variable (detached, in `self.vars` order) and the goal error are the
    /// shares' means weighted by their sizes, which is the whole batch's mean.
    #[allow(clippy::type_complexity)]
    fn parallel_grads(
        &self,
        idx: &[usize],
        rng: &mut Rng,
    ) -> Result<(Tensor, Vec<Option<Tensor>>, Option<Tensor>), TrainError> {
        let per = idx.len().div_ceil(self.workers.len()).max(1);
        // One seed for the whole batch; each sample's generator follows from it and its place.
        let seed = rng.next_u64();
        let shares: Vec<(&[usize], usize)> = idx
            .chunks(per)
            .enumerate()
            .map(|(k, part)| (part, k * per))
            .collect();
        type Share = (Tensor, candle_core::backprop::GradStore, Option<Tensor>);
        let results = on_workers(&self.workers, shares.clone(), |(part, first)| {
            let (x, targets) = self.batch(part, Some((seed, first)))?;
            let (loss, _, aux) = self.loss(&x, &targets)?;
            let grads = loss.backward()?;
            Ok::<Share, TrainError>((loss.detach(), grads, aux))
        });
        let total = idx.len() as f64;
        let mut loss: Option<Tensor> = None;
        let mut aux: Option<Tensor> = None;
        let mut grads: Vec<Option<Tensor>> = vec![None; self.vars.len()];
        for ((part, _), r) in shares.iter().zip(results) {
            let (l, g, a) = r?;
            let w = part.len() as f64 / total;
            let add = |acc: Option<Tensor>, t: &Tensor| -> Result<Tensor, TrainError> {
                let t = (t.detach() * w)?;
                Ok(match acc {
                    Some(acc) => (acc + t)?,
                    None => t,
                })
            };
            loss = Some(add(loss, &l)?);
            if let Some(a) = &a {
                aux = Some(add(aux, a)?);
            }
            for ((_, var), acc) in self.vars.iter().zip(grads.iter_mut()) {
                if let Some(t) = g.get(var.as_tensor()) {
                    *acc = Some(add(acc.take(), t)?);
                }
            }
        }
        let loss = loss.ok_or_else(|| TrainError::Config("an empty batch".into()))?;
        Ok((loss, grads, aux))
    }

    /// One optimiser step on a random batch.
    pub fn train_step(&mut self) -> Result<StepReport, TrainError> {
        let mut rng = self.state.rng;
        let idx = draw_frames(
            &Pools {
                frames: &self.train,
                early: &self.early,
                episodes: &self.train_episodes,
            },
            &self.cfg,
            &mut rng,
        );
        let (loss, grads, aux_mae) = if self.workers.len() > 1 {
            self.parallel_grads(&idx, &mut rng)?
        } else {
            let (x, targets) = self.batch(&idx, Some((rng.next_u64(), 0)))?;
            let (loss, _, aux_mae) = self.loss(&x, &targets)?;
            let grads = loss.backward()?;
            let grads = self
                .vars
                .iter()
                .map(|(_, var)| grads.get(var.as_tensor()).map(Tensor::detach))
                .collect::<Vec<_>>();
            (loss, grads, aux_mae)
        };
        self.state.rng = rng;
        let lr = self.cfg.lr_at(self.state.step);
        let adam = Adam::at(self.state.step + 1, lr, self.cfg.weight_decay);
        if self.cfg.ema_decay > 0.0 && self.ema.is_empty() {
            self.ema = self
                .vars
                .iter()
                .map(|(_, v)| v.as_tensor().flatten_all()?.to_vec1::<f32>())
                .collect::<candle_core::Result<_>>()?;
        }
        let t = self.state.step as f64;
        let ema_decay = self.cfg.ema_decay.min((1.0 + t) / (10.0 + t)) as f32;
        let mut emas = self.ema.iter_mut().map(|e| (e.as_mut_slice(), ema_decay));
        // AdamW on plain slices, one pass per variable instead of a dozen candle ops; with
        // workers, each updates its share of the variables.
        let mut jobs: Vec<AdamJob> = self
            .vars
            .iter()
            .zip(grads)
            .zip(self.m.iter_mut().zip(self.v.iter_mut()))
            .filter_map(|(((_, var), g), (m, v))| {
                // One average per variable, in order, whether or not it has a gradient.
                let ema = emas.next();
                g.map(|g| AdamJob {
                    var,
                    g,
                    m: m.as_mut_slice(),
                    v: v.as_mut_slice(),
                    ema,
                })
            })
            .collect();
        let device = &self.device;
        if self.workers.len() > 1 {
            let n = self.workers.len();
            // Round-robin over variables sorted by size keeps the shares about even.
            jobs.sort_by_key(|j| std::cmp::Reverse(j.m.len()));
            let mut shares: Vec<Vec<AdamJob>> = (0..n).map(|_| Vec::new()).collect();
            for (i, j) in jobs.into_iter().enumerate() {
                shares[i % n].push(j);
            }
            let results = on_workers(&self.workers, shares, |share| {
                share.into_iter().try_for_each(|j| adam.apply(j, device))
            });
            results.into_iter().collect::<Result<(), _>>()?;
        } else {
            jobs.into_iter().try_for_each(|j| adam.apply(j, device))?;
        }
        self.state.step += 1;
        let loss: f32 = loss.to_scalar()?;
        Ok(StepReport {
            step: self.state.step,
            loss,
            lr,
            aux_mae: aux_mae.map(|a| a.to_scalar()).transpose()?,
        })
    }

    /// Runs `f` with the weights' moving averages in place of the weights (`ema_decay`; the
    /// weights themselves without averaging), and puts the weights back.
    fn with_averages<T>(&self, f: impl FnOnce() -> Result<T, TrainError>) -> Result<T, TrainError> {
        if self.ema.is_empty() {
            return f();
        }
        let raw = self
            .vars
            .iter()
            .map(|(_, v)| v.as_tensor().copy())
            .collect::<candle_core::Result<Vec<_>>>()?;
        for ((_, var), e) in self.vars.iter().zip(&self.ema) {
            var.set(&Tensor::from_slice(
                e,
                var.as_tensor().shape(),
                &self.device,
            )?)?;
        }
        let out = f();
        for ((_, var), r) in self.vars.iter().zip(&raw) {
            var.set(r)?;
        }
        out
    }

    /// Loss, bin accuracy and first-action error on the validation frames (no augmentation),
    /// at most `max_frames` of them (evenly spread), of the weights the policy is written with
    /// (their moving averages with `ema_decay`).
    pub fn validate(&self, max_frames: usize) -> Result<Option<Validation>, TrainError> {
        self.with_averages(|| self.validate_weights(max_frames))
    }

    fn validate_weights(&self, max_frames: usize) -> Result<Option<Validation>, TrainError> {
        if self.val.is_empty() {
            return Ok(None);
        }
        let stride = (self.val.len() / max_frames.max(1)).max(1);
        let chosen: Vec<usize> = self.val.iter().step_by(stride).copied().collect();
        let (mut loss_sum, mut acc_sum, mut mae_sum, mut n) = (0f64, 0f64, 0f64, 0usize);
        let d = self.model_cfg.action_dim;
        let mut per_dim = vec![0f64; d];
        let mut by_decode = [0f64; Decode::ALL.len()];
        let mut aux_sum = None;
        for chunk in chosen.chunks(self.cfg.batch_size.max(1)) {
            let (x, tg) = self.batch(chunk, None)?;
            let (loss, flat, aux_mae) = self.loss(&x, &tg)?;
            if let Some(a) = aux_mae {
                *aux_sum.get_or_insert(0f64) += a.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            }
            let targets = &tg.bins;
            let pred = flat.argmax(candle_core::D::Minus1)?;
            let acc: f32 = pred
                .eq(targets)?
                .to_dtype(DType::F32)?
                .mean_all()?
                .to_scalar()?;
            let logits: Vec<f32> = flat.flatten_all()?.to_vec1()?;
            let nbu = self.model_cfg.n_bins;
            let per = self.model_cfg.chunk_length * d;
            let mut mae = 0f32;
            for b in 0..chunk.len() {
                for (k, pd) in per_dim.iter_mut().enumerate() {
                    let row = b * per + k;
                    let l = &logits[row * nbu..(row + 1) * nbu];
                    let x = tg.values[row] as f64;
                    for (m, mode) in Decode::ALL.into_iter().enumerate() {
                        let e = (decode_logits(l, mode) - x).abs();
                        by_decode[m] += e;
                        if mode == self.model_cfg.decode_of(k) {
                            mae += e as f32;
                            *pd += e;
                        }
                    }
                }
            }
            loss_sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            acc_sum += acc as f64 * chunk.len() as f64;
            mae_sum += (mae / d as f32) as f64;
            n += chunk.len();
        }
        Ok(Some(Validation {
            loss: (loss_sum / n as f64) as f32,
            accuracy: (acc_sum / n as f64) as f32,
            first_action_mae: (mae_sum / n as f64) as f32,
            first_action_mae_per_dim: per_dim.iter().map(|e| (e / n as f64) as f32).collect(),
            first_action_mae_by_decode: by_decode.map(|e| (e / (n * d) as f64) as f32),
            aux_mae: aux_sum.map(|a| (a / n as f64) as f32),
        }))
    }

    /// Records a history point.
    pub fn note(&mut self, loss: f32, val: Option<f32>) {
        self.state
            .history
            .push((self.state.step, loss, val.unwrap_or(f32::NAN)));
    }

    /// Takes the per-dimension decoding (`decode_by_dim`, set by `sinew policy decode` after
    /// training) of the policy folder already in `out` into the next [`Trainer::write_policy`],
    /// if that folder has this run's `decode`: a finished run written again with another
    /// `n_action_steps` keeps the decoding chosen for its weights, while a run given another
    /// `decode` applies it to every dimension. Returns whether it took one; a missing or
    /// unreadable folder gives none.
    pub fn keep_decode_by_dim(&mut self, out: &Path) -> bool {
        let Ok(old) = sinew_policy::models::sinew_tiny::load_config(out) else {
            return false;
        };
        if old.decode != self.model_cfg.decode
            || old.decode_by_dim.len() != self.model_cfg.action_dim
        {
            return false;
        }
        self.model_cfg.decode_by_dim = old.decode_by_dim;
        true
    }

    /// Writes the policy folder `out` (config, weights, stats, tokenizer) alone, without the
    /// checkpoint: how a finished run applies new run settings (`decode`, `n_action_steps`).
    /// With `ema_decay` the weights written are the moving averages.
    pub fn write_policy(&self, out: &Path) -> Result<(), TrainError> {
        self.with_averages(|| {
            SinewTinyPolicy::save_folder(
                out,
                &self.model_cfg,
                &self.varmap,
                &self.tokenizer,
                &self.stats,
            )?;
            Ok(())
        })
    }

    /// Writes the policy folder `out` (config, weights, stats, tokenizer) and the checkpoint
    /// `out/checkpoint/` (optimiser moments, step, generator, history). Each file is written to
    /// a temporary name and renamed, so an interruption leaves the previous checkpoint whole.
    pub fn save(&self, out: &Path) -> Result<(), TrainError> {
        self.write_policy(out)?;
        let ck = out.join("checkpoint");
        std::fs::create_dir_all(&ck).map_err(|e| TrainError::Io(ck.clone(), e))?;
        let mut moments: HashMap<String, Tensor> = HashMap::new();
        for (k, (name, _)) in self.vars.iter().enumerate() {
            let shape = self.vars[k].1.as_tensor().shape().clone();
            let t = |x: &[f32]| Tensor::from_slice(x, shape.clone(), &self.device);
            moments.insert(format!("m.{name}"), t(&self.m[k])?);
            moments.insert(format!("v.{name}"), t(&self.v[k])?);
            if let Some(e) = self.ema.get(k) {
                moments.insert(format!("ema.{name}"), t(e)?);
            }
        }
        let tmp = ck.join("optimizer.safetensors.partial");
        candle_core::safetensors::save(&moments, &tmp)?;
        let fin = ck.join("optimizer.safetensors");
        std::fs::rename(&tmp, &fin).map_err(|e| TrainError::Io(fin, e))?;
        // The weights the optimiser state belongs to (the policy folder's copy may be newer
        // if a later save is interrupted between files).
        let wt = ck.join("model.safetensors.partial");
        self.varmap.save(&wt)?;
        let wf = ck.join("model.safetensors");
        std::fs::rename(&wt, &wf).map_err(|e| TrainError::Io(wf, e))?;
        let st = ck.join("state.json.partial");
        let text = serde_json::to_string_pretty(&self.state)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        std::fs::write(&st, text).map_err(|e| TrainError::Io(st.clone(), e))?;
        let sf = ck.join("state.json");
        std::fs::rename(&st, &sf).map_err(|e| TrainError::Io(sf, e))?;
        Ok(())
    }

    /// Continues from `out/checkpoint/`: weights, moments, step, generator and history. The
    /// configuration must be the one the checkpoint was written with.
    pub fn resume(&mut self, out: &Path) -> Result<(), TrainError> {
        let ck = out.join("checkpoint");
        let sf = ck.join("state.json");
        let text = std::fs::read_to_string(&sf).map_err(|e| TrainError::Io(sf.clone(), e))?;
        let state: TrainState = serde_json::from_str(&text)
            .map_err(|e| TrainError::Config(format!("{}: {e}", sf.display())))?;
        // `decode` and `n_action_steps` only set how the written policy is run; training is
        // the same.
        let same = TrainConfig {
            decode: self.cfg.decode,
            n_action_steps: self.cfg.n_action_steps,
            ..state.config.clone()
        } == self.cfg;
        if !same {
            return Err(TrainError::Config(format!(
                "{}: the checkpoint was trained with another configuration; resume with the same --config (or start a new --out)",
                sf.display()
            )));
        }
        self.varmap.load(ck.join("model.safetensors"))?;
        let moments =
            candle_core::safetensors::load(ck.join("optimizer.safetensors"), &self.device)?;
        let mut ema = Vec::new();
        for (k, (name, var)) in self.vars.iter().enumerate() {
            let n = var.as_tensor().elem_count();
            let get = |p: &str| -> Result<Vec<f32>, TrainError> {
                let file = ck.join("optimizer.safetensors");
                let t = moments.get(&format!("{p}.{name}")).ok_or_else(|| {
                    TrainError::Config(format!("{}: no {p}.{name}", file.display()))
                })?;
                let x = t.flatten_all()?.to_vec1::<f32>()?;
                if x.len() != n {
                    return Err(TrainError::Config(format!(
                        "{}: {p}.{name} has {} values, the variable {n}",
                        file.display(),
                        x.len()
                    )));
                }
                Ok(x)
            };
            self.m[k] = get("m")?;
            self.v[k] = get("v")?;
            if self.cfg.ema_decay > 0.0 && state.step > 0 {
                ema.push(get("ema")?);
            }
        }
        self.ema = ema;
        self.state = state;
        self.state.config.decode = self.cfg.decode;
        self.state.config.n_action_steps = self.cfg.n_action_steps;
        Ok(())
    }

    /// Starts from the weights of the policy folder `dir` (fine-tuning) instead of the seeded
    /// initialisation; the auxiliary head, if the policy has none, keeps its initialisation.
    /// The policy's word vocabulary must be the run's (prepare the run with
    /// [`Trainer::with_init`]). Returns the tensors loaded.
    pub fn init_from(&mut self, dir: &Path) -> Result<usize, TrainError> {
        let tok_path = dir.join("tokenizer.json");
        let tok = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| TrainError::Config(format!("{}: {e}", tok_path.display())))?;
        if tok.get_vocab(true) != self.tokenizer.get_vocab(true) {
            return Err(TrainError::Config(format!(
                "{}: its word vocabulary is not this run's (prepare the run with Trainer::with_init)",
                tok_path.display()
            )));
        }
        // A policy that read its cameras cropped otherwise saw other images.
        let theirs = sinew_policy::models::sinew_tiny::load_config(dir)?.crops;
        if theirs != self.model_cfg.crops {
            return Err(TrainError::Config(format!(
                "{}: its cameras are cropped {theirs:?}, this dataset's frames {:?}; record the dataset with the policy's --crop",
                dir.join("config.json").display(),
                self.model_cfg.crops
            )));
        }
        load_init(&self.varmap, dir, &self.device)
    }

    /// Whether `out` holds a checkpoint to resume.
    pub fn has_checkpoint(out: &Path) -> bool {
        out.join("checkpoint/state.json").is_file()
    }
}

/// Initial weights drawn from our seeded generator with candle's initialisers (candle's own
/// CPU generator cannot be seeded), so a run is reproducible from its seed.
struct SeededInit {
    rng: std::sync::Mutex<Rng>,
    /// Every tensor handed out, by name, in request order.
    made: std::sync::Arc<std::sync::Mutex<Vec<(String, Tensor)>>>,
}

impl SeededInit {
    fn uniform(&self, n: usize, lo: f64, up: f64) -> Vec<f32> {
        let mut r = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        (0..n)
            .map(|_| (lo + (up - lo) * ((r.next_u64() >> 11) as f64 / (1u64 << 53) as f64)) as f32)
            .collect()
    }

    fn normal(&self, n: usize, mean: f64, std: f64) -> Vec<f32> {
        let mut r = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let mut v = Vec::with_capacity(n + 1);
        while v.len() < n {
            // Box-Muller.
            let u1 = ((r.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let u2 = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let rad = (-2.0 * u1.ln()).sqrt();
            let th = 2.0 * std::f64::consts::PI * u2;
            v.push((mean + std * rad * th.cos()) as f32);
            v.push((mean + std * rad * th.sin()) as f32);
        }
        v.truncate(n);
        v
    }
}

impl candle_nn::var_builder::SimpleBackend for SeededInit {
    fn get(
        &self,
        s: candle_core::Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        use candle_nn::init::NormalOrUniform;
        let n = s.elem_count();
        let vals = match h {
            candle_nn::Init::Const(c) => vec![c as f32; n],
            candle_nn::Init::Randn { mean, stdev } => self.normal(n, mean, stdev),
            candle_nn::Init::Uniform { lo, up } => self.uniform(n, lo, up),
            candle_nn::Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(&s) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let b = 3f64.sqrt() * std;
                        self.uniform(n, -b, b)
                    }
                    NormalOrUniform::Normal => self.normal(n, 0.0, std),
                }
            }
        };
        let t = Tensor::from_vec(vals, s, dev)?.to_dtype(dtype)?;
        self.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_owned(), t.clone()));
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: no shape given")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// A VarMap holding `cfg`'s variables initialised from `seed`.
fn seeded_varmap(cfg: &Config, seed: u64, device: &Device) -> Result<VarMap, TrainError> {
    // Build once against the seeded backend, which keeps what it hands out...
    let made = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let init = SeededInit {
        rng: std::sync::Mutex::new(Rng(seed)),
        made: made.clone(),
    };
    let vb = VarBuilder::from_backend(Box::new(init), DType::F32, device.clone());
    SinewTiny::new(cfg, vb)?;
    // ... then put them in a VarMap as variables.
    let varmap = VarMap::new();
    {
        let made = made.lock().unwrap_or_else(|e| e.into_inner());
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| TrainError::Config("variable map poisoned".into()))?;
        for (name, t) in made.iter() {
            data.insert(name.clone(), Var::from_tensor(t)?);
        }
    }
    Ok(varmap)
}

/// What batches are drawn from.
struct Pools<'a> {
    /// Every training frame.
    frames: &'a [usize],
    /// The first `early_frames` of each training episode.
    early: &'a [usize],
    /// The training episodes' frame ranges (none empty).
    episodes: &'a [std::ops::Range<usize>],
}

/// A batch of frame indices: each from `early` with probability `early_fraction`, otherwise
/// of a uniformly drawn episode (`by_episode`) or uniformly of all frames.
fn draw_frames(p: &Pools, cfg: &TrainConfig, rng: &mut Rng) -> Vec<usize> {
    let early = cfg.early_fraction > 0.0 && !p.early.is_empty();
    (0..cfg.batch_size)
        .map(|_| {
            if early && rng.unit() < cfg.early_fraction {
                p.early[rng.below(p.early.len())]
            } else if cfg.by_episode && !p.episodes.is_empty() {
                let e = &p.episodes[rng.below(p.episodes.len())];
                e.start + rng.below(e.len())
            } else {
                p.frames[rng.below(p.frames.len())]
            }
        })
        .collect()
}

/// The action dimension named like a gripper, if any.
fn gripper_index(ds: &Dataset) -> Option<usize> {
    let feature = ds.info.feature(sinew_data::ACTION)?;
    let list = match feature.names.as_ref()? {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(o) => o.values().find_map(|v| v.as_array())?,
        _ => return None,
    };
    list.iter()
        .position(|n| n.as_str().is_some_and(|n| n.contains("gripper")))
}

/// The key frame of an episode's actions: the first at which the gripper has moved half-way
/// from its first target to the one farthest from it, when that move is a real one (more than
/// 0.1 in the action's units, radians on the SO-101); otherwise the last frame.
fn key_frame(actions: &[Vec<f64>], gripper: Option<usize>) -> usize {
    let last = actions.len().saturating_sub(1);
    let Some(g) = gripper else {
        return last;
    };
    let at = |k: usize| actions[k].get(g).copied().unwrap_or(0.0);
    if actions.is_empty() {
        return 0;
    }
    let first = at(0);
    let far = (0..actions.len())
        .map(at)
        .max_by(|a, b| (a - first).abs().total_cmp(&(b - first).abs()))
        .unwrap_or(first);
    if (far - first).abs() <= 0.1 {
        return last;
    }
    let half = 0.5 * (far - first).abs();
    (0..actions.len())
        .find(|&k| (at(k) - first).abs() >= half)
        .unwrap_or(last)
}

/// Loads the tensors of the policy folder `dir` (its `model.safetensors`) into `varmap`:
/// every variable must be there with its shape, except the auxiliary head's, which keep
/// their initialisation when absent.
fn load_init(varmap: &VarMap, dir: &Path, device: &Device) -> Result<usize, TrainError> {
    let file = dir.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&file, device)?;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| TrainError::Config("variable map poisoned".into()))?;
    let mut loaded = 0;
    for (name, var) in data.iter() {
        match tensors.get(name) {
            Some(t) if t.dims() == var.as_tensor().dims() => {
                var.set(&t.to_dtype(var.dtype())?)?;
                loaded += 1;
            }
            Some(t) => {
                return Err(TrainError::Config(format!(
                    "{}: {name} has shape {:?}, the configured model needs {:?}",
                    file.display(),
                    t.dims(),
                    var.as_tensor().dims()
                )))
            }
            // Heads a fine-tune adds keep their initialisation (the prefix's is zero).
            None if name.starts_with("aux_head.") || name.starts_with("action.prefix.") => {}
            None => {
                return Err(TrainError::Config(format!(
                    "{}: no tensor {name}; the policy was trained with another architecture",
                    file.display()
                )))
            }
        }
    }
    Ok(loaded)
}

fn decode(f: &Frame, n: usize) -> Result<Vec<Vec<u8>>, TrainError> {
    (0..n).map(|i| Ok(f.image(i)?.data)).collect()
}

/// RGB bytes (S x S) to normalised CHW floats in [-1, 1] with a random shift, brightness,
/// contrast and colour gain.
fn augment(rgb: &[u8], s: usize, a: &Augment, rng: &mut Rng, out: &mut [f32]) {
    let shift = a.shift_px as i64;
    let (dx, dy) = if shift > 0 {
        (
            rng.below(2 * shift as usize + 1) as i64 - shift,
            rng.below(2 * shift as usize + 1) as i64 - shift,
        )
    } else {
        (0, 0)
    };
    let bright = a.brightness * sym(rng);
    let contrast = 1.0 + a.contrast * sym(rng);
    let gain = [
        1.0 + a.color * sym(rng),
        1.0 + a.color * sym(rng),
        1.0 + a.color * sym(rng),
    ];
    let si = s as i64;
    for y in 0..s {
        let sy = (y as i64 + dy).clamp(0, si - 1) as usize;
        for x in 0..s {
            let sx = (x as i64 + dx).clamp(0, si - 1) as usize;
            let p = (sy * s + sx) * 3;
            for c in 0..3 {
                let v = rgb[p + c] as f32 / 127.5 - 1.0;
                out[c * s * s + y * s + x] = ((v * gain[c]) * contrast + bright).clamp(-1.0, 1.0);
            }
        }
    }
}

/// The model configuration for a dataset and a training configuration, checked; and whether
/// the targets are joint deltas.
fn model_config(
    ds: &Dataset,
    frames: &[sinew_data::Frame],
    cfg: &TrainConfig,
    vocab_size: usize,
) -> Result<(Config, bool), TrainError> {
    let sizes = ds.check_images(frames)?;
    let side = sizes.first().map_or(0, |s| s.0);
    if sizes.iter().any(|s| s.0 != side || s.1 != side) || side % 16 != 0 || side == 0 {
        return Err(TrainError::Config(format!(
            "sinew-tiny needs square images with a side that is a multiple of 16; the dataset's are {sizes:?}"
        )));
    }
    let state_dim = ds
        .info
        .feature(sinew_data::STATE)
        .map_or(0, |f| f.shape.iter().product());
    let action_dim = ds
        .info
        .feature(sinew_data::ACTION)
        .map_or(0, |f| f.shape.iter().product());
    let mut model_cfg = Config::small(
        ds.cameras.clone(),
        if cfg.use_state { state_dim } else { 0 },
        action_dim,
        vocab_size,
    );
    model_cfg.image_size = side as usize;
    // The frames were stored cropped: the policy crops its cameras the same way.
    for cam in &ds.cameras {
        if let Some(c) = ds.info.crop(cam)? {
            model_cfg.crops.insert(cam.clone(), c);
        }
    }
    model_cfg.d_model = cfg.d_model;
    model_cfg.n_layers = cfg.n_layers;
    model_cfg.n_heads = cfg.n_heads;
    model_cfg.mlp_dim = cfg.mlp_dim;
    model_cfg.chunk_length = cfg.chunk_length;
    model_cfg.n_bins = cfg.n_bins;
    model_cfg.gaussian_head = cfg.gaussian_head;
    model_cfg.decode = cfg.decode;
    model_cfg.film = cfg.film;
    model_cfg.cnn_norm = cfg.cnn_norm;
    model_cfg.coords = cfg.coords;
    model_cfg.keypoints = cfg.keypoints;
    model_cfg.pool_keypoints = cfg.pool_keypoints;
    model_cfg.keypoint_gain = cfg.keypoint_gain;
    model_cfg.patch_tokens = cfg.patch_tokens;
    model_cfg.action_kind = cfg.action_space;
    model_cfg.n_action_steps = cfg.n_action_steps;
    model_cfg.prefix_max = cfg.prefix_max;
    if cfg.max_text_len == 0 {
        return Err(TrainError::Config("max_text_len must be at least 1".into()));
    }
    model_cfg.max_text_len = cfg.max_text_len;
    for (name, p) in [
        ("word_dropout", cfg.word_dropout),
        ("unk_insert", cfg.unk_insert),
    ] {
        if !(0.0..1.0).contains(&p) {
            return Err(TrainError::Config(format!(
                "{name} {p} is not a probability in [0, 1)"
            )));
        }
    }
    if !(cfg.aux_weight.is_finite() && cfg.aux_weight >= 0.0) {
        return Err(TrainError::Config(format!(
            "aux_weight {} is not a non-negative number",
            cfg.aux_weight
        )));
    }
    if !(0.0..=1.0).contains(&cfg.early_fraction) {
        return Err(TrainError::Config(format!(
            "early_fraction {} is not in [0, 1]",
            cfg.early_fraction
        )));
    }
    if !(0.0..1.0).contains(&cfg.ema_decay) {
        return Err(TrainError::Config(format!(
            "ema_decay {} is not in [0, 1)",
            cfg.ema_decay
        )));
    }
    if cfg.early_fraction > 0.0 && cfg.early_frames == 0 {
        return Err(TrainError::Config(
            "early_fraction needs early_frames > 0".into(),
        ));
    }
    model_cfg.aux_dim = if cfg.aux_weight > 0.0 {
        2 * action_dim
    } else {
        0
    };
    let delta = match cfg.action_space {
        ActionKind::JointPosition => false,
        ActionKind::JointDelta if state_dim == action_dim => true,
        ActionKind::JointDelta => {
            return Err(TrainError::Config(format!(
                "action_space joint_delta needs state and action of one size (the joints); the dataset has {state_dim} and {action_dim}"
            )))
        }
        other => {
            return Err(TrainError::Config(format!(
                "action_space {}: sinew train learns joint_position or joint_delta",
                other.as_str()
            )))
        }
    };
    model_cfg.control_rate_hz = ds.info.fps as f64;
    model_cfg.robot = ds.info.robot_type.clone();
    model_cfg.validate().map_err(TrainError::Config)?;

    Ok((model_cfg, delta))
}

/// Reads a JSON file.
fn read_json(p: &Path) -> Result<serde_json::Value, TrainError> {
    serde_json::from_str(
        &std::fs::read_to_string(p).map_err(|e| TrainError::Io(p.to_path_buf(), e))?,
    )
    .map_err(|e| TrainError::Config(format!("{}: {e}", p.display())))
}

/// The targets of each frame in the action space, `[T * D]`: the next T actions, the last one
/// repeated past the episode's end; as deltas, the first from the measured state and each next
/// one from the action before it (the runtime adds them up). And its auxiliary goal targets,
/// in the dataset's action units: the actions at its episode's key frame and last frame.
fn chunk_targets(
    ds: &Dataset,
    frames: &[sinew_data::Frame],
    t_len: usize,
    action_dim: usize,
    delta: bool,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let gripper = gripper_index(ds);
    let mut raw: Vec<Vec<f64>> = Vec::with_capacity(frames.len());
    let mut goals: Vec<Vec<f64>> = Vec::with_capacity(frames.len());
    for e in &ds.episodes {
        let rows = &frames[e.dataset_from_index as usize..e.dataset_to_index as usize];
        let act: Vec<Vec<f64>> = rows
            .iter()
            .map(|f| f.action.iter().map(|v| *v as f64).collect())
            .collect();
        let mut goal = act
            .get(key_frame(&act, gripper))
            .cloned()
            .unwrap_or_default();
        goal.extend(act.last().cloned().unwrap_or_default());
        goals.extend(std::iter::repeat_n(goal, rows.len()));
        let last = act.len().saturating_sub(1);
        for (k, f) in rows.iter().enumerate() {
            let mut r = Vec::with_capacity(t_len * action_dim);
            for t in 0..t_len {
                let a = &act[(k + t).min(last)];
                if !delta {
                    r.extend_from_slice(a);
                } else if t == 0 {
                    r.extend(a.iter().zip(&f.state).map(|(a, s)| a - *s as f64));
                } else {
                    let prev = &act[(k + t - 1).min(last)];
                    r.extend(a.iter().zip(prev).map(|(a, p)| a - p));
                }
            }
            raw.push(r);
        }
    }
    (raw, goals)
}

/// The normaliser of the action targets and the statistics written with the policy: the
/// dataset's (or `stats_path`'s) for absolute actions; for deltas, `stats_path`'s min/max when
/// given, else the deltas' own range.
fn action_normalizer(
    delta: bool,
    stats_given: bool,
    stats_path: &Path,
    all_stats: &serde_json::Value,
    raw: &[Vec<f64>],
    action_dim: usize,
) -> Result<(Normalizer, serde_json::Value), TrainError> {
    Ok(if delta && stats_given {
        let get = |k: &str| -> Result<Vec<f64>, TrainError> {
            serde_json::from_value(all_stats[sinew_data::ACTION][k].clone()).map_err(|e| {
                TrainError::Config(format!(
                    "{}: {}.{k}: {e}",
                    stats_path.display(),
                    sinew_data::ACTION
                ))
            })
        };
        (
            Normalizer::Quantile {
                q01: get("min")?,
                q99: get("max")?,
                mask: vec![true; action_dim],
            },
            all_stats[sinew_data::ACTION].clone(),
        )
    } else if delta {
        let (mut lo, mut hi) = (
            vec![f64::INFINITY; action_dim],
            vec![f64::NEG_INFINITY; action_dim],
        );
        let (mut sum, mut sq, mut n) = (vec![0f64; action_dim], vec![0f64; action_dim], 0f64);
        for r in raw {
            for a in r.chunks(action_dim) {
                for (i, v) in a.iter().enumerate() {
                    lo[i] = lo[i].min(*v);
                    hi[i] = hi[i].max(*v);
                    sum[i] += v;
                    sq[i] += v * v;
                }
                n += 1.0;
            }
        }
        for (l, h) in lo.iter_mut().zip(hi.iter_mut()) {
            if !(h.is_finite() && l.is_finite()) || *h - *l < 1e-6 {
                (*l, *h) = (-1e-3, 1e-3);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n.max(1.0)).collect();
        let std: Vec<f64> = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| (q / n.max(1.0) - m * m).max(0.0).sqrt())
            .collect();
        let json = serde_json::json!({
            "min": lo, "max": hi, "mean": mean, "std": std, "count": [n as u64],
        });
        (
            Normalizer::Quantile {
                q01: lo,
                q99: hi,
                mask: vec![true; action_dim],
            },
            json,
        )
    } else {
        (
            normalizer(stats_path, sinew_data::ACTION)?,
            all_stats[sinew_data::ACTION].clone(),
        )
    })
}

/// A task's text: token ids and their mask, padded to the model's text length.
type TaskText = (Vec<u32>, Vec<f32>);

/// The word tokenizer's id of unknown words (`build_text_tokenizer`).
const UNK_ID: u32 = 1;

/// The ids of `words`, each of which must be in the vocabulary.
fn kept_word_ids(tok: &tokenizers::Tokenizer, words: &[String]) -> Result<Vec<u32>, TrainError> {
    words
        .iter()
        .map(|w| {
            tok.token_to_id(&w.to_lowercase()).ok_or_else(|| {
                TrainError::Config(format!(
                    "keep_words: {w:?} is in none of the dataset's instructions"
                ))
            })
        })
        .collect()
}

/// One training sample's instruction with words replaced by, and fillers inserted as,
/// `[UNK]` (`TrainConfig::word_dropout`, `unk_insert`), padded back to the same length.
fn augment_text(
    ids: &[u32],
    mask: &[f32],
    kept: &[u32],
    cfg: &TrainConfig,
    rng: &mut Rng,
) -> (Vec<u32>, Vec<f32>) {
    let max_len = ids.len();
    let n_words = mask.iter().filter(|&&m| m > 0.0).count();
    let mut words: Vec<u32> = ids[..n_words]
        .iter()
        .map(|&id| {
            if !kept.contains(&id) && rng.unit() < cfg.word_dropout {
                UNK_ID
            } else {
                id
            }
        })
        .collect();
    for _ in 0..2 {
        if rng.unit() < cfg.unk_insert {
            let at = rng.below(words.len() + 1);
            words.insert(at, UNK_ID);
        }
    }
    words.truncate(max_len);
    let mut m = vec![1f32; words.len()];
    words.resize(max_len, 0);
    m.resize(max_len, 0.0);
    (words, m)
}

/// Each task's text as token ids and mask, `max_len` long.
fn task_texts(
    policy_tok: &tokenizers::Tokenizer,
    tasks: &[String],
    max_len: usize,
) -> Result<Vec<TaskText>, TrainError> {
    let mut texts = Vec::new();
    for t in tasks {
        let enc = policy_tok
            .encode(t.as_str(), false)
            .map_err(|e| TrainError::Config(format!("tokenizer: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        ids.truncate(max_len);
        let mut mask = vec![1f32; ids.len()];
        ids.resize(max_len, 0);
        mask.resize(max_len, 0.0);
        texts.push((ids, mask));
    }

    Ok(texts)
}

/// The normalisers a sample is built with.
struct Norms {
    state: Normalizer,
    action: Normalizer,
    goal: Normalizer,
    bins: BinTokenizer,
}

/// Samples: decoded images, normalised state, target bins and values, goal targets.
fn build_samples(
    ds: &Dataset,
    frames: &[sinew_data::Frame],
    raw: &[Vec<f64>],
    goals: &[Vec<f64>],
    norms: &Norms,
    model_cfg: &Config,
) -> Result<Vec<Sample>, TrainError> {
    let action_dim = model_cfg.action_dim;
    let t_len = model_cfg.chunk_length;
    let mut samples = Vec::with_capacity(frames.len());
    for ((f, r), g) in frames.iter().zip(raw).zip(goals) {
        let mut aux = Vec::with_capacity(g.len());
        if model_cfg.aux_dim > 0 {
            for a in g.chunks(action_dim) {
                aux.extend(
                    norms
                        .goal
                        .normalize(a)?
                        .iter()
                        .map(|v| v.clamp(-1.0, 1.0) as f32),
                );
            }
        }
        let mut targets = Vec::with_capacity(t_len * action_dim);
        let mut values = Vec::with_capacity(t_len * action_dim);
        for a in r.chunks(action_dim) {
            let a = norms.action.normalize(a)?;
            targets.extend(norms.bins.encode(&a)?);
            values.extend(a.iter().map(|v| v.clamp(-1.0, 1.0) as f32));
        }
        samples.push(Sample {
            images: decode(f, ds.cameras.len())?,
            text: f.task_index as usize,
            state: norms
                .state
                .normalize(&f.state.iter().map(|v| *v as f64).collect::<Vec<_>>())?
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            targets,
            values,
            aux,
        });
    }

    Ok(samples)
}

/// Frames for training, validation and the early-frames oversampling, by episode.
struct Split {
    train: Vec<usize>,
    val: Vec<usize>,
    early: Vec<usize>,
    train_episodes: Vec<std::ops::Range<usize>>,
}

/// The seeded episode split: `val_fraction` of the episodes (at least one when there are two)
/// for validation.
fn split_episodes(ds: &Dataset, cfg: &TrainConfig) -> Result<Split, TrainError> {
    let mut rng = Rng(cfg.seed ^ 0x005E_ED0F_5EED);
    let mut order: Vec<usize> = (0..ds.episodes.len()).collect();
    for i in (1..order.len()).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    let n_val = if order.len() >= 2 {
        ((order.len() as f64 * cfg.val_fraction).round() as usize).max(1)
    } else {
        0
    };
    let val_eps: Vec<usize> = order[..n_val].to_vec();
    let (mut train, mut val, mut early) = (Vec::new(), Vec::new(), Vec::new());
    let mut train_episodes = Vec::new();
    for e in &ds.episodes {
        let idx = e.dataset_from_index as usize..e.dataset_to_index as usize;
        if val_eps.contains(&(e.episode_index as usize)) {
            val.extend(idx);
        } else {
            early.extend(idx.clone().take(cfg.early_frames));
            if !idx.is_empty() {
                train_episodes.push(idx.clone());
            }
            train.extend(idx);
        }
    }
    if train.is_empty() {
        return Err(TrainError::Config("no training frames".into()));
    }

    Ok(Split {
        train,
        val,
        early,
        train_episodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_dropout_spares_the_kept_words_and_inserts_fillers() {
        // "put the red cube in the bowl", ids 10..16, "red" = 12 kept; max length 9.
        let ids = vec![10, 11, 12, 13, 14, 11, 15, 0, 0];
        let mask = vec![1., 1., 1., 1., 1., 1., 1., 0., 0.];
        let cfg = TrainConfig {
            word_dropout: 0.5,
            unk_insert: 0.5,
            ..TrainConfig::default()
        };
        let mut rng = Rng(7);
        let (mut dropped, mut inserted, mut long) = (0, 0, 0);
        for _ in 0..400 {
            let (a, m) = augment_text(&ids, &mask, &[12], &cfg, &mut rng);
            assert_eq!((a.len(), m.len()), (9, 9));
            let n = m.iter().filter(|&&x| x > 0.0).count();
            assert!((7..=9).contains(&n), "{a:?}");
            assert!(a[..n].contains(&12), "the colour word was dropped: {a:?}");
            assert!(a[n..].iter().all(|&x| x == 0));
            let known = a[..n].iter().filter(|&&x| x != UNK_ID).count();
            dropped += 6 - (known - 1);
            inserted += n - 7;
            long += usize::from(n > 7);
        }
        // Word dropout replaces about half of the six other words (1,200 of 2,400); the
        // fillers add one word per sample on average (two tries at 0.5), so three samples in
        // four are longer.
        assert!((1100..1300).contains(&dropped), "{dropped}");
        assert!((340..460).contains(&inserted), "{inserted}");
        assert!((260..340).contains(&long), "{long}");
        // Off, the text is unchanged and nothing is drawn.
        let mut r0 = Rng(7);
        let none = TrainConfig::default();
        let (a, m) = augment_text(&ids, &mask, &[], &none, &mut r0);
        assert_eq!((a, m), (ids.clone(), mask.clone()));
    }

    #[test]
    fn batches_weigh_episodes_or_frames_and_early_frames_as_configured() {
        // A short episode (frames 0..10) and a long one (10..100).
        let episodes = [0..10, 10..100];
        let frames: Vec<usize> = (0..100).collect();
        let early: Vec<usize> = vec![0, 1, 10, 11];
        let pools = Pools {
            frames: &frames,
            early: &early,
            episodes: &episodes,
        };
        let share_short = |cfg: &TrainConfig| {
            let mut rng = Rng(7);
            let draws: Vec<usize> = (0..200)
                .flat_map(|_| draw_frames(&pools, cfg, &mut rng))
                .collect();
            let short = draws.iter().filter(|&&i| i < 10).count() as f64 / draws.len() as f64;
            let early_share =
                draws.iter().filter(|i| early.contains(i)).count() as f64 / draws.len() as f64;
            (short, early_share)
        };
        let mut cfg = TrainConfig {
            batch_size: 32,
            ..TrainConfig::default()
        };
        let (short, _) = share_short(&cfg);
        assert!((short - 0.1).abs() < 0.03, "by frame: {short}");
        cfg.by_episode = true;
        let (short, _) = share_short(&cfg);
        assert!((short - 0.5).abs() < 0.05, "by episode: {short}");
        cfg.by_episode = false;
        cfg.early_frames = 2;
        cfg.early_fraction = 0.5;
        // Half the batch from the early pool, plus the 4% of the rest that lands there.
        let (_, early_share) = share_short(&cfg);
        assert!((early_share - 0.52).abs() < 0.05, "early: {early_share}");
    }

    #[test]
    fn the_key_frame_is_the_gripper_half_way_or_the_last_frame() {
        let ep = |grip: &[f64]| -> Vec<Vec<f64>> { grip.iter().map(|g| vec![0.3, *g]).collect() };
        // Closing from 1.2 to 0: first frame at or past 0.6.
        assert_eq!(
            key_frame(&ep(&[1.2, 1.2, 1.0, 0.5, 0.0, 0.0, 1.2]), Some(1)),
            3
        );
        // Opening counts too.
        assert_eq!(key_frame(&ep(&[0.0, 0.2, 0.7, 0.8]), Some(1)), 2);
        // A gripper that stays (reach, push), or barely moves: the last frame.
        assert_eq!(key_frame(&ep(&[1.2, 1.2, 1.2]), Some(1)), 2);
        assert_eq!(key_frame(&ep(&[1.2, 1.15, 1.2, 1.2]), Some(1)), 3);
        // No gripper, or no frames.
        assert_eq!(key_frame(&ep(&[1.2, 0.0, 0.0]), None), 2);
        assert_eq!(key_frame(&[], Some(1)), 0);
    }

    #[test]
    fn soft_labels_peak_at_the_hard_bin_and_sum_to_one() -> Result<(), Box<dyn std::error::Error>> {
        let n = 256;
        let bins = BinTokenizer::new(n as u32, n as u32)?;
        let values = [-1.0f32, -0.73, -0.001, 0.0, 0.42, 0.999];
        for sigma in [0.05f32, 1.0, 2.0] {
            let p = soft_labels(&values, n, sigma);
            for (row, x) in p.chunks(n).zip(values) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-4, "sigma {sigma}, x {x}: sum {sum}");
                let best = row
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(k, _)| k as u32);
                assert_eq!(best, Some(bins.encode_value(x as f64, 0)?), "x {x}");
                assert_eq!(row[0], 0.0);
            }
        }
        // Wider labels spread further.
        let narrow = soft_labels(&[0.1], n, 1.0);
        let wide = soft_labels(&[0.1], n, 3.0);
        let count = |r: &[f32]| r.iter().filter(|p| **p > 1e-3).count();
        assert!(count(&wide) > count(&narrow));
        Ok(())
    }
}
