//! Language tabletop tasks (`sim/tasks/*.toml`): instruction templates, seeded randomisation,
//! a success predicate and a step limit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use sinew_core::files::{parse_toml, read_text, FileError};

use crate::SimError;

/// Named colours objects may take, linear RGB 0-1.
/// Purple and orange are the push zones' colours; cyan and pink were added so that six cube
/// colours stand apart from each other, the zones, the wooden table, the white bowl and the
/// arms (dark grey SO-101, white and grey Panda) in a 96-pixel render.
pub const COLORS: [(&str, [f32; 3]); 8] = [
    ("red", [0.85, 0.12, 0.10]),
    ("green", [0.12, 0.70, 0.18]),
    ("blue", [0.12, 0.25, 0.85]),
    ("yellow", [0.92, 0.82, 0.10]),
    ("purple", [0.55, 0.20, 0.70]),
    ("orange", [0.95, 0.50, 0.08]),
    ("cyan", [0.10, 0.78, 0.85]),
    ("pink", [1.00, 0.45, 0.75]),
];

/// The RGB of a named colour.
pub fn color_rgb(name: &str) -> Option<[f32; 3]> {
    COLORS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// What counts as success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuccessKind {
    /// The tool centre point touches the target cube (within `touch_distance_m` of its surface).
    Touch,
    /// The target cube's centre lies inside the named zone.
    InZone,
    /// The target cube rests inside the bowl.
    InBowl,
}

/// Rectangle on the table, in the robot base frame, metres.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// x range (forward from the base).
    pub x: [f64; 2],
    /// y range (left of the base).
    pub y: [f64; 2],
}

/// A task file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Task name (the file stem).
    pub name: String,
    /// Training instruction templates; `{color}` and `{zone}` are filled in.
    pub instructions: Vec<String>,
    /// Held-out instruction templates: never used for training data, for measuring whether a
    /// policy follows phrasings it has not seen (none by default).
    #[serde(default)]
    pub held_out_instructions: Vec<String>,
    /// Episode length limit in control steps.
    pub step_limit: u32,
    /// Control (policy) rate, Hz: one control step is `1 / control_rate_hz` of simulated time.
    pub control_rate_hz: f64,
    /// Success predicate.
    pub success: SuccessKind,
    /// Colours the target and distractors are drawn from.
    pub colors: Vec<String>,
    /// Number of distractor cubes, inclusive range.
    pub distractors: [u32; 2],
    /// Cube edge length, metres.
    pub cube_size_m: f64,
    /// Touch threshold, metres from the cube surface (for `touch`).
    #[serde(default = "default_touch")]
    pub touch_distance_m: f64,
    /// `touch`: contact between the target and a robot link also counts as touching.
    #[serde(default)]
    pub touch_contact: bool,
    /// The target must be released: no contact with any robot link (default false).
    #[serde(default)]
    pub release: bool,
    /// Success needs the predicate to hold, with the target at rest, for this long, seconds
    /// (default 0: the first instant it holds).
    #[serde(default)]
    pub settle_s: f64,
    /// At rest (with `settle_s > 0`): the target's fastest point is slower than this, m/s.
    #[serde(default = "default_rest_speed")]
    pub rest_speed_m_s: f64,
    /// Minimum distance between object centres, metres.
    #[serde(default = "default_spacing")]
    pub min_spacing_m: f64,
    /// Friction coefficient of the table top. The physics averages it with the cubes' 1.0.
    /// The default is 0.8, the table before this field existed. A cube on a 0.8 table
    /// (0.9 together) tips over its far edge instead of sliding when it is pushed higher than
    /// 17 mm (half its 30 mm width over 0.9). 0.4 (0.7 together) is wood or laminate under a
    /// cube, and the same cube slides for pushes up to 21 mm high.
    #[serde(default = "default_table_friction")]
    pub table_friction: f64,
    /// `in_zone`: a scene is drawn again while a distractor's centre lies closer than this to
    /// the push corridor (the segment from just behind the target, where the pusher comes
    /// down, to the goal zone's centre). 0 (the default): no check.
    #[serde(default)]
    pub path_clearance_m: f64,
    /// `in_zone`: robots whose scripted push squares up to the cube: it pushes on the face
    /// that looks most nearly towards the goal, along that face's normal, and off the face's
    /// centre so that the cube turns until the face looks at the goal (docs/training.md, "A
    /// push square to the cube's face"). Empty (the default): every robot pushes along the
    /// line from the cube to the goal, whatever the cube's yaw.
    #[serde(default)]
    pub push_square: Vec<String>,
    /// Where the target (and, without `distractor_region`, the distractors) is placed, per
    /// robot name.
    pub region: BTreeMap<String, Region>,
    /// Where distractors are placed, per robot name (default: `region`).
    #[serde(default)]
    pub distractor_region: BTreeMap<String, Region>,
    /// Zones marked on the table, per robot name (`in_zone` tasks; one is the goal).
    #[serde(default)]
    pub zones: BTreeMap<String, Vec<ZoneSpec>>,
    /// The bowl, per robot name (`in_bowl` tasks).
    #[serde(default)]
    pub bowl: BTreeMap<String, BowlSpec>,
    /// The file it was read from (for error messages; empty when built otherwise).
    #[serde(skip)]
    pub path: PathBuf,
}

