//! The simulated world: a table, the robot as a rapier multibody with PD position motors, and
//! the task's objects. The world is data; [`SimWorld::step`] advances it.

use std::collections::HashMap;

use nalgebra::{Isometry3, Point3, Quaternion, Translation3, UnitQuaternion};
use rapier3d::prelude::*;
use rapier3d_urdf::{UrdfLoaderOptions, UrdfMultibodyOptions, UrdfRobot};
use sinew_robot::RobotDescription;

use crate::render::{self, Frame, Intrinsics, Mesh};
use crate::task::{color_rgb, Episode};
use crate::SimError;

/// Physics rate, Hz.
pub const PHYSICS_HZ: f64 = 240.0;
/// Table top height in the world (the robot base sits on it), metres.
const TABLE_TOP_Z: f32 = 0.0;

/// A robot joint driven by a motor.
#[derive(Debug, Clone, Copy)]
struct MotorJoint {
    handle: MultibodyJointHandle,
    axis: JointAxis,
    prismatic: bool,
}

/// One object in the world.
#[derive(Debug, Clone)]
pub struct SimObject {
    /// Name, e.g. `cube_red`.
    pub name: String,
    /// Colour name.
    pub color: String,
    /// Edge length, metres.
    pub size: f64,
    /// Rigid body.
    pub body: RigidBodyHandle,
}

/// Simulated robot, table and objects.
pub struct SimWorld {
    /// The rapier world.
    pub physics: PhysicsWorld,
    /// The robot description.
    pub robot: RobotDescription,
    joints: Vec<MotorJoint>,
    /// Mimic joints: (motor, index of the source joint in `joints`).
    mimics: Vec<(MotorJoint, usize)>,
    /// Body of each URDF link that exists as a rigid body.
    link_bodies: HashMap<String, RigidBodyHandle>,
    /// Objects of the episode (target first).
    pub objects: Vec<SimObject>,
    /// Render meshes: (collider, mesh in collider frame).
    meshes: Vec<(ColliderHandle, Mesh)>,
    /// Render-only meshes fixed in the world (zone markings).
    static_meshes: Vec<(Mesh, Isometry3<f32>)>,
    /// The episode (objects, zones, bowl).
    pub episode: Option<Episode>,
    targets: Vec<f64>,
    /// Simulated time, seconds.
    pub time_s: f64,
    /// Physics steps taken.
    pub steps: u64,
    /// Commands rejected (wrong length, NaN) so far.
    pub rejected_commands: u64,
    /// Command values clamped into limits so far.
    pub clamped_values: u64,
}

impl std::fmt::Debug for SimWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimWorld")
            .field("robot", &self.robot.config.name)
            .field("time_s", &self.time_s)
            .finish()
    }
}

fn to_pose(iso: &Isometry3<f64>) -> Pose {
    let t = iso.translation.vector;
    let q = iso.rotation.coords;
    Pose::from_parts(
        Vector::new(t.x as f32, t.y as f32, t.z as f32),
        Rotation::from_xyzw(q.x as f32, q.y as f32, q.z as f32, q.w as f32),
    )
}

/// A rapier pose as an nalgebra isometry (f64).
pub fn from_pose(p: &Pose) -> Isometry3<f64> {
    let t = p.translation;
    let r = p.rotation;
    Isometry3::from_parts(
        Translation3::new(t.x as f64, t.y as f64, t.z as f64),
        UnitQuaternion::from_quaternion(Quaternion::new(
            r.w as f64, r.x as f64, r.y as f64, r.z as f64,
        )),
    )
}

fn iso32(p: &Pose) -> Isometry3<f32> {
    let t = p.translation;
    let r = p.rotation;
    Isometry3::from_parts(
        Translation3::new(t.x, t.y, t.z),
        UnitQuaternion::from_quaternion(Quaternion::new(r.w, r.x, r.y, r.z)),
    )
}

