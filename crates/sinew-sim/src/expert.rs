//! Scripted experts: IK-based controllers that solve the tasks from privileged state (object
//! poses). They drive evaluations without a trained model and generate demonstrations.
//!
//! Each expert is a small state machine over waypoints of the tool centre point (TCP), with the
//! gripper's approach axis pointing down; each control step solves IK for the current waypoint
//! and moves the joint targets towards the solution at most half the joints' speed limits.

use nalgebra::{Isometry3, Rotation3, Translation3, UnitQuaternion, Vector3};
use sinew_robot::{IkOptions, IkTarget};

use sinew_robot::RobotDescription;

use crate::success::{SuccessRule, SuccessTracker};
use crate::task::{Episode, SuccessKind};
use crate::{SimError, SimWorld};

/// What an expert reads: the measured joints, the last joint targets, the target object's pose
/// and the episode (zones, bowl). Built from a live [`SimWorld`], or from a recording (the scene
/// and joint topics) so that a recorded episode can be replayed through the expert.
#[derive(Debug, Clone)]
pub struct ExpertView<'a> {
    /// The robot.
    pub robot: &'a RobotDescription,
    /// The episode.
    pub episode: Option<&'a Episode>,
    /// Measured joint positions (robot.toml order).
    pub q: Vec<f64>,
    /// The joint targets last commanded.
    pub targets: Vec<f64>,
    /// `world_from_object` of the target object (object 0).
    pub target_pose: Option<Isometry3<f64>>,
    /// Edge length of the target object, metres.
    pub target_size: f64,
}

impl<'a> ExpertView<'a> {
    /// The view of a live world.
    pub fn of_world(world: &'a SimWorld) -> Self {
        let (q, _) = world.joint_state();
        Self {
            robot: &world.robot,
            episode: world.episode.as_ref(),
            q,
            targets: world.targets().to_vec(),
            target_pose: world.object_pose(0),
            target_size: world.objects.first().map_or(0.0, |o| o.size),
        }
    }

    /// The tool centre point in the base frame, from the measured joints.
    pub fn ee_pose(&self) -> Result<Isometry3<f64>, SimError> {
        self.robot
            .ee_pose(&self.q)
            .map_err(|e| SimError::Robot(e.to_string()))
    }

    fn targets(&self) -> &[f64] {
        &self.targets
    }
}

/// Height above the target cube's top of approach waypoints, metres.
const APPROACH_M: f64 = 0.03;
/// Clearance behind the cube's face where a push starts, metres.
const PUSH_GAP_M: f64 = 0.02;
/// Distance the pusher advances per control step, metres.
const PUSH_STEP_M: f64 = 0.008;
/// Distance a careful pusher advances per control step, metres.
const CAREFUL_PUSH_STEP_M: f64 = 0.005;
/// Longest TCP move a careful pusher commands per control step, metres (so that it moves on
/// nearly straight lines instead of sweeping low through the joint-space path).
const CAREFUL_MOVE_M: f64 = 0.03;
/// Careful push: the core of the goal zone, as fractions of its half extents along x and y.
/// The push aims at the core's nearest point and ends when the cube reaches it. The zones flank
/// the cubes' region along y, so pushes run along y: the core is narrow in y, so that a push
/// ends deep in the zone and a policy that stops a little short still succeeds, and wide in x,
/// so that the push need not steer against the cube's sideways drift (which turns the push line
/// until the pusher gives up and lifts, ending the demonstration with the cube at the zone's
/// edge). With the zone's centre as the aim (the version-1 expert), the SO-101's pushes
/// ended a median 17 mm from the centre line and its policies' failed pushes stopped 1-15 mm
/// short of the zone (docs/training.md).
const PUSH_CORE: [f64; 2] = [0.6, 0.15];
/// Careful push: distance to the core at which the push is done, metres.
const PUSH_CORE_TOLERANCE_M: f64 = 0.003;
/// Careful push: how far back along the push line the lift-off at the push's end starts,
/// metres.
const LIFT_BACK_M: f64 = 0.006;
/// Square push: how far back along the push line the pusher backs off, at the push's height,
/// before it lifts, metres.
const SQUARE_BACK_M: f64 = 0.02;
/// Control steps the gripper is given to close or open.
const GRIP_STEPS: u32 = 6;
/// Careful pick: control steps the open jaws wait at the grasp height before they close. A
/// policy that runs its action chunks open loop learns the descent and the close as a timed
/// sequence, and its predictions average over when the bottom comes: without the wait it
/// closed the jaws 14-25 mm above the grasp height (the cube slipped out or was never lifted;
/// docs/training.md). With a flat bottom to the path the average still reaches it.
pub const PICK_DWELL_STEPS: u32 = 4;
/// Careful push: control steps spent rising before moving across regardless.
const RISE_STEPS: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Above,
    Down,
    /// Careful pick: at the grasp height, jaws open, waiting before they close.
    Dwell,
    Close,
    Lift,
    Carry,
    Lower,
    Release,
    Done,
}