/// Which instruction templates an episode's instruction comes from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Phrasing {
    /// `instructions`: the templates training data uses.
    #[default]
    Training,
    /// `held_out_instructions`: templates never used for training.
    HeldOut,
}

impl std::fmt::Display for Phrasing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phrasing::Training => "training",
            Phrasing::HeldOut => "held-out",
        })
    }
}

impl std::str::FromStr for Phrasing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "training" => Ok(Phrasing::Training),
            "held-out" => Ok(Phrasing::HeldOut),
            other => Err(format!(
                "unknown phrasing {other:?} (expected \"training\" or \"held-out\")"
            )),
        }
    }
}

/// A rectangle marked on the table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSpec {
    /// Name used in instructions (`{zone}`).
    pub name: String,
    /// Colour name.
    pub color: String,
    /// Centre, base frame, metres.
    pub center: [f64; 2],
    /// Half extents along x and y, metres.
    pub half_extents: [f64; 2],
}

impl ZoneSpec {
    /// Whether the point (x, y) lies inside.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        (x - self.center[0]).abs() <= self.half_extents[0]
            && (y - self.center[1]).abs() <= self.half_extents[1]
    }
}

/// An open box ("bowl") the cube goes into.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BowlSpec {
    /// Range of the bowl centre, base frame.
    pub region: Region,
    /// Inner half width, metres.
    pub inner_half: f64,
    /// Wall height, metres.
    pub wall_height: f64,
    /// Wall thickness, metres.
    pub wall: f64,
}

fn default_touch() -> f64 {
    0.01
}
fn default_rest_speed() -> f64 {
    0.01
}
fn default_spacing() -> f64 {
    0.07
}

/// The table's friction coefficient when a task does not say.
pub const DEFAULT_TABLE_FRICTION: f64 = 0.8;

fn default_table_friction() -> f64 {
    DEFAULT_TABLE_FRICTION
}

