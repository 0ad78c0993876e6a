//! Which object the arm acted on first: a tap that, at every policy step of a simulated episode,
//! measures the distance from the tool centre point (forward kinematics of the measured joints)
//! to the surface of every cube of the privileged scene and how far each cube has moved from
//! where it started, and keeps the first cube the tool came within [`APPROACH_M`] of or that
//! moved by more than [`MOVED_M`] (pushed or picked up). Passing near a cube on the way to
//! another does not count. The instruction-swap figure (`sinew eval --swap`) is the share of
//! episodes whose first cube is the one the instruction names.

use nalgebra::{Isometry3, Point3, Quaternion, Translation3, UnitQuaternion, Vector3};
use serde::Serialize;
use sinew_core::events::{Scene, Shape};
use sinew_robot::RobotDescription;
use sinew_runtime::{Record, Tap};
use sinew_sim::{Episode, SuccessKind};

use crate::batch::median;

/// How close the tool centre point must come to a cube's surface to count as acting on it, m.
pub const APPROACH_M: f64 = 0.01;

/// How far a cube must move from where it started to count as acted on, m.
pub const MOVED_M: f64 = 0.01;

/// How far the named cube must rise to count as lifted, m.
pub const LIFTED_M: f64 = 0.02;

/// How near the named cube must stay to where it ended to count as still, m ([`Stall`]).
pub const STILL_M: f64 = 0.002;

/// Why an episode that did not succeed failed, read from where the named cube went (the "Why
/// episodes failed" table of `sinew eval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The arm acted on another cube first, and the named cube never moved.
    AnotherCubeFirst,
    /// Reach: the tool went to the named cube but never touched it.
    NoTouch,
    /// Push, pick-and-place: the named cube never moved by over [`MOVED_M`] and no other cube
    /// was acted on.
    NotMoved,
    /// Pick-and-place: the named cube moved but never rose [`LIFTED_M`].
    NotLifted,
    /// Pick-and-place: lifted, and still above the table, outside the bowl, at the end.
    HeldAtEnd,
    /// Pick-and-place: lifted, and left on the table outside the bowl.
    DroppedOutsideBowl,
    /// Push: moved, and left outside every zone.
    ShortOfZone,
    /// Push: moved into a zone that is not the named one.
    WrongZone,
    /// The named cube ended in the goal (the bowl, the zone) but the rule never held for long
    /// enough: still held, touching the gripper, above the floor, or moving.
    InGoalNotSettled,
}

impl Failure {
    /// Words for a report.
    pub fn describe(self) -> &'static str {
        match self {
            Failure::AnotherCubeFirst => "acted on another cube first",
            Failure::NoTouch => "went to it, never touched it",
            Failure::NotMoved => "named cube never moved",
            Failure::NotLifted => "named cube moved, never lifted",
            Failure::HeldAtEnd => "still held outside the bowl at the end",
            Failure::DroppedOutsideBowl => "dropped outside the bowl",
            Failure::ShortOfZone => "pushed, left outside every zone",
            Failure::WrongZone => "pushed into another zone",
            Failure::InGoalNotSettled => "in the goal, not released or not at rest",
        }
    }

    /// Why `episode` (a `kind` task, which did not succeed) failed, from `tap`'s view of it;
    /// `None` when the tap never saw the named cube.
    pub fn of(kind: SuccessKind, episode: &Episode, tap: &ApproachTap<'_>) -> Option<Self> {
        let named = &episode.objects.first()?.color;
        let track = tap.track(named)?;
        let other_first = tap.first().is_some_and(|c| c != named);
        if kind == SuccessKind::Touch {
            return Some(if other_first {
                Failure::AnotherCubeFirst
            } else {
                Failure::NoTouch
            });
        }
        if track.max_shift_m <= MOVED_M {
            return Some(if other_first {
                Failure::AnotherCubeFirst
            } else {
                Failure::NotMoved
            });
        }
        let c = track.last;
        Some(match kind {
            SuccessKind::InBowl => {
                let in_bowl = episode.bowl.as_ref().is_some_and(|(xy, b)| {
                    (c.x - xy[0]).abs() < b.inner_half && (c.y - xy[1]).abs() < b.inner_half
                });
                if in_bowl {
                    Failure::InGoalNotSettled
                } else if track.max_rise_m < LIFTED_M {
                    Failure::NotLifted
                } else if c.z - track.start.z > MOVED_M {
                    Failure::HeldAtEnd
                } else {
                    Failure::DroppedOutsideBowl
                }
            }
            _ => {
                let zone = episode.zones.iter().position(|z| z.contains(c.x, c.y));
                match zone {
                    Some(z) if Some(z) == episode.goal_zone => Failure::InGoalNotSettled,
                    Some(_) => Failure::WrongZone,
                    None => Failure::ShortOfZone,
                }
            }
        })
    }
}

