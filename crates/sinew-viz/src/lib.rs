//! Sinew's rerun adapter: what the robot saw and did, as an `.rrd` file per episode or a live
//! stream to a running viewer.
//!
//! [`Viz`] turns the messages of a robot's topics (the same ones the MCAP recorder writes:
//! joint states and commands, camera frames, the instruction, the predicted action chunk, the
//! runtime's events and the simulator's scene) into rerun entities. Live logging and
//! `sinew replay --rrd` go through the same function, so a file converted from a recording
//! holds the same content as one logged live. [`VizThread`] runs it off the control thread behind
//! a bounded channel and counts what it drops. [`read_rrd`] reads a file back (entity paths, row
//! counts, timelines) for tests and `sinew record info`.
//!
//! Entities (see `docs/recording.md`):
//! - `world/robot/<link>`: each link posed by forward kinematics of the measured joints, with
//!   its URDF visuals (boxes, cylinders, spheres, meshes) below it;
//! - `world/scene/<item>`: table, objects, zones and bowl as boxes;
//! - `world/cameras/<name>`: camera pose and pinhole, `.../rgb` and `.../depth` images;
//! - `world/policy/chunk`: the predicted chunk as an end-effector trajectory;
//! - `joints/<joint>/measured` and `joints/<joint>/commanded`: time series;
//! - `policy/tokens`, `policy/timings/<stage>_ms`, `instruction`, `events`,
//!   `safety/<kind>`, `episode/success`.
//!
//! Links fixed to the root (and cameras mounted on them) never move: their poses are logged
//! once, as static data, and only the others each step. Colour comes as `rgb8`/`bgr8`/`mono8`
//! images or as JPEG/PNG (`sensor_msgs/CompressedImage`, logged as rerun's `EncodedImage`
//! without decoding), depth as `32FC1` metres or `16UC1` millimetres (`DepthImage` with
//! `meter` 1 or 1000). Each stream starts with the [`blueprint`] of an episode.
//!
//! Timelines: `step` (policy steps, from the runtime's step events) and `time` (seconds since
//! the first message).

pub mod blueprint;
mod read;
mod thread;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nalgebra::{Isometry3, Vector3};
use rerun::{
    Boxes3D, ChannelDatatype, Color, Cylinders3D, DepthImage, Ellipsoids3D, Image, LineStrips3D,
    Pinhole, Points3D, Quaternion, RecordingStream, RecordingStreamBuilder, Scalars, TextDocument,
    TextLog, Transform3D,
};
use sinew_core::events::{Event, Scene, Shape};
use sinew_core::ActionKind;
use sinew_msgs::{AnyMessage, JointState, JointTrajectory};
use sinew_robot::actions::ActionDecoder;
use sinew_robot::RobotDescription;

pub use read::{read_rrd, EntityInfo, RrdSummary};
pub use thread::{spawn_viz, spawn_viz_with, Prepare, VizConsumer, VizItem, VizReport, VizThread};

/// Errors of the rerun adapter.
#[derive(Debug, thiserror::Error)]
pub enum VizError {
    /// The rerun SDK failed (file not writable, viewer unreachable ...).
    #[error("rerun: {0}")]
    Rerun(String),
    /// An `.rrd` file could not be read.
    #[error("reading {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

fn rr(e: impl std::fmt::Display) -> VizError {
    VizError::Rerun(e.to_string())
}

/// Where a stream goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    /// An `.rrd` file.
    File(PathBuf),
    /// A running viewer, e.g. `rerun+http://127.0.0.1:9876/proxy` (or `HOST:PORT`).
    Connect(String),
}

impl Sink {
    /// `--rerun-connect` value to a gRPC URL: `HOST:PORT` becomes
    /// `rerun+http://HOST:PORT/proxy`; full URLs pass unchanged.
    pub fn connect(addr: &str) -> Self {
        if addr.contains("://") {
            Sink::Connect(addr.to_owned())
        } else {
            Sink::Connect(format!("rerun+http://{addr}/proxy"))
        }
    }
}

