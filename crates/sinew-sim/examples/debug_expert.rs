//! Prints an expert episode step by step: `cargo run --example debug_expert -- ROBOT_DIR TASK SEED`.
use sinew_sim::{expert::Expert, SimWorld, TaskSpec};
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let r = sinew_robot::RobotDescription::load(std::path::Path::new(&args[1]))?;
    let task = TaskSpec::from_file(&sinew_sim::task::task_path(
        std::path::Path::new("."),
        &args[2],
    ))?;
    let seed: u64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let ep = task.sample(&r.config.name, seed)?;
    println!("{}", ep.instruction);
    let mut w = SimWorld::new(r.clone(), Some(&ep), None)?;
    let mut e = Expert::for_task(&task);
    let mut tracker = sinew_sim::SuccessTracker::new(&task);
    for o in &ep.objects {
        println!("{} at {:.3} {:.3}", o.name, o.xy[0], o.xy[1]);
    }
    for s in 0..task.step_limit {
        let cmd = e.act(&w, 0.1)?;
        w.command(&cmd)?;
        w.advance(0.1);
        let ee = w.ee_pose()?.translation.vector;
        let t = w.object_pose(0).ok_or("no object")?.translation.vector;
        let ok = tracker.update(&w)?;
        let speed = w.object_point_speed(0).unwrap_or(f64::NAN);
        println!(
            "{s} {ok} ee {:.3} {:.3} {:.3} cube {:.3} {:.3} {:.3} {:?} speed {speed:.3} touch {}",
            ee.x,
            ee.y,
            ee.z,
            t.x,
            t.y,
            t.z,
            e.phase_name(),
            w.object_touches_robot(0, sinew_sim::success::CONTACT_GAP_M)
        );
        if ok {
            break;
        }
    }
    Ok(())
}
