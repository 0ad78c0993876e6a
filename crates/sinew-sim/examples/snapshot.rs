//! Saves every camera of an episode as PPM: `cargo run --example snapshot -- ROBOT_DIR TASK SEED OUT_DIR`.
use std::io::Write;
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let r = sinew_robot::RobotDescription::load(std::path::Path::new(&a[1]))?;
    let task = sinew_sim::TaskSpec::from_file(&sinew_sim::task::task_path(
        std::path::Path::new("."),
        &a[2],
    ))?;
    let ep = task.sample(&r.config.name, a[3].parse()?)?;
    let w = sinew_sim::SimWorld::new(r.clone(), Some(&ep), None)?;
    for c in &r.config.cameras {
        let f = w.render_camera(&c.name)?;
        let mut out = std::fs::File::create(format!("{}/{}.ppm", a[4], c.name))?;
        write!(out, "P6\n{} {}\n255\n", f.width, f.height)?;
        out.write_all(&f.rgb)?;
    }
    println!("{}", ep.instruction);
    Ok(())
}
