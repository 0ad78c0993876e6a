//! Writing a LeRobotDataset v3.0.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, FixedSizeListArray, Float32Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder, StructArray,
};
use arrow::datatypes::{DataType, Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::stats::StatsAccumulator;
use crate::{
    episodes_file, format_err, io, DataError, Info, RgbImage, ACTION, CHUNKS_SIZE,
    CODEBASE_VERSION, DATA_PATH, IMAGES, STATE,
};

/// What a dataset holds.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSpec {
    /// Robot name (`robot_type`).
    pub robot_type: String,
    /// Frames per second.
    pub fps: u32,
    /// Names of the state dimensions.
    pub state_names: Vec<String>,
    /// Names of the action dimensions.
    pub action_names: Vec<String>,
    /// Cameras: name, width, height.
    pub cameras: Vec<(String, u32, u32)>,
    /// Per camera, the crop its frames were taken from before the resize (`[x0, y0, x1, y1]`,
    /// fractions of the camera's frame), written as the image feature's `crop` field.
    pub crops: BTreeMap<String, [f64; 4]>,
    /// Data files are closed past this size (MB); LeRobot's default is 100.
    pub data_files_size_in_mb: f64,
}

struct PendingFrame {
    state: Vec<f32>,
    action: Vec<f32>,
    pngs: Vec<Vec<u8>>,
}

struct EpisodeRow {
    index: u64,
    task: String,
    length: u64,
    from: u64,
    to: u64,
    chunk: u64,
    file: u64,
}

/// Writes a dataset episode by episode; `finish` writes the metadata.
pub struct DatasetWriter {
    dir: PathBuf,
    spec: DatasetSpec,
    tasks: Vec<String>,
    episodes: Vec<EpisodeRow>,
    pending: Vec<PendingFrame>,
    writer: Option<(ArrowWriter<File>, PathBuf)>,
    file_index: u64,
    total_frames: u64,
    stats: BTreeMap<String, StatsAccumulator>,
}

impl std::fmt::Debug for DatasetWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetWriter")
            .field("dir", &self.dir)
            .field("episodes", &self.episodes.len())
            .finish()
    }
}

fn list_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float32, true))
}

fn image_fields() -> Fields {
    Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ])
}

impl DatasetWriter {
    /// Starts a dataset in `dir`, which must not hold one already.
    pub fn create(dir: &Path, spec: DatasetSpec) -> Result<Self, DataError> {
        let info = dir.join("meta/info.json");
        if info.exists() {
            return Err(format_err(
                &info,
                "a dataset is already there; choose another folder or delete it",
            ));
        }
        std::fs::create_dir_all(dir.join("meta")).map_err(io(dir))?;
        let mut stats = BTreeMap::new();
        stats.insert(
            STATE.to_owned(),
            StatsAccumulator::vector(spec.state_names.len()),
        );
        stats.insert(
            ACTION.to_owned(),
            StatsAccumulator::vector(spec.action_names.len()),
        );
        for (c, _, _) in &spec.cameras {
            stats.insert(format!("{IMAGES}{c}"), StatsAccumulator::image());
        }
        Ok(Self {
            dir: dir.to_owned(),
            spec,
            tasks: Vec::new(),
            episodes: Vec::new(),
            pending: Vec::new(),
            writer: None,
            file_index: 0,
            total_frames: 0,
            stats,
        })
    }

    /// Episodes written so far.
    pub fn episodes(&self) -> u64 {
        self.episodes.len() as u64
    }