fn mesh_of(shape: &dyn Shape, color: [f32; 3]) -> Option<Mesh> {
    let (verts, tris): (Vec<Vector>, Vec<[u32; 3]>) = if let Some(c) = shape.as_cuboid() {
        c.to_trimesh()
    } else if let Some(c) = shape.as_cylinder() {
        c.to_trimesh(24)
    } else if let Some(b) = shape.as_ball() {
        b.to_trimesh(16, 8)
    } else if let Some(c) = shape.as_capsule() {
        c.to_trimesh(16, 8)
    } else if let Some(m) = shape.as_trimesh() {
        (m.vertices().to_vec(), m.indices().to_vec())
    } else if let Some(c) = shape.as_convex_polyhedron() {
        let (v, t) = c.to_trimesh();
        (
            v.into_iter().map(|p| Vector::new(p.x, p.y, p.z)).collect(),
            t,
        )
    } else {
        return None;
    };
    Some(Mesh {
        vertices: verts
            .into_iter()
            .map(|v| Point3::new(v.x, v.y, v.z))
            .collect(),
        triangles: tris,
        color,
    })
}

/// The colour of each URDF link from its first visual's material (grey when none).
fn link_colors(urdf: &urdf_rs::Robot) -> HashMap<String, [f32; 3]> {
    let named: HashMap<&str, [f32; 3]> = urdf
        .materials
        .iter()
        .filter_map(|m| {
            m.color.as_ref().map(|c| {
                (
                    m.name.as_str(),
                    [c.rgba.0[0] as f32, c.rgba.0[1] as f32, c.rgba.0[2] as f32],
                )
            })
        })
        .collect();
    urdf.links
        .iter()
        .map(|l| {
            let c = l
                .visual
                .iter()
                .find_map(|v| v.material.as_ref())
                .and_then(|m| {
                    m.color
                        .as_ref()
                        .map(|c| [c.rgba.0[0] as f32, c.rgba.0[1] as f32, c.rgba.0[2] as f32])
                        .or_else(|| named.get(m.name.as_str()).copied())
                })
                .unwrap_or([0.6, 0.6, 0.62]);
            (l.name.clone(), c)
        })
        .collect()
}

impl SimWorld {
    /// Builds the world for `episode` (or an empty table when `None`), with the robot at `q0`
    /// (its home when `None`). Bodies are inserted in a fixed order (table, robot, objects,
    /// bowl), so a seed gives the same world every time.
    pub fn new(
        robot: RobotDescription,
        episode: Option<&Episode>,
        q0: Option<&[f64]>,
    ) -> Result<Self, SimError> {
        let mut physics = new_physics();
        let mut meshes = Vec::new();
        // Table: a slab whose top is at z = 0.
        let (table, _) = physics.insert(
            RigidBodyBuilder::fixed().translation(Vector::new(0.3, 0.0, TABLE_TOP_Z - 0.025)),
            ColliderBuilder::cuboid(0.8, 0.8, 0.025).friction(
                episode.map_or(crate::task::DEFAULT_TABLE_FRICTION, |e| e.table_friction) as f32,
            ),
        );
        let parts = insert_robot(&mut physics, &robot, &mut meshes)?;
        let objects = match episode {
            Some(ep) => insert_objects(&mut physics, ep, &mut meshes),
            None => Vec::new(),
        };
        let mut static_meshes = Vec::new();
        if let Some(ep) = episode {
            static_meshes = zone_meshes(ep);
            if let Some((c, b)) = &ep.bowl {
                insert_bowl(&mut physics, *c, b, &mut meshes);
            }
        }
        // Table mesh last-but-visible: colour it wood-like.
        for (h, co) in physics.colliders.iter() {
            if co.parent() == Some(table) {
                if let Some(m) = mesh_of(co.shape(), [0.62, 0.50, 0.36]) {
                    meshes.push((h, m));
                }
            }
        }
        let q0: Vec<f64> = q0.map(|q| q.to_vec()).unwrap_or_else(|| robot.home());
        if q0.len() != parts.joints.len() {
            return Err(SimError::Robot(format!(
                "initial configuration has {} values for {} joints",
                q0.len(),
                parts.joints.len()
            )));
        }
        let mut world = Self {
            physics,
            robot,
            joints: parts.joints,
            mimics: parts.mimics,
            link_bodies: parts.link_bodies,
            objects,
            meshes,
            static_meshes,
            episode: episode.cloned(),
            targets: q0.clone(),
            time_s: 0.0,
            steps: 0,
            rejected_commands: 0,
            clamped_values: 0,
        };
        world.set_configuration(&q0);
        world.apply_motors();
        Ok(world)
    }

