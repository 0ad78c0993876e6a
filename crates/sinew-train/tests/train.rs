//! A tiny training run on the committed fixture dataset (real simulator frames, 32 px).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use sinew_core::{Observation, Policy};
use sinew_policy::models::sinew_tiny::SinewTinyPolicy;
use sinew_train::{Augment, TrainConfig, Trainer};

fn dataset() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sinew-data/tests/fixtures/so101_reach_push")
}

fn tiny() -> TrainConfig {
    TrainConfig {
        steps: 40,
        batch_size: 8,
        lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: 5,
        val_every: 20,
        checkpoint_every: 20,
        d_model: 32,
        n_layers: 1,
        n_heads: 2,
        mlp_dim: 64,
        chunk_length: 4,
        n_bins: 32,
        augment: Augment::default(),
        ..TrainConfig::default()
    }
}

/// Frame `i` of the fixture dataset as an observation (images, state, instruction).
fn fixture_observation(i: usize) -> Observation {
    let ds = sinew_data::Dataset::open(&dataset()).expect("ds");
    let frames = ds.read_frames().expect("frames");
    let f = &frames[i];
    let mut images = std::collections::BTreeMap::new();
    for (k, c) in ds.cameras.iter().enumerate() {
        let im = f.image(k).expect("png");
        images.insert(
            c.clone(),
            sinew_msgs::Image::rgb8(Default::default(), im.width, im.height, im.data),
        );
    }
    Observation {
        images,
        joint_positions: f.state.iter().map(|v| *v as f64).collect(),
        joint_velocities: vec![],
        instruction: ds.tasks[f.task_index as usize].clone(),
        ..Default::default()
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sinew-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_tiny_run_lowers_the_loss_and_its_policy_loads() {
    let mut t = Trainer::new(&dataset(), tiny(), &Device::Cpu).expect("trainer");
    let (n_train, n_val) = t.split();
    assert!(n_train > 0 && n_val > 0, "{n_train} {n_val}");
    let before = t.validate(64).expect("val").expect("some");
    let mut first = Vec::new();
    let mut last = Vec::new();
    for i in 0..40 {
        let r = t.train_step().expect("step");
        assert!(r.loss.is_finite());
        if i < 5 {
            first.push(r.loss);
        }
        if i >= 35 {
            last.push(r.loss);
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!(mean(&last) < 0.8 * mean(&first), "{first:?} -> {last:?}");
    // (Two demonstrations: the held-out one is another task, so its loss need not fall.)
    let after = t.validate(64).expect("val").expect("some");
    assert!(after.loss.is_finite() && before.loss.is_finite());

    // The written folder is a policy that loads and acts.
    let out = tmp("policy");
    t.save(&out).expect("save");
    let mut p = SinewTinyPolicy::load(&out, &Device::Cpu, DType::F32).expect("load");
    let chunk = p.infer(&fixture_observation(3)).expect("infer");
    assert_eq!(chunk.actions.len(), 4);
    assert_eq!(chunk.actions[0].len(), 6);
}

#[test]
fn a_resumed_run_continues_exactly() {
    let mut cfg = tiny();
    cfg.steps = 10;
    // Straight through.
    let mut a = Trainer::new(&dataset(), cfg.clone(), &Device::Cpu).expect("a");
    let losses_a: Vec<f32> = (0..10)
        .map(|_| a.train_step().expect("step").loss)
        .collect();
    // Interrupted after 6 steps (checkpoint), resumed in a fresh trainer.
    let out = tmp("resume");
    let mut b = Trainer::new(&dataset(), cfg.clone(), &Device::Cpu).expect("b");
    let mut losses_b: Vec<f32> = (0..6).map(|_| b.train_step().expect("step").loss).collect();
    b.save(&out).expect("save");
    drop(b);
    assert!(Trainer::has_checkpoint(&out));
    let mut c = Trainer::new(&dataset(), cfg.clone(), &Device::Cpu).expect("c");
    c.resume(&out).expect("resume");
    assert_eq!(c.step(), 6);
    losses_b.extend((0..4).map(|_| c.train_step().expect("step").loss));
    assert_eq!(losses_a, losses_b);
    // And the same seed gives the same run from scratch.
    let mut e = Trainer::new(&dataset(), cfg.clone(), &Device::Cpu).expect("e");
    assert_eq!(e.train_step().expect("step").loss, losses_a[0]);

    // Another decoding is not another training: it resumes.
    let mut decode = cfg.clone();
    decode.decode = sinew_policy::models::sinew_tiny::Decode::Expectation;
    let mut f = Trainer::new(&dataset(), decode, &Device::Cpu).expect("f");
    f.resume(&out).expect("another decode resumes");
    assert_eq!(f.step(), 6);

    // Another configuration does not resume from it.
    let mut other = cfg;
    other.lr *= 2.0;
    let mut d = Trainer::new(&dataset(), other, &Device::Cpu).expect("d");
    let e = d.resume(&out).expect_err("different config");
    assert!(e.to_string().contains("another configuration"), "{e}");
}

#[test]
fn a_joint_delta_run_writes_delta_statistics_and_loads() {
    let mut cfg = tiny();
    cfg.steps = 4;
    cfg.action_space = sinew_core::ActionKind::JointDelta;
    let mut t = Trainer::new(&dataset(), cfg, &Device::Cpu).expect("trainer");
    for _ in 0..4 {
        assert!(t.train_step().expect("step").loss.is_finite());
    }
    let out = tmp("delta");
    t.save(&out).expect("save");
    let policy_cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(policy_cfg["action_kind"], "joint_delta");
    // The action statistics are those of the deltas (recomputed here from the frames), not
    // of the dataset's absolute actions.
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).expect("stats"))
            .expect("json");
    let ds = sinew_data::Dataset::open(&dataset()).expect("ds");
    let frames = ds.read_frames().expect("frames");
    let mut hi = [f64::NEG_INFINITY; 6];
    for e in &ds.episodes {
        let rows = &frames[e.dataset_from_index as usize..e.dataset_to_index as usize];
        for (k, f) in rows.iter().enumerate() {
            for (i, h) in hi.iter_mut().enumerate() {
                *h = h.max(f.action[i] as f64 - f.state[i] as f64);
                if k > 0 {
                    *h = h.max(f.action[i] as f64 - rows[k - 1].action[i] as f64);
                }
            }
        }
    }
    for (i, h) in hi.iter().enumerate() {
        let got = stats["action"]["max"][i].as_f64().expect("max");
        assert!((got - h).abs() < 1e-5, "joint {i}: {got} vs {h}");
    }
    assert!(SinewTinyPolicy::load(&out, &Device::Cpu, DType::F32).is_ok());
}

/// With `use_state = false` (the shipped recipe, with every encoder option on) the policy has
/// no state input: it trains, saves, loads and acts without any joint positions.
#[test]
fn a_run_without_the_state_acts_from_images_alone() {
    let mut cfg = tiny();
    cfg.steps = 4;
    cfg.use_state = false;
    cfg.film = true;
    cfg.keypoints = 4;
    let mut t = Trainer::new(&dataset(), cfg, &Device::Cpu).expect("trainer");
    assert_eq!(t.model_config().state_dim, 0);
    assert!(t.model_config().cnn_norm && t.model_config().coords);
    for _ in 0..4 {
        assert!(t.train_step().expect("step").loss.is_finite());
    }
    let out = tmp("no-state");
    t.save(&out).expect("save");
    let mut p = SinewTinyPolicy::load(&out, &Device::Cpu, DType::F32).expect("load");
    assert!(!p.spec().uses_state);
    let chunk = p
        .infer(&Observation {
            joint_positions: Vec::new(),
            ..fixture_observation(0)
        })
        .expect("infer without joint positions");
    assert_eq!(chunk.actions.len(), 4);
    assert!(chunk.actions.iter().flatten().all(|v| v.is_finite()));
}

/// With `aux_weight` the policy also learns where each episode goes (its goal head's error
/// falls), its folder carries the head and still loads and acts; `init_from` starts a run
/// from a written policy with exactly its weights, adds a goal head to a policy without one,
/// and refuses a policy of another architecture, naming the tensor.
#[test]
fn a_goal_head_learns_and_fine_tuning_starts_from_a_policy() {
    let mut cfg = tiny();
    cfg.aux_weight = 1.0;
    cfg.early_frames = 2;
    cfg.early_fraction = 0.5;
    let mut t = Trainer::new(&dataset(), cfg.clone(), &Device::Cpu).expect("trainer");
    assert_eq!(t.model_config().aux_dim, 12);
    let errors: Vec<f32> = (0..40)
        .map(|_| t.train_step().expect("step").aux_mae.expect("goal error"))
        .collect();
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!(
        mean(&errors[35..]) < 0.7 * mean(&errors[..5]),
        "goal error {errors:?}"
    );
    let trained = t.validate(64).expect("val").expect("some");
    assert!(trained.aux_mae.is_some_and(f32::is_finite));
    let out = tmp("goal");
    t.save(&out).expect("save");
    let mut p = SinewTinyPolicy::load(&out, &Device::Cpu, DType::F32).expect("load");
    assert_eq!(
        p.infer(&fixture_observation(3))
            .expect("infer")
            .actions
            .len(),
        4
    );

    // A fresh trainer started from that folder has its weights: the same validation.
    let mut ft = Trainer::new(&dataset(), cfg.clone(), &Device::Cpu).expect("fine-tune");
    let fresh = ft.validate(64).expect("val").expect("some");
    assert_ne!(fresh.loss, trained.loss);
    assert!(ft.init_from(&out).expect("init") > 0);
    let started = ft.validate(64).expect("val").expect("some");
    assert_eq!(started.loss, trained.loss);
    assert_eq!(started.aux_mae, trained.aux_mae);

    // Fine-tuning keeps the policy's normalisation, not the new data's: with another action
    // range the targets change (so does the loss) and the folder written carries that range.
    let stats_path = out.join("stats.json");
    let mut stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_path).expect("stats")).expect("json");
    let widen = |v: &mut serde_json::Value, by: f64| {
        for x in v.as_array_mut().expect("array") {
            *x = serde_json::json!(x.as_f64().expect("number") + by);
        }
    };
    widen(&mut stats["action"]["min"], -0.5);
    widen(&mut stats["action"]["max"], 0.5);
    let wide_stats = tmp("wide-stats.json");
    std::fs::write(&wide_stats, stats.to_string()).expect("write");
    let mut kept = Trainer::with_stats(&dataset(), cfg.clone(), &Device::Cpu, Some(&wide_stats))
        .expect("with stats");
    kept.init_from(&out).expect("init");
    let shifted = kept.validate(64).expect("val").expect("some");
    assert_ne!(shifted.loss, trained.loss);
    let kept_out = tmp("kept-stats");
    kept.save(&kept_out).expect("save");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kept_out.join("stats.json")).expect("stats"))
            .expect("json");
    assert_eq!(written["action"]["max"], stats["action"]["max"]);
    let missing = Trainer::with_stats(
        &dataset(),
        cfg.clone(),
        &Device::Cpu,
        Some(&tmp("no-such-stats.json")),
    )
    .map(|_| ())
    .expect_err("missing stats");
    assert!(missing.to_string().contains("no-such-stats"), "{missing}");

    // Preparing the run from the policy (its statistics and words) starts where it ended.
    let mut again = Trainer::with_init(&dataset(), cfg.clone(), &Device::Cpu, &out).expect("init");
    again.init_from(&out).expect("init");
    assert_eq!(
        again.validate(64).expect("val").expect("some").loss,
        trained.loss
    );
    // A dataset word the policy does not know is refused, by name.
    let forgetful = tmp("forgetful");
    let _ = std::fs::remove_dir_all(&forgetful);
    std::fs::create_dir_all(&forgetful).expect("dir");
    for f in ["config.json", "model.safetensors", "stats.json"] {
        std::fs::copy(out.join(f), forgetful.join(f)).expect("copy");
    }
    let mut tok: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("tokenizer.json")).expect("tokenizer"),
    )
    .expect("json");
    let vocab = tok["model"]["vocab"].as_object_mut().expect("vocab");
    let word = vocab
        .keys()
        .find(|w| !w.starts_with('['))
        .expect("a word")
        .clone();
    vocab.remove(&word);
    std::fs::write(forgetful.join("tokenizer.json"), tok.to_string()).expect("write");
    let e = Trainer::with_init(&dataset(), cfg.clone(), &Device::Cpu, &forgetful)
        .map(|_| ())
        .expect_err("an unknown word");
    assert!(e.to_string().contains(&word), "{e}");

    // A policy without a goal head: the head starts fresh, everything else is loaded.
    let mut plain_cfg = cfg.clone();
    plain_cfg.aux_weight = 0.0;
    let mut plain = Trainer::new(&dataset(), plain_cfg, &Device::Cpu).expect("plain");
    plain.train_step().expect("step");
    let plain_out = tmp("plain");
    plain.save(&plain_out).expect("save");
    let mut with_head = Trainer::new(&dataset(), cfg.clone(), &Device::Cpu).expect("head");
    let loaded = with_head
        .init_from(&plain_out)
        .expect("init without a head");
    assert_eq!(loaded + 2, with_head_parameters(&with_head));
    assert!(with_head.train_step().expect("step").loss.is_finite());

    // Another architecture is refused with the tensor's name.
    let mut wide = cfg;
    wide.d_model = 64;
    let mut other = Trainer::new(&dataset(), wide, &Device::Cpu).expect("wide");
    let e = other.init_from(&out).expect_err("another width");
    assert!(e.to_string().contains("has shape"), "{e}");
}

