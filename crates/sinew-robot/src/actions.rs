//! Actions to joint position targets, for each action space:
//!
//! - `joint_position`: one absolute position per robot.toml joint (gripper included);
//! - `joint_delta`: one delta per joint, added to the reference joint positions;
//! - `ee_delta`: `[dx, dy, dz, droll, dpitch, dyaw, gripper]` in the base frame (m, rad;
//!   the rotation `Rz(dyaw) Ry(dpitch) Rx(droll)` is applied in the base frame, before the
//!   current orientation), mapped to joints by IK from the reference positions (arms with
//!   fewer than six joints keep position and approach axis, and rotation about the approach
//!   axis is left free); the gripper
//!   value is an opening in [0, 1] (1 = open, robot.toml's `gripper.open`). Six values
//!   (no gripper) leave the gripper where it is.
//!
//! The targets are not limited here: the runtime's safety layer clamps every command.

use nalgebra::{Isometry3, Translation3, UnitQuaternion, Vector3};
use sinew_core::ActionKind;

use crate::{IkOptions, IkTarget, RobotDescription, RobotError};

/// Joint targets of one action.
#[derive(Debug, Clone, PartialEq)]
pub struct JointTargets {
    /// Target position per robot.toml joint (rad or m).
    pub q: Vec<f64>,
    /// For end-effector actions: remaining IK error (position m, orientation rad); a target
    /// out of reach gives the closest reachable pose and a non-zero error.
    pub ik_error: Option<(f64, f64)>,
}

/// Maps actions of one kind to joint targets for one robot.
#[derive(Debug, Clone)]
pub struct ActionDecoder<'a> {
    robot: &'a RobotDescription,
    kind: ActionKind,
    ik: IkOptions,
}

impl<'a> ActionDecoder<'a> {
    /// A decoder for `kind` actions on `robot`.
    pub fn new(robot: &'a RobotDescription, kind: ActionKind) -> Self {
        Self {
            robot,
            kind,
            ik: IkOptions::default(),
        }
    }

    /// Values per action this decoder accepts.
    pub fn action_dims(&self) -> Vec<usize> {
        match self.kind {
            ActionKind::JointPosition | ActionKind::JointDelta => vec![self.robot.dof()],
            ActionKind::EeDelta => vec![6, 7],
        }
    }

    /// Joint targets for `action`, relative to `q_reference` (the measured or last commanded
    /// positions, one per robot.toml joint).
    pub fn decode(&self, action: &[f64], q_reference: &[f64]) -> Result<JointTargets, RobotError> {
        let dof = self.robot.dof();
        if q_reference.len() != dof {
            return Err(RobotError::JointCount {
                expected: dof,
                got: q_reference.len(),
            });
        }
        if !self.action_dims().contains(&action.len()) {
            return Err(RobotError::Action(format!(
                "{} action has {} values, expected {}",
                self.kind,
                action.len(),
                self.action_dims()
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        if let Some(i) = action.iter().position(|v| !v.is_finite()) {
            return Err(RobotError::NonFinite {
                what: format!("action value {i}"),
            });
        }
        match self.kind {
            ActionKind::JointPosition => Ok(JointTargets {
                q: action.to_vec(),
                ik_error: None,
            }),
            ActionKind::JointDelta => Ok(JointTargets {
                q: q_reference.iter().zip(action).map(|(q, d)| q + d).collect(),
                ik_error: None,
            }),
            ActionKind::EeDelta => self.decode_ee(action, q_reference),
        }
    }

    fn decode_ee(&self, action: &[f64], q_ref: &[f64]) -> Result<JointTargets, RobotError> {
        let base_from_ee = self.robot.ee_pose(q_ref)?;
        let rot = UnitQuaternion::from_euler_angles(action[3], action[4], action[5]);
        let target = Isometry3::from_parts(
            Translation3::from(
                base_from_ee.translation.vector + Vector3::new(action[0], action[1], action[2]),
            ),
            rot * base_from_ee.rotation,
        );
        // Arms with fewer than six joints cannot meet every orientation: they keep the
        // position and the approach axis, and rotation about that axis is left free.
        let ik_target = if self.robot.config.arm_indices().len() >= 6 {
            IkTarget::Pose(target)
        } else {
            let axis = self.robot.approach_axis();
            IkTarget::PositionAxis {
                position: target.translation.vector,
                axis_in_link: axis,
                direction_in_base: target.rotation * axis,
            }
        };
        let sol = self.robot.ik(ik_target, q_ref, &self.ik)?;
        let mut q = sol.q;
        if let (Some(g), Some(cfg)) = (
            self.robot.config.gripper_index(),
            &self.robot.config.gripper,
        ) {
            if let Some(open) = action.get(6) {
                let open = open.clamp(0.0, 1.0);
                q[g] = cfg.closed + open * (cfg.open - cfg.closed);
            } else {
                q[g] = q_ref[g];
            }
        }
        Ok(JointTargets {
            q,
            ik_error: Some((sol.position_error, sol.orientation_error)),
        })
    }
}