    /// Teleports the robot to `q` (joint positions, zero velocities).
    fn set_configuration(&mut self, q: &[f64]) {
        let PhysicsWorld {
            bodies,
            multibody_joints,
            ..
        } = &mut self.physics;
        let mut all: Vec<(MotorJoint, f64)> =
            self.joints.iter().copied().zip(q.iter().copied()).collect();
        for (m, src) in &self.mimics {
            all.push((*m, q[*src]));
        }
        let mut root = None;
        for (mj, v) in all {
            if let Some((mb, link_id)) = multibody_joints.get_mut(mj.handle) {
                if let Some(link) = mb.link_mut(link_id) {
                    let idx = if mj.prismatic { 0 } else { 3 };
                    let cur = link.joint().coords()[idx];
                    link.joint.apply_displacement(&[v as f32 - cur]);
                }
                root = Some(mj.handle);
            }
        }
        if let Some((mb, _)) = root.and_then(|h| multibody_joints.get_mut(h)) {
            mb.generalized_velocity_mut().fill(0.0);
            mb.forward_kinematics(bodies, false);
            mb.update_rigid_bodies(bodies, true);
        }
    }

    /// Sets every motor to its current target.
    fn apply_motors(&mut self) {
        let mut all: Vec<(MotorJoint, f64, f64, f64)> = Vec::new();
        for (i, mj) in self.joints.iter().enumerate() {
            let jc = &self.robot.config.joints[i];
            all.push((*mj, self.targets[i], jc.kp, jc.kd));
        }
        for (mj, src) in &self.mimics {
            let jc = &self.robot.config.joints[*src];
            all.push((*mj, self.targets[*src], jc.kp, jc.kd));
        }
        for (i, (mj, target, kp, kd)) in all.into_iter().enumerate() {
            let effort = if i < self.joints.len() {
                self.robot.config.joints[i].effort_max
            } else {
                f64::MAX
            };
            if let Some((mb, link_id)) = self.physics.multibody_joints.get_mut(mj.handle) {
                if let Some(link) = mb.link_mut(link_id) {
                    let j = &mut link.joint.data;
                    j.set_motor_position(mj.axis, target as f32, kp as f32, kd as f32);
                    j.set_motor_max_force(mj.axis, effort.min(1e6) as f32);
                }
            }
        }
    }

    /// Sets joint position targets (robot.toml order). Values are clamped into the joint
    /// limits (and counted); a command of the wrong length or with NaN/infinity is rejected
    /// and the previous targets are kept.
    pub fn command(&mut self, q_target: &[f64]) -> Result<(), SimError> {
        if q_target.len() != self.joints.len() {
            self.rejected_commands += 1;
            return Err(SimError::Command(format!(
                "{} values for {} joints",
                q_target.len(),
                self.joints.len()
            )));
        }
        if let Some(i) = q_target.iter().position(|v| !v.is_finite()) {
            self.rejected_commands += 1;
            return Err(SimError::Command(format!(
                "joint {} ({}) is {}",
                i, self.robot.config.joints[i].name, q_target[i]
            )));
        }
        for (i, (t, jc)) in q_target.iter().zip(&self.robot.config.joints).enumerate() {
            let c = t.clamp(jc.position_min, jc.position_max);
            if c != *t {
                self.clamped_values += 1;
            }
            self.targets[i] = c;
        }
        self.apply_motors();
        Ok(())
    }

    /// The current joint targets.
    pub fn targets(&self) -> &[f64] {
        &self.targets
    }

    /// Advances physics by `n` fixed steps of `1 / PHYSICS_HZ` s.
    pub fn step(&mut self, n: u32) {
        for _ in 0..n {
            self.physics.step();
            self.steps += 1;
        }
        self.time_s = self.steps as f64 / PHYSICS_HZ;
    }

    /// Advances physics by `dt_s` seconds (rounded to whole physics steps).
    pub fn advance(&mut self, dt_s: f64) {
        self.step((dt_s * PHYSICS_HZ).round().max(1.0) as u32);
    }