/// The scripted expert of a task.
#[derive(Debug, Clone)]
pub struct Expert {
    kind: SuccessKind,
    phase: Phase,
    timer: u32,
    /// Gripper frame yaw chosen for the grasp (radians about z).
    grasp_yaw: Option<f64>,
    /// Push direction (unit, xy) frozen for the current push stroke.
    push_dir: Option<Vector3<f64>>,
    /// Where the TCP holds while the gripper closes.
    hold: Option<Vector3<f64>>,
    q_seed: Option<Vec<f64>>,
    /// For tasks whose success needs the cube at rest and released (`settle_s`, `release`):
    /// the pusher advances at most a step ahead of itself and moves on straight lines, so the
    /// cube is not flicked past the zone or a neighbour swept.
    careful: bool,
    /// Careful push: the least distance to the goal so far and the control steps since it
    /// last shrank by a millimetre (a stalled push is started again).
    progress: (f64, u32),
    /// Careful push: the robots that push square to the cube's face
    /// ([`crate::TaskSpec::push_square`]).
    square: Vec<String>,
    /// Square push: the yaw of the TCP's y axis (the jaws' closing axis) last commanded,
    /// radians about z.
    push_yaw: Option<f64>,
    /// Times a push was started again (lift-offs), for diagnostics.
    restarts: u32,
}

fn err(msg: impl Into<String>) -> SimError {
    SimError::Robot(msg.into())
}

/// Whether a task's expert should be careful: its success needs the cube settled or released.
fn careful(task: &crate::TaskSpec) -> bool {
    task.settle_s > 0.0 || task.release
}

/// How far beside the push line (m) the pusher may be while a push goes on, for a cube of
/// half size `half` (m).
fn max_push_lateral(half: f64, careful: bool) -> f64 {
    half * if careful { 1.2 } else { 0.8 }
}

/// Where a push of the cube at `c` aims: the zone's centre, or for a careful push the nearest
/// point of the zone's core ([`PUSH_CORE`]); at the height of `c`.
fn push_goal(zone: &crate::task::ZoneSpec, c: &Vector3<f64>, careful: bool) -> Vector3<f64> {
    if !careful {
        return Vector3::new(zone.center[0], zone.center[1], c.z);
    }
    let (hx, hy) = (
        zone.half_extents[0] * PUSH_CORE[0],
        zone.half_extents[1] * PUSH_CORE[1],
    );
    Vector3::new(
        c.x.clamp(zone.center[0] - hx, zone.center[0] + hx),
        c.y.clamp(zone.center[1] - hy, zone.center[1] + hy),
        c.z,
    )
}

/// Pick: the four yaws (radians about z) that put the gripper frame's closing axis (TCP y)
/// along a cube face normal, the one nearest the radial direction first (it keeps the wrist
/// comfortable), then the others by the same measure.
fn grasp_yaws(cube: &Isometry3<f64>) -> [f64; 4] {
    let c = cube.translation.vector;
    let cube_yaw = cube.rotation.euler_angles().2;
    let radial = c.y.atan2(c.x) + std::f64::consts::FRAC_PI_2;
    let cost = |a: f64| (a - radial).sin().abs() + (1.0 - (a - radial).cos()) * 0.01;
    let mut yaws = [0.0, 1.0, 2.0, 3.0].map(|k| cube_yaw + k * std::f64::consts::FRAC_PI_2);
    yaws.sort_by(|a, b| cost(*a).total_cmp(&cost(*b)));
    yaws
}

/// Pick: the grasp yaw for `cube`, for the arm of `world` starting from joint values `seed`.
///
/// An arm of six joints or more meets the grasp pose exactly, and it can meet it in ways far
/// apart: when the preferred yaw (the first of [`grasp_yaws`]) would turn the Panda's wrist
/// past its limit, the IK's restarts from random postures found the pose with the base swung
/// by two radians and the upper arm turned against it (9 of 20 pick-and-place episodes from
/// the ready pose), and every joint of the demonstration followed that posture. A policy that
/// reads the scene cannot tell which posture a demonstration will take. So such an arm turns
/// its wrist the least: of the four yaws, by how far each is from the TCP's yaw at `seed`, the
/// first whose pose above the cube the IK reaches from `seed` without restarts (the preferred
/// yaw when none does). A five-joint arm (the SO-101) cannot meet a pose exactly and keeps the
/// preferred yaw.
fn reachable_grasp_yaw(
    world: &ExpertView<'_>,
    cube: &Isometry3<f64>,
    seed: &[f64],
    size: f64,
) -> f64 {
    let mut yaws = grasp_yaws(cube);
    let preferred = yaws[0];
    let arm_joints = world.robot.dof() - usize::from(world.robot.config.gripper_index().is_some());
    if arm_joints < 6 {
        return preferred;
    }
    let Ok(tcp) = world.robot.ee_pose(seed) else {
        return preferred;
    };
    let y_in_base = tcp.rotation * Vector3::y();
    let tcp_yaw = y_in_base.y.atan2(y_in_base.x);
    let turn = |a: f64| (a - tcp_yaw).sin().atan2((a - tcp_yaw).cos()).abs();
    yaws.sort_by(|a, b| turn(*a).total_cmp(&turn(*b)));
    let opts = IkOptions {
        restarts: 0,
        ..IkOptions::default()
    };
    let c = cube.translation.vector;
    yaws.into_iter()
        .find(|&yaw| {
            let p = c + jaw_offset(world, yaw) + Vector3::new(0.0, 0.0, size / 2.0 + APPROACH_M);
            let target = down_pose(p, yaw);
            world
                .robot
                .ik(target, seed, &opts)
                .is_ok_and(|sol| sol.converged)
        })
        .unwrap_or(preferred)
}