    /// Adds a frame to the current episode. Checks sizes, finiteness and image shapes.
    pub fn add_frame(
        &mut self,
        state: &[f32],
        action: &[f32],
        images: &[RgbImage],
    ) -> Result<(), DataError> {
        let episode = self.episodes.len() as u64;
        let frame = self.pending.len() as u64;
        let bad = |reason: String| DataError::Frame {
            episode,
            frame,
            reason,
        };
        if state.len() != self.spec.state_names.len() {
            return Err(bad(format!(
                "state has {} values, the dataset {}",
                state.len(),
                self.spec.state_names.len()
            )));
        }
        if action.len() != self.spec.action_names.len() {
            return Err(bad(format!(
                "action has {} values, the dataset {}",
                action.len(),
                self.spec.action_names.len()
            )));
        }
        if let Some(i) = state.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("state[{i}] is {}", state[i])));
        }
        if let Some(i) = action.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("action[{i}] is {}", action[i])));
        }
        if images.len() != self.spec.cameras.len() {
            return Err(bad(format!(
                "{} images for {} cameras",
                images.len(),
                self.spec.cameras.len()
            )));
        }
        let mut pngs = Vec::with_capacity(images.len());
        for (im, (name, w, h)) in images.iter().zip(&self.spec.cameras) {
            if (im.width, im.height) != (*w, *h) || im.data.len() != (w * h * 3) as usize {
                return Err(bad(format!(
                    "camera {name}: {}x{} image ({} bytes), the dataset's is {w}x{h}",
                    im.width,
                    im.height,
                    im.data.len()
                )));
            }
            pngs.push(
                im.to_png()
                    .map_err(|e| bad(format!("camera {name}: PNG: {e}")))?,
            );
        }
        self.pending.push(PendingFrame {
            state: state.to_vec(),
            action: action.to_vec(),
            pngs,
        });
        // Statistics take the frame only once it is in an episode (see end_episode).
        Ok(())
    }

    /// Drops the frames of the current episode (a failed demonstration).
    pub fn discard_episode(&mut self) {
        self.pending.clear();
    }

    fn schema(&self) -> Arc<Schema> {
        let mut fields = vec![
            Field::new(
                STATE,
                DataType::FixedSizeList(list_field(), self.spec.state_names.len() as i32),
                false,
            ),
            Field::new(
                ACTION,
                DataType::FixedSizeList(list_field(), self.spec.action_names.len() as i32),
                false,
            ),
        ];
        for (c, _, _) in &self.spec.cameras {
            fields.push(Field::new(
                format!("{IMAGES}{c}"),
                DataType::Struct(image_fields()),
                true,
            ));
        }
        for (n, t) in [
            ("timestamp", DataType::Float32),
            ("frame_index", DataType::Int64),
            ("episode_index", DataType::Int64),
            ("index", DataType::Int64),
            ("task_index", DataType::Int64),
        ] {
            fields.push(Field::new(n, t, false));
        }
        Arc::new(Schema::new(fields))
    }

    fn props() -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build()
    }

    /// Ends the current episode with its task; returns its index.
    pub fn end_episode(&mut self, task: &str) -> Result<u64, DataError> {
        let episode = self.episodes.len() as u64;
        if self.pending.is_empty() {
            return Err(DataError::Episode {
                episode,
                reason: "no frames".into(),
            });
        }
        let task_index = match self.tasks.iter().position(|t| t == task) {
            Some(i) => i,
            None => {
                self.tasks.push(task.to_owned());
                self.tasks.len() - 1
            }
        } as i64;
        let frames = std::mem::take(&mut self.pending);
        let n = frames.len();
        let schema = self.schema();
        let fixed = |vals: Vec<f32>, dim: usize| -> Result<ArrayRef, DataError> {
            FixedSizeListArray::try_new(
                list_field(),
                dim as i32,
                Arc::new(Float32Array::from(vals)),
                None,
            )
            .map(|a| Arc::new(a) as ArrayRef)
            .map_err(|e| DataError::Episode {
                episode,
                reason: e.to_string(),
            })
        };
        let mut cols: Vec<ArrayRef> = vec![
            fixed(
                frames
                    .iter()
                    .flat_map(|f| f.state.iter().copied())
                    .collect(),
                self.spec.state_names.len(),
            )?,
            fixed(
                frames
                    .iter()
                    .flat_map(|f| f.action.iter().copied())
                    .collect(),
                self.spec.action_names.len(),
            )?,
        ];
        for (ci, _) in self.spec.cameras.iter().enumerate() {
            let bytes: Vec<&[u8]> = frames.iter().map(|f| f.pngs[ci].as_slice()).collect();
            let paths: Vec<Option<&str>> = vec![None; n];
            let s = StructArray::try_new(
                image_fields(),
                vec![
                    Arc::new(BinaryArray::from(bytes)) as ArrayRef,
                    Arc::new(StringArray::from(paths)) as ArrayRef,
                ],
                None,
            )
            .map_err(|e| DataError::Episode {
                episode,
                reason: e.to_string(),
            })?;
            cols.push(Arc::new(s));
        }
        let from = self.total_frames;
        cols.push(Arc::new(Float32Array::from(
            (0..n)
                .map(|i| i as f32 / self.spec.fps as f32)
                .collect::<Vec<_>>(),
        )));
        cols.push(Arc::new(Int64Array::from(
            (0..n as i64).collect::<Vec<_>>(),
        )));
        cols.push(Arc::new(Int64Array::from(vec![episode as i64; n])));
        cols.push(Arc::new(Int64Array::from(
            (from as i64..(from + n as u64) as i64).collect::<Vec<_>>(),
        )));
        cols.push(Arc::new(Int64Array::from(vec![task_index; n])));
        let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| DataError::Episode {
            episode,
            reason: e.to_string(),
        })?;

        // Roll over to a new data file past the size limit (between episodes only).
        let limit = (self.spec.data_files_size_in_mb * 1e6) as usize;
        let full = self
            .writer
            .as_ref()
            .is_some_and(|(w, _)| w.bytes_written() + w.in_progress_size() > limit);
        if full {
            if let Some((w, path)) = self.writer.take() {
                w.close().map_err(|e| format_err(&path, e))?;
            }
            self.file_index += 1;
        }
        if self.writer.is_none() {
            let rel = PathBuf::from(
                DATA_PATH
                    .replace(
                        "{chunk_index:03d}",
                        &format!("{:03}", self.file_index / CHUNKS_SIZE),
                    )
                    .replace(
                        "{file_index:03d}",
                        &format!("{:03}", self.file_index % CHUNKS_SIZE),
                    ),
            );
            let path = self.dir.join(rel);
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p).map_err(io(p))?;
            }
            let f = File::create(&path).map_err(io(&path))?;
            let w = ArrowWriter::try_new(f, schema, Some(Self::props()))
                .map_err(|e| format_err(&path, e))?;
            self.writer = Some((w, path));
        }
        if let Some((w, path)) = self.writer.as_mut() {
            w.write(&batch).map_err(|e| format_err(path, e))?;
            // One row group per episode keeps an episode readable on its own.
            w.flush().map_err(|e| format_err(path, e))?;
        }
        for f in &frames {
            if let Some(s) = self.stats.get_mut(STATE) {
                s.push_vector(&f.state);
            }
            if let Some(s) = self.stats.get_mut(ACTION) {
                s.push_vector(&f.action);
            }
            for (ci, (c, _, _)) in self.spec.cameras.iter().enumerate() {
                if let (Some(s), Ok(im)) = (
                    self.stats.get_mut(&format!("{IMAGES}{c}")),
                    RgbImage::from_png(&f.pngs[ci]),
                ) {
                    s.push_image(&im.data);
                }
            }
        }
        self.episodes.push(EpisodeRow {
            index: episode,
            task: task.to_owned(),
            length: n as u64,
            from,
            to: from + n as u64,
            chunk: self.file_index / CHUNKS_SIZE,
            file: self.file_index % CHUNKS_SIZE,
        });
        self.total_frames += n as u64;
        Ok(episode)
    }

    /// `meta/tasks.parquet`.
    fn write_tasks(&self, meta: &Path) -> Result<(), DataError> {
        // tasks.parquet: pandas writes the task strings as the index; the pandas metadata
        // makes `pd.read_parquet` give the same frame back (what LeRobot reads).
        let tasks_path = meta.join("tasks.parquet");
        let pandas = serde_json::json!({
            "index_columns": ["task"],
            "column_indexes": [{"name": null, "field_name": null, "pandas_type": "unicode",
                "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
            "columns": [
                {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                    "numpy_type": "int64", "metadata": null},
                {"name": "task", "field_name": "task", "pandas_type": "unicode",
                    "numpy_type": "object", "metadata": null}],
            "creator": {"library": "sinew", "version": env!("CARGO_PKG_VERSION")},
            "pandas_version": "2.2.3",
        });
        let mut md = std::collections::HashMap::new();
        md.insert("pandas".to_owned(), pandas.to_string());
        let schema = Arc::new(Schema::new_with_metadata(
            vec![
                Field::new("task_index", DataType::Int64, false),
                Field::new("task", DataType::Utf8, false),
            ],
            md,
        ));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(
                    (0..self.tasks.len() as i64).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(self.tasks.clone())),
            ],
        )
        .map_err(|e| format_err(&tasks_path, e))?;
        write_one(&tasks_path, schema, &batch)?;

        Ok(())
    }

    /// `meta/episodes/chunk-000/file-000.parquet`.
    fn write_episodes(&self) -> Result<(), DataError> {
        // Episodes.
        let ep_path = self.dir.join(episodes_file(0, 0));
        let i64col = |f: &dyn Fn(&EpisodeRow) -> u64| -> ArrayRef {
            Arc::new(Int64Array::from(
                self.episodes
                    .iter()
                    .map(|e| f(e) as i64)
                    .collect::<Vec<_>>(),
            ))
        };
        let mut tasks = ListBuilder::new(StringBuilder::new());
        for e in &self.episodes {
            tasks.values().append_value(&e.task);
            tasks.append(true);
        }
        let tasks: ArrayRef = Arc::new(tasks.finish());
        let names = [
            "episode_index",
            "tasks",
            "length",
            "data/chunk_index",
            "data/file_index",
            "dataset_from_index",
            "dataset_to_index",
            "meta/episodes/chunk_index",
            "meta/episodes/file_index",
        ];
        let cols: Vec<ArrayRef> = vec![
            i64col(&|e| e.index),
            tasks,
            i64col(&|e| e.length),
            i64col(&|e| e.chunk),
            i64col(&|e| e.file),
            i64col(&|e| e.from),
            i64col(&|e| e.to),
            i64col(&|_| 0),
            i64col(&|_| 0),
        ];
        let schema = Arc::new(Schema::new(
            names
                .iter()
                .zip(&cols)
                .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch =
            RecordBatch::try_new(schema.clone(), cols).map_err(|e| format_err(&ep_path, e))?;
        if let Some(p) = ep_path.parent() {
            std::fs::create_dir_all(p).map_err(io(p))?;
        }
        write_one(&ep_path, schema, &batch)?;

        Ok(())
    }

    /// Closes the data file and writes `meta/`: info.json, stats.json, tasks.parquet and the
    /// episodes table.
    pub fn finish(mut self) -> Result<Info, DataError> {
        if !self.pending.is_empty() {
            return Err(DataError::Episode {
                episode: self.episodes.len() as u64,
                reason: "frames added but the episode was not ended".into(),
            });
        }
        if let Some((w, path)) = self.writer.take() {
            w.close().map_err(|e| format_err(&path, e))?;
        }
        let meta = self.dir.join("meta");

        self.write_tasks(&meta)?;
        self.write_episodes()?;
        // stats.json.
        let stats_path = meta.join("stats.json");
        let stats: serde_json::Map<String, serde_json::Value> = self
            .stats
            .iter()
            .map(|(k, s)| (k.clone(), s.to_json()))
            .collect();
        let text = serde_json::to_string_pretty(&stats).map_err(|e| format_err(&stats_path, e))?;
        std::fs::write(&stats_path, text).map_err(io(&stats_path))?;

        // info.json.
        let mut features = serde_json::Map::new();
        let names_of = |n: &Vec<String>| serde_json::json!(n);
        features.insert(
            STATE.into(),
            serde_json::json!({"dtype": "float32", "shape": [self.spec.state_names.len()],
                "names": names_of(&self.spec.state_names)}),
        );
        features.insert(
            ACTION.into(),
            serde_json::json!({"dtype": "float32", "shape": [self.spec.action_names.len()],
                "names": names_of(&self.spec.action_names)}),
        );
        for (c, w, h) in &self.spec.cameras {
            let mut f = serde_json::json!({"dtype": "image", "shape": [h, w, 3],
                "names": ["height", "width", "channels"]});
            if let (Some(crop), Some(o)) = (self.spec.crops.get(c), f.as_object_mut()) {
                o.insert("crop".into(), serde_json::json!(crop));
            }
            features.insert(format!("{IMAGES}{c}"), f);
        }
        for (n, t) in [
            ("timestamp", "float32"),
            ("frame_index", "int64"),
            ("episode_index", "int64"),
            ("index", "int64"),
            ("task_index", "int64"),
        ] {
            features.insert(
                n.into(),
                serde_json::json!({"dtype": t, "shape": [1], "names": null}),
            );
        }
        let mut splits = BTreeMap::new();
        splits.insert("train".to_owned(), format!("0:{}", self.episodes.len()));
        let info = Info {
            codebase_version: CODEBASE_VERSION.into(),
            robot_type: Some(self.spec.robot_type.clone()),
            total_episodes: self.episodes.len() as u64,
            total_frames: self.total_frames,
            total_tasks: self.tasks.len() as u64,
            chunks_size: CHUNKS_SIZE,
            data_files_size_in_mb: self.spec.data_files_size_in_mb,
            video_files_size_in_mb: 500.0,
            fps: self.spec.fps,
            splits,
            data_path: DATA_PATH.into(),
            video_path: None,
            features,
        };
        let info_path = meta.join("info.json");
        let text = serde_json::to_string_pretty(&info).map_err(|e| format_err(&info_path, e))?;
        std::fs::write(&info_path, text).map_err(io(&info_path))?;
        Ok(info)
    }
}

fn write_one(path: &Path, schema: Arc<Schema>, batch: &RecordBatch) -> Result<(), DataError> {
    let f = File::create(path).map_err(io(path))?;
    let mut w = ArrowWriter::try_new(f, schema, Some(DatasetWriter::props()))
        .map_err(|e| format_err(path, e))?;
    w.write(batch).map_err(|e| format_err(path, e))?;
    w.close().map_err(|e| format_err(path, e))?;
    Ok(())
}
