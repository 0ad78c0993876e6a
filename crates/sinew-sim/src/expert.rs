//! Scripted experts: IK-based controllers that solve the tasks from privileged state (object
//! poses). They drive evaluations without a trained model and generate demonstrations.

use nalgebra::Vector3;
use sinew_robot::{IkOptions, IkTarget};

use crate::task::SuccessKind;
use crate::{SimError, SimWorld};

/// Phase of the reach expert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Above,
    Descend,
    Hold,
}

/// The scripted expert of a task.
#[derive(Debug, Clone)]
pub struct Expert {
    kind: SuccessKind,
    phase: Phase,
    /// Last joint solution, the seed of the next IK.
    q_seed: Option<Vec<f64>>,
}

/// Height above the target cube's top of the approach waypoint, metres.
const APPROACH_M: f64 = 0.03;

impl Expert {
    /// An expert for a task's success kind.
    pub fn new(kind: SuccessKind) -> Self {
        Self {
            kind,
            phase: Phase::Above,
            q_seed: None,
        }
    }

    /// Joint targets for the next control step, limited to what the joints can travel in
    /// `dt_s` at their velocity limits.
    pub fn act(&mut self, world: &SimWorld, dt_s: f64) -> Result<Vec<f64>, SimError> {
        if self.kind != SuccessKind::Touch {
            return Err(SimError::Robot(format!(
                "no scripted expert for {:?} yet",
                self.kind
            )));
        }
        let robot = &world.robot;
        let (q, _) = world.joint_state();
        let target = world
            .object_pose(0)
            .ok_or_else(|| SimError::Robot("no target object".into()))?;
        let size = world.objects[0].size;
        let top = target.translation.vector + Vector3::new(0.0, 0.0, size / 2.0);
        let ee = world.ee_pose()?.translation.vector;
        let above = top + Vector3::new(0.0, 0.0, APPROACH_M);
        let touch = top + Vector3::new(0.0, 0.0, 0.004);
        self.phase = match self.phase {
            Phase::Above if (ee - above).norm() < 0.015 => Phase::Descend,
            Phase::Descend if (ee - touch).norm() < 0.006 => Phase::Hold,
            p => p,
        };
        let goal = match self.phase {
            Phase::Above => above,
            Phase::Descend | Phase::Hold => touch,
        };
        let seed = self.q_seed.clone().unwrap_or_else(|| q.clone());
        let opts = IkOptions {
            restarts: 4,
            ..IkOptions::default()
        };
        let axis = robot.approach_axis();
        let target = IkTarget::PositionAxis {
            position: goal,
            axis_in_link: axis,
            direction_in_base: -Vector3::z_axis(),
        };
        let sol = robot
            .ik(target, &seed, &opts)
            .map_err(|e| SimError::Robot(e.to_string()))?;
        self.q_seed = Some(sol.q.clone());
        // Rate-limit towards the solution from the current targets.
        let mut out = world.targets().to_vec();
        for (i, (o, s)) in out.iter_mut().zip(&sol.q).enumerate() {
            if Some(i) == robot.config.gripper_index() {
                continue;
            }
            let max = robot.config.joints[i].velocity_max * dt_s * 0.5;
            *o += (s - *o).clamp(-max, max);
        }
        Ok(out)
    }
}

/// Whether the episode's success predicate holds now.
pub fn success(
    world: &SimWorld,
    kind: SuccessKind,
    touch_distance_m: f64,
) -> Result<bool, SimError> {
    match kind {
        SuccessKind::Touch => {
            let target = world
                .object_pose(0)
                .ok_or_else(|| SimError::Robot("no target object".into()))?;
            let ee = world.ee_pose()?.translation.vector;
            // Distance from the TCP to the cube (a box), in the cube's frame.
            let p = target.inverse() * nalgebra::Point3::from(ee);
            let h = world.objects[0].size / 2.0;
            let d = Vector3::new(
                (p.x.abs() - h).max(0.0),
                (p.y.abs() - h).max(0.0),
                (p.z.abs() - h).max(0.0),
            )
            .norm();
            Ok(d <= touch_distance_m)
        }
        other => Err(SimError::Robot(format!(
            "success predicate {other:?} is not implemented yet"
        ))),
    }
}

/// Outcome of one episode.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeOutcome {
    /// Seed.
    pub seed: u64,
    /// The instruction.
    pub instruction: String,
    /// Whether the success predicate held before the step limit.
    pub success: bool,
    /// Control steps taken.
    pub steps: u32,
}

/// Runs the scripted expert on one seeded episode of `task` in lockstep (one control step of
/// `1 / control_rate_hz` simulated seconds per command).
pub fn run_expert_episode(
    robot: &sinew_robot::RobotDescription,
    task: &crate::TaskSpec,
    seed: u64,
) -> Result<EpisodeOutcome, SimError> {
    let ep = task.sample(&robot.config.name, seed)?;
    let mut world = SimWorld::new(robot.clone(), Some(&ep), None)?;
    let mut expert = Expert::new(task.success);
    let dt = 1.0 / task.control_rate_hz;
    for step in 0..task.step_limit {
        if success(&world, task.success, task.touch_distance_m)? {
            return Ok(EpisodeOutcome {
                seed,
                instruction: ep.instruction,
                success: true,
                steps: step,
            });
        }
        let cmd = expert.act(&world, dt)?;
        world.command(&cmd)?;
        world.advance(dt);
    }
    let ok = success(&world, task.success, task.touch_distance_m)?;
    Ok(EpisodeOutcome {
        seed,
        instruction: ep.instruction,
        success: ok,
        steps: task.step_limit,
    })
}