/// The IK target of the TCP at `p`, pointing straight down, its y axis (the jaws' closing axis)
/// at `yaw` (rad, about the base's z).
fn down_pose(p: Vector3<f64>, yaw: f64) -> IkTarget {
    IkTarget::Pose(Isometry3::from_parts(
        Translation3::from(p),
        down_at_yaw(yaw),
    ))
}

/// Pick: from the cube's centre to the TCP's grasp point, for a grasp at `yaw`. One-jaw
/// grippers close onto a fixed jaw on the TCP's -y side: the grasp leaves clearance there.
fn jaw_offset(world: &ExpertView<'_>, yaw: f64) -> Vector3<f64> {
    let offset = world
        .robot
        .config
        .gripper
        .as_ref()
        .map_or(0.0, |g| g.grasp_offset_m);
    down_at_yaw(yaw) * Vector3::new(0.0, -offset, 0.0)
}

/// `p`, or the point `max_m` from `from` towards it.
fn toward(from: Vector3<f64>, p: Vector3<f64>, max_m: f64) -> Vector3<f64> {
    let d = p - from;
    if d.norm() > max_m {
        from + d * (max_m / d.norm())
    } else {
        p
    }
}

/// The TCP orientation pointing down (z along -Z) with its y axis at `yaw` about Z.
fn down_at_yaw(yaw: f64) -> UnitQuaternion<f64> {
    let y = Vector3::new(yaw.cos(), yaw.sin(), 0.0);
    let z = -Vector3::z();
    let x = y.cross(&z);
    UnitQuaternion::from_rotation_matrix(&Rotation3::from_basis_unchecked(&[x, y, z]))
}

impl Expert {
    /// An expert for a task's success kind.
    pub fn new(kind: SuccessKind) -> Self {
        Self {
            kind,
            phase: Phase::Above,
            timer: 0,
            grasp_yaw: None,
            push_dir: None,
            hold: None,
            q_seed: None,
            careful: false,
            progress: (f64::INFINITY, 0),
            square: Vec::new(),
            push_yaw: None,
            restarts: 0,
        }
    }

    /// Times the current episode's push was started again (lift-offs).
    pub fn push_restarts(&self) -> u32 {
        self.restarts
    }

    /// The expert of a task: careful when the task's success
    /// needs the cube settled or released.
    pub fn for_task(task: &crate::TaskSpec) -> Self {
        let mut e = Self::new(task.success);
        e.careful = careful(task);
        e.square = task.push_square.clone();
        e
    }

    /// [`Expert::taking_over`] for a task (careful as [`Expert::for_task`]).
    pub fn taking_over_task(
        task: &crate::TaskSpec,
        world: &ExpertView<'_>,
    ) -> Result<Self, SimError> {
        let mut e = Self::taking_over_with(task.success, careful(task), world)?;
        e.square = task.push_square.clone();
        Ok(e)
    }

    /// An expert taking over mid-episode from whatever drove before (a policy): its phase is
    /// read from the state instead of starting from the top, so that its labels continue
    /// what is under way. Pick-and-place with the cube held between the closed jaws resumes
    /// at the lift, keeping the wrist's yaw (a fresh expert would open the gripper and drop
    /// it); a push with the pusher low resumes pushing when it is behind the cube on the line
    /// to the zone, and otherwise retreats upwards first; a reach right above the cube goes
    /// straight down.
    pub fn taking_over(kind: SuccessKind, world: &ExpertView<'_>) -> Result<Self, SimError> {
        Self::taking_over_with(kind, false, world)
    }