impl TaskSpec {
    /// Reads and checks a task file.
    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        Self::from_str_at(&read_text(path)?, path)
    }

    /// Parses `text` as if read from `path`.
    pub fn from_str_at(text: &str, path: &Path) -> Result<Self, SimError> {
        let mut spec: TaskSpec = parse_toml(text, path)?;
        spec.path = path.to_owned();
        let bad =
            |field: &str, reason: String| SimError::from(FileError::field(path, field, reason));
        if spec.instructions.is_empty() {
            return Err(bad(
                "instructions",
                "at least one template is needed".into(),
            ));
        }
        spec.check_templates().map_err(|(f, r)| bad(f, r))?;
        for c in &spec.colors {
            if color_rgb(c).is_none() {
                let known: Vec<&str> = COLORS.iter().map(|c| c.0).collect();
                return Err(bad(
                    "colors",
                    format!("unknown colour {c:?} (known: {})", known.join(", ")),
                ));
            }
        }
        if spec.colors.len() < 1 + spec.distractors[1] as usize {
            return Err(bad(
                "colors",
                "fewer colours than target plus distractors".into(),
            ));
        }
        if spec.distractors[0] > spec.distractors[1] {
            return Err(bad("distractors", "min above max".into()));
        }
        if !(spec.control_rate_hz.is_finite() && spec.control_rate_hz > 0.0) {
            return Err(bad("control_rate_hz", "must be positive".into()));
        }
        if !(spec.cube_size_m.is_finite() && spec.cube_size_m > 0.0) {
            return Err(bad("cube_size_m", "must be positive".into()));
        }
        if !(spec.settle_s.is_finite() && spec.settle_s >= 0.0) {
            return Err(bad("settle_s", "must be zero or more seconds".into()));
        }
        if !(spec.table_friction.is_finite()
            && spec.table_friction > 0.0
            && spec.table_friction <= 2.0)
        {
            return Err(bad(
                "table_friction",
                format!(
                    "{} is not a friction coefficient in (0, 2]",
                    spec.table_friction
                ),
            ));
        }
        if !(spec.rest_speed_m_s.is_finite() && spec.rest_speed_m_s > 0.0) {
            return Err(bad("rest_speed_m_s", "must be positive".into()));
        }
        if !(spec.path_clearance_m.is_finite() && spec.path_clearance_m >= 0.0) {
            return Err(bad(
                "path_clearance_m",
                "must be zero or more metres".into(),
            ));
        }
        if !(spec.touch_distance_m.is_finite() && spec.touch_distance_m >= 0.0) {
            return Err(bad(
                "touch_distance_m",
                "must be zero or more metres".into(),
            ));
        }
        if spec.touch_contact && spec.success != SuccessKind::Touch {
            return Err(bad(
                "touch_contact",
                "only a touch task counts contact as success".into(),
            ));
        }
        if spec.release && spec.success == SuccessKind::Touch {
            return Err(bad(
                "release",
                "a touch task cannot ask for the cube to be released".into(),
            ));
        }
        for zs in spec.zones.values() {
            for z in zs {
                if color_rgb(&z.color).is_none() {
                    return Err(bad(
                        "zones",
                        format!("zone {:?}: unknown colour {:?}", z.name, z.color),
                    ));
                }
            }
        }
        for (robot, r) in spec.region.iter().chain(&spec.distractor_region) {
            let vals = [r.x[0], r.x[1], r.y[0], r.y[1]];
            if vals.iter().any(|v| !v.is_finite()) || r.x[0] > r.x[1] || r.y[0] > r.y[1] {
                return Err(bad(
                    &format!("region.{robot}"),
                    "ranges must be finite with min <= max".into(),
                ));
            }
        }
        Ok(spec)
    }

    /// Checks the instruction templates: each names the target's `{color}`, and the goal
    /// `{zone}` exactly in `in_zone` tasks; none repeats; no held-out template is also a
    /// training one.
    fn check_templates(&self) -> Result<(), (&'static str, String)> {
        let zone = self.success == SuccessKind::InZone;
        for (field, list) in [
            ("instructions", &self.instructions),
            ("held_out_instructions", &self.held_out_instructions),
        ] {
            for (i, t) in list.iter().enumerate() {
                if !t.contains("{color}") {
                    return Err((field, format!("template {t:?} has no {{color}}")));
                }
                if zone != t.contains("{zone}") {
                    let why = if zone {
                        "has no {zone} (an in_zone task names the goal zone)"
                    } else {
                        "has {zone} but the task has no zones"
                    };
                    return Err((field, format!("template {t:?} {why}")));
                }
                if list[..i].contains(t) {
                    return Err((field, format!("template {t:?} is listed twice")));
                }
            }
        }
        if let Some(t) = self
            .held_out_instructions
            .iter()
            .find(|t| self.instructions.contains(t))
        {
            return Err((
                "held_out_instructions",
                format!("template {t:?} is also a training template"),
            ));
        }
        Ok(())
    }

    /// Loads `sim/tasks/<name>.toml` under `root`.
    pub fn load_named(root: &Path, name: &str) -> Result<Self, SimError> {
        Self::from_file(&task_path(root, name))
    }
}

/// The path of a named task.
pub fn task_path(root: &Path, name: &str) -> PathBuf {
    root.join("sim").join("tasks").join(format!("{name}.toml"))
}

