//! The scripted expert as a [`Policy`]: it reads the simulator's privileged scene from the
//! observation (the pose of the named object, the joint targets), so it runs through the same
//! loop as a learned policy, on a live simulator or on a recording of one.

use nalgebra::{Isometry3, Quaternion, Translation3, UnitQuaternion};
use sinew_core::{ActionChunk, ActionKind, Observation, Policy, PolicyError, PolicySpec};
use sinew_robot::RobotDescription;

use crate::expert::{Expert, ExpertView};
use crate::task::{Episode, TaskSpec};

/// A task's scripted expert for one episode.
pub struct ExpertPolicy {
    expert: Expert,
    robot: RobotDescription,
    episode: Episode,
    spec: PolicySpec,
}

impl std::fmt::Debug for ExpertPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpertPolicy")
            .field("phase", &self.expert.phase_name())
            .field("instruction", &self.episode.instruction)
            .finish()
    }
}

/// What an expert of `task` reads and produces on `robot`.
pub fn expert_spec(robot: &RobotDescription, task: &TaskSpec) -> PolicySpec {
    let n = robot.config.joints.len();
    PolicySpec {
        architecture: "expert".into(),
        cameras: Vec::new(),
        image_size: (0, 0),
        uses_state: true,
        state_dim: n,
        action_kind: ActionKind::JointPosition,
        action_dim: n,
        chunk_length: 1,
        control_rate_hz: task.control_rate_hz,
        action_tokenizer: "none".into(),
        n_action_steps: None,
    }
}

/// `world_from_item` of a scene item as an isometry (exactly the pose the simulator packed).
fn pose_of(p: &[f64; 7]) -> Isometry3<f64> {
    Isometry3::from_parts(
        Translation3::new(p[0], p[1], p[2]),
        UnitQuaternion::new_unchecked(Quaternion::new(p[6], p[3], p[4], p[5])),
    )
}

impl ExpertPolicy {
    /// The expert of `task` for `episode`, from the start.
    pub fn new(robot: &RobotDescription, task: &TaskSpec, episode: Episode) -> Self {
        Self {
            expert: Expert::for_task(task),
            robot: robot.clone(),
            episode,
            spec: expert_spec(robot, task),
        }
    }

    /// The expert of `task` taking over from whatever drove before, its phase read from the
    /// observation (see [`Expert::taking_over`]).
    pub fn taking_over(
        robot: &RobotDescription,
        task: &TaskSpec,
        episode: Episode,
        observation: &Observation,
    ) -> Result<Self, PolicyError> {
        let mut p = Self::new(robot, task, episode);
        p.expert = Expert::taking_over_task(task, &view_of(robot, &p.episode, observation)?)
            .map_err(|e| PolicyError::Observation(e.to_string()))?;
        Ok(p)
    }
}

/// What the expert reads, from an observation's joints and privileged scene.
fn view_of<'a>(
    robot: &'a RobotDescription,
    episode: &'a Episode,
    obs: &Observation,
) -> Result<ExpertView<'a>, PolicyError> {
    let privileged = obs.privileged.as_ref().ok_or_else(|| {
        PolicyError::Observation(
            "the scripted expert reads a simulator's privileged scene, and this robot has none"
                .into(),
        )
    })?;
    let target = episode.objects.first();
    let target_pose = target.and_then(|o| {
        privileged
            .scene
            .items
            .iter()
            .find(|i| i.name == o.name)
            .map(|i| pose_of(&i.world_from_item))
    });
    Ok(ExpertView {
        robot,
        episode: Some(episode),
        q: obs.joint_positions.clone(),
        targets: privileged.joint_targets.clone(),
        target_pose,
        target_size: target.map_or(0.0, |o| o.size),
    })
}

impl Policy for ExpertPolicy {
    fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    fn infer(&mut self, observation: &Observation) -> Result<ActionChunk, PolicyError> {
        let dt_s = 1.0 / self.spec.control_rate_hz;
        let view = view_of(&self.robot, &self.episode, observation)?;
        let action = self
            .expert
            .act_on(&view, dt_s)
            .map_err(|e| PolicyError::Observation(e.to_string()))?;
        // Forward kinematics only when someone reads the log (datasets run this per step).
        if let Some(Ok(ee)) = tracing::enabled!(tracing::Level::DEBUG).then(|| view.ee_pose()) {
            let p = ee.translation.vector;
            tracing::debug!(
                phase = self.expert.phase_name(),
                tcp_in_base_m = ?[p.x, p.y, p.z],
                cube_in_base_m = ?view.target_pose.map(|c| c.translation.vector.data.0[0]),
                "expert step"
            );
        }
        Ok(ActionChunk {
            kind: Some(ActionKind::JointPosition),
            actions: vec![action.clone()],
            observation_stamp_s: observation.stamp_s,
            label: Some(action),
            ..Default::default()
        })
    }
}