    /// Advances physics to simulated time `t_s` (rounded to whole physics steps), so a
    /// controller whose period is not a multiple of the physics step keeps its rate on average.
    pub fn advance_to(&mut self, t_s: f64) {
        let target = (t_s * PHYSICS_HZ).round() as u64;
        if target > self.steps {
            self.step((target - self.steps) as u32);
        }
    }

    /// Measured joint positions and velocities, robot.toml order.
    pub fn joint_state(&self) -> (Vec<f64>, Vec<f64>) {
        let mut q = Vec::with_capacity(self.joints.len());
        let mut qd = Vec::with_capacity(self.joints.len());
        for mj in &self.joints {
            let (pos, vel) = self
                .physics
                .multibody_joints
                .get(mj.handle)
                .and_then(|(mb, id)| {
                    let link = mb.link(id)?;
                    let idx = if mj.prismatic { 0 } else { 3 };
                    let v = mb.joint_velocity(link);
                    Some((
                        link.joint().coords()[idx] as f64,
                        v.get(0).copied().unwrap_or(0.0) as f64,
                    ))
                })
                .unwrap_or((f64::NAN, f64::NAN));
            q.push(pos);
            qd.push(vel);
        }
        (q, qd)
    }

    /// `world_from_link` of a URDF link that is a rigid body (frame-only links are merged into
    /// their parent by the loader and are not listed).
    pub fn link_pose(&self, link: &str) -> Option<Isometry3<f64>> {
        let h = self.link_bodies.get(link)?;
        Some(from_pose(self.physics.bodies.get(*h)?.position()))
    }

    /// Names of links that exist as rigid bodies.
    pub fn body_links(&self) -> Vec<&str> {
        self.link_bodies.keys().map(String::as_str).collect()
    }

    /// `world_from_object`.
    pub fn object_pose(&self, i: usize) -> Option<Isometry3<f64>> {
        let o = self.objects.get(i)?;
        Some(from_pose(self.physics.bodies.get(o.body)?.position()))
    }

    /// Whether object `i`'s collider has a contact point within `max_gap_m` of a robot link's
    /// collider, in rapier's narrow phase as of the last physics step.
    pub fn object_touches_robot(&self, i: usize, max_gap_m: f64) -> bool {
        let Some(body) = self
            .objects
            .get(i)
            .and_then(|o| self.physics.bodies.get(o.body))
        else {
            return false;
        };
        let robot_body = |h: ColliderHandle| {
            self.physics
                .colliders
                .get(h)
                .and_then(|c| c.parent())
                .is_some_and(|p| self.link_bodies.values().any(|b| *b == p))
        };
        body.colliders().iter().any(|&ch| {
            self.physics
                .narrow_phase
                .contact_pairs_with(ch)
                .any(|pair| {
                    let other = if pair.collider1 == ch {
                        pair.collider2
                    } else {
                        pair.collider1
                    };
                    robot_body(other)
                        && pair
                            .manifolds()
                            .iter()
                            .any(|m| m.points.iter().any(|p| (p.dist as f64) <= max_gap_m))
                })
        })
    }

    /// Speed of object `i`'s fastest point, m/s (linear speed plus angular speed times the
    /// half diagonal).
    pub fn object_point_speed(&self, i: usize) -> Option<f64> {
        let o = self.objects.get(i)?;
        let b = self.physics.bodies.get(o.body)?;
        let v = b.linvel();
        let w = b.angvel();
        let lin = ((v.x * v.x + v.y * v.y + v.z * v.z) as f64).sqrt();
        let ang = ((w.x * w.x + w.y * w.y + w.z * w.z) as f64).sqrt();
        Some(lin + ang * o.size * 3f64.sqrt() / 2.0)
    }

    /// `world_from_ee` from the measured joints (FK; the base is at the world origin).
    pub fn ee_pose(&self) -> Result<Isometry3<f64>, SimError> {
        let (q, _) = self.joint_state();
        self.robot
            .ee_pose(&q)
            .map_err(|e| SimError::Robot(e.to_string()))
    }

