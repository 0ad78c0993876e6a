//! Success rate of the scripted expert on every task and robot:
//! `cargo run -p sinew-sim --example expert_sweep -- EPISODES [TASK...]` (from the repository root).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(50);
    let tasks: Vec<String> = if args.len() > 2 {
        args[2..].to_vec()
    } else {
        vec!["reach".into(), "push".into(), "pick-place".into()]
    };
    let root = std::path::Path::new(".");
    for task_name in &tasks {
        let task = sinew_sim::TaskSpec::load_named(root, task_name)?;
        for robot in ["so101", "panda"] {
            let r = sinew_robot::RobotDescription::load(&root.join("robots").join(robot))?;
            let (mut ok, mut steps, mut failed) = (0, 0, Vec::new());
            for seed in 0..n {
                let out = sinew_sim::expert::run_expert_episode(&r, &task, seed)?;
                steps += out.steps;
                if out.success {
                    ok += 1;
                } else {
                    failed.push(seed);
                }
            }
            println!(
                "{task_name:<11} {robot:<6} {ok}/{n} = {:.1}%  mean {:.1} steps  failed {failed:?}",
                100.0 * ok as f64 / n as f64,
                steps as f64 / n as f64
            );
        }
    }
    Ok(())
}