    fn taking_over_with(
        kind: SuccessKind,
        careful: bool,
        world: &ExpertView<'_>,
    ) -> Result<Self, SimError> {
        let mut e = Self::new(kind);
        e.careful = careful;
        let Some(cube) = world.target_pose else {
            return Ok(e);
        };
        let size = world.target_size;
        let c = cube.translation.vector;
        let ee_pose = world.ee_pose()?;
        let ee = ee_pose.translation.vector;
        match kind {
            SuccessKind::Touch => {
                let top = c + Vector3::new(0.0, 0.0, size / 2.0);
                if (ee - top).xy().norm() < 0.01 && ee.z < top.z + APPROACH_M + 0.015 {
                    e.phase = Phase::Down;
                }
            }
            SuccessKind::InZone => {
                let Some(zone) = world
                    .episode
                    .and_then(|ep| ep.goal_zone.and_then(|z| ep.zones.get(z)))
                else {
                    return Ok(e);
                };
                let half = size / 2.0;
                if ee.z < c.z + half + APPROACH_M - 0.01 {
                    let goal = push_goal(zone, &c, careful);
                    let to_goal = Vector3::new(goal.x - c.x, goal.y - c.y, 0.0);
                    let dir = to_goal.try_normalize(1e-9).unwrap_or_else(Vector3::zeros);
                    let rel = ee - c;
                    let along = rel.dot(&dir);
                    let lateral = (rel - dir * along).xy().norm();
                    // The tolerance of a push under way (`act_push`): a pusher it would keep
                    // pushing from is not sent up and back again, which would teach a policy
                    // to hesitate behind the cube.
                    if to_goal.norm() > 1e-6
                        && along < -half * 0.5
                        && lateral < max_push_lateral(half, careful)
                        && ee.z < half * 2.0
                    {
                        e.phase = Phase::Carry;
                        e.push_dir = Some(dir);
                    } else {
                        e.phase = Phase::Lift;
                    }
                }
            }
            SuccessKind::InBowl => {
                let Some(g) = world.robot.config.gripper.as_ref() else {
                    return Ok(e);
                };
                let Some(gi) = world.robot.config.gripper_index() else {
                    return Ok(e);
                };
                let closing_of =
                    |v: Option<&f64>| (v.copied().unwrap_or(g.open) - g.open) / (g.closed - g.open);
                let measured = closing_of(world.q.get(gi));
                let commanded = closing_of(world.targets.get(gi));
                // Held, or being gripped: the jaws more than half-way shut (or told to shut)
                // with the cube within one and a half cube sizes of the TCP, and the TCP not
                // above the cube's upper part (jaws shut over the cube's top hold nothing: the
                // expert opens them and grasps again). If it is not really held, the expert
                // fails and the demonstration is not kept.
                let closing = measured > 0.5 || commanded > 0.5;
                if closing && (c - ee).norm() < size * 1.5 && ee.z - c.z < size * 0.4 {
                    let y_in_base = ee_pose.rotation * Vector3::y();
                    e.grasp_yaw = Some(y_in_base.y.atan2(y_in_base.x));
                    e.hold = Some(ee);
                    // Still closing: let the jaws finish before lifting.
                    e.phase = if measured > 0.5 {
                        Phase::Lift
                    } else {
                        Phase::Close
                    };
                } else if !closing {
                    // Open jaws on their way down to the grasp, near enough its line and turned
                    // as the expert would turn them: go on down (starting over from above would
                    // teach a policy that stops short to rise again).
                    let yaw = reachable_grasp_yaw(world, &cube, world.targets(), size);
                    let grasp = c + jaw_offset(world, yaw);
                    let y_in_base = ee_pose.rotation * Vector3::y();
                    let turned = (y_in_base.y.atan2(y_in_base.x) - yaw).cos();
                    if (ee - grasp).xy().norm() < 0.01
                        && ee.z < c.z + size / 2.0 + APPROACH_M + 0.015
                        && turned > 0.95
                    {
                        e.grasp_yaw = Some(yaw);
                        e.phase = Phase::Down;
                    }
                }
            }
        }
        Ok(e)
    }