    /// Renders camera `name` of the robot config.
    pub fn render_camera(&self, name: &str) -> Result<Frame, SimError> {
        let cam = self
            .robot
            .config
            .cameras
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| SimError::Robot(format!("no camera named {name:?}")))?;
        let (q, _) = self.joint_state();
        let world_from_camera = self
            .robot
            .camera_pose(cam, &q)
            .map_err(|e| SimError::Robot(e.to_string()))?;
        let k = Intrinsics {
            width: cam.width,
            height: cam.height,
            fov_y: cam.fov_y_deg.to_radians(),
        };
        Ok(self.render(&world_from_camera.cast::<f32>(), &k))
    }

    /// Renders the scene from any camera pose.
    pub fn render(&self, world_from_camera: &Isometry3<f32>, k: &Intrinsics) -> Frame {
        let posed: Vec<(&Mesh, Isometry3<f32>)> = self
            .meshes
            .iter()
            .filter_map(|(h, m)| Some((m, iso32(self.physics.colliders.get(*h)?.position()))))
            .chain(self.static_meshes.iter().map(|(m, p)| (m, *p)))
            .collect();
        render::render(&posed, world_from_camera, k)
    }

    /// Everything but the robot as boxes with their current poses and colours: the table, the
    /// objects, the bowl walls and the zone markings (for recording and visualisation).
    pub fn scene(&self) -> sinew_core::events::Scene {
        use sinew_core::events::{Scene, SceneItem, Shape};
        let robot_bodies: Vec<RigidBodyHandle> = self.link_bodies.values().copied().collect();
        let pack = |iso: &Isometry3<f64>| {
            let t = iso.translation.vector;
            let q = iso.rotation.coords;
            [t.x, t.y, t.z, q.x, q.y, q.z, q.w]
        };
        let mut items = Vec::new();
        let mut bowl_parts = 0;
        for (h, m) in &self.meshes {
            let Some(co) = self.physics.colliders.get(*h) else {
                continue;
            };
            let parent = co.parent();
            if parent.is_some_and(|p| robot_bodies.contains(&p)) {
                continue;
            }
            let Some(c) = co.shape().as_cuboid() else {
                continue;
            };
            let he = c.half_extents;
            let object = self.objects.iter().position(|o| Some(o.body) == parent);
            let movable = parent
                .and_then(|p| self.physics.bodies.get(p))
                .is_some_and(|b| b.is_dynamic());
            let name = match object {
                Some(i) => self.objects[i].name.clone(),
                None if movable => format!("object_{}", items.len()),
                None if he.x >= 0.5 => "table".to_owned(),
                None => {
                    bowl_parts += 1;
                    format!("bowl/part_{}", bowl_parts - 1)
                }
            };
            items.push(SceneItem {
                name,
                shape: Shape::Box {
                    half_extents_m: [he.x as f64, he.y as f64, he.z as f64],
                },
                rgb: m.color,
                // Objects: the body's pose, exactly what the experts read.
                world_from_item: pack(
                    &object
                        .and_then(|i| self.object_pose(i))
                        .unwrap_or_else(|| from_pose(co.position())),
                ),
                movable,
            });
        }
        if let Some(ep) = &self.episode {
            for z in &ep.zones {
                items.push(SceneItem {
                    name: format!("zone_{}", z.name),
                    shape: Shape::Box {
                        half_extents_m: [z.half_extents[0], z.half_extents[1], 0.0005],
                    },
                    rgb: color_rgb(&z.color).unwrap_or([0.5, 0.5, 0.5]),
                    world_from_item: [
                        z.center[0],
                        z.center[1],
                        TABLE_TOP_Z as f64 + 0.0005,
                        0.0,
                        0.0,
                        0.0,
                        1.0,
                    ],
                    movable: false,
                });
            }
        }
        Scene { items }
    }

    /// Index into the render meshes of each object's collider, for segmentation checks.
    pub fn object_mesh_index(&self, i: usize) -> Option<u32> {
        let body = self.objects.get(i)?.body;
        let ch = *self.physics.bodies.get(body)?.colliders().first()?;
        self.meshes
            .iter()
            .position(|(h, _)| *h == ch)
            .map(|p| p as u32)
    }
}

/// Convenience: `to_pose` for callers converting nalgebra poses into rapier ones.
pub fn pose_from_iso(iso: &Isometry3<f64>) -> Pose {
    to_pose(iso)
}