/// A small deterministic random generator (SplitMix64), so that a seed means the same episode
/// on every machine and every version of every dependency.
#[derive(Debug, Clone)]
pub struct Rng(sinew_core::rng::SplitMix64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(sinew_core::rng::SplitMix64(seed ^ 0x5DEE_CE66_D1CE_4E5B))
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0.unit()
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Uniform index below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }
}

/// One object of an episode.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSpec {
    /// `cube_<color>`.
    pub name: String,
    /// Colour name.
    pub color: String,
    /// Centre on the table, base frame, metres.
    pub xy: [f64; 2],
    /// Rotation about z, radians.
    pub yaw: f64,
    /// Edge length, metres.
    pub size: f64,
}

/// A sampled episode: objects, target and instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// Task name.
    pub task: String,
    /// Seed it came from.
    pub seed: u64,
    /// The instruction.
    pub instruction: String,
    /// Index of the instruction template used, in the list it came from (`instructions`, or
    /// `held_out_instructions` when `held_out`).
    pub template: usize,
    /// The template, unfilled.
    pub template_text: String,
    /// Whether the template is a held-out one.
    pub held_out: bool,
    /// Objects; index 0 is the target.
    pub objects: Vec<ObjectSpec>,
    /// Zones on the table (`in_zone` tasks).
    pub zones: Vec<ZoneSpec>,
    /// Index of the goal zone in `zones`.
    pub goal_zone: Option<usize>,
    /// Bowl centre (x, y) and its spec (`in_bowl` tasks).
    pub bowl: Option<([f64; 2], BowlSpec)>,
    /// The table top's friction coefficient ([`TaskSpec::table_friction`]).
    pub table_friction: f64,
}

impl TaskSpec {
    fn missing(&self, field: String, reason: &str) -> SimError {
        let path = if self.path.as_os_str().is_empty() {
            PathBuf::from(format!("sim/tasks/{}.toml", self.name))
        } else {
            self.path.clone()
        };
        FileError::field(&path, field, reason).into()
    }

    /// Samples the episode for `seed` on robot `robot` (which must have a region), its
    /// instruction from the training templates.
    pub fn sample(&self, robot: &str, seed: u64) -> Result<Episode, SimError> {
        self.sample_phrased(robot, seed, Phrasing::Training)
    }