    /// The current phase, for logs.
    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Above => "above",
            Phase::Down => "down",
            Phase::Dwell => "dwell",
            Phase::Close => "close",
            Phase::Lift => "lift",
            Phase::Carry => "carry",
            Phase::Lower => "lower",
            Phase::Release => "release",
            Phase::Done => "done",
        }
    }

    /// Joint targets for the next control step.
    pub fn act(&mut self, world: &SimWorld, dt_s: f64) -> Result<Vec<f64>, SimError> {
        self.act_on(&ExpertView::of_world(world), dt_s)
    }

    /// Joint targets for the next control step, from a view of the world.
    pub fn act_on(&mut self, world: &ExpertView<'_>, dt_s: f64) -> Result<Vec<f64>, SimError> {
        match self.kind {
            SuccessKind::Touch => self.act_reach(world, dt_s),
            SuccessKind::InZone => self.act_push(world, dt_s),
            SuccessKind::InBowl => self.act_pick(world, dt_s),
        }
    }

    fn cube(&self, world: &ExpertView<'_>) -> Result<(Isometry3<f64>, f64), SimError> {
        let pose = world.target_pose.ok_or_else(|| err("no target object"))?;
        Ok((pose, world.target_size))
    }

    /// Solves IK for `target` and returns joint targets rate-limited from the current ones,
    /// with the gripper at `gripper` (None: unchanged).
    fn move_to(
        &mut self,
        world: &ExpertView<'_>,
        target: IkTarget,
        gripper: Option<f64>,
        dt_s: f64,
        speed: f64,
    ) -> Result<Vec<f64>, SimError> {
        let robot = &world.robot;
        let seed = self
            .q_seed
            .clone()
            .unwrap_or_else(|| world.targets().to_vec());
        let opts = IkOptions {
            restarts: 4,
            ..IkOptions::default()
        };
        let sol = robot
            .ik(target, &seed, &opts)
            .map_err(|e| err(e.to_string()))?;
        if !sol.converged {
            tracing::debug!(
                phase = self.phase_name(),
                position_error_m = sol.position_error,
                orientation_error_rad = sol.orientation_error,
                "expert target out of reach"
            );
        }
        self.q_seed = Some(sol.q.clone());
        let gi = robot.config.gripper_index();
        let mut out = world.targets().to_vec();
        // Careful: all joints slowed by one factor, so the tool moves towards the IK solution
        // along a straight line in joint space. Clamping each joint on its own bends the path;
        // on the SO-101 near its base that swung the pusher into the cube and flicked it 25-60 mm
        // in one control step in 21 of 60 pushes (docs/training.md).
        let mut scale: f64 = 1.0;
        if self.careful {
            for (i, (o, s)) in out.iter().zip(&sol.q).enumerate() {
                let max = robot.config.joints[i].velocity_max * dt_s * speed;
                let d = (s - o).abs();
                if Some(i) != gi && d > max {
                    scale = scale.min(max / d);
                }
            }
        }
        for (i, (o, s)) in out.iter_mut().zip(&sol.q).enumerate() {
            if Some(i) == gi {
                if let Some(g) = gripper {
                    *o = g;
                }
                continue;
            }
            let max = robot.config.joints[i].velocity_max * dt_s * speed;
            *o += ((s - *o) * scale).clamp(-max, max);
        }
        Ok(out)
    }

    fn down_target(world: &ExpertView<'_>, p: Vector3<f64>) -> IkTarget {
        IkTarget::PositionAxis {
            position: p,
            axis_in_link: world.robot.approach_axis(),
            direction_in_base: -Vector3::z_axis(),
        }
    }

    fn act_reach(&mut self, world: &ExpertView<'_>, dt_s: f64) -> Result<Vec<f64>, SimError> {
        let (cube, size) = self.cube(world)?;
        let top = cube.translation.vector + Vector3::new(0.0, 0.0, size / 2.0);
        let ee = world.ee_pose()?.translation.vector;
        let above = top + Vector3::new(0.0, 0.0, APPROACH_M);
        let touch = top + Vector3::new(0.0, 0.0, 0.004);
        if self.phase == Phase::Above && (ee - above).norm() < 0.015 {
            self.phase = Phase::Down;
        }
        let goal = if self.phase == Phase::Above {
            above
        } else {
            touch
        };
        self.move_to(world, Self::down_target(world, goal), None, dt_s, 0.5)
    }

    fn act_push(&mut self, world: &ExpertView<'_>, dt_s: f64) -> Result<Vec<f64>, SimError> {
        let ep = world.episode.ok_or_else(|| err("no episode"))?;
        let zone = ep
            .goal_zone
            .and_then(|z| ep.zones.get(z))
            .ok_or_else(|| err("no goal zone"))?;
        let (cube, size) = self.cube(world)?;
        let c = cube.translation.vector;
        let half = size / 2.0;
        let goal = push_goal(zone, &c, self.careful);
        let to_goal = Vector3::new(goal.x - c.x, goal.y - c.y, 0.0);
        // The closed jaws push. (Jaws a sixth open with the closing axis across the push line
        // pushed straighter in lockstep, but their policies scored worse; docs/training.md.)
        let grip = world.robot.config.gripper.as_ref().map(|g| g.closed);
        let ee = world.ee_pose()?.translation.vector;
        let hover_z = c.z + half + APPROACH_M + if self.careful { 0.02 } else { 0.0 };
        // Push with the TCP level with the cube's centre (the fingertips reach lower).
        let push_z = half;
        // Done when the cube is well inside the zone (careful: in the zone's core): lift away.
        let done = if self.careful {
            to_goal.norm() < PUSH_CORE_TOLERANCE_M
        } else {
            to_goal.norm() < (zone.half_extents[0].min(zone.half_extents[1]) * 0.4).max(0.004)
        };
        if self.phase != Phase::Done && done {
            self.phase = Phase::Done;
            self.timer = 0;
        }
        if self.phase == Phase::Done {
            if !self.careful {
                let p = Vector3::new(ee.x, ee.y, hover_z);
                return self.move_to(world, Self::down_target(world, p), grip, dt_s, 0.5);
            }
            // Careful: lift off the cube, from a point fixed when the push ended (the cube is
            // left alone to settle): a few millimetres back along the push line, so the jaws
            // do not drag the cube's face, and straight up from the first step. A push that
            // ended by backing off along the line first (2 cm, held for four steps) taught a
            // policy two opposite moves at the push's last state, forward and back, and their
            // average stalled at the cube's face with the cube in the zone but touched
            // (docs/training.md, "The push ends by lifting"); forward and up average to a rise.
            // A square push ([`crate::TaskSpec::push_square`]) backs off first as before: its
            // jaws' flat side lies flush on the cube's face, and lifting at once dragged the
            // cube up and tipped it (the Panda, lockstep seeds 0-199: 191 successes against 199).
            let dir = self
                .push_dir
                .or_else(|| to_goal.try_normalize(1e-9))
                .unwrap_or_else(Vector3::x);
            let square = self.pushes_square(world);
            let back_m = if square { SQUARE_BACK_M } else { LIFT_BACK_M };
            let back = *self
                .hold
                .get_or_insert_with(|| Vector3::new(ee.x, ee.y, ee.z) - dir * back_m);
            self.timer += 1;
            let p = if square && self.timer <= 4 {
                back
            } else {
                Vector3::new(back.x, back.y, hover_z)
            };
            let p = toward(ee, p, CAREFUL_MOVE_M);
            let target = self.push_target(world, p, dir)?;
            return self.move_to(world, target, grip, dt_s, 0.3);
        }
        // Careful pushes steer: the line is the one from the cube to the goal now, so a cube
        // drifting sideways is pushed back by a pusher moving behind it.
        let dir = if self.phase == Phase::Carry && !self.careful {
            self.push_dir.unwrap_or_else(|| to_goal.normalize())
        } else {
            let d = to_goal.normalize();
            self.push_dir = Some(d);
            d
        };
        let behind = c - dir * (half + PUSH_GAP_M);
        let rel = ee - c;
        let along = rel.dot(&dir);
        let lateral = (rel - dir * along).xy().norm();
        tracing::trace!(
            phase = self.phase_name(),
            cube = format!(
                "{:.4} {:.4} yaw {:.3}",
                c.x,
                c.y,
                cube.rotation.euler_angles().2
            ),
            ee = format!("{:.4} {:.4} {:.4}", ee.x, ee.y, ee.z),
            along = format!("{along:.4}"),
            lateral = format!("{lateral:.4}"),
            dir = format!("{:.3} {:.3}", dir.x, dir.y),
            "push"
        );
        self.timer += 1;
        let timer = self.timer;
        let next = |me: &mut Self, ph: Phase| {
            me.phase = ph;
            me.timer = 0;
        };
        let goal_pt = match self.phase {
            Phase::Above => {
                let p = Vector3::new(behind.x, behind.y, hover_z);
                if (ee - p).norm() < 0.012 || timer >= 25 {
                    next(self, Phase::Down);
                }
                // Careful: up to the hover height first, then across. Only for a few steps:
                // where the tool cannot point straight down at the hover height (the SO-101 far
                // out) the rise stalls a centimetre short, and waiting for it never ends.
                if self.careful
                    && timer <= RISE_STEPS
                    && ee.z < hover_z - 0.015
                    && (ee - p).xy().norm() > 0.02
                {
                    Vector3::new(ee.x, ee.y, hover_z)
                } else {
                    p
                }
            }
            Phase::Down => {
                let p = Vector3::new(behind.x, behind.y, push_z);
                if (ee - p).norm() < 0.008 || timer >= 10 {
                    next(self, Phase::Carry);
                }
                p
            }
            Phase::Lift => {
                // Retreat straight up before moving sideways, so as not to sweep the cube. (A
                // centimetre's back-off along the push line first cost the SO-101's policies
                // 26-28 points of push success; docs/training.md.)
                if ee.z > hover_z - 0.01 || timer >= 10 {
                    next(self, Phase::Above);
                }
                Vector3::new(ee.x, ee.y, hover_z)
            }
            _ => {
                // Pushing. Beside the line, past the cube's centre, or the goal direction
                // turned: retreat and approach again.
                // (A careful push re-aims every step: its line never turns away.)
                let turned = !self.careful && to_goal.normalize().dot(&dir) < 0.94;
                let max_lateral = max_push_lateral(half, self.careful);
                let stalled = self.careful && {
                    let d = to_goal.norm();
                    if d < self.progress.0 - 0.001 {
                        self.progress = (d, 0);
                    } else {
                        self.progress.1 += 1;
                    }
                    self.progress.1 > 8
                };
                if lateral > max_lateral || along > 0.0 || turned || stalled {
                    self.progress = (f64::INFINITY, 0);
                    self.restarts += 1;
                    next(self, Phase::Lift);
                }
                // Advance along the line through the cube, never past the goal (careful: never
                // more than a step ahead of the pusher, which the cube would outrun).
                let step_m = if self.careful {
                    CAREFUL_PUSH_STEP_M
                } else {
                    PUSH_STEP_M
                };
                let step = step_m.min(to_goal.norm());
                let mut ahead = -(half + 0.006) + step;
                if self.careful {
                    ahead = ahead.min(along + step);
                }
                let p = c + dir * ahead;
                Vector3::new(p.x, p.y, push_z)
            }
        };
        let goal_pt = if self.careful {
            toward(ee, goal_pt, CAREFUL_MOVE_M)
        } else {
            goal_pt
        };
        let target = self.push_target(world, goal_pt, dir)?;
        self.move_to(world, target, grip, dt_s, 0.5)
    }

    /// Whether this robot's careful push holds the closed jaws square to the push line
    /// ([`crate::TaskSpec::push_square`]).
    fn pushes_square(&self, world: &ExpertView<'_>) -> bool {
        self.careful && self.square.contains(&world.robot.config.name)
    }

    /// The TCP pointing down at `p`; for a square push ([`crate::TaskSpec::push_square`]) also
    /// turned so that the closed jaws' closing axis lies across the push direction `dir`, so that
    /// the jaws' flat side meets the cube and the cube squares up against it. Of the two such yaws,
    /// the first of a push is the one that keeps the joints nearest the middle of their ranges,
    /// every later one the one nearer the yaw last commanded.
    fn push_target(
        &mut self,
        world: &ExpertView<'_>,
        p: Vector3<f64>,
        dir: Vector3<f64>,
    ) -> Result<IkTarget, SimError> {
        if !self.pushes_square(world) {
            return Ok(Self::down_target(world, p));
        }
        use std::f64::consts::{FRAC_PI_2, PI};
        let across = dir.y.atan2(dir.x) + FRAC_PI_2;
        // The one of `across` and `across + pi` nearest `from`, unwrapped next to it.
        let nearest = |from: f64| {
            let d = across - from;
            from + d - PI * (d / PI).round()
        };
        let yaw = match self.push_yaw {
            Some(last) => nearest(last),
            None => {
                // The first choice of the push: the yaw whose IK solution keeps the joints
                // nearest the middle of their ranges. Nearest the TCP's yaw now is a coin toss
                // when the two lie a quarter turn either way (the Panda's ready pose against a
                // push across the table): the wrist turned either way by a few degrees of the
                // push line, to joint 7's upper limit in most pushes (docs/training.md).
                let y_in_base = world.ee_pose()?.rotation * Vector3::y();
                let now = y_in_base.y.atan2(y_in_base.x);
                let a = nearest(now);
                let b = if a > now { a - PI } else { a + PI };
                if self.mid_range_score(world, p, b) > self.mid_range_score(world, p, a) {
                    b
                } else {
                    a
                }
            }
        };
        self.push_yaw = Some(yaw);
        Ok(down_pose(p, yaw))
    }

    /// How well the IK solution for the TCP pointing down at `p` at `yaw`, from the last
    /// solution, keeps the arm's joints inside their ranges: minus the sum of squares of each
    /// joint's offset from the middle of its range, in half ranges (the two yaws of a square push
    /// differ mostly in the last joint, so its offset decides); -inf where it does not converge.
    fn mid_range_score(&self, world: &ExpertView<'_>, p: Vector3<f64>, yaw: f64) -> f64 {
        let robot = &world.robot;
        let seed = self.q_seed.as_deref().unwrap_or(world.targets());
        let opts = IkOptions {
            restarts: 0,
            ..IkOptions::default()
        };
        let target = down_pose(p, yaw);
        match robot.ik(target, seed, &opts) {
            Ok(sol) if sol.converged => {
                let gi = robot.config.gripper_index();
                sol.q
                    .iter()
                    .zip(&robot.config.joints)
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != gi)
                    .map(|(_, (q, j))| {
                        let mid = (j.position_min + j.position_max) / 2.0;
                        let half = ((j.position_max - j.position_min) / 2.0).max(1e-9);
                        -((q - mid) / half).powi(2)
                    })
                    .sum()
            }
            _ => f64::NEG_INFINITY,
        }
    }

    fn act_pick(&mut self, world: &ExpertView<'_>, dt_s: f64) -> Result<Vec<f64>, SimError> {
        let ep = world.episode.ok_or_else(|| err("no episode"))?;
        let (bowl_xy, bowl) = ep.bowl.ok_or_else(|| err("no bowl"))?;
        let (cube, size) = self.cube(world)?;
        let c = cube.translation.vector;
        let g = world
            .robot
            .config
            .gripper
            .as_ref()
            .ok_or_else(|| err("the robot has no gripper"))?;
        let (open, closed) = (g.open, g.closed);
        let ee_pose = world.ee_pose()?;
        let ee = ee_pose.translation.vector;
        let yaw = match self.grasp_yaw {
            Some(yaw) => yaw,
            None => {
                let seed = self.q_seed.as_deref().unwrap_or(world.targets());
                let yaw = reachable_grasp_yaw(world, &cube, seed, size);
                self.grasp_yaw = Some(yaw);
                yaw
            }
        };
        let rot = down_at_yaw(yaw);
        let offset = jaw_offset(world, yaw);
        let grasp = c + offset;
        let rim = bowl.wall_height;
        let carry_z = rim + size + 0.03;
        let bowl_c = Vector3::new(bowl_xy[0], bowl_xy[1], 0.0) + offset;
        let pose =
            |p: Vector3<f64>| IkTarget::Pose(Isometry3::from_parts(Translation3::from(p), rot));
        // A phase ends when its waypoint is reached, or after a time limit (IK may not meet a
        // 5-DoF arm's pose exactly).
        self.timer += 1;
        let reached = |p: Vector3<f64>, tol: f64, timer: u32, limit: u32| {
            (ee - p).norm() < tol || timer >= limit
        };
        let next = |me: &mut Self, ph: Phase| {
            me.phase = ph;
            me.timer = 0;
        };
        let hold = *self.hold.get_or_insert(grasp);
        let (target, grip, speed) = match self.phase {
            Phase::Above => {
                let p = Vector3::new(grasp.x, grasp.y, c.z + size / 2.0 + APPROACH_M);
                if reached(p, 0.01, self.timer, 25) {
                    next(self, Phase::Down);
                }
                (pose(p), open, 0.5)
            }
            Phase::Down => {
                let p = Vector3::new(grasp.x, grasp.y, c.z);
                if reached(p, 0.005, self.timer, 12) {
                    self.hold = Some(Vector3::new(ee.x, ee.y, c.z));
                    next(
                        self,
                        if self.careful {
                            Phase::Dwell
                        } else {
                            Phase::Close
                        },
                    );
                }
                (pose(p), open, 0.3)
            }
            Phase::Dwell => {
                if self.timer >= PICK_DWELL_STEPS {
                    next(self, Phase::Close);
                }
                (pose(hold), open, 0.3)
            }
            Phase::Close => {
                if self.timer >= GRIP_STEPS {
                    next(self, Phase::Lift);
                }
                (pose(hold), closed, 0.3)
            }
            Phase::Lift => {
                let p = Vector3::new(hold.x, hold.y, carry_z);
                if reached(p, 0.01, self.timer, 15) {
                    next(self, Phase::Carry);
                }
                (pose(p), closed, 0.3)
            }
            Phase::Carry => {
                let p = Vector3::new(bowl_c.x, bowl_c.y, carry_z);
                if reached(p, 0.01, self.timer, 20) {
                    next(self, Phase::Lower);
                }
                (pose(p), closed, 0.3)
            }
            Phase::Lower => {
                let p = Vector3::new(bowl_c.x, bowl_c.y, rim + size / 2.0 + 0.01);
                if reached(p, 0.01, self.timer, 10) {
                    next(self, Phase::Release);
                }
                (pose(p), closed, 0.3)
            }
            Phase::Release | Phase::Done => {
                if self.timer >= GRIP_STEPS {
                    self.phase = Phase::Done;
                }
                let p = Vector3::new(bowl_c.x, bowl_c.y, carry_z);
                (
                    pose(if self.phase == Phase::Done { p } else { ee }),
                    open,
                    0.3,
                )
            }
        };
        self.move_to(world, target, Some(grip), dt_s, speed)
    }
}

