use sinew_sim::{expert::Expert, SimWorld, TaskSpec};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let r = sinew_robot::RobotDescription::load(std::path::Path::new(&args[1])).unwrap();
    let seed: u64 = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(0);
    let task = TaskSpec::from_file(std::path::Path::new("sim/tasks/reach.toml")).unwrap();
    let ep = task.sample(&r.config.name, seed).unwrap();
    let mut w = SimWorld::new(r.clone(), Some(&ep), None).unwrap();
    let mut e = Expert::new(task.success);
    for s in 0..40 {
        let cmd = e.act(&w, 0.1).unwrap();
        w.command(&cmd).unwrap();
        w.advance(0.1);
        let (q, _) = w.joint_state();
        let ee = w.ee_pose().unwrap().translation.vector;
        let t = w.object_pose(0).unwrap().translation.vector;
        println!(
            "{s} ee {:.3} {:.3} {:.3} target {:.3} {:.3} {:.3} q {:?} cmd {:?}",
            ee.x,
            ee.y,
            ee.z,
            t.x,
            t.y,
            t.z,
            q.iter()
                .map(|v| (v * 100.0).round() / 100.0)
                .collect::<Vec<_>>(),
            cmd.iter()
                .map(|v| (v * 100.0).round() / 100.0)
                .collect::<Vec<_>>()
        );
    }
}
