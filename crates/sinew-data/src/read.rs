//! Reading a LeRobotDataset v3.0 (Sinew's or LeRobot's).

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{
    Array, AsArray, BinaryArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array,
    LargeBinaryArray, ListArray, StructArray,
};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::{format_err, DataError, Info, RgbImage, ACTION, IMAGES, STATE};

/// One row of the episodes table.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeMeta {
    /// Episode index.
    pub episode_index: u64,
    /// Its task strings.
    pub tasks: Vec<String>,
    /// Frames.
    pub length: u64,
    /// Data file chunk.
    pub data_chunk_index: u64,
    /// Data file index.
    pub data_file_index: u64,
    /// First global frame index.
    pub dataset_from_index: u64,
    /// One past the last global frame index.
    pub dataset_to_index: u64,
}

/// One frame, images still PNG-encoded (decode with [`Frame::image`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Episode.
    pub episode_index: u64,
    /// Frame within the episode.
    pub frame_index: u64,
    /// Frame over the dataset.
    pub index: u64,
    /// Seconds from the episode's start.
    pub timestamp: f32,
    /// Task.
    pub task_index: u64,
    /// `observation.state`.
    pub state: Vec<f32>,
    /// `action`.
    pub action: Vec<f32>,
    /// Encoded images, in [`Dataset::cameras`] order.
    pub images: Vec<Vec<u8>>,
}

impl Frame {
    /// Decodes camera `i`.
    pub fn image(&self, i: usize) -> Result<RgbImage, DataError> {
        let bytes = self.images.get(i).ok_or_else(|| DataError::Frame {
            episode: self.episode_index,
            frame: self.frame_index,
            reason: format!("no image {i}"),
        })?;
        RgbImage::from_png(bytes).map_err(|e| DataError::Frame {
            episode: self.episode_index,
            frame: self.frame_index,
            reason: format!("image {i}: {e}"),
        })
    }
}

/// A dataset opened for reading.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Its folder.
    pub dir: PathBuf,
    /// `meta/info.json`.
    pub info: Info,
    /// Task strings by task index.
    pub tasks: Vec<String>,
    /// Episodes in index order.
    pub episodes: Vec<EpisodeMeta>,
    /// Cameras (features `observation.images.<camera>` of dtype `image`).
    pub cameras: Vec<String>,
}

fn i64_col<'a>(
    path: &Path,
    b: &'a arrow::array::RecordBatch,
    name: &str,
) -> Result<&'a Int64Array, DataError> {
    b.column_by_name(name)
        .ok_or_else(|| format_err(path, format!("no column `{name}`")))?
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| format_err(path, format!("column `{name}` is not int64")))
}

fn batches(path: &Path) -> Result<Vec<arrow::array::RecordBatch>, DataError> {
    let f = File::open(path).map_err(crate::io(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| format_err(path, e))?
        .build()
        .map_err(|e| format_err(path, e))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format_err(path, e))
}

/// Row `i` of a float vector column (fixed-size or variable list of float32 or float64).
fn floats(col: &dyn Array, i: usize) -> Option<Vec<f32>> {
    let row = if let Some(l) = col.as_any().downcast_ref::<FixedSizeListArray>() {
        l.value(i)
    } else if let Some(l) = col.as_any().downcast_ref::<ListArray>() {
        l.value(i)
    } else {
        return None;
    };
    if let Some(a) = row.as_any().downcast_ref::<Float32Array>() {
        Some(a.values().to_vec())
    } else {
        row.as_any()
            .downcast_ref::<Float64Array>()
            .map(|a| a.values().iter().map(|v| *v as f32).collect())
    }
}

fn image_bytes(col: &dyn Array, i: usize) -> Option<Vec<u8>> {
    let s = col.as_any().downcast_ref::<StructArray>()?;
    let b = s.column_by_name("bytes")?;
    if b.is_null(i) {
        return None;
    }
    match b.data_type() {
        DataType::Binary => Some(b.as_any().downcast_ref::<BinaryArray>()?.value(i).to_vec()),
        DataType::LargeBinary => Some(
            b.as_any()
                .downcast_ref::<LargeBinaryArray>()?
                .value(i)
                .to_vec(),
        ),
        _ => None,
    }
}

