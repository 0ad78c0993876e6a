use candle_core::{DType, Device, Tensor, Var};
fn main() {
    let d = Device::Cpu;
    let mut out = std::collections::HashMap::new();
    for (name, cin, cout, k, s, p, hw) in [
        ("a", 5usize, 8usize, 4usize, 4usize, 0usize, 16usize),
        ("b", 8, 16, 3, 2, 1, 8),
    ] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, cin, hw, hw), &d).unwrap()).unwrap();
        let w =
            Var::from_tensor(&Tensor::randn(0f32, 1.0, (cout, cin, k, k), &d).unwrap()).unwrap();
        let y = x.as_tensor().conv2d(w.as_tensor(), p, s, 1, 1).unwrap();
        let r = Tensor::randn(0f32, 1.0, y.shape(), &d).unwrap();
        let l = (y * &r).unwrap().sum_all().unwrap();
        let g = l.backward().unwrap();
        out.insert(format!("{name}.x"), x.as_tensor().clone());
        out.insert(format!("{name}.w"), w.as_tensor().clone());
        out.insert(format!("{name}.r"), r);
        out.insert(format!("{name}.gx"), g.get(x.as_tensor()).unwrap().clone());
        out.insert(format!("{name}.gw"), g.get(w.as_tensor()).unwrap().clone());
    }
    let _ = DType::F32;
    candle_core::safetensors::save(&out, "/tmp/convgrad.safetensors").unwrap();
}