/// Whether a task's instantaneous success predicate holds now, with the version-1 defaults
/// (no release, no settling); see [`crate::success`] for the full rule.
pub fn success(
    world: &SimWorld,
    kind: SuccessKind,
    touch_distance_m: f64,
) -> Result<bool, SimError> {
    SuccessRule::instant(kind, touch_distance_m).holds(world)
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
    /// Push: times the expert lifted off and started the push again.
    pub push_restarts: u32,
    /// The arm joint whose commanded target came nearest one of its position limits.
    pub tightest_limit: Option<LimitMargin>,
}

/// How near an episode's commanded targets came to an arm joint's position limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitMargin {
    /// The joint, as an index into the robot's joints.
    pub joint: usize,
    /// The smallest distance of a target from the limit, in the joint's units (rad for
    /// revolute joints); 0 at the limit.
    pub margin: f64,
    /// Whether that limit is the upper one.
    pub upper: bool,
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
    let arm = robot.config.arm_indices();
    let mut tightest: Option<LimitMargin> = None;
    let (success, steps, push_restarts) = run_expert_counted(&mut world, task, |_, cmd| {
        for &i in &arm {
            let (Some(q), Some(j)) = (cmd.get(i), robot.config.joints.get(i)) else {
                continue;
            };
            for (margin, upper) in [(q - j.position_min, false), (j.position_max - q, true)] {
                if tightest.is_none_or(|t| margin < t.margin) {
                    tightest = Some(LimitMargin {
                        joint: i,
                        margin,
                        upper,
                    });
                }
            }
        }
    })?;
    Ok(EpisodeOutcome {
        seed,
        instruction: ep.instruction,
        success,
        steps,
        push_restarts,
        tightest_limit: tightest,
    })
}

