//! The safety filter every command passes through: joint position, velocity and acceleration
//! limits, NaN/infinity rejection, an optional end-effector workspace box, and holding.
//!
//! The filter keeps its own state (the last command and its velocity, as finite differences at
//! the command period `dt`). For each joint it picks the velocity of the next command as the
//! one closest to "reach the target", subject to, in order: the velocity limit; a braking bound
//! that keeps the joint able to stop, at the acceleration limit, before its position limits
//! (`v dt + v^2 / 2a <= distance to the limit`) and before the target (no overshoot); and the
//! acceleration limit relative to the previous velocity. Starting at rest within the limits,
//! every command it emits then satisfies all three limits (by induction: the braking bound at
//! the next step is never below `v_prev - a dt`). Holding is a target equal to the current
//! command: the joints brake at the acceleration limit and stay.

use sinew_robot::RobotDescription;

/// Limits of one joint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JointLimits {
    /// Lowest position, rad or m.
    pub position_min: f64,
    /// Highest position, rad or m.
    pub position_max: f64,
    /// Largest speed, rad/s or m/s.
    pub velocity_max: f64,
    /// Largest acceleration, rad/s^2 or m/s^2.
    pub acceleration_max: f64,
}

/// What the filter changed in one command (counts per kind are kept in [`SafetyStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interventions {
    /// A target outside the position limits was moved inside.
    pub position: bool,
    /// A joint was slowed to its velocity limit.
    pub velocity: bool,
    /// A joint's change of velocity was limited (or it braked before a limit or the target).
    pub acceleration: bool,
    /// A target with NaN or infinity was rejected (the joints hold).
    pub non_finite: bool,
    /// A target that takes the end effector out of the workspace box was rejected.
    pub workspace: bool,
}

impl Interventions {
    /// Whether anything was changed.
    pub fn any(&self) -> bool {
        self.position || self.velocity || self.acceleration || self.non_finite || self.workspace
    }
}

/// Counters of interventions since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SafetyStats {
    /// Commands filtered.
    pub commands: u64,
    /// Commands with a position clamp.
    pub position: u64,
    /// Commands with a velocity clamp.
    pub velocity: u64,
    /// Commands with an acceleration clamp or braking.
    pub acceleration: u64,
    /// Targets rejected for NaN or infinity.
    pub non_finite: u64,
    /// Targets rejected by the workspace box.
    pub workspace: u64,
}

/// End-effector position (base frame, m) of joint positions, for the workspace check.
pub type EePosition = Box<dyn Fn(&[f64]) -> Option<[f64; 3]> + Send>;

/// The safety filter.
pub struct SafetyFilter {
    limits: Vec<JointLimits>,
    dt_s: f64,
    q: Vec<f64>,
    v: Vec<f64>,
    workspace: Option<([f64; 3], [f64; 3], EePosition)>,
    stats: SafetyStats,
}

impl std::fmt::Debug for SafetyFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetyFilter")
            .field("limits", &self.limits)
            .field("dt_s", &self.dt_s)
            .field("q", &self.q)
            .finish()
    }
}

/// Why a filter cannot start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SafetyError {
    /// Wrong number of joints.
    #[error("expected {expected} joint values, got {got}")]
    JointCount {
        /// Joints of the robot.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A limit that cannot be enforced.
    #[error("joint {joint}: {reason}")]
    BadLimit {
        /// Joint index.
        joint: usize,
        /// What is wrong.
        reason: String,
    },
    /// The robot is outside its limits (or not finite) where the filter starts.
    #[error("joint {joint} is at {value}, outside [{min}, {max}]: refusing to command a robot that starts outside its limits")]
    StartOutside {
        /// Joint index.
        joint: usize,
        /// Its position.
        value: f64,
        /// Limits.
        min: f64,
        /// Limits.
        max: f64,
    },
}

/// Largest speed from which a joint can still stop within `distance` (m or rad) at deceleration
/// `a`, moving `v dt` first: the positive root of `v dt + v^2 / (2a) = distance`.
fn braking_speed(distance: f64, a: f64, dt: f64) -> f64 {
    if distance <= 0.0 {
        return 0.0;
    }
    a * (-dt + (dt * dt + 2.0 * distance / a).sqrt())
}

impl SafetyFilter {
    /// A filter for `limits` at the command period `dt_s`, starting at rest at `q_start`.
    pub fn new(limits: Vec<JointLimits>, dt_s: f64, q_start: &[f64]) -> Result<Self, SafetyError> {
        for (i, l) in limits.iter().enumerate() {
            let ok = l.position_min.is_finite()
                && l.position_max.is_finite()
                && l.position_min <= l.position_max
                && l.velocity_max.is_finite()
                && l.velocity_max > 0.0
                && l.acceleration_max.is_finite()
                && l.acceleration_max > 0.0;
            if !ok {
                return Err(SafetyError::BadLimit {
                    joint: i,
                    reason: format!("limits {l:?} cannot be enforced"),
                });
            }
        }
        if !(dt_s.is_finite() && dt_s > 0.0) {
            return Err(SafetyError::BadLimit {
                joint: 0,
                reason: format!("command period {dt_s} s"),
            });
        }
        let mut f = Self {
            v: vec![0.0; limits.len()],
            q: vec![0.0; limits.len()],
            limits,
            dt_s,
            workspace: None,
            stats: SafetyStats::default(),
        };
        f.reset(q_start)?;
        Ok(f)
    }