/// What a message on a robot's topics is, for the viewer (the caller maps keys to streams).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stream {
    /// `sensor_msgs/JointState`, measured.
    JointStates,
    /// `trajectory_msgs/JointTrajectory`, the runtime's commands.
    JointCommands,
    /// A camera's colour image (`sensor_msgs/Image` or `CompressedImage`).
    Camera(String),
    /// A camera's depth image (32FC1 metres or 16UC1 millimetres).
    Depth(String),
    /// The language instruction.
    Instruction,
    /// The predicted chunk (`JointTrajectory`, one point per policy step, in the policy's action
    /// space named by `header.frame_id`).
    ActionChunk,
    /// Runtime events (JSON [`Event`]).
    Events,
    /// The simulator's scene (JSON [`Scene`]).
    Scene,
}

/// Counters of one stream.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct VizStats {
    /// Messages logged.
    pub logged: u64,
    /// Messages skipped (unsupported image encoding, unparsable JSON ...), with the reason of the
    /// first few.
    pub skipped: u64,
    /// The first skip reasons.
    pub skip_reasons: Vec<String>,
}

/// A rerun stream for one robot.
pub struct Viz {
    rec: RecordingStream,
    robot: RobotDescription,
    t0_ns: Option<u64>,
    step: i64,
    q_measured: Option<Vec<f64>>,
    safety_totals: BTreeMap<String, u64>,
    static_scene: bool,
    /// Per link (tree order): whether a movable joint lies between it and the root.
    moving_links: Vec<bool>,
    stats: VizStats,
}

impl std::fmt::Debug for Viz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viz")
            .field("robot", &self.robot.config.name)
            .field("step", &self.step)
            .finish()
    }
}

fn quat(iso: &Isometry3<f64>) -> Quaternion {
    let q = iso.rotation.coords;
    Quaternion::from_xyzw([q.x as f32, q.y as f32, q.z as f32, q.w as f32])
}

fn trans(iso: &Isometry3<f64>) -> [f32; 3] {
    let t = iso.translation.vector;
    [t.x as f32, t.y as f32, t.z as f32]
}

fn transform(iso: &Isometry3<f64>) -> Transform3D {
    Transform3D::from_translation_rotation(trans(iso), quat(iso))
}

fn color(rgb: [f32; 3]) -> Color {
    let c = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    Color::from_rgb(c(rgb[0]), c(rgb[1]), c(rgb[2]))
}

fn urdf_pose(p: &urdf_rs::Pose) -> Isometry3<f64> {
    Isometry3::from_parts(
        nalgebra::Translation3::new(p.xyz[0], p.xyz[1], p.xyz[2]),
        nalgebra::UnitQuaternion::from_euler_angles(p.rpy[0], p.rpy[1], p.rpy[2]),
    )
}

