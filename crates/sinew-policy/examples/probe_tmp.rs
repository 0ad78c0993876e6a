use candle_core::{DType, Device};
use sinew_core::{Image, Observation};
use sinew_policy::models::sinew_tiny::SinewTinyPolicy;
use std::collections::BTreeMap;

fn img(p: &str) -> Image {
    let i = image::open(p).unwrap().to_rgb8();
    Image {
        width: i.width(),
        height: i.height(),
        encoding: "rgb8".into(),
        step: 3 * i.width(),
        data: i.into_raw().into(),
        ..Default::default()
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let p = SinewTinyPolicy::load(std::path::Path::new(&a[1]), &Device::Cpu, DType::F32).unwrap();
    let cfg = p.model().config().clone();
    let mut vm = candle_nn::VarMap::new();
    let tracked = sinew_policy::models::sinew_tiny::SinewTiny::new(
        &cfg,
        candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )
    .unwrap();
    vm.load(format!("{}/model.safetensors", a[1])).unwrap();
    let mut outs = Vec::new();
    let mut touts = Vec::new();
    for e in ["e0", "e1"] {
        let mut images = BTreeMap::new();
        images.insert("front".to_owned(), img(&format!("/tmp/{e}_front.png")));
        images.insert("wrist".to_owned(), img(&format!("/tmp/{e}_wrist.png")));
        let obs = Observation {
            images,
            joint_positions: vec![0., 0., 0., 0., 0., 1.2],
            instruction: "reach for the yellow cube".into(),
            ..Default::default()
        };
        let (x, _) = p.inputs(&obs).unwrap();
        let im = x.images.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        println!(
            "{e}: image sum {} first {:?}",
            im.iter().sum::<f32>(),
            &im[..4]
        );
        let t = p.model().image_tokens(&x).unwrap();
        let l = p.model().forward(&x).unwrap();
        outs.push((t, l));
        touts.push(tracked.forward(&x).unwrap());
    }
    let d = |a: &candle_core::Tensor, b: &candle_core::Tensor| {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let m = |a: &candle_core::Tensor| {
        a.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    println!(
        "tokens max {} diff {}",
        m(&outs[0].0),
        d(&outs[0].0, &outs[1].0)
    );
    println!(
        "logits max {} diff {}",
        m(&outs[0].1),
        d(&outs[0].1, &outs[1].1)
    );
    println!(
        "tracked diff {} tracked vs fused {}",
        d(&touts[0], &touts[1]),
        d(&touts[0], &outs[0].1)
    );
}
