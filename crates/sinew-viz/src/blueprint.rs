//! The layout an episode opens with: one 3D view of the robot and scene; for each camera its
//! colour and its depth image in separate 2D views; one time-series plot per joint holding
//! its commanded and its measured position; the runtime's events at info level and above;
//! the policy's timings.
//!
//! rerun 0.36's Rust blueprint builder (`rerun::blueprint`) makes views and containers but
//! cannot set a view's properties, and the text log's level filter is one (`TextLogRows`). So
//! the blueprint is written here from the blueprint archetypes, as that builder writes it: a
//! blueprint store of its own (`view/<id>`, `container/<id>`, `viewport` entities on the
//! `blueprint` timeline), sent through the recording stream with an activation command. In an
//! `.rrd` it sits beside the recording and the viewer applies it on open.

use rerun::external::re_log_types::{
    ApplicationId, BlueprintActivationCommand, LogMsg, RecordingId,
};
use rerun::external::re_sdk_types::blueprint::archetypes::{
    ContainerBlueprint, TextLogRows, ViewBlueprint, ViewContents, ViewportBlueprint,
};
use rerun::external::re_sdk_types::blueprint::components::{
    AutoLayout, AutoViews, ContainerKind, IncludedContent, QueryExpression, RootContainer,
    ViewClass, ViewOrigin,
};
use rerun::external::re_sdk_types::datatypes::{Bool, Uuid};
use rerun::{RecordingStream, RecordingStreamBuilder, TextLogLevel};
use sinew_robot::RobotDescription;

use crate::{rr, VizError};