    /// A filter with the limits of robot.toml, its workspace box (if any) checked by FK, at the
    /// robot's command rate.
    pub fn for_robot(robot: &RobotDescription, q_start: &[f64]) -> Result<Self, SafetyError> {
        let limits = robot
            .config
            .joints
            .iter()
            .map(|j| JointLimits {
                position_min: j.position_min,
                position_max: j.position_max,
                velocity_max: j.velocity_max,
                acceleration_max: j.acceleration_max,
            })
            .collect();
        let mut f = Self::new(limits, 1.0 / robot.config.command_rate_hz, q_start)?;
        if let (Some(lo), Some(hi)) = (
            robot.config.safety.workspace_min,
            robot.config.safety.workspace_max,
        ) {
            let r = robot.clone();
            f.workspace = Some((
                lo,
                hi,
                Box::new(move |q: &[f64]| {
                    r.ee_pose(q).ok().map(|p| {
                        let t = p.translation.vector;
                        [t.x, t.y, t.z]
                    })
                }),
            ));
        }
        Ok(f)
    }

    /// Sets the workspace box check.
    pub fn set_workspace(&mut self, min: [f64; 3], max: [f64; 3], ee: EePosition) {
        self.workspace = Some((min, max, ee));
    }

    /// Restarts at rest at `q` (which must be within the limits).
    pub fn reset(&mut self, q: &[f64]) -> Result<(), SafetyError> {
        if q.len() != self.limits.len() {
            return Err(SafetyError::JointCount {
                expected: self.limits.len(),
                got: q.len(),
            });
        }
        for (i, (v, l)) in q.iter().zip(&self.limits).enumerate() {
            // A robot resting a hair outside (sensor noise) is taken as at the limit.
            let tol = 1e-3 * (l.position_max - l.position_min).max(1e-3);
            if !v.is_finite() || *v < l.position_min - tol || *v > l.position_max + tol {
                return Err(SafetyError::StartOutside {
                    joint: i,
                    value: *v,
                    min: l.position_min,
                    max: l.position_max,
                });
            }
        }
        self.q = q
            .iter()
            .zip(&self.limits)
            .map(|(v, l)| v.clamp(l.position_min, l.position_max))
            .collect();
        self.v = vec![0.0; q.len()];
        Ok(())
    }

    /// The last command.
    pub fn last_command(&self) -> &[f64] {
        &self.q
    }

    /// Its velocity (finite difference), rad/s or m/s.
    pub fn last_velocity(&self) -> &[f64] {
        &self.v
    }

    /// Counters.
    pub fn stats(&self) -> SafetyStats {
        self.stats
    }

    /// The command period, s.
    pub fn dt_s(&self) -> f64 {
        self.dt_s
    }

    /// The limits.
    pub fn limits(&self) -> &[JointLimits] {
        &self.limits
    }

    /// The next command towards `target` (`None`: hold). Always within every limit.
    pub fn filter(&mut self, target: Option<&[f64]>) -> (Vec<f64>, Interventions) {
        let mut iv = Interventions::default();
        let n = self.limits.len();
        let mut goal: Vec<f64> = match target {
            Some(t) if t.len() == n && t.iter().all(|v| v.is_finite()) => t.to_vec(),
            Some(_) => {
                iv.non_finite = true;
                self.q.clone()
            }
            None => self.q.clone(),
        };
        for (g, l) in goal.iter_mut().zip(&self.limits) {
            if *g < l.position_min || *g > l.position_max {
                iv.position = true;
                *g = g.clamp(l.position_min, l.position_max);
            }
        }
        let mut out = self.step_towards(&goal, &mut iv);
        if let Some((lo, hi, ee)) = &self.workspace {
            // How far outside the box the end effector is (0 inside; infinite when FK fails).
            let outside = |q: &[f64]| match ee(q) {
                Some(p) => (0..3)
                    .map(|i| (lo[i] - p[i]).max(p[i] - hi[i]).max(0.0))
                    .fold(0.0, f64::max),
                None => f64::INFINITY,
            };
            if outside(&out.0) > outside(&self.q) + 1e-12 {
                // Refuse to leave (or go further out of) the box: brake where we are instead.
                iv.workspace = true;
                let hold = self.q.clone();
                out = self.step_towards(&hold, &mut iv);
            }
        }
        let (q, v) = out;
        self.q = q.clone();
        self.v = v;
        self.stats.commands += 1;
        self.stats.position += u64::from(iv.position);
        self.stats.velocity += u64::from(iv.velocity);
        self.stats.acceleration += u64::from(iv.acceleration);
        self.stats.non_finite += u64::from(iv.non_finite);
        self.stats.workspace += u64::from(iv.workspace);
        (q, iv)
    }

    fn step_towards(&self, goal: &[f64], iv: &mut Interventions) -> (Vec<f64>, Vec<f64>) {
        let dt = self.dt_s;
        let mut q_out = Vec::with_capacity(goal.len());
        let mut v_out = Vec::with_capacity(goal.len());
        for (i, l) in self.limits.iter().enumerate() {
            let (q, v_prev, a) = (self.q[i], self.v[i], l.acceleration_max);
            let err = goal[i] - q;
            // Fastest approach that can still stop at the goal.
            let mut v = err.signum() * (err.abs() / dt).min(braking_speed(err.abs(), a, dt));
            if v.abs() > l.velocity_max {
                iv.velocity = true;
                v = v.clamp(-l.velocity_max, l.velocity_max);
            }
            let up = braking_speed(l.position_max - q, a, dt);
            let down = -braking_speed(q - l.position_min, a, dt);
            let lo_a = v_prev - a * dt;
            let hi_a = v_prev + a * dt;
            let v_lim = v.clamp(down.min(up), up.max(down));
            let v_acc = v_lim.clamp(lo_a, hi_a);
            if v_acc != v {
                iv.acceleration = true;
            }
            let q_next = (q + v_acc * dt).clamp(l.position_min, l.position_max);
            q_out.push(q_next);
            v_out.push((q_next - q) / dt);
        }
        (q_out, v_out)
    }
}