/// Tensors (not parameters) of a trainer's model: those its folder's weights file holds.
fn with_head_parameters(t: &Trainer) -> usize {
    let out = tmp("count");
    t.save(&out).expect("save");
    let n = candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu)
        .expect("weights")
        .len();
    let _ = std::fs::remove_dir_all(&out);
    n
}

#[test]
fn data_parallel_workers_take_the_steps_one_worker_takes() {
    // Seven frames per step: shares of four and three, so the weighting of the shares counts.
    let cfg = TrainConfig {
        batch_size: 7,
        ..tiny()
    };
    let mut one = Trainer::new(&dataset(), cfg.clone(), &Device::Cpu).expect("trainer");
    let mut two = Trainer::new(&dataset(), cfg, &Device::Cpu)
        .expect("trainer")
        .with_workers(2)
        .expect("workers");
    assert_eq!((one.workers(), two.workers()), (1, 2));
    let before = two.validate(64).expect("val").expect("some");
    for step in 0..8 {
        let a = one.train_step().expect("step");
        let b = two.train_step().expect("step");
        // The same frames, augmentations and update; only the order of sums differs.
        assert!(
            (a.loss - b.loss).abs() <= 1e-4 * a.loss.abs().max(1.0),
            "step {step}: loss {} with one worker, {} with two",
            a.loss,
            b.loss
        );
    }
    let va = one.validate(64).expect("val").expect("some");
    let vb = two.validate(64).expect("val").expect("some");
    assert!(
        (va.loss - vb.loss).abs() <= 1e-3 * va.loss.abs().max(1.0),
        "validation loss {} against {}",
        va.loss,
        vb.loss
    );
    // And the steps did something (equal losses of two runs that never moved would pass).
    assert!(
        vb.loss < before.loss,
        "validation loss {} before, {} after",
        before.loss,
        vb.loss
    );
}