/// The named cube's track and its goal's centre (the goal zone's or the bowl's; base frame,
/// m), where the task has a goal and the tap saw the cube.
fn named_track_and_goal<'t>(
    episode: &Episode,
    tap: &'t ApproachTap<'_>,
) -> Option<(&'t CubeTrack, [f64; 2])> {
    let track = tap.track(&episode.objects.first()?.color)?;
    let goal = episode
        .goal_zone
        .and_then(|z| episode.zones.get(z))
        .map(|z| z.center)
        .or(episode.bowl.as_ref().map(|(xy, _)| *xy))?;
    Some((track, goal))
}

/// The named cube's distance across the table to its goal (the goal zone's or the bowl's
/// centre), mm, where it started and where it ended, from `tap`'s view of `episode`; `None`
/// for a task without a goal (reach) or a cube the tap never saw.
pub fn named_to_goal_mm(episode: &Episode, tap: &ApproachTap<'_>) -> Option<[f64; 2]> {
    let (track, goal) = named_track_and_goal(episode, tap)?;
    let d = |c: &Vector3<f64>| 1e3 * (c.x - goal[0]).hypot(c.y - goal[1]);
    Some([d(&track.start), d(&track.last)])
}

/// Where the named cube ended relative to its goal's centre (the goal zone's or the bowl's),
/// along the base frame's x and y, mm (`None` as for [`named_to_goal_mm`]). Set beside the
/// goal's half extents, it says on which side a cube left short of a zone stopped.
pub fn named_end_from_goal_mm(episode: &Episode, tap: &ApproachTap<'_>) -> Option<[f64; 2]> {
    let (track, goal) = named_track_and_goal(episode, tap)?;
    Some([
        1e3 * (track.last.x - goal[0]),
        1e3 * (track.last.y - goal[1]),
    ])
}

/// How an episode ended for the named cube: the policy steps after it last moved (it stayed
/// within [`STILL_M`] of where it ended) and what the tool did in them. For a push left short
/// of its zone it says whether the arm stalled hovering over the cube, wandered, or kept
/// pressing on it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stall {
    /// The policy step (from 0) from which the named cube stayed still.
    pub from_step: usize,
    /// How many policy steps it stayed still, to the episode's end.
    pub steps: usize,
    /// The tool centre point's median height above the cube's centre over those steps, mm.
    pub tool_above_cube_mm: f64,
    /// Its median distance across the table from the cube's centre over those steps, mm.
    pub tool_from_cube_mm: f64,
    /// How far it travelled over those steps, mm.
    pub tool_travel_mm: f64,
}