/// The box with a link's mass and principal inertia (a solid cuboid), edge lengths in metres;
/// `None` when the inertial data do not describe one.
fn equivalent_inertia_box(inertial: &urdf_rs::Inertial) -> Option<[f64; 3]> {
    let m = inertial.mass.value;
    let i = &inertial.inertia;
    if m.is_nan() || m <= 0.0 {
        return None;
    }
    // I_xx = m (b^2 + c^2) / 12 and so on: solve for the squared edges.
    let a2 = 6.0 * (i.iyy + i.izz - i.ixx) / m;
    let b2 = 6.0 * (i.ixx + i.izz - i.iyy) / m;
    let c2 = 6.0 * (i.ixx + i.iyy - i.izz) / m;
    let e = [a2, b2, c2];
    e.iter()
        .all(|v| v.is_finite() && *v > 0.0)
        .then(|| e.map(f64::sqrt))
}

/// The URDF as rapier3d-urdf should see it: mesh paths resolved (it joins file names to a
/// folder and knows no `package://` URIs), and meshes in formats that cannot be read replaced
/// by their link's equivalent-inertia box (or a 2 cm cube), with a warning.
fn urdf_for_rapier(robot: &RobotDescription) -> urdf_rs::Robot {
    let mut urdf = robot.urdf.clone();
    for link in &mut urdf.links {
        let fallback = equivalent_inertia_box(&link.inertial);
        let inertial_origin = link.inertial.origin.clone();
        let name = link.name.clone();
        let fix = |g: &mut urdf_rs::Geometry, origin: &mut urdf_rs::Pose| {
            let urdf_rs::Geometry::Mesh { filename, .. } = g else {
                return;
            };
            let Some(m) = robot.meshes.iter().find(|m| &m.filename == filename) else {
                return;
            };
            if m.readable {
                *filename = m.path.to_string_lossy().into_owned();
                return;
            }
            let size = fallback.unwrap_or([0.02; 3]);
            tracing::warn!(
                link = %name,
                mesh = %m.filename,
                "mesh format not readable: simulated as a {:.3} x {:.3} x {:.3} m box",
                size[0], size[1], size[2]
            );
            if fallback.is_some() {
                *origin = inertial_origin.clone();
            }
            *g = urdf_rs::Geometry::Box {
                size: urdf_rs::Vec3(size),
            };
        };
        for v in &mut link.visual {
            fix(&mut v.geometry, &mut v.origin);
        }
        for c in &mut link.collision {
            fix(&mut c.geometry, &mut c.origin);
        }
    }
    urdf
}

/// What `sinew sim bench` measures.
#[derive(Debug, Clone, PartialEq)]
pub struct SimBench {
    /// Physics steps per second.
    pub physics_steps_per_s: f64,
    /// Per resolution: width, height, rendered RGB + depth frames per second on one core.
    pub render_frames_per_s: Vec<(u32, u32, f64)>,
    /// A checksum of the rendered pixels (so the renders cannot be optimised away).
    pub checksum: u64,
}

impl SimWorld {
    /// Steps `sim_seconds` of physics, then renders `frames` frames from the robot's first
    /// camera at 224x224 and 640x480, timing both.
    pub fn bench(&mut self, sim_seconds: f64, frames: u32) -> Result<SimBench, SimError> {
        let n = (sim_seconds * PHYSICS_HZ) as u32;
        let t = std::time::Instant::now();
        self.step(n);
        let physics_steps_per_s = n as f64 / t.elapsed().as_secs_f64();
        let cam = self
            .robot
            .config
            .cameras
            .first()
            .cloned()
            .ok_or_else(|| SimError::Robot("the robot has no camera".into()))?;
        let world_from_camera = self
            .robot
            .camera_pose(&cam, &self.joint_state().0)
            .map_err(|e| SimError::Robot(e.to_string()))?
            .cast::<f32>();
        let mut checksum = 0u64;
        let mut render_frames_per_s = Vec::new();
        for (w, h) in [(224u32, 224u32), (640, 480)] {
            let k = Intrinsics {
                width: w,
                height: h,
                fov_y: cam.fov_y_deg.to_radians(),
            };
            let t = std::time::Instant::now();
            for _ in 0..frames {
                let f = self.render(&world_from_camera, &k);
                checksum = checksum.wrapping_add(f.rgb[f.rgb.len() / 2] as u64);
            }
            render_frames_per_s.push((w, h, frames as f64 / t.elapsed().as_secs_f64()));
        }
        Ok(SimBench {
            physics_steps_per_s,
            render_frames_per_s,
            checksum,
        })
    }
}

