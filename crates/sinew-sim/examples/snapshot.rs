//! Saves every camera of an episode as PPM after STEPS control steps of the scripted expert:
//! `cargo run --example snapshot -- ROBOT_DIR TASK SEED OUT_DIR [STEPS]`.
use std::io::Write;
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let r = sinew_robot::RobotDescription::load(std::path::Path::new(&a[1]))?;
    let task = sinew_sim::TaskSpec::from_file(&sinew_sim::task::task_path(
        std::path::Path::new("."),
        &a[2],
    ))?;
    let ep = task.sample(&r.config.name, a[3].parse()?)?;
    let mut w = sinew_sim::SimWorld::new(r.clone(), Some(&ep), None)?;
    let steps: u32 = a.get(5).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let mut expert = sinew_sim::expert::Expert::new(task.success);
    for _ in 0..steps {
        let cmd = expert.act(&w, 1.0 / task.control_rate_hz)?;
        w.command(&cmd)?;
        w.advance(1.0 / task.control_rate_hz);
    }
    for c in &r.config.cameras {
        let f = w.render_camera(&c.name)?;
        let mut out = std::fs::File::create(format!("{}/{}.ppm", a[4], c.name))?;
        write!(out, "P6\n{} {}\n255\n", f.width, f.height)?;
        out.write_all(&f.rgb)?;
    }
    println!("{}", ep.instruction);
    Ok(())
}