impl Viz {
    /// Opens a stream for `robot` (application id `sinew`, recording `name`).
    pub fn new(robot: RobotDescription, name: &str, sink: &Sink) -> Result<Self, VizError> {
        let builder = RecordingStreamBuilder::new("sinew").recording_name(name);
        let rec = match sink {
            Sink::File(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| rr(format!("creating {}: {e}", dir.display())))?;
                }
                builder
                    .save(p)
                    .map_err(|e| rr(format!("{}: {e}", p.display())))?
            }
            Sink::Connect(url) => builder
                .connect_grpc_opts(url.clone())
                .map_err(|e| rr(format!("{url}: {e}")))?,
        };
        let mut viz = Self {
            rec,
            robot,
            t0_ns: None,
            step: 0,
            q_measured: None,
            safety_totals: BTreeMap::new(),
            static_scene: false,
            moving_links: Vec::new(),
            stats: VizStats::default(),
        };
        viz.moving_links = moving_links(&viz.robot.tree);
        blueprint::send_layout(&viz.rec, &blueprint::episode_layout(&viz.robot))?;
        viz.log_robot_static()?;
        viz.log_fixed_poses()?;
        Ok(viz)
    }

    /// Whether the camera's mount link moves.
    fn camera_moves(&self, cam: &sinew_robot::config::CameraConfig) -> bool {
        self.robot
            .tree
            .link_index(&cam.mount_link)
            .is_none_or(|i| self.moving_links.get(i).copied().unwrap_or(true))
    }

    /// The poses of links fixed to the root and of cameras mounted on them, once, as static.
    fn log_fixed_poses(&mut self) -> Result<(), VizError> {
        let home = self.robot.home();
        let poses = match self.robot.tree.forward(&home) {
            Ok(p) => p,
            Err(e) => {
                self.skip(format!("forward kinematics at home: {e}"));
                return Ok(());
            }
        };
        for ((name, pose), moving) in self
            .robot
            .tree
            .links
            .iter()
            .zip(&poses)
            .zip(&self.moving_links)
        {
            if !moving {
                self.rec
                    .log_static(format!("world/robot/{name}").as_str(), &transform(pose))
                    .map_err(rr)?;
            }
        }
        for cam in &self.robot.config.cameras {
            if !self.camera_moves(cam) {
                if let Ok(world_from_camera) = self.robot.camera_pose(cam, &home) {
                    self.rec
                        .log_static(
                            format!("world/cameras/{}", cam.name).as_str(),
                            &transform(&world_from_camera),
                        )
                        .map_err(rr)?;
                }
            }
        }
        Ok(())
    }

    /// Counters so far.
    pub fn stats(&self) -> &VizStats {
        &self.stats
    }

    fn skip(&mut self, reason: String) {
        self.stats.skipped += 1;
        if self.stats.skip_reasons.len() < 8 {
            tracing::warn!("rerun: {reason}");
            self.stats.skip_reasons.push(reason);
        }
    }

    /// The robot's URDF visuals under `world/robot/<link>/visual_<i>`, and the camera pinholes.
    fn log_robot_static(&mut self) -> Result<(), VizError> {
        let rec = &self.rec;
        rec.log_static("world", &rerun::ViewCoordinates::RIGHT_HAND_Z_UP())
            .map_err(rr)?;
        let materials: BTreeMap<String, [f32; 3]> = self
            .robot
            .urdf
            .materials
            .iter()
            .filter_map(|m| {
                let c = m.color.as_ref()?.rgba.0;
                Some((m.name.clone(), [c[0] as f32, c[1] as f32, c[2] as f32]))
            })
            .collect();
        for link in &self.robot.urdf.links {
            for (i, v) in link.visual.iter().enumerate() {
                let path = format!("world/robot/{}/visual_{i}", link.name);
                let rgb = v
                    .material
                    .as_ref()
                    .and_then(|m| {
                        m.color
                            .as_ref()
                            .map(|c| [c.rgba.0[0] as f32, c.rgba.0[1] as f32, c.rgba.0[2] as f32])
                            .or_else(|| materials.get(&m.name).copied())
                    })
                    .unwrap_or([0.6, 0.6, 0.62]);
                rec.log_static(path.as_str(), &transform(&urdf_pose(&v.origin)))
                    .map_err(rr)?;
                let c = color(rgb);
                match &v.geometry {
                    urdf_rs::Geometry::Box { size } => rec.log_static(
                        path.as_str(),
                        &Boxes3D::from_half_sizes([(
                            size[0] as f32 / 2.0,
                            size[1] as f32 / 2.0,
                            size[2] as f32 / 2.0,
                        )])
                        .with_colors([c])
                        .with_fill_mode(rerun::FillMode::Solid),
                    ),
                    urdf_rs::Geometry::Cylinder { radius, length } => rec.log_static(
                        path.as_str(),
                        &Cylinders3D::from_lengths_and_radii([*length as f32], [*radius as f32])
                            .with_colors([c])
                            .with_fill_mode(rerun::FillMode::Solid),
                    ),
                    urdf_rs::Geometry::Capsule { radius, length } => rec.log_static(
                        path.as_str(),
                        &rerun::Capsules3D::from_lengths_and_radii(
                            [*length as f32],
                            [*radius as f32],
                        )
                        .with_colors([c]),
                    ),
                    urdf_rs::Geometry::Sphere { radius } => rec.log_static(
                        path.as_str(),
                        &Ellipsoids3D::from_radii([*radius as f32])
                            .with_colors([c])
                            .with_fill_mode(rerun::FillMode::Solid),
                    ),
                    urdf_rs::Geometry::Mesh { filename, scale } => {
                        let Some(m) = self.robot.meshes.iter().find(|m| &m.filename == filename)
                        else {
                            continue;
                        };
                        match rerun::Asset3D::from_file_path(&m.path) {
                            Ok(asset) => {
                                if let Some(s) = scale {
                                    rec.log_static(
                                        format!("{path}/mesh").as_str(),
                                        &Transform3D::from_scale([
                                            s[0] as f32,
                                            s[1] as f32,
                                            s[2] as f32,
                                        ]),
                                    )
                                    .map_err(rr)?;
                                }
                                rec.log_static(
                                    format!("{path}/mesh").as_str(),
                                    &asset.with_albedo_factor(c.0),
                                )
                            }
                            Err(e) => {
                                tracing::warn!("rerun: mesh {} not shown: {e}", m.path.display());
                                continue;
                            }
                        }
                    }
                }
                .map_err(rr)?;
            }
        }
        for cam in &self.robot.config.cameras {
            let f = cam.height as f64 / 2.0 / (cam.fov_y_deg.to_radians() / 2.0).tan();
            rec.log_static(
                format!("world/cameras/{}", cam.name).as_str(),
                &Pinhole::from_focal_length_and_resolution(
                    [f as f32, f as f32],
                    [cam.width as f32, cam.height as f32],
                )
                .with_image_plane_distance(0.05),
            )
            .map_err(rr)?;
        }
        Ok(())
    }

    fn set_time(&mut self, time_ns: u64) {
        let t0 = *self.t0_ns.get_or_insert(time_ns);
        self.rec
            .set_duration_secs("time", time_ns.saturating_sub(t0) as f64 * 1e-9);
        self.rec.set_time_sequence("step", self.step);
    }

    /// Logs one message of `stream`, received (or recorded) at `time_ns`.
    pub fn log(&mut self, stream: &Stream, time_ns: u64, msg: &AnyMessage) -> Result<(), VizError> {
        // Step events move the step timeline before anything else is logged at that time.
        if let (Stream::Events, AnyMessage::String(s)) = (stream, msg) {
            if let Ok(Event::Step { step }) = Event::from_json(&s.data) {
                self.step = step as i64;
            }
        }
        self.set_time(time_ns);
        let done = match (stream, msg) {
            (Stream::JointStates, AnyMessage::JointState(js)) => self.joint_states(js),
            (Stream::JointCommands, AnyMessage::JointTrajectory(jt)) => self.commands(jt),
            (Stream::Camera(name), AnyMessage::Image(im)) => self.image(name, im, false),
            (Stream::Depth(name), AnyMessage::Image(im)) => self.image(name, im, true),
            (Stream::Camera(name), AnyMessage::CompressedImage(c)) => self.compressed(name, c),
            (Stream::Instruction, AnyMessage::String(s)) => {
                self.rec
                    .log("instruction", &TextDocument::new(s.data.clone()))
                    .map_err(rr)?;
                self.rec
                    .log(
                        "events",
                        &TextLog::new(format!("instruction: {}", s.data))
                            .with_level(rerun::TextLogLevel::INFO),
                    )
                    .map_err(rr)?;
                Ok(true)
            }
            (Stream::ActionChunk, AnyMessage::JointTrajectory(jt)) => self.chunk(jt),
            (Stream::Events, AnyMessage::String(s)) => match Event::from_json(&s.data) {
                Ok(e) => self.event(&e),
                Err(e) => {
                    self.skip(format!("event {:?}: {e}", s.data));
                    Ok(false)
                }
            },
            (Stream::Scene, AnyMessage::String(s)) => match Scene::from_json(&s.data) {
                Ok(scene) => self.scene(&scene),
                Err(e) => {
                    self.skip(format!("scene: {e}"));
                    Ok(false)
                }
            },
            (s, m) => {
                self.skip(format!(
                    "{s:?} carries an unexpected {}",
                    m.kind().def().name
                ));
                Ok(false)
            }
        }?;
        if done {
            self.stats.logged += 1;
        }
        Ok(())
    }

    fn joint_states(&mut self, js: &JointState) -> Result<bool, VizError> {
        let names: Vec<String> = self.robot.joint_names();
        let mut q = Vec::with_capacity(names.len());
        for n in &names {
            match js.name.iter().position(|m| m == n) {
                Some(i) if i < js.position.len() => q.push(js.position[i]),
                _ => {
                    self.skip(format!("joint state without joint {n}"));
                    return Ok(false);
                }
            }
        }
        for (n, v) in names.iter().zip(&q) {
            self.rec
                .log(
                    format!("joints/{n}/measured").as_str(),
                    &Scalars::single(*v),
                )
                .map_err(rr)?;
        }
        let poses = match self.robot.tree.forward(&q) {
            Ok(p) => p,
            Err(e) => {
                self.skip(format!("forward kinematics: {e}"));
                return Ok(false);
            }
        };
        for ((name, pose), moving) in self
            .robot
            .tree
            .links
            .iter()
            .zip(&poses)
            .zip(&self.moving_links)
        {
            if *moving {
                self.rec
                    .log(format!("world/robot/{name}").as_str(), &transform(pose))
                    .map_err(rr)?;
            }
        }
        for cam in &self.robot.config.cameras {
            if !self.camera_moves(cam) {
                continue;
            }
            if let Ok(world_from_camera) = self.robot.camera_pose(cam, &q) {
                self.rec
                    .log(
                        format!("world/cameras/{}", cam.name).as_str(),
                        &transform(&world_from_camera),
                    )
                    .map_err(rr)?;
            }
        }
        self.q_measured = Some(q);
        Ok(true)
    }

    fn commands(&mut self, jt: &JointTrajectory) -> Result<bool, VizError> {
        let Some(p) = jt.points.first() else {
            self.skip("joint command without a point".into());
            return Ok(false);
        };
        for (n, v) in jt.joint_names.iter().zip(&p.positions) {
            self.rec
                .log(
                    format!("joints/{n}/commanded").as_str(),
                    &Scalars::single(*v),
                )
                .map_err(rr)?;
        }
        Ok(true)
    }

    fn image(
        &mut self,
        camera: &str,
        im: &sinew_msgs::Image,
        depth_stream: bool,
    ) -> Result<bool, VizError> {
        let (w, h, step) = (im.width as usize, im.height as usize, im.step as usize);
        let data: &[u8] = &im.data;
        let bpp = match im.encoding.as_str() {
            "rgb8" | "bgr8" => 3,
            "mono8" => 1,
            "16UC1" | "mono16" => 2,
            "32FC1" => 4,
            other => {
                self.skip(format!("camera {camera}: encoding {other} is not shown"));
                return Ok(false);
            }
        };
        if step < w * bpp || data.len() < step * h {
            self.skip(format!(
                "camera {camera}: {}x{} {} with step {} and {} bytes",
                w,
                h,
                im.encoding,
                step,
                data.len()
            ));
            return Ok(false);
        }
        // Rows without padding; big-endian multi-byte pixels swapped to little-endian.
        let mut packed = Vec::with_capacity(w * h * bpp);
        for r in 0..h {
            packed.extend_from_slice(&data[r * step..r * step + w * bpp]);
        }
        if im.is_bigendian != 0 && bpp > 1 && bpp != 3 {
            for px in packed.chunks_exact_mut(bpp) {
                px.reverse();
            }
        }
        let res = [w as u32, h as u32];
        let path = format!(
            "world/cameras/{camera}/{}",
            if depth_stream { "depth" } else { "rgb" }
        );
        match im.encoding.as_str() {
            "rgb8" => self.rec.log(path.as_str(), &Image::from_rgb24(packed, res)),
            "bgr8" => {
                for px in packed.chunks_exact_mut(3) {
                    px.swap(0, 2);
                }
                self.rec.log(path.as_str(), &Image::from_rgb24(packed, res))
            }
            "mono8" => self.rec.log(path.as_str(), &Image::from_l8(packed, res)),
            "16UC1" | "mono16" => self.rec.log(
                path.as_str(),
                &DepthImage::from_data_type_and_bytes(packed, res, ChannelDatatype::U16)
                    .with_meter(1000.0),
            ),
            _ => self.rec.log(
                path.as_str(),
                &DepthImage::from_data_type_and_bytes(packed, res, ChannelDatatype::F32)
                    .with_meter(1.0),
            ),
        }
        .map_err(rr)?;
        Ok(true)
    }

    fn compressed(
        &mut self,
        camera: &str,
        c: &sinew_msgs::CompressedImage,
    ) -> Result<bool, VizError> {
        let f = c.format.to_ascii_lowercase();
        let media = if f.contains("compresseddepth") {
            None
        } else if f.contains("jpeg") || f.contains("jpg") {
            Some(rerun::MediaType::JPEG)
        } else if f.contains("png") {
            Some(rerun::MediaType::PNG)
        } else {
            None
        };
        let Some(media) = media else {
            self.skip(format!(
                "camera {camera}: compressed format {:?} is not shown",
                c.format
            ));
            return Ok(false);
        };
        self.rec
            .log(
                format!("world/cameras/{camera}/rgb").as_str(),
                &rerun::EncodedImage::from_file_contents(c.data.to_vec()).with_media_type(media),
            )
            .map_err(rr)?;
        Ok(true)
    }

    fn chunk(&mut self, jt: &JointTrajectory) -> Result<bool, VizError> {
        let kind: Option<ActionKind> = match jt.header.frame_id.as_str() {
            "joint_position" => Some(ActionKind::JointPosition),
            "joint_delta" => Some(ActionKind::JointDelta),
            "ee_delta" => Some(ActionKind::EeDelta),
            _ => None,
        };
        let (Some(kind), Some(q_ref)) = (kind, self.q_measured.clone()) else {
            self.skip(format!(
                "action chunk in {:?} before any joint state, or in an unknown space",
                jt.header.frame_id
            ));
            return Ok(false);
        };
        let actions: Vec<Vec<f64>> = jt.points.iter().map(|p| p.positions.clone()).collect();
        let path: Vec<[f32; 3]> = chunk_ee_positions(&self.robot, kind, &actions, &q_ref)
            .iter()
            .map(|v| [v.x as f32, v.y as f32, v.z as f32])
            .collect();
        self.rec
            .log(
                "world/policy/chunk",
                &LineStrips3D::new([path.clone()])
                    .with_colors([Color::from_rgb(255, 140, 0)])
                    .with_radii([0.002]),
            )
            .map_err(rr)?;
        self.rec
            .log(
                "world/policy/chunk_points",
                &Points3D::new(path)
                    .with_colors([Color::from_rgb(255, 200, 0)])
                    .with_radii([0.004]),
            )
            .map_err(rr)?;
        Ok(true)
    }

    fn event(&mut self, e: &Event) -> Result<bool, VizError> {
        use rerun::TextLogLevel;
        match e {
            Event::Step { step } => {
                self.rec
                    .log("policy/step", &Scalars::single(*step as f64))
                    .map_err(rr)?;
            }
            Event::Inference {
                tokens,
                timings,
                wall_ms,
                warnings,
                ..
            } => {
                for (stage, v) in [
                    ("preprocess_ms", timings.preprocess_ms),
                    ("forward_ms", timings.forward_ms),
                    ("decode_ms", timings.decode_ms),
                    ("wall_ms", *wall_ms),
                ] {
                    self.rec
                        .log(
                            format!("policy/timings/{stage}").as_str(),
                            &Scalars::single(v),
                        )
                        .map_err(rr)?;
                }
                if !tokens.is_empty() {
                    let text = tokens
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(" ");
                    self.rec
                        .log("policy/tokens", &TextLog::new(text))
                        .map_err(rr)?;
                }
                for w in warnings {
                    self.rec
                        .log(
                            "events",
                            &TextLog::new(format!("policy: {w}")).with_level(TextLogLevel::WARN),
                        )
                        .map_err(rr)?;
                }
            }
            Event::Intervention { kinds } => {
                let text = kinds
                    .iter()
                    .map(|(k, n)| format!("{k} x{n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                for (k, n) in kinds {
                    let total = self.safety_totals.entry(k.clone()).or_default();
                    *total += n;
                    let v = *total as f64;
                    self.rec
                        .log(format!("safety/{k}").as_str(), &Scalars::single(v))
                        .map_err(rr)?;
                }
                self.rec
                    .log(
                        "events",
                        &TextLog::new(format!("safety filter: {text}"))
                            .with_level(TextLogLevel::WARN),
                    )
                    .map_err(rr)?;
            }
            Event::Hold { reason, .. } => {
                self.rec
                    .log(
                        "events",
                        &TextLog::new(format!("hold: {reason}")).with_level(TextLogLevel::WARN),
                    )
                    .map_err(rr)?;
            }
            Event::HoldEnded { kind, duration_s } => {
                self.rec
                    .log(
                        "events",
                        &TextLog::new(format!(
                            "following the policy again after {duration_s:.2} s ({kind})"
                        ))
                        .with_level(TextLogLevel::INFO),
                    )
                    .map_err(rr)?;
            }
            Event::Outcome { success, steps } => {
                self.rec
                    .log(
                        "episode/success",
                        &Scalars::single(if *success { 1.0 } else { 0.0 }),
                    )
                    .map_err(rr)?;
                self.rec
                    .log(
                        "events",
                        &TextLog::new(format!(
                            "episode {} after {steps} steps",
                            if *success { "succeeded" } else { "failed" }
                        ))
                        .with_level(if *success {
                            TextLogLevel::INFO
                        } else {
                            TextLogLevel::ERROR
                        }),
                    )
                    .map_err(rr)?;
            }
        }
        Ok(true)
    }

    fn scene(&mut self, scene: &Scene) -> Result<bool, VizError> {
        for item in &scene.items {
            if !item.movable && self.static_scene {
                continue;
            }
            let p = item.world_from_item;
            let iso = Isometry3::from_parts(
                nalgebra::Translation3::new(p[0], p[1], p[2]),
                nalgebra::UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(
                    p[6], p[3], p[4], p[5],
                )),
            );
            let path = format!("world/scene/{}", item.name);
            let Shape::Box { half_extents_m: he } = item.shape;
            let boxes = Boxes3D::from_half_sizes([(he[0] as f32, he[1] as f32, he[2] as f32)])
                .with_colors([color(item.rgb)])
                .with_fill_mode(rerun::FillMode::Solid);
            if item.movable {
                self.rec.log(path.as_str(), &transform(&iso)).map_err(rr)?;
                if !self.static_scene {
                    self.rec.log_static(path.as_str(), &boxes).map_err(rr)?;
                }
            } else {
                self.rec
                    .log_static(path.as_str(), &transform(&iso))
                    .map_err(rr)?;
                self.rec.log_static(path.as_str(), &boxes).map_err(rr)?;
            }
        }
        self.static_scene = true;
        Ok(true)
    }

    /// Flushes and closes the stream (the `.rrd` is complete when this returns).
    pub fn finish(self) -> Result<VizStats, VizError> {
        self.rec.flush_blocking().map_err(rr)?;
        Ok(self.stats)
    }
}