/// An empty physics world: gravity, 240 Hz steps, and a length unit for centimetre objects.
fn new_physics() -> PhysicsWorld {
    let mut physics = PhysicsWorld::new();
    physics.gravity = Vector::new(0.0, 0.0, -9.81);
    physics.integration_parameters.set_inv_dt(PHYSICS_HZ as f32);
    // Objects are centimetres in size: with the default length unit, speculative contacts
    // reach 2 cm and fingers press on cubes they do not touch.
    physics.integration_parameters.length_unit = 0.1;
    physics
}

/// The robot in the world: the body of each link, the motor of each robot.toml joint, the
/// URDF joints that mimic the gripper.
struct RobotParts {
    link_bodies: HashMap<String, RigidBodyHandle>,
    joints: Vec<MotorJoint>,
    mimics: Vec<(MotorJoint, usize)>,
}

/// Inserts the robot (one multibody, root fixed, links that never sleep, no self-contacts);
/// its links' render meshes go to `meshes`.
fn insert_robot(
    physics: &mut PhysicsWorld,
    robot: &RobotDescription,
    meshes: &mut Vec<(ColliderHandle, Mesh)>,
) -> Result<RobotParts, SimError> {
    // Robot.
    // Robot links never sleep: a light arm otherwise falls asleep mid-motion.
    let opts = UrdfLoaderOptions {
        make_roots_fixed: true,
        rigid_body_blueprint: RigidBodyBuilder::dynamic().can_sleep(false),
        ..Default::default()
    };
    let urdf = urdf_for_rapier(robot);
    let urdf_robot = UrdfRobot::from_robot(&urdf, opts, &robot.dir);
    let link_names: Vec<String> = urdf_robot
        .links
        .iter()
        .map(|l| robot.urdf.links[l.urdf_link_index].name.clone())
        .collect();
    let joint_names: Vec<String> = urdf_robot
        .joints
        .iter()
        .map(|j| robot.urdf.joints[j.source_urdf_joint_index()].name.clone())
        .collect();
    let colors = link_colors(&robot.urdf);
    let handles = {
        let PhysicsWorld {
            bodies,
            colliders,
            multibody_joints,
            ..
        } = physics;
        urdf_robot.insert_using_multibody_joints(
            bodies,
            colliders,
            multibody_joints,
            UrdfMultibodyOptions::DISABLE_SELF_CONTACTS,
        )
    };
    let mut link_bodies = HashMap::new();
    for (name, link) in link_names.iter().zip(&handles.links) {
        link_bodies.insert(name.clone(), link.body);
        let color = colors.get(name).copied().unwrap_or([0.6, 0.6, 0.62]);
        for c in &link.colliders {
            if let Some(m) = physics
                .colliders
                .get(c.handle)
                .and_then(|co| mesh_of(co.shape(), color))
            {
                meshes.push((c.handle, m));
            }
        }
    }
    let mut by_name: HashMap<String, MotorJoint> = HashMap::new();
    for (name, j) in joint_names.iter().zip(&handles.joints) {
        let Some(handle) = j.joint else { continue };
        let urdf_joint = robot.urdf.joints.iter().find(|u| &u.name == name);
        let prismatic = urdf_joint.is_some_and(|u| u.joint_type == urdf_rs::JointType::Prismatic);
        let axis = if prismatic {
            JointAxis::LinX
        } else {
            JointAxis::AngX
        };
        by_name.insert(
            name.clone(),
            MotorJoint {
                handle,
                axis,
                prismatic,
            },
        );
    }
    let mut joints = Vec::new();
    for jc in &robot.config.joints {
        let m = by_name.get(&jc.name).copied().ok_or_else(|| {
            SimError::Robot(format!(
                "joint {:?} of robot.toml is not a movable joint in the simulated URDF",
                jc.name
            ))
        })?;
        joints.push(m);
    }
    let mut mimics = Vec::new();
    if let (Some(g), Some(gi)) = (&robot.config.gripper, robot.config.gripper_index()) {
        for name in &g.mimic {
            if let Some(m) = by_name.get(name) {
                mimics.push((*m, gi));
            }
        }
    }

    Ok(RobotParts {
        link_bodies,
        joints,
        mimics,
    })
}