/// A blueprint id: a version-4-shaped UUID derived from a name, so a layout is the same file
/// content every time.
fn uuid_of(name: &str) -> [u8; 16] {
    let fnv = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_be_bytes());
    b[8..].copy_from_slice(&fnv(0x84222325_cbf29ce4).to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

fn hyphenated(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A view: its class (`3D`, `2D`, `TimeSeries`, `TextLog`), title, origin and contents.
#[derive(Debug, Clone)]
pub struct ViewSpec {
    /// rerun's view class identifier.
    pub class: &'static str,
    /// Title shown in the viewer.
    pub name: String,
    /// Space origin.
    pub origin: String,
    /// Query expressions (`$origin/**`).
    pub contents: Vec<String>,
    /// Text logs: the levels shown (empty: all).
    pub levels: Vec<&'static str>,
}

impl ViewSpec {
    fn new(class: &'static str, name: impl Into<String>, origin: impl Into<String>) -> Self {
        Self {
            class,
            name: name.into(),
            origin: origin.into(),
            contents: vec!["$origin/**".into()],
            levels: Vec::new(),
        }
    }

    fn path(&self) -> String {
        format!(
            "view/{}",
            hyphenated(&uuid_of(&format!("{}:{}", self.class, self.name)))
        )
    }
}

/// A container of views or containers.
#[derive(Debug, Clone)]
pub enum Layout {
    /// Side by side.
    Horizontal(String, Vec<Layout>),
    /// Stacked.
    Vertical(String, Vec<Layout>),
    /// A grid.
    Grid(String, Vec<Layout>),
    /// One view.
    View(ViewSpec),
}

impl Layout {
    fn path(&self) -> String {
        match self {
            Layout::Horizontal(n, _) | Layout::Vertical(n, _) | Layout::Grid(n, _) => {
                format!("container/{}", hyphenated(&uuid_of(n)))
            }
            Layout::View(v) => v.path(),
        }
    }

    /// Every view, depth first.
    pub fn views(&self) -> Vec<&ViewSpec> {
        match self {
            Layout::View(v) => vec![v],
            Layout::Horizontal(_, c) | Layout::Vertical(_, c) | Layout::Grid(_, c) => {
                c.iter().flat_map(Layout::views).collect()
            }
        }
    }

    fn log(&self, bp: &RecordingStream) -> Result<(), VizError> {
        let (kind, name, children) = match self {
            Layout::View(v) => {
                let path = v.path();
                bp.log(
                    format!("{path}/ViewContents"),
                    &ViewContents::new(
                        v.contents
                            .iter()
                            .map(|q| QueryExpression(q.as_str().into())),
                    ),
                )
                .map_err(rr)?;
                bp.log(
                    path.as_str(),
                    &ViewBlueprint::new(ViewClass(v.class.into()))
                        .with_display_name(v.name.as_str())
                        .with_space_origin(ViewOrigin(v.origin.as_str().into())),
                )
                .map_err(rr)?;
                if !v.levels.is_empty() {
                    bp.log(
                        format!("{path}/TextLogRows"),
                        &TextLogRows::new().with_filter_by_log_level(
                            v.levels.iter().map(|l| TextLogLevel::from(*l)),
                        ),
                    )
                    .map_err(rr)?;
                }
                return Ok(());
            }
            Layout::Horizontal(n, c) => (ContainerKind::Horizontal, n, c),
            Layout::Vertical(n, c) => (ContainerKind::Vertical, n, c),
            Layout::Grid(n, c) => (ContainerKind::Grid, n, c),
        };
        for c in children {
            c.log(bp)?;
        }
        bp.log(
            self.path().as_str(),
            &ContainerBlueprint::new(kind)
                .with_display_name(name.as_str())
                .with_contents(
                    children
                        .iter()
                        .map(|c| IncludedContent(c.path().as_str().into())),
                ),
        )
        .map_err(rr)
    }
}

/// The layout of a robot's episode (see the module documentation).
pub fn episode_layout(robot: &RobotDescription) -> Layout {
    let mut cameras = Vec::new();
    for cam in &robot.config.cameras {
        let origin = format!("world/cameras/{}", cam.name);
        let mut rgb = ViewSpec::new("2D", format!("{} rgb", cam.name), origin.clone());
        rgb.contents = vec!["$origin/rgb".into()];
        cameras.push(Layout::View(rgb));
        if cam.depth {
            let mut depth = ViewSpec::new("2D", format!("{} depth", cam.name), origin);
            depth.contents = vec!["$origin/depth".into()];
            cameras.push(Layout::View(depth));
        }
    }
    let joints = robot
        .joint_names()
        .into_iter()
        .map(|j| {
            Layout::View(ViewSpec::new(
                "TimeSeries",
                format!("{j}: commanded, measured"),
                format!("joints/{j}"),
            ))
        })
        .collect();
    let mut events = ViewSpec::new("TextLog", "events", "events");
    events.levels = vec![
        TextLogLevel::INFO,
        TextLogLevel::WARN,
        TextLogLevel::ERROR,
        TextLogLevel::CRITICAL,
    ];
    Layout::Horizontal(
        "episode".into(),
        vec![
            Layout::Vertical(
                "robot".into(),
                vec![
                    Layout::View(ViewSpec::new("3D", "world", "world")),
                    Layout::View(events),
                ],
            ),
            Layout::Grid("cameras".into(), cameras),
            Layout::Vertical(
                "signals".into(),
                vec![
                    Layout::Grid("joints".into(), joints),
                    Layout::View(ViewSpec::new(
                        "TimeSeries",
                        "policy timings (ms)",
                        "policy/timings",
                    )),
                ],
            ),
        ],
    )
}

/// The blueprint store's messages for `layout` (application `app_id`).
fn blueprint_messages(layout: &Layout, app_id: ApplicationId) -> Result<Vec<LogMsg>, VizError> {
    let (bp, storage) = RecordingStreamBuilder::new(app_id)
        .recording_id(RecordingId::random())
        .blueprint()
        .memory()
        .map_err(rr)?;
    bp.set_time_sequence("blueprint", 0);
    layout.log(&bp)?;
    let root = uuid_of(match layout {
        Layout::Horizontal(n, _) | Layout::Vertical(n, _) | Layout::Grid(n, _) => n,
        Layout::View(v) => &v.name,
    });
    bp.log(
        "viewport",
        &ViewportBlueprint::new()
            .with_root_container(RootContainer(Uuid { bytes: root }))
            .with_auto_layout(AutoLayout(Bool(false)))
            .with_auto_views(AutoViews(Bool(false))),
    )
    .map_err(rr)?;
    bp.flush_blocking().map_err(rr)?;
    Ok(storage.take())
}

/// Sends `layout` through `rec` as its application's active and default blueprint.
pub fn send_layout(rec: &RecordingStream, layout: &Layout) -> Result<(), VizError> {
    let app_id = rec.store_info().map_or_else(
        || ApplicationId::from("sinew"),
        |i| i.application_id().clone(),
    );
    let msgs = blueprint_messages(layout, app_id)?;
    let Some(blueprint_id) = msgs.iter().find_map(|m| match m {
        LogMsg::SetStoreInfo(info) => Some(info.info.store_id.clone()),
        _ => None,
    }) else {
        return Err(rr("the blueprint stream wrote no store info"));
    };
    rec.send_blueprint(
        msgs,
        BlueprintActivationCommand {
            blueprint_id,
            make_active: true,
            make_default: true,
        },
    );
    Ok(())
}
