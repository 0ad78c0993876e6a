//! Key names: built here and nowhere else (the bus, the recorder and the replay read them from
//! this module).
//!
//! Keys follow zenoh-bridge-ros2dds: the ROS topic name without its leading slash, robot
//! namespace first (`/so101/joint_states` is `so101/joint_states`). A ROS 2 robot behind that
//! bridge therefore publishes and subscribes on exactly the keys Sinew uses, and an MCAP
//! recording names its channels by the ROS topic of each key ([`topic_of_key`]).

use crate::MessageKind;

/// A robot namespace that cannot name keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid robot namespace {namespace:?}: a robot namespace is /-separated chunks of letters, digits, '_' and '-'")]
pub struct InvalidNamespace {
    /// The namespace given.
    pub namespace: String,
}

/// The keys of one robot, under its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotKeys {
    namespace: String,
}

impl RobotKeys {
    /// Keys under `namespace` (e.g. `so101`). A namespace is one or more `/`-separated chunks
    /// of ASCII letters, digits, `_` and `-`.
    pub fn new(namespace: &str) -> Result<Self, InvalidNamespace> {
        let ns = namespace.trim_matches('/');
        let valid = !ns.is_empty()
            && ns.split('/').all(|chunk| {
                !chunk.is_empty()
                    && chunk
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !valid {
            return Err(InvalidNamespace {
                namespace: namespace.to_owned(),
            });
        }
        Ok(Self {
            namespace: ns.to_owned(),
        })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `sensor_msgs/JointState`, measured: `<ns>/joint_states`.
    pub fn joint_states(&self) -> String {
        format!("{}/joint_states", self.namespace)
    }

    /// `trajectory_msgs/JointTrajectory`, commanded: `<ns>/joint_commands`.
    pub fn joint_commands(&self) -> String {
        format!("{}/joint_commands", self.namespace)
    }

    /// `std_msgs/String`, the language instruction: `<ns>/instruction`.
    pub fn instruction(&self) -> String {
        format!("{}/instruction", self.namespace)
    }

    /// `sensor_msgs/Image` (colour): `<ns>/camera/<camera>/image_raw`.
    pub fn camera_image(&self, camera: &str) -> String {
        format!("{}/camera/{camera}/image_raw", self.namespace)
    }

    /// `sensor_msgs/Image` (depth, `32FC1` metres): `<ns>/camera/<camera>/depth/image_raw`.
    pub fn camera_depth(&self, camera: &str) -> String {
        format!("{}/camera/{camera}/depth/image_raw", self.namespace)
    }

    /// `sensor_msgs/CompressedImage`: `<ns>/camera/<camera>/image_raw/compressed`.
    pub fn camera_compressed(&self, camera: &str) -> String {
        format!("{}/camera/{camera}/image_raw/compressed", self.namespace)
    }

    /// `std_msgs/String`, the e-stop: `engage` latches a hold, `release` lifts it:
    /// `<ns>/estop`.
    pub fn estop(&self) -> String {
        format!("{}/estop", self.namespace)
    }

    /// `std_msgs/String`, the runtime's telemetry as JSON (1 Hz): `<ns>/sinew/telemetry`.
    pub fn telemetry(&self) -> String {
        format!("{}/sinew/telemetry", self.namespace)
    }

    /// `std_msgs/String`, the serving side's telemetry as JSON (1 Hz): commands applied and
    /// rejected, and how often the robot's own limits changed them:
    /// `<ns>/sinew/serve/telemetry`.
    pub fn serve_telemetry(&self) -> String {
        format!("{}/sinew/serve/telemetry", self.namespace)
    }

    /// `trajectory_msgs/JointTrajectory`, the simulator's scripted expert's next target (an
    /// oracle for testing the loop without a model): `<ns>/sim/expert_action`.
    pub fn sim_expert_action(&self) -> String {
        format!("{}/sim/expert_action", self.namespace)
    }

    /// `trajectory_msgs/JointTrajectory`, each predicted action chunk in the policy's action
    /// space (named by `header.frame_id`), one point per policy step: `<ns>/sinew/action_chunk`.
    pub fn action_chunk(&self) -> String {
        format!("{}/sinew/action_chunk", self.namespace)
    }

    /// `std_msgs/String`, the runtime's events as JSON (`sinew_core::events::Event`: steps,
    /// inferences with tokens and timings, safety interventions, holds, the outcome):
    /// `<ns>/sinew/events`.
    pub fn events(&self) -> String {
        format!("{}/sinew/events", self.namespace)
    }

    /// `std_msgs/String`, the simulator's scene as JSON (`sinew_core::events::Scene`):
    /// `<ns>/sim/scene`.
    pub fn sim_scene(&self) -> String {
        format!("{}/sim/scene", self.namespace)
    }

    /// A key expression matching every key of this robot: `<ns>/**`.
    pub fn all(&self) -> String {
        format!("{}/**", self.namespace)
    }
}

/// The zenoh key of a ROS topic name, as zenoh-bridge-ros2dds maps it
/// (`/so101/joint_states` -> `so101/joint_states`).
pub fn key_of_topic(topic: &str) -> String {
    topic.trim_start_matches('/').to_owned()
}

/// The ROS topic name of a bus key (`so101/joint_states` -> `/so101/joint_states`); MCAP
/// recordings name their channels this way.
pub fn topic_of_key(key: &str) -> String {
    format!("/{}", key.trim_start_matches('/'))
}

/// The message type carried on `key`, inferred from its last chunks by the conventions above.
pub fn kind_for_key(key: &str) -> Option<MessageKind> {
    let last = key.rsplit('/').next()?;
    match last {
        "joint_states" => Some(MessageKind::JointState),
        "joint_commands" | "joint_trajectory" | "expert_action" | "action_chunk" => {
            Some(MessageKind::JointTrajectory)
        }
        "image_raw" | "image_rect" | "image_rect_color" | "image" => Some(MessageKind::Image),
        "compressed" => Some(MessageKind::CompressedImage),
        "instruction" | "estop" | "telemetry" | "events" | "scene" => Some(MessageKind::String),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_ros2dds_bridge() {
        let k = RobotKeys::new("/so101/").expect("valid");
        assert_eq!(k.joint_states(), key_of_topic("/so101/joint_states"));
        assert_eq!(k.joint_commands(), "so101/joint_commands");
        assert_eq!(k.instruction(), "so101/instruction");
        assert_eq!(k.camera_image("front"), "so101/camera/front/image_raw");
        assert_eq!(
            kind_for_key(&k.camera_depth("wrist")),
            Some(MessageKind::Image)
        );
        assert_eq!(
            kind_for_key(&k.camera_compressed("front")),
            Some(MessageKind::CompressedImage)
        );
        assert_eq!(
            kind_for_key(&k.joint_states()),
            Some(MessageKind::JointState)
        );
        assert_eq!(
            kind_for_key(&k.joint_commands()),
            Some(MessageKind::JointTrajectory)
        );
        assert_eq!(kind_for_key("so101/unknown"), None);
        assert_eq!(topic_of_key(&k.joint_states()), "/so101/joint_states");
        assert_eq!(
            key_of_topic(&topic_of_key("lab/arm/estop")),
            "lab/arm/estop"
        );
    }

    #[test]
    fn bad_namespaces_are_rejected() {
        for ns in ["", "a//b", "so 101", "so101/*", "x/**"] {
            assert!(RobotKeys::new(ns).is_err(), "{ns:?}");
        }
        assert!(RobotKeys::new("lab/arm-2").is_ok());
    }
}
