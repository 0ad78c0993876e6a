//! LeRobotDataset v3.0 for Sinew: [`DatasetWriter`] turns episodes (joint state, action, camera
//! frames, a task string per episode) into the layout LeRobot reads, and [`Dataset`] reads such
//! a dataset back (Sinew's or LeRobot's own) for training.
//!
//! Layout (docs/references.md section 4):
//! ```text
//! meta/info.json  meta/stats.json  meta/tasks.parquet
//! meta/episodes/chunk-000/file-000.parquet
//! data/chunk-000/file-000.parquet        (many episodes per file, up to data_files_size_in_mb)
//! ```
//! Frame columns: `observation.state` and `action` (fixed-size lists of float32),
//! `observation.images.<camera>` (dtype `image`: a struct of PNG `bytes` and `path`, stored in
//! the parquet itself), `timestamp` (float32, frame_index / fps), `frame_index`,
//! `episode_index`, `index`, `task_index` (int64). Video features (`dtype: "video"`, mp4) are
//! recognised and refused with a clear error: there is no video decoder here.
//!
//! Every check names the file, and where it applies the episode and the frame.

mod read;
mod stats;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use read::{Dataset, EpisodeMeta, Frame};
pub use stats::{FeatureStats, StatsAccumulator};
pub use write::{DatasetSpec, DatasetWriter};

/// The format version written and read.
pub const CODEBASE_VERSION: &str = "v3.0";
/// `info.json` `data_path` template.
pub const DATA_PATH: &str = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet";
/// `info.json` `video_path` template.
pub const VIDEO_PATH: &str = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4";
/// Files per chunk folder.
pub const CHUNKS_SIZE: u64 = 1000;
/// Name of the state feature.
pub const STATE: &str = "observation.state";
/// Name of the action feature.
pub const ACTION: &str = "action";
/// Prefix of camera features.
pub const IMAGES: &str = "observation.images.";

/// Errors reading or writing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not what the format says it should be.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A frame is wrong.
    #[error("episode {episode}, frame {frame}: {reason}")]
    Frame {
        /// Episode index.
        episode: u64,
        /// Frame index within the episode.
        frame: u64,
        /// What is wrong.
        reason: String,
    },
    /// An episode is wrong as a whole.
    #[error("episode {episode}: {reason}")]
    Episode {
        /// Episode index.
        episode: u64,
        /// What is wrong.
        reason: String,
    },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn format_err(path: &Path, reason: impl std::fmt::Display) -> DataError {
    DataError::Format {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// One feature of `info.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// `float32`, `int64`, `image`, `video`, `string` ...
    pub dtype: String,
    /// Shape (`[6]`; images `[height, width, 3]`).
    pub shape: Vec<usize>,
    /// Names of the dimensions (a list, or LeRobot's `{"motors": [...]}` form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<serde_json::Value>,
    /// Anything else LeRobot put there (video info ...), kept as is.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `meta/info.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// `v3.0`.
    pub codebase_version: String,
    /// Robot name.
    #[serde(default)]
    pub robot_type: Option<String>,
    /// Episodes.
    pub total_episodes: u64,
    /// Frames over all episodes.
    pub total_frames: u64,
    /// Distinct task strings.
    pub total_tasks: u64,
    /// Files per chunk folder.
    pub chunks_size: u64,
    /// Size at which a data file is closed and the next one started (MB).
    pub data_files_size_in_mb: f64,
    /// Same for videos (MB).
    pub video_files_size_in_mb: f64,
    /// Frames per second.
    pub fps: u32,
    /// Splits, e.g. `{"train": "0:100"}`.
    pub splits: BTreeMap<String, String>,
    /// Data file template.
    pub data_path: String,
    /// Video file template (null without videos).
    #[serde(default)]
    pub video_path: Option<String>,
    /// Features by name.
    pub features: serde_json::Map<String, serde_json::Value>,
}

impl Info {
    /// Reads `meta/info.json` of `dir`.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join("meta/info.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let info: Info = serde_json::from_str(&text).map_err(|e| format_err(&path, e))?;
        if !info.codebase_version.starts_with("v3") {
            return Err(format_err(
                &path,
                format!(
                    "codebase_version {:?}: only LeRobotDataset v3 is read (convert v2.1 datasets with LeRobot's convert_dataset_v21_to_v30)",
                    info.codebase_version
                ),
            ));
        }
        Ok(info)
    }

    /// A feature's spec.
    pub fn feature(&self, name: &str) -> Option<FeatureSpec> {
        serde_json::from_value(self.features.get(name)?.clone()).ok()
    }

    /// Camera names (features `observation.images.<camera>`), in `info.json` order.
    pub fn cameras(&self) -> Vec<String> {
        self.features
            .keys()
            .filter_map(|k| k.strip_prefix(IMAGES).map(str::to_owned))
            .collect()
    }

    /// The crop camera `camera`'s frames were taken from before they were resized
    /// (`[x0, y0, x1, y1]`, fractions of the frame; the image feature's `crop` field, which
    /// Sinew writes), or `None` for whole frames.
    pub fn crop(&self, camera: &str) -> Result<Option<[f64; 4]>, DataError> {
        let key = format!("{IMAGES}{camera}");
        match self.features.get(&key).and_then(|f| f.get("crop")) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| {
                format_err(
                    Path::new("meta/info.json"),
                    format!("features.{key}.crop: {e} (expected [x0, y0, x1, y1])"),
                )
            }),
        }
    }

    /// The data file of `chunk`, `file`.
    pub fn data_file(&self, chunk: u64, file: u64) -> PathBuf {
        PathBuf::from(
            self.data_path
                .replace("{chunk_index:03d}", &format!("{chunk:03}"))
                .replace("{file_index:03d}", &format!("{file:03}")),
        )
    }
}

/// The episode metadata file of `chunk`, `file`.
pub fn episodes_file(chunk: u64, file: u64) -> PathBuf {
    PathBuf::from(format!(
        "meta/episodes/chunk-{chunk:03}/file-{file:03}.parquet"
    ))
}

/// An RGB image, row major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// PNG-encodes the image.
    pub fn to_png(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let enc = image::codecs::png::PngEncoder::new_with_quality(
            &mut out,
            image::codecs::png::CompressionType::Fast,
            image::codecs::png::FilterType::Adaptive,
        );
        image::ImageEncoder::write_image(
            enc,
            &self.data,
            self.width,
            self.height,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// Decodes a PNG (or any format the `image` crate reads with the enabled features) to RGB.
    pub fn from_png(bytes: &[u8]) -> Result<Self, String> {
        let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
        let rgb = img.to_rgb8();
        Ok(Self {
            width: rgb.width(),
            height: rgb.height(),
            data: rgb.into_raw(),
        })
    }
}