impl Dataset {
    /// Opens `dir`: info, tasks and episodes, with consistency checks.
    pub fn open(dir: &Path) -> Result<Self, DataError> {
        let info = Info::load(dir)?;
        let info_path = dir.join("meta/info.json");
        for (name, v) in &info.features {
            if v.get("dtype").and_then(|d| d.as_str()) == Some("video") {
                return Err(format_err(
                    &info_path,
                    format!(
                        "feature `{name}` is stored as mp4 video; Sinew has no video decoder. Re-encode it as an `image` feature (LeRobot: `--dataset.video=false` when recording)"
                    ),
                ));
            }
        }
        for needed in [STATE, ACTION] {
            if !info.features.contains_key(needed) {
                return Err(format_err(&info_path, format!("no `{needed}` feature")));
            }
        }
        let cameras = info.cameras();

        // Tasks: pandas index `task` (or any string column) with `task_index`.
        let tasks_path = dir.join("meta/tasks.parquet");
        let mut tasks: Vec<(i64, String)> = Vec::new();
        for b in batches(&tasks_path)? {
            let idx = i64_col(&tasks_path, &b, "task_index")?;
            let names = b
                .column_by_name("task")
                .or_else(|| b.column_by_name("__index_level_0__"))
                .ok_or_else(|| format_err(&tasks_path, "no `task` column"))?;
            let names = names
                .as_string_opt::<i32>()
                .ok_or_else(|| format_err(&tasks_path, "`task` is not a string column"))?;
            for i in 0..b.num_rows() {
                tasks.push((idx.value(i), names.value(i).to_owned()));
            }
        }
        tasks.sort();
        for (k, (i, t)) in tasks.iter().enumerate() {
            if *i != k as i64 {
                return Err(format_err(
                    &tasks_path,
                    format!("task indices are not 0..{}: {i} for {t:?}", tasks.len()),
                ));
            }
        }
        let tasks: Vec<String> = tasks.into_iter().map(|(_, t)| t).collect();

        // Episodes: every file under meta/episodes.
        let mut files = Vec::new();
        let ep_root = dir.join("meta/episodes");
        let chunks = std::fs::read_dir(&ep_root).map_err(crate::io(&ep_root))?;
        for c in chunks.flatten() {
            if let Ok(rd) = std::fs::read_dir(c.path()) {
                for f in rd.flatten() {
                    if f.path().extension().is_some_and(|e| e == "parquet") {
                        files.push(f.path());
                    }
                }
            }
        }
        files.sort();
        let mut episodes = Vec::new();
        for path in &files {
            for b in batches(path)? {
                let ep = i64_col(path, &b, "episode_index")?;
                let len = i64_col(path, &b, "length")?;
                let chunk = i64_col(path, &b, "data/chunk_index")?;
                let file = i64_col(path, &b, "data/file_index")?;
                let from = i64_col(path, &b, "dataset_from_index")?;
                let to = i64_col(path, &b, "dataset_to_index")?;
                let ts = b
                    .column_by_name("tasks")
                    .and_then(|c| c.as_any().downcast_ref::<ListArray>().cloned());
                for i in 0..b.num_rows() {
                    let tasks = ts
                        .as_ref()
                        .map(|l| {
                            let v = l.value(i);
                            v.as_string_opt::<i32>()
                                .map(|s| (0..s.len()).map(|k| s.value(k).to_owned()).collect())
                                .unwrap_or_default()
                        })
                        .unwrap_or_default();
                    episodes.push(EpisodeMeta {
                        episode_index: ep.value(i) as u64,
                        tasks,
                        length: len.value(i) as u64,
                        data_chunk_index: chunk.value(i) as u64,
                        data_file_index: file.value(i) as u64,
                        dataset_from_index: from.value(i) as u64,
                        dataset_to_index: to.value(i) as u64,
                    });
                }
            }
        }
        episodes.sort_by_key(|e| e.episode_index);
        let mut next_from = 0;
        for (k, e) in episodes.iter().enumerate() {
            let bad = |reason: String| DataError::Episode {
                episode: e.episode_index,
                reason,
            };
            if e.episode_index != k as u64 {
                return Err(bad(format!(
                    "episode indices are not 0..{}: found {} at position {k}",
                    episodes.len(),
                    e.episode_index
                )));
            }
            if e.dataset_to_index - e.dataset_from_index != e.length
                || e.dataset_from_index != next_from
            {
                return Err(bad(format!(
                    "frames {}..{} do not match its length {} after {next_from} earlier frames",
                    e.dataset_from_index, e.dataset_to_index, e.length
                )));
            }
            next_from = e.dataset_to_index;
        }
        if episodes.len() as u64 != info.total_episodes || next_from != info.total_frames {
            return Err(format_err(
                &info_path,
                format!(
                    "says {} episodes and {} frames; the episodes table has {} and {next_from}",
                    info.total_episodes,
                    info.total_frames,
                    episodes.len()
                ),
            ));
        }
        Ok(Self {
            dir: dir.to_owned(),
            info,
            tasks,
            episodes,
            cameras,
        })
    }