/// Per link of `tree`: whether a movable joint lies between it and the root (its pose depends
/// on the joints), else it is fixed to the root.
pub fn moving_links(tree: &sinew_robot::kinematics::KinematicTree) -> Vec<bool> {
    let mut moving = vec![false; tree.links.len()];
    // Joints are ordered parents before children.
    for j in &tree.joints {
        let parent = moving.get(j.parent).copied().unwrap_or(true);
        if let Some(m) = moving.get_mut(j.child) {
            *m = parent || j.kind != sinew_robot::kinematics::JointKind::Fixed;
        }
    }
    moving
}

/// The end-effector positions of a chunk, for callers that draw it elsewhere.
pub fn chunk_ee_positions(
    robot: &RobotDescription,
    kind: ActionKind,
    actions: &[Vec<f64>],
    q_reference: &[f64],
) -> Vec<Vector3<f64>> {
    let decoder = ActionDecoder::new(robot, kind);
    let mut reference = q_reference.to_vec();
    let mut out = Vec::new();
    for a in actions {
        if let Ok(t) = decoder.decode(a, &reference) {
            if let Ok(ee) = robot.ee_pose(&t.q) {
                out.push(ee.translation.vector);
            }
            if kind != ActionKind::JointPosition {
                reference = t.q;
            }
        }
    }
    out
}

/// An `.rrd` path for episode files: `DIR/episode_<seed>.rrd`.
pub fn episode_rrd(dir: &Path, seed: u64) -> PathBuf {
    dir.join(format!("episode_{seed:06}.rrd"))
}
