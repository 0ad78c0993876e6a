//! Task success: the instantaneous predicate of a task file (`success`, `touch_distance_m`,
//! `touch_contact`, `release`) and a [`SuccessTracker`] that reports success once that predicate
//! (with the target at rest, when `settle_s > 0`) has held at every check for `settle_s` of
//! simulated time. Every caller (the expert's episodes, [`crate::SimRobot::task_success`] under
//! evaluations, `sim run` and `dataset record`) checks through a tracker, so they all share one
//! definition.
//!
//! Contact ("released", "touching") is read from rapier's narrow phase: the target cube's
//! collider has a contact point with a robot link's collider at most [`CONTACT_GAP_M`] apart
//! (contact points are only generated within the solver's prediction distance, 0.2 mm here).
//! The defaults (`settle_s = 0`, `release = false`, `touch_contact = false`) are the first-instant
//! predicate of the version-1 task files.

use nalgebra::{Point3, Vector3};

use crate::task::{SuccessKind, TaskSpec};
use crate::{SimError, SimWorld};

/// Largest gap between two colliders that counts as contact, metres.
pub const CONTACT_GAP_M: f64 = 0.001;

/// What counts as success, from a task file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SuccessRule {
    /// The predicate.
    pub kind: SuccessKind,
    /// `touch`: TCP within this distance of the cube's surface, metres.
    pub touch_distance_m: f64,
    /// `touch`: contact between the cube and any robot link also counts.
    pub touch_contact: bool,
    /// The cube must not be in contact with any robot link.
    pub release: bool,
    /// The predicate must hold, with the cube at rest, for this long, seconds (0: first instant).
    pub settle_s: f64,
    /// At rest: the fastest point of the cube moves slower than this, m/s.
    pub rest_speed_m_s: f64,
}

impl SuccessRule {
    /// The rule of a task file.
    pub fn of(task: &TaskSpec) -> Self {
        Self {
            kind: task.success,
            touch_distance_m: task.touch_distance_m,
            touch_contact: task.touch_contact,
            release: task.release,
            settle_s: task.settle_s,
            rest_speed_m_s: task.rest_speed_m_s,
        }
    }

    /// The version-1 rule: `kind` at the first instant it holds.
    pub fn instant(kind: SuccessKind, touch_distance_m: f64) -> Self {
        Self {
            kind,
            touch_distance_m,
            touch_contact: false,
            release: false,
            settle_s: 0.0,
            rest_speed_m_s: 0.01,
        }
    }

    /// Whether the predicate holds now (the rest condition included when `settle_s > 0`).
    pub fn holds(&self, world: &SimWorld) -> Result<bool, SimError> {
        let target = world
            .object_pose(0)
            .ok_or_else(|| err("no target object"))?;
        let c = target.translation.vector;
        let h = world.objects[0].size / 2.0;
        let placed = match self.kind {
            SuccessKind::Touch => {
                let ee = world.ee_pose()?.translation.vector;
                // Distance from the TCP to the cube (a box), in the cube's frame.
                let p = target.inverse() * Point3::from(ee);
                let d = Vector3::new(
                    (p.x.abs() - h).max(0.0),
                    (p.y.abs() - h).max(0.0),
                    (p.z.abs() - h).max(0.0),
                )
                .norm();
                d <= self.touch_distance_m
                    || (self.touch_contact && world.object_touches_robot(0, CONTACT_GAP_M))
            }
            SuccessKind::InZone => {
                let ep = world.episode.as_ref().ok_or_else(|| err("no episode"))?;
                let zone = ep
                    .goal_zone
                    .and_then(|z| ep.zones.get(z))
                    .ok_or_else(|| err("no goal zone"))?;
                zone.contains(c.x, c.y) && c.z < h + 0.01
            }
            SuccessKind::InBowl => {
                let ep = world.episode.as_ref().ok_or_else(|| err("no episode"))?;
                let (xy, b) = ep.bowl.ok_or_else(|| err("no bowl"))?;
                let inside =
                    (c.x - xy[0]).abs() < b.inner_half && (c.y - xy[1]).abs() < b.inner_half;
                // Resting on the bowl's floor, not held above it.
                inside && c.z < 0.004 + h + 0.01
            }
        };
        if !placed {
            return Ok(false);
        }
        if self.release && world.object_touches_robot(0, CONTACT_GAP_M) {
            return Ok(false);
        }
        if self.settle_s > 0.0 {
            let speed = world
                .object_point_speed(0)
                .ok_or_else(|| err("no target object"))?;
            if speed >= self.rest_speed_m_s {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn err(msg: &str) -> SimError {
    SimError::Robot(msg.to_owned())
}

/// Success over time: call [`SuccessTracker::update`] at each check (once per control step);
/// it is true once [`SuccessRule::holds`] has been true at every check for `settle_s` of
/// simulated time. A check where it does not hold starts the wait again.
#[derive(Debug, Clone, PartialEq)]
pub struct SuccessTracker {
    /// The rule.
    pub rule: SuccessRule,
    /// Simulated time of the first check of the current unbroken run where the rule held.
    since_s: Option<f64>,
}

impl SuccessTracker {
    /// A tracker for a task file's rule.
    pub fn new(task: &TaskSpec) -> Self {
        Self::with_rule(SuccessRule::of(task))
    }

    /// A tracker for a rule.
    pub fn with_rule(rule: SuccessRule) -> Self {
        Self {
            rule,
            since_s: None,
        }
    }

    /// Checks the world at its simulated time; true when the rule has held for `settle_s`.
    pub fn update(&mut self, world: &SimWorld) -> Result<bool, SimError> {
        self.update_at(world, world.time_s)
    }

    /// [`Self::update`] at simulated time `t_s`.
    pub fn update_at(&mut self, world: &SimWorld, t_s: f64) -> Result<bool, SimError> {
        if !self.rule.holds(world)? {
            self.since_s = None;
            return Ok(false);
        }
        let since = *self.since_s.get_or_insert(t_s);
        // Half a physics step of slack: check times are whole physics steps.
        Ok(t_s - since >= self.rule.settle_s - 0.5 / crate::PHYSICS_HZ)
    }

    /// How long the rule has held so far, seconds (None: it does not hold now).
    pub fn held_for_s(&self, t_s: f64) -> Option<f64> {
        self.since_s.map(|s| t_s - s)
    }

    /// Forgets the current run (a new episode).
    pub fn reset(&mut self) {
        self.since_s = None;
    }
}
