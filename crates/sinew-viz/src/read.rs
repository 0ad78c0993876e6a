//! Reading an `.rrd` file back: which entities it holds, how many rows each, on which
//! timelines. Used by tests (checking the file, not the writer) and `sinew record info`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rerun::external::re_log_encoding::DecoderApp;
use rerun::log::{Chunk, LogMsg};

use crate::VizError;

/// One entity of an `.rrd` file.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct EntityInfo {
    /// Rows logged on a timeline (temporal data).
    pub rows: u64,
    /// Rows logged as static data.
    pub static_rows: u64,
    /// Component names seen (`Scalars:scalars`, `Image:buffer` ...).
    pub components: BTreeSet<String>,
    /// Timelines its temporal rows carry.
    pub timelines: BTreeSet<String>,
}

/// What an `.rrd` file holds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RrdSummary {
    /// Entities of the recording by path (without the leading `/`).
    pub entities: BTreeMap<String, EntityInfo>,
    /// Entities of the blueprint (the viewer's layout: `viewport`, `container/<id>`,
    /// `view/<id>` ...).
    pub blueprint: BTreeMap<String, EntityInfo>,
    /// Chunks read.
    pub chunks: u64,
}

impl RrdSummary {
    /// The entity at `path`, if any.
    pub fn entity(&self, path: &str) -> Option<&EntityInfo> {
        self.entities.get(path.trim_start_matches('/'))
    }

    /// Temporal rows of `path` (0 when absent).
    pub fn rows(&self, path: &str) -> u64 {
        self.entity(path).map_or(0, |e| e.rows)
    }
}

/// Reads the whole file.
pub fn read_rrd(path: &Path) -> Result<RrdSummary, VizError> {
    let err = |reason: String| VizError::Read {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut out = RrdSummary::default();
    for msg in DecoderApp::decode_lazy(std::io::BufReader::new(file)) {
        let msg = msg.map_err(|e| err(e.to_string()))?;
        if let LogMsg::ArrowMsg(store, m) = msg {
            let chunk = Chunk::from_arrow_msg(&m).map_err(|e| err(e.to_string()))?;
            out.chunks += 1;
            let entity = chunk.entity_path().to_string();
            let entities = if store.is_blueprint() {
                &mut out.blueprint
            } else {
                &mut out.entities
            };
            let info = entities
                .entry(entity.trim_start_matches('/').to_owned())
                .or_default();
            let n = chunk.num_rows() as u64;
            if chunk.is_static() {
                info.static_rows += n;
            } else {
                info.rows += n;
                for t in chunk.timelines().keys() {
                    info.timelines.insert(t.to_string());
                }
            }
            for d in chunk.component_descriptors() {
                info.components.insert(d.display_name().to_string());
            }
        }
    }
    Ok(out)
}