/// Inserts the episode's objects (dynamic cubes); their meshes go to `meshes`.
fn insert_objects(
    physics: &mut PhysicsWorld,
    ep: &Episode,
    meshes: &mut Vec<(ColliderHandle, Mesh)>,
) -> Vec<SimObject> {
    let mut objects = Vec::new();
    for o in &ep.objects {
        let half = (o.size / 2.0) as f32;
        let rot = Rotation::from_rotation_z(o.yaw as f32);
        let body = RigidBodyBuilder::dynamic()
            .pose(Pose::from_parts(
                Vector::new(o.xy[0] as f32, o.xy[1] as f32, TABLE_TOP_Z + half),
                rot,
            ))
            .ccd_enabled(true);
        let collider = ColliderBuilder::cuboid(half, half, half)
            .density(400.0)
            .friction(1.0);
        let (h, _) = physics.insert(body, collider);
        let color = color_rgb(&o.color).unwrap_or([0.5, 0.5, 0.5]);
        if let Some(&ch) = physics.bodies[h].colliders().first() {
            if let Some(m) = mesh_of(physics.colliders[ch].shape(), color) {
                meshes.push((ch, m));
            }
        }
        objects.push(SimObject {
            name: o.name.clone(),
            color: o.color.clone(),
            size: o.size,
            body: h,
        });
    }
    objects
}

/// The episode's zones: flat coloured rectangles just above the table, render only.
fn zone_meshes(ep: &Episode) -> Vec<(Mesh, Isometry3<f32>)> {
    let mut static_meshes = Vec::new();
    for z in &ep.zones {
        let color = color_rgb(&z.color).unwrap_or([0.5, 0.5, 0.5]);
        let c = Cuboid::new(Vector::new(
            z.half_extents[0] as f32,
            z.half_extents[1] as f32,
            0.0005,
        ));
        if let Some(m) = mesh_of(&c, color) {
            let pose = Isometry3::translation(
                z.center[0] as f32,
                z.center[1] as f32,
                TABLE_TOP_Z + 0.0005,
            );
            static_meshes.push((m, pose));
        }
    }
    static_meshes
}

/// Inserts the bowl, a fixed open box at `c` (x, y); its meshes go to `meshes`.
fn insert_bowl(
    physics: &mut PhysicsWorld,
    c: [f64; 2],
    b: &crate::task::BowlSpec,
    meshes: &mut Vec<(ColliderHandle, Mesh)>,
) {
    let (ih, w, hgt) = (b.inner_half as f32, b.wall as f32, b.wall_height as f32);
    let body = physics.insert_body(RigidBodyBuilder::fixed().translation(Vector::new(
        c[0] as f32,
        c[1] as f32,
        TABLE_TOP_Z,
    )));
    let parts = [
        (
            Vector::new(0.0, 0.0, 0.002),
            Vector::new(ih + w, ih + w, 0.002),
        ),
        (
            Vector::new(ih + w / 2.0, 0.0, hgt / 2.0),
            Vector::new(w / 2.0, ih + w, hgt / 2.0),
        ),
        (
            Vector::new(-ih - w / 2.0, 0.0, hgt / 2.0),
            Vector::new(w / 2.0, ih + w, hgt / 2.0),
        ),
        (
            Vector::new(0.0, ih + w / 2.0, hgt / 2.0),
            Vector::new(ih, w / 2.0, hgt / 2.0),
        ),
        (
            Vector::new(0.0, -ih - w / 2.0, hgt / 2.0),
            Vector::new(ih, w / 2.0, hgt / 2.0),
        ),
    ];
    for (t, half) in parts {
        let co = ColliderBuilder::cuboid(half.x, half.y, half.z)
            .translation(t)
            .friction(0.8);
        let h = physics
            .colliders
            .insert_with_parent(co, body, &mut physics.bodies);
        if let Some(m) = mesh_of(physics.colliders[h].shape(), [0.92, 0.92, 0.95]) {
            meshes.push((h, m));
        }
    }
}