/// The named cube's [`Stall`] in `episode`, from `tap`'s view of it (`None` when the tap saw
/// the cube in fewer than two scenes or never saw the tool there).
pub fn named_stall(episode: &Episode, tap: &ApproachTap<'_>) -> Option<Stall> {
    let named = &episode.objects.first()?.color;
    let track = tap.track(named)?;
    let path = &track.path;
    let end = *path.last()?;
    if path.len() < 2 {
        return None;
    }
    let from = path
        .iter()
        .rposition(|c| (c - end).norm() > STILL_M)
        .map_or(0, |i| i + 1);
    let mut above = Vec::new();
    let mut across = Vec::new();
    let mut travel = 0.0;
    let mut prev: Option<Vector3<f64>> = None;
    for (k, c) in path.iter().enumerate().skip(from) {
        let Some(t) = tap.tool.get(track.first_scene + k).copied().flatten() else {
            continue;
        };
        above.push(1e3 * (t.z - c.z));
        across.push(1e3 * (t.x - c.x).hypot(t.y - c.y));
        if let Some(p) = prev {
            travel += 1e3 * (t - p).norm();
        }
        prev = Some(t);
    }
    Some(Stall {
        from_step: from,
        steps: path.len() - from,
        tool_above_cube_mm: median(above)?,
        tool_from_cube_mm: median(across)?,
        tool_travel_mm: travel,
    })
}

/// Where one cube went during an episode, as the scenes showed it (world frame, m).
#[derive(Debug, Clone, PartialEq)]
pub struct CubeTrack {
    /// The cube's colour.
    pub colour: String,
    /// Its centre in the first scene.
    pub start: Vector3<f64>,
    /// Its centre in the latest scene.
    pub last: Vector3<f64>,
    /// The most its centre rose above where it started, m.
    pub max_rise_m: f64,
    /// The farthest its centre got from where it started, m.
    pub max_shift_m: f64,
    /// Its centre in every scene from the first that showed it.
    pub path: Vec<Vector3<f64>>,
    /// The index of that first scene among the episode's scenes.
    pub first_scene: usize,
}

/// The tap (see the module documentation).
#[derive(Debug)]
pub struct ApproachTap<'a> {
    robot: &'a RobotDescription,
    joints: Vec<String>,
    q: Option<Vec<f64>>,
    /// Each cube's path so far, by colour.
    tracks: Vec<CubeTrack>,
    first: Option<String>,
    /// The closest the tool came to each cube's surface, m, by colour.
    closest: Vec<(String, f64)>,
    /// The tool centre point in every scene, where the joints were known (world frame, m).
    tool: Vec<Option<Vector3<f64>>>,
}