/// Runs the scripted expert of `task` in lockstep in `world` (an episode already set up) until
/// the task's success holds or the step limit; returns whether it succeeded and the control
/// steps taken. `world` is left as the episode ended.
pub fn run_expert_in(
    world: &mut SimWorld,
    task: &crate::TaskSpec,
) -> Result<(bool, u32), SimError> {
    run_expert_observed(world, task, |_, _| {})
}

/// [`run_expert_in`], calling `observe` with the world and the expert's joint targets at each
/// control step, before they are commanded.
pub fn run_expert_observed(
    world: &mut SimWorld,
    task: &crate::TaskSpec,
    observe: impl FnMut(&SimWorld, &[f64]),
) -> Result<(bool, u32), SimError> {
    let (success, steps, _) = run_expert_counted(world, task, observe)?;
    Ok((success, steps))
}

/// [`run_expert_observed`], also returning [`Expert::push_restarts`].
fn run_expert_counted(
    world: &mut SimWorld,
    task: &crate::TaskSpec,
    mut observe: impl FnMut(&SimWorld, &[f64]),
) -> Result<(bool, u32, u32), SimError> {
    let mut expert = Expert::for_task(task);
    let mut tracker = SuccessTracker::new(task);
    let dt = 1.0 / task.control_rate_hz;
    for step in 0..task.step_limit {
        if tracker.update(world)? {
            return Ok((true, step, expert.push_restarts()));
        }
        let cmd = expert.act(world, dt)?;
        observe(world, &cmd);
        world.command(&cmd)?;
        world.advance(dt);
    }
    Ok((
        tracker.update(world)?,
        task.step_limit,
        expert.push_restarts(),
    ))
}