/// The policy folder's weights, by name, flattened.
fn written_weights(dir: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .expect("weights")
        .into_iter()
        .map(|(k, t)| {
            let v = t.flatten_all().and_then(|t| t.to_vec1()).expect("f32");
            (k, v)
        })
        .collect()
}

#[test]
fn with_ema_decay_the_policy_is_the_moving_average_of_the_steps_weights() {
    let decay = 0.3;
    let plain = TrainConfig { steps: 6, ..tiny() };
    let averaged = TrainConfig {
        ema_decay: decay,
        ..plain.clone()
    };
    // The averages do not change the training itself: the plain run's weights after each step
    // are the averaged run's raw weights.
    let dir = tmp("ema-plain");
    let mut a = Trainer::new(&dataset(), plain, &Device::Cpu).expect("a");
    a.write_policy(&dir).expect("write");
    let mut want = written_weights(&dir);
    for t in 0..6u32 {
        a.train_step().expect("step");
        a.write_policy(&dir).expect("write");
        let d = decay.min((1.0 + t as f64) / (10.0 + t as f64)) as f32;
        for (name, w) in written_weights(&dir) {
            let e = want.get_mut(&name).expect("same variables");
            for (e, w) in e.iter_mut().zip(w) {
                *e = d * *e + (1.0 - d) * w;
            }
        }
    }
    let last = written_weights(&dir);

    let mut b = Trainer::new(&dataset(), averaged.clone(), &Device::Cpu).expect("b");
    for _ in 0..3 {
        b.train_step().expect("step");
    }
    // Interrupted here and resumed: the averages come back with the checkpoint.
    let ck = tmp("ema-ck");
    b.save(&ck).expect("save");
    let mut c = Trainer::new(&dataset(), averaged, &Device::Cpu).expect("c");
    c.resume(&ck).expect("resume");
    for _ in 0..3 {
        c.train_step().expect("step");
    }
    let out = tmp("ema-avg");
    c.write_policy(&out).expect("write");
    let got = written_weights(&out);
    let (mut worst, mut moved) = (0f32, 0f32);
    for (name, g) in &got {
        for ((g, e), w) in g.iter().zip(&want[name]).zip(&last[name]) {
            worst = worst.max((g - e).abs() / e.abs().max(1e-3));
            moved = moved.max((g - w).abs());
        }
    }
    assert!(worst < 1e-4, "averaged weights off by {worst} (relative)");
    assert!(moved > 1e-4, "the averages are the last weights");
    // And the policy written from them loads and acts.
    let mut p = SinewTinyPolicy::load(&out, &Device::Cpu, DType::F32).expect("load");
    assert_eq!(
        p.infer(&fixture_observation(0))
            .expect("infer")
            .actions
            .len(),
        4
    );
    for d in [dir, ck, out] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A finished run written again with another `n_action_steps` keeps the per-dimension decoding
/// chosen for its weights (`sinew policy decode`); given another `decode`, it takes that one.
#[test]
fn rewriting_a_finished_run_keeps_its_per_dimension_decoding() {
    use sinew_policy::models::sinew_tiny::{load_config, set_decode, Decode};
    let mut cfg = tiny();
    cfg.steps = 2;
    cfg.decode = Decode::Expectation;
    let out = tmp("rewrite-decode");
    let mut t = Trainer::new(&dataset(), cfg.clone(), &Device::Cpu).expect("trainer");
    t.train_step().expect("step");
    t.train_step().expect("step");
    t.save(&out).expect("save");
    let mut chosen = vec![Decode::Expectation; 6];
    chosen[5] = Decode::Mode;
    set_decode(&out, &chosen).expect("set decode");

    let mut again = cfg.clone();
    again.n_action_steps = Some(3);
    let mut r = Trainer::new(&dataset(), again, &Device::Cpu).expect("rewrite");
    r.resume(&out).expect("resume");
    assert!(r.keep_decode_by_dim(&out));
    r.write_policy(&out).expect("write");
    let written = load_config(&out).expect("config");
    assert_eq!(written.n_action_steps, Some(3));
    assert_eq!(written.decode_by_dim, chosen);

    // Another `decode` for the run: every dimension takes it.
    let mut other = cfg;
    other.decode = Decode::Argmax;
    let mut o = Trainer::new(&dataset(), other, &Device::Cpu).expect("other");
    o.resume(&out).expect("resume");
    assert!(!o.keep_decode_by_dim(&out));
    o.write_policy(&out).expect("write");
    let written = load_config(&out).expect("config");
    assert!(
        written.decode_by_dim.is_empty(),
        "{:?}",
        written.decode_by_dim
    );
    assert_eq!(written.decode_of(5), Decode::Argmax);
    let _ = std::fs::remove_dir_all(&out);
}