impl<'a> ApproachTap<'a> {
    /// A tap for episodes of `robot`.
    pub fn new(robot: &'a RobotDescription) -> Self {
        Self {
            robot,
            joints: robot.joint_names(),
            q: None,
            tracks: Vec::new(),
            first: None,
            closest: Vec::new(),
            tool: Vec::new(),
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

    /// The path of the cube of `colour` so far (`None` when no scene showed that cube).
    pub fn track(&self, colour: &str) -> Option<&CubeTrack> {
        self.tracks.iter().find(|t| t.colour == colour)
    }

    fn check(&mut self, scene: &Scene) {
        let p_in_world = self
            .q
            .as_ref()
            .and_then(|q| self.robot.ee_pose(q).ok())
            // The simulated robot's base is the world origin.
            .map(|base_from_ee| Point3::from(base_from_ee.translation.vector));
        self.tool.push(p_in_world.map(|p| p.coords));
        let mut best: Option<(f64, &str)> = None;
        for item in &scene.items {
            let Some(colour) = item.name.strip_prefix("cube_") else {
                continue;
            };
            let Shape::Box { half_extents_m: h } = item.shape;
            let [x, y, z, qx, qy, qz, qw] = item.world_from_item;
            let centre = Vector3::new(x, y, z);
            let moved = match self.tracks.iter_mut().find(|t| t.colour == colour) {
                Some(t) => {
                    t.last = centre;
                    t.max_rise_m = t.max_rise_m.max(centre.z - t.start.z);
                    t.max_shift_m = t.max_shift_m.max((centre - t.start).norm());
                    t.path.push(centre);
                    (centre - t.start).norm() > MOVED_M
                }
                None => {
                    self.tracks.push(CubeTrack {
                        colour: colour.to_owned(),
                        start: centre,
                        last: centre,
                        max_rise_m: 0.0,
                        max_shift_m: 0.0,
                        path: vec![centre],
                        // This scene's tool entry is already in.
                        first_scene: self.tool.len() - 1,
                    });
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

    /// Feeds `tap` one scene: the episode's cubes where they started, the named one (index 0)
    /// at `named_at` (its start when `None`).
    fn scene_of(episode: &Episode, named_at: Option<[f64; 3]>) -> Scene {
        Scene {
            items: episode
                .objects
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let start = [o.xy[0], o.xy[1], o.size / 2.0];
                    cube(
                        &o.color,
                        if i == 0 {
                            named_at.unwrap_or(start)
                        } else {
                            start
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn failures_are_read_from_where_the_named_cube_went() {
        let robot = load_robot("so101").expect("robot");
        let far = |tap: &mut ApproachTap| {
            // The tool at home, far above every cube.
            tap.record(
                0,
                Record::JointState(&JointState {
                    name: robot.joint_names(),
                    position: robot.home(),
                    ..JointState::default()
                }),
            )
        };
        let pick = crate::resolve::load_task("pick-place").expect("task");
        let ep = pick.sample("so101", 7).expect("episode");
        let o = &ep.objects[0];
        let (bowl, _) = ep.bowl.expect("bowl");
        let h = o.size / 2.0;
        let run = |path: &[[f64; 3]]| {
            let mut tap = ApproachTap::new(&robot);
            far(&mut tap);
            tap.record(0, Record::Scene(&scene_of(&ep, None)));
            for &p in path {
                tap.record(0, Record::Scene(&scene_of(&ep, Some(p))));
            }
            Failure::of(SuccessKind::InBowl, &ep, &tap)
        };
        let start = [o.xy[0], o.xy[1], h];
        assert_eq!(run(&[]), Some(Failure::NotMoved));
        assert_eq!(
            run(&[[o.xy[0] + 0.03, o.xy[1], h]]),
            Some(Failure::NotLifted)
        );
        let lifted = [o.xy[0], o.xy[1], h + 0.05];
        assert_eq!(run(&[lifted]), Some(Failure::HeldAtEnd));
        assert_eq!(run(&[lifted, start]), Some(Failure::DroppedOutsideBowl));
        assert_eq!(
            run(&[lifted, [bowl[0], bowl[1], h + 0.05]]),
            Some(Failure::InGoalNotSettled)
        );
        // Another cube pushed first, the named one untouched.
        let mut tap = ApproachTap::new(&robot);
        far(&mut tap);
        let mut moved = scene_of(&ep, None);
        moved.items[1].world_from_item[0] += 0.05;
        tap.record(0, Record::Scene(&scene_of(&ep, None)));
        tap.record(0, Record::Scene(&moved));
        assert_eq!(
            Failure::of(SuccessKind::InBowl, &ep, &tap),
            Some(Failure::AnotherCubeFirst)
        );
        assert_eq!(
            Failure::of(SuccessKind::Touch, &ep, &tap),
            Some(Failure::AnotherCubeFirst)
        );

        let push = crate::resolve::load_task("push").expect("task");
        let ep = push.sample("so101", 7).expect("episode");
        let o = &ep.objects[0];
        let h = o.size / 2.0;
        let goal = ep.goal_zone.expect("goal zone");
        let other = (0..ep.zones.len()).find(|&z| z != goal).expect("two zones");
        let end_at = |xy: [f64; 2]| {
            let mut tap = ApproachTap::new(&robot);
            far(&mut tap);
            tap.record(0, Record::Scene(&scene_of(&ep, None)));
            tap.record(0, Record::Scene(&scene_of(&ep, Some([xy[0], xy[1], h]))));
            Failure::of(SuccessKind::InZone, &ep, &tap)
        };
        assert_eq!(
            end_at(ep.zones[goal].center),
            Some(Failure::InGoalNotSettled)
        );
        assert_eq!(end_at(ep.zones[other].center), Some(Failure::WrongZone));
        // Pushed onto the goal zone's centre: from where it started to 0 mm.
        let mut tap = ApproachTap::new(&robot);
        far(&mut tap);
        tap.record(0, Record::Scene(&scene_of(&ep, None)));
        let centre = ep.zones[goal].center;
        tap.record(
            0,
            Record::Scene(&scene_of(&ep, Some([centre[0], centre[1], h]))),
        );
        let [from, to] = named_to_goal_mm(&ep, &tap).expect("a goal");
        let start = 1e3 * (o.xy[0] - centre[0]).hypot(o.xy[1] - centre[1]);
        assert!(
            (from - start).abs() < 1e-6 && to.abs() < 1e-6,
            "{from} {to}"
        );
        // 2 cm towards the robot's base from the start: in no zone (zones lie beyond the cubes
        // or beside them; checked, not assumed).
        let short = [o.xy[0] - 0.02, o.xy[1]];
        assert!(ep.zones.iter().all(|z| !z.contains(short[0], short[1])));
        assert_eq!(end_at(short), Some(Failure::ShortOfZone));
    }

    #[test]
    fn a_stall_counts_the_steps_the_named_cube_lay_still_and_where_the_tool_was() {
        let robot = load_robot("so101").expect("robot");
        let push = crate::resolve::load_task("push").expect("task");
        let ep = push.sample("so101", 7).expect("episode");
        let o = &ep.objects[0];
        let h = o.size / 2.0;
        let joints = |q: Vec<f64>| JointState {
            name: robot.joint_names(),
            position: q,
            ..JointState::default()
        };
        let home = robot.home();
        let mut bent = home.clone();
        bent[0] += 0.2;
        let tool = |q: &[f64]| robot.ee_pose(q).expect("fk").translation.vector;
        let mut tap = ApproachTap::new(&robot);
        tap.record(0, Record::JointState(&joints(home.clone())));
        // Steps 0-2: the cube pushed 1 cm a step; steps 3-9: it lies still (moved 1 mm, under
        // the 2 mm), the tool held at home for steps 3-6, then swung to `bent` for 7-9.
        for k in 0..10 {
            if k == 7 {
                tap.record(0, Record::JointState(&joints(bent.clone())));
            }
            let d = 0.01 * (k.min(3) as f64) + if k >= 5 { 0.001 } else { 0.0 };
            let at = [o.xy[0], o.xy[1] + d, h];
            tap.record(0, Record::Scene(&scene_of(&ep, Some(at))));
        }
        let st = named_stall(&ep, &tap).expect("a stall");
        assert_eq!((st.from_step, st.steps), (3, 7), "{st:?}");
        let end = Vector3::new(o.xy[0], o.xy[1] + 0.031, h);
        let (a, b) = (tool(&home), tool(&bent));
        // Heights over steps 3-9: four at home's, three at bent's (the cube 1 mm lower on
        // none; z is the same), so the median is home's.
        assert!(
            (st.tool_above_cube_mm - 1e3 * (a.z - h)).abs() < 1e-6,
            "{st:?}"
        );
        let from_home = 1e3 * (a.x - end.x).hypot(a.y - end.y);
        let from_home_before = 1e3 * (a.x - o.xy[0]).hypot(a.y - (o.xy[1] + 0.03));
        assert!(
            (st.tool_from_cube_mm - from_home).abs() < 1.0
                || (st.tool_from_cube_mm - from_home_before).abs() < 1.0,
            "{st:?}"
        );
        assert!(
            (st.tool_travel_mm - 1e3 * (b - a).norm()).abs() < 1e-6,
            "{st:?}"
        );
        // A cube never seen: no stall.
        let mut empty = ApproachTap::new(&robot);
        empty.record(0, Record::JointState(&joints(home)));
        assert_eq!(named_stall(&ep, &empty), None);
    }
}