    /// Every frame, in index order, checked against the episodes table: contiguous frame
    /// indices, finite values, consistent dimensions, and images present and of one size per
    /// camera.
    pub fn read_frames(&self) -> Result<Vec<Frame>, DataError> {
        let files: BTreeSet<(u64, u64)> = self
            .episodes
            .iter()
            .map(|e| (e.data_chunk_index, e.data_file_index))
            .collect();
        let state_dim = self.info.feature(STATE).map(|f| f.shape.iter().product());
        let action_dim = self.info.feature(ACTION).map(|f| f.shape.iter().product());
        let mut frames: Vec<Frame> = Vec::with_capacity(self.info.total_frames as usize);
        for (chunk, file) in files {
            let path = self.dir.join(self.info.data_file(chunk, file));
            for b in batches(&path)? {
                let ep = i64_col(&path, &b, "episode_index")?;
                let fi = i64_col(&path, &b, "frame_index")?;
                let ix = i64_col(&path, &b, "index")?;
                let ti = i64_col(&path, &b, "task_index")?;
                let ts = b.column_by_name("timestamp");
                let st = b
                    .column_by_name(STATE)
                    .ok_or_else(|| format_err(&path, format!("no column `{STATE}`")))?;
                let ac = b
                    .column_by_name(ACTION)
                    .ok_or_else(|| format_err(&path, format!("no column `{ACTION}`")))?;
                let cams: Vec<_> = self
                    .cameras
                    .iter()
                    .map(|c| {
                        b.column_by_name(&format!("{IMAGES}{c}"))
                            .ok_or_else(|| format_err(&path, format!("no column `{IMAGES}{c}`")))
                    })
                    .collect::<Result<_, _>>()?;
                for i in 0..b.num_rows() {
                    let (episode, frame) = (ep.value(i) as u64, fi.value(i) as u64);
                    let bad = |reason: String| DataError::Frame {
                        episode,
                        frame,
                        reason,
                    };
                    let state = floats(st.as_ref(), i)
                        .ok_or_else(|| bad(format!("`{STATE}` is not a float list")))?;
                    let action = floats(ac.as_ref(), i)
                        .ok_or_else(|| bad(format!("`{ACTION}` is not a float list")))?;
                    if Some(state.len()) != state_dim.or(Some(state.len())) {
                        return Err(bad(format!("state has {} values", state.len())));
                    }
                    if Some(action.len()) != action_dim.or(Some(action.len())) {
                        return Err(bad(format!("action has {} values", action.len())));
                    }
                    if let Some(k) = state.iter().position(|v| !v.is_finite()) {
                        return Err(bad(format!("state[{k}] is {}", state[k])));
                    }
                    if let Some(k) = action.iter().position(|v| !v.is_finite()) {
                        return Err(bad(format!("action[{k}] is {}", action[k])));
                    }
                    let mut images = Vec::with_capacity(cams.len());
                    for (c, col) in self.cameras.iter().zip(&cams) {
                        images.push(
                            image_bytes(col.as_ref(), i)
                                .ok_or_else(|| bad(format!("camera {c}: no image bytes")))?,
                        );
                    }
                    let timestamp = ts
                        .and_then(|t| t.as_any().downcast_ref::<Float32Array>())
                        .map_or(frame as f32 / self.info.fps as f32, |t| t.value(i));
                    frames.push(Frame {
                        episode_index: episode,
                        frame_index: frame,
                        index: ix.value(i) as u64,
                        timestamp,
                        task_index: ti.value(i) as u64,
                        state,
                        action,
                        images,
                    });
                }
            }
        }
        frames.sort_by_key(|f| f.index);
        // Against the episodes table.
        for e in &self.episodes {
            let (a, b) = (e.dataset_from_index as usize, e.dataset_to_index as usize);
            let Some(rows) = frames.get(a..b) else {
                return Err(DataError::Episode {
                    episode: e.episode_index,
                    reason: format!(
                        "the table says frames {a}..{b}, the data files hold {}",
                        frames.len()
                    ),
                });
            };
            for (k, f) in rows.iter().enumerate() {
                if f.episode_index != e.episode_index || f.frame_index != k as u64 {
                    return Err(DataError::Frame {
                        episode: e.episode_index,
                        frame: k as u64,
                        reason: format!(
                            "row {} holds episode {} frame {}",
                            f.index, f.episode_index, f.frame_index
                        ),
                    });
                }
                if f.task_index as usize >= self.tasks.len() {
                    return Err(DataError::Frame {
                        episode: e.episode_index,
                        frame: k as u64,
                        reason: format!(
                            "task index {} of {} tasks",
                            f.task_index,
                            self.tasks.len()
                        ),
                    });
                }
            }
        }
        if frames.len() as u64 != self.info.total_frames {
            return Err(format_err(
                &self.dir.join("meta/info.json"),
                format!(
                    "says {} frames; the data files hold {}",
                    self.info.total_frames,
                    frames.len()
                ),
            ));
        }
        Ok(frames)
    }

    /// Checks that every camera's images decode and share one size, naming the first frame
    /// that does not.
    pub fn check_images(&self, frames: &[Frame]) -> Result<Vec<(u32, u32)>, DataError> {
        let mut sizes: Vec<Option<(u32, u32)>> = vec![None; self.cameras.len()];
        for f in frames {
            for (ci, size) in sizes.iter_mut().enumerate() {
                let im = f.image(ci)?;
                let s = (im.width, im.height);
                match size {
                    None => *size = Some(s),
                    Some(first) if *first != s => {
                        return Err(DataError::Frame {
                            episode: f.episode_index,
                            frame: f.frame_index,
                            reason: format!(
                                "camera {}: {}x{} image, earlier frames are {}x{}",
                                self.cameras[ci], s.0, s.1, first.0, first.1
                            ),
                        })
                    }
                    _ => {}
                }
            }
        }
        Ok(sizes.into_iter().map(|s| s.unwrap_or((0, 0))).collect())
    }
}