    /// Samples the episode for `seed` on robot `robot`, its instruction from the templates
    /// `phrasing` names. The scene is the same whatever the phrasing: the template index is the
    /// last draw, taken below the length of the chosen list.
    pub fn sample_phrased(
        &self,
        robot: &str,
        seed: u64,
        phrasing: Phrasing,
    ) -> Result<Episode, SimError> {
        let templates = match phrasing {
            Phrasing::Training => &self.instructions,
            Phrasing::HeldOut => &self.held_out_instructions,
        };
        if templates.is_empty() {
            return Err(self.missing(
                field_of(phrasing).to_owned(),
                "the task has no templates of this phrasing",
            ));
        }
        let region = self.region.get(robot).ok_or_else(|| {
            self.missing(
                format!("region.{robot}"),
                "the task has no placement region for this robot",
            )
        })?;
        let mut rng = Rng::new(seed);
        let n_distractors = self.distractors[0]
            + rng.below((self.distractors[1] - self.distractors[0] + 1) as usize) as u32;
        let mut colors = self.colors.clone();
        // Fisher-Yates with our RNG.
        for i in (1..colors.len()).rev() {
            let j = rng.below(i + 1);
            colors.swap(i, j);
        }
        let bowl = match (self.success, self.bowl.get(robot)) {
            (SuccessKind::InBowl, Some(b)) => Some((
                [
                    rng.range(b.region.x[0], b.region.x[1]),
                    rng.range(b.region.y[0], b.region.y[1]),
                ],
                *b,
            )),
            (SuccessKind::InBowl, None) => {
                return Err(self.missing(
                    format!("bowl.{robot}"),
                    "an in_bowl task needs a bowl for this robot",
                ))
            }
            _ => None,
        };
        let zones = self.zones.get(robot).cloned().unwrap_or_default();
        let goal_zone = match self.success {
            SuccessKind::InZone if zones.is_empty() => {
                return Err(self.missing(
                    format!("zones.{robot}"),
                    "an in_zone task needs zones for this robot",
                ))
            }
            SuccessKind::InZone => Some(rng.below(zones.len())),
            _ => None,
        };
        let distractor_region = self.distractor_region.get(robot).unwrap_or(region);
        let margin = self.cube_size_m;
        let mut objects: Vec<ObjectSpec> = Vec::new();
        // Whole scenes are drawn again (the generator runs on) while an object finds no free
        // place or the push corridor is blocked.
        'scene: for attempt in 0.. {
            if attempt == SCENE_ATTEMPTS {
                return Err(SimError::Placement {
                    task: self.name.clone(),
                    seed,
                });
            }
            objects.clear();
            for (k, color) in colors.iter().take(1 + n_distractors as usize).enumerate() {
                let reg = if k == 0 { region } else { distractor_region };
                let mut placed = None;
                for _ in 0..1000 {
                    let xy = [rng.range(reg.x[0], reg.x[1]), rng.range(reg.y[0], reg.y[1])];
                    let bowl_clear = bowl.is_none_or(|(c, b)| {
                        (c[0] - xy[0]).abs() > b.inner_half + b.wall + margin
                            || (c[1] - xy[1]).abs() > b.inner_half + b.wall + margin
                    });
                    let zone_clear = zones.iter().all(|z| {
                        (z.center[0] - xy[0]).abs() > z.half_extents[0] + margin
                            || (z.center[1] - xy[1]).abs() > z.half_extents[1] + margin
                    });
                    let spaced = objects.iter().all(|o| {
                        ((o.xy[0] - xy[0]).powi(2) + (o.xy[1] - xy[1]).powi(2)).sqrt()
                            >= self.min_spacing_m
                    });
                    if bowl_clear && zone_clear && spaced {
                        placed = Some(xy);
                        break;
                    }
                }
                let Some(xy) = placed else {
                    continue 'scene;
                };
                objects.push(ObjectSpec {
                    name: format!("cube_{color}"),
                    color: color.clone(),
                    xy,
                    yaw: rng.range(-std::f64::consts::FRAC_PI_4, std::f64::consts::FRAC_PI_4),
                    size: self.cube_size_m,
                });
            }
            let blocked = match goal_zone {
                Some(z) if self.path_clearance_m > 0.0 => {
                    push_corridor_blocked(&objects, &zones[z], self.path_clearance_m)
                }
                _ => false,
            };
            if !blocked {
                break;
            }
        }
        let template = rng.below(templates.len());
        let template_text = templates[template].clone();
        let mut instruction = template_text.replace("{color}", &objects[0].color);
        if let Some(z) = goal_zone {
            instruction = instruction.replace("{zone}", &zones[z].name);
        }
        Ok(Episode {
            task: self.name.clone(),
            seed,
            instruction,
            template,
            template_text,
            held_out: phrasing == Phrasing::HeldOut,
            objects,
            zones,
            goal_zone,
            bowl,
            table_friction: self.table_friction,
        })
    }
}

/// Scenes drawn for one seed before giving up.
const SCENE_ATTEMPTS: usize = 200;

/// Whether a distractor (objects after the first) lies within `clearance` of the segment from
/// just behind the target (2.5 cube sizes back from its centre, where a pusher comes down) to
/// the goal zone's centre.
fn push_corridor_blocked(objects: &[ObjectSpec], zone: &ZoneSpec, clearance: f64) -> bool {
    let Some(target) = objects.first() else {
        return false;
    };
    let (c, g) = (target.xy, zone.center);
    let (dx, dy) = (g[0] - c[0], g[1] - c[1]);
    let len = dx.hypot(dy);
    if len < 1e-9 {
        return false;
    }
    let dir = [dx / len, dy / len];
    let back = 2.5 * target.size;
    objects[1..].iter().any(|o| {
        let rel = [o.xy[0] - c[0], o.xy[1] - c[1]];
        let along = (rel[0] * dir[0] + rel[1] * dir[1]).clamp(-back, len);
        let near = [c[0] + dir[0] * along, c[1] + dir[1] * along];
        (o.xy[0] - near[0]).hypot(o.xy[1] - near[1]) < clearance
    })
}

/// The task-file field holding a phrasing's templates.
fn field_of(phrasing: Phrasing) -> &'static str {
    match phrasing {
        Phrasing::Training => "instructions",
        Phrasing::HeldOut => "held_out_instructions",
    }
}
