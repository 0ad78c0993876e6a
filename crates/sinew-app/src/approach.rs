//! Which object the arm acted on first: a tap that, at every policy step of a simulated episode,
//! measures the distance from the tool centre point (forward kinematics of the measured joints)
//! to the surface of every cube of the privileged scene and how far each cube has moved from
//! where it started, and keeps the first cube the tool came within [`APPROACH_M`] of or that
//! moved by more than [`MOVED_M`] (pushed or picked up). Passing near a cube on the way to
//! another does not count. The instruction-swap figure (`sinew eval --swap`) is the share of
//! episodes whose first cube is the one the instruction names.

use nalgebra::{Isometry3, Point3, Quaternion, Translation3, UnitQuaternion, Vector3};
use sinew_core::events::{Scene, Shape};
use sinew_robot::RobotDescription;
use sinew_runtime::{Record, Tap};

/// How close the tool centre point must come to a cube's surface to count as acting on it, m.
pub const APPROACH_M: f64 = 0.01;

/// How far a cube must move from where it started to count as acted on, m.
pub const MOVED_M: f64 = 0.01;

/// The tap (see the module documentation).
#[derive(Debug)]
pub struct ApproachTap<'a> {
    robot: &'a RobotDescription,
    joints: Vec<String>,
    q: Option<Vec<f64>>,
    /// Where each cube started (its first scene), by name.
    start: Vec<(String, Vector3<f64>)>,
    first: Option<String>,
    /// The closest the tool came to each cube's surface, m, by colour.
    closest: Vec<(String, f64)>,
}

impl<'a> ApproachTap<'a> {
    /// A tap for episodes of `robot`.
    pub fn new(robot: &'a RobotDescription) -> Self {
        Self {
            robot,
            joints: robot.joint_names(),
            q: None,
            start: Vec::new(),
            first: None,
            closest: Vec::new(),
        }
    }

    /// The colour of the first cube the arm acted on (`cube_<colour>` without the prefix).
    pub fn first(&self) -> Option<&str> {
        self.first.as_deref()
    }

    /// The closest the tool centre point came to the surface of the cube of `colour`, m
    /// (`None` when no scene showed that cube).
    pub fn closest(&self, colour: &str) -> Option<f64> {
        self.closest
            .iter()
            .find(|(c, _)| c == colour)
            .map(|&(_, d)| d)
    }

    fn check(&mut self, scene: &Scene) {
        let p_in_world = self
            .q
            .as_ref()
            .and_then(|q| self.robot.ee_pose(q).ok())
            // The simulated robot's base is the world origin.
            .map(|base_from_ee| Point3::from(base_from_ee.translation.vector));
        let mut best: Option<(f64, &str)> = None;
        for item in &scene.items {
            let Some(colour) = item.name.strip_prefix("cube_") else {
                continue;
            };
            let Shape::Box { half_extents_m: h } = item.shape;
            let [x, y, z, qx, qy, qz, qw] = item.world_from_item;
            let centre = Vector3::new(x, y, z);
            let moved = match self.start.iter().find(|(n, _)| n == &item.name) {
                Some((_, c0)) => (centre - c0).norm() > MOVED_M,
                None => {
                    self.start.push((item.name.clone(), centre));
                    false
                }
            };
            let world_from_item = Isometry3::from_parts(
                Translation3::new(x, y, z),
                UnitQuaternion::from_quaternion(Quaternion::new(qw, qx, qy, qz)),
            );
            let d = p_in_world.map_or(f64::INFINITY, |p| {
                let p_in_item = world_from_item.inverse() * p;
                Vector3::new(
                    (p_in_item.x.abs() - h[0]).max(0.0),
                    (p_in_item.y.abs() - h[1]).max(0.0),
                    (p_in_item.z.abs() - h[2]).max(0.0),
                )
                .norm()
            });
            match self.closest.iter_mut().find(|(c, _)| c == colour) {
                Some((_, m)) => *m = m.min(d),
                None => self.closest.push((colour.to_owned(), d)),
            }
            // A moved cube counts as touched; of several at once, the nearest to the tool.
            if (moved || d <= APPROACH_M) && best.is_none_or(|(b, _)| d < b) {
                best = Some((d, colour));
            }
        }
        if self.first.is_none() {
            self.first = best.map(|(_, c)| c.to_owned());
        }
    }
}

impl Tap for ApproachTap<'_> {
    fn record(&mut self, _log_time_ns: u64, record: Record<'_>) {
        match record {
            Record::JointState(js) => {
                let q: Option<Vec<f64>> = self
                    .joints
                    .iter()
                    .map(|j| {
                        js.name
                            .iter()
                            .position(|n| n == j)
                            .and_then(|i| js.position.get(i).copied())
                    })
                    .collect();
                if q.is_some() {
                    self.q = q;
                }
            }
            Record::Scene(scene) => self.check(scene),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use sinew_core::events::SceneItem;
    use sinew_msgs::JointState;

    use super::*;
    use crate::resolve::load_robot;

    fn cube(colour: &str, centre: [f64; 3]) -> SceneItem {
        SceneItem {
            name: format!("cube_{colour}"),
            shape: Shape::Box {
                half_extents_m: [0.015; 3],
            },
            rgb: [0.5; 3],
            world_from_item: [centre[0], centre[1], centre[2], 0.0, 0.0, 0.0, 1.0],
            movable: true,
        }
    }

    #[test]
    fn the_first_cube_acted_on_is_the_one_touched_or_moved_not_one_passed() {
        let robot = load_robot("so101").expect("robot");
        let q = robot.home();
        let tcp = robot.ee_pose(&q).expect("fk").translation.vector;
        let mut tap = ApproachTap::new(&robot);
        tap.record(
            0,
            Record::JointState(&JointState {
                name: robot.joint_names(),
                position: q.clone(),
                ..JointState::default()
            }),
        );
        // The tool 1.5 cm from red's face and far from blue: nothing yet.
        let red = [tcp.x + 0.03, tcp.y, tcp.z];
        let blue = [tcp.x, tcp.y + 0.2, tcp.z];
        let scene = |red: [f64; 3], blue: [f64; 3]| Scene {
            items: vec![cube("red", red), cube("blue", blue)],
        };
        tap.record(0, Record::Scene(&scene(red, blue)));
        assert_eq!(tap.first(), None);
        // Blue is pushed 2 cm (by something the tool is far from): blue was acted on first.
        tap.record(
            0,
            Record::Scene(&scene(red, [blue[0] + 0.02, blue[1], blue[2]])),
        );
        assert_eq!(tap.first(), Some("blue"));
        // The first stays the first.
        tap.record(0, Record::Scene(&scene([tcp.x + 0.02, tcp.y, tcp.z], blue)));
        assert_eq!(tap.first(), Some("blue"));
        // The closest approach keeps counting after the first: red's face came within 5 mm.
        let red_mm = tap.closest("red").expect("red seen") * 1e3;
        assert!((red_mm - 5.0).abs() < 1e-6, "{red_mm}");
        assert!(tap.closest("blue").expect("blue seen") > 0.1);
        assert_eq!(tap.closest("green"), None);

        // Another episode: the tool within 5 mm of red's face.
        let mut tap = ApproachTap::new(&robot);
        tap.record(
            0,
            Record::JointState(&JointState {
                name: robot.joint_names(),
                position: q,
                ..JointState::default()
            }),
        );
        tap.record(0, Record::Scene(&scene([tcp.x + 0.02, tcp.y, tcp.z], blue)));
        assert_eq!(tap.first(), Some("red"));
    }
}
