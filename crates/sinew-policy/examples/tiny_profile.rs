//! Where the time of one sinew-tiny forward pass goes, for sizing the model.
//! `cargo run --release -p sinew-policy --example tiny_profile`

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use sinew_policy::models::sinew_tiny::{Config, SinewTiny, TinyInputs};

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    for (layers, cams, mlp) in [
        (3, 2, 512),
        (1, 2, 512),
        (0, 2, 512),
        (0, 1, 512),
        (3, 2, 256),
    ] {
        let names: Vec<String> = ["front", "wrist"]
            .iter()
            .take(cams)
            .map(|s| s.to_string())
            .collect();
        let mut cfg = Config::small(names, 6, 6, 40);
        cfg.n_layers = layers.max(1);
        cfg.mlp_dim = mlp;
        let vm = VarMap::new();
        let m = SinewTiny::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
        let x = TinyInputs {
            images: Tensor::rand(-1f32, 1f32, (1, cams, 3, 96, 96), &dev)?,
            text_ids: Tensor::zeros((1, 16), DType::U32, &dev)?,
            text_mask: Tensor::ones((1, 16), DType::F32, &dev)?,
            state: Tensor::zeros((1, 6), DType::F32, &dev)?,
            prefix: None,
        };
        for _ in 0..5 {
            m.forward(&x)?;
        }
        let n = 100;
        let t0 = Instant::now();
        for _ in 0..n {
            m.forward(&x)?;
        }
        println!(
            "layers {layers} cams {cams} mlp {mlp}: {:.2} ms",
            t0.elapsed().as_secs_f64() * 1e3 / n as f64
        );
    }
    Ok(())
}
