//! Checkpoint files: one `*.safetensors` file or shards listed by `model.safetensors.index.json`.
//!
//! Before a model is built, every tensor it will ask for is checked against the files' headers
//! ([`Checkpoint::check`]): a missing tensor, a shape that does not fit the configuration, a
//! non-float dtype or a header that does not parse is reported with the file and tensor name.
//! (Some candle-transformers constructors panic on a missing tensor; checking first keeps that
//! from ever happening on user input.) The names a model asks for are found by building it once
//! against [`RecordingBackend`], which hands out zero-sized broadcasts and writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::PolicyError;

/// Largest header accepted (the 7B checkpoints have headers of about 100 KB).
const MAX_HEADER_BYTES: u64 = 64 << 20;

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The file that holds it.
    pub file: PathBuf,
    /// Its dtype as written in the header (`F32`, `BF16`, ...).
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<usize>,
}

/// The tensors of a checkpoint, by name, read from the file headers only.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The weight files, in order.
    pub files: Vec<PathBuf>,
    /// Every tensor by name.
    pub tensors: BTreeMap<String, TensorInfo>,
}

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "F8_E4M3" | "F8_E5M2" | "I8" | "U8" | "BOOL" => 1,
        _ => return None,
    })
}

/// Reads and checks the header of one safetensors file.
pub fn read_header(path: &Path) -> Result<BTreeMap<String, TensorInfo>, PolicyError> {
    let parse = |m: String| PolicyError::Parse(path.to_owned(), m);
    let mut f = std::fs::File::open(path).map_err(|e| PolicyError::Io(path.to_owned(), e))?;
    let file_len = f
        .metadata()
        .map_err(|e| PolicyError::Io(path.to_owned(), e))?
        .len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| {
        parse("not a safetensors file: shorter than its 8-byte header length".into())
    })?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES || n + 8 > file_len {
        return Err(parse(format!(
            "corrupted safetensors header: it claims {n} bytes, the file has {file_len}"
        )));
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf)
        .map_err(|e| PolicyError::Io(path.to_owned(), e))?;
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&buf)
        .map_err(|e| parse(format!("corrupted safetensors header (not JSON: {e})")))?;
    let data_len = file_len - 8 - n;
    let mut out = BTreeMap::new();
    for (name, v) in raw {
        if name == "__metadata__" {
            continue;
        }
        let e: HeaderEntry = serde_json::from_value(v)
            .map_err(|e| parse(format!("corrupted header entry for tensor `{name}`: {e}")))?;
        let size = dtype_size(&e.dtype)
            .ok_or_else(|| parse(format!("tensor `{name}` has unknown dtype {}", e.dtype)))?;
        let count = e
            .shape
            .iter()
            .try_fold(1u64, |a, d| a.checked_mul(*d as u64));
        let (start, end) = e.data_offsets;
        if count.and_then(|c| c.checked_mul(size)) != Some(end.wrapping_sub(start))
            || start > end
            || end > data_len
        {
            return Err(parse(format!(
                "tensor `{name}`: offsets {start}..{end} do not fit its shape {:?} {} or the file ({data_len} data bytes)",
                e.shape, e.dtype
            )));
        }
        out.insert(
            name,
            TensorInfo {
                file: path.to_owned(),
                dtype: e.dtype,
                shape: e.shape,
            },
        );
    }
    Ok(out)
}

impl Checkpoint {
    /// The checkpoint in `dir`: the shards of `model.safetensors.index.json` when it exists,
    /// otherwise every `*.safetensors` file in the folder.
    pub fn open(dir: &Path) -> Result<Self, PolicyError> {
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index.exists() {
            let text =
                std::fs::read_to_string(&index).map_err(|e| PolicyError::Io(index.clone(), e))?;
            let idx: ShardIndex = serde_json::from_str(&text)
                .map_err(|e| PolicyError::Parse(index.clone(), e.to_string()))?;
            let mut names: Vec<&String> = idx.weight_map.values().collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else {
            let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| PolicyError::Io(dir.to_owned(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            v.sort();
            v
        };
        if files.is_empty() {
            return Err(PolicyError::Config(format!(
                "{}: no *.safetensors weights in the policy folder",
                dir.display()
            )));
        }
        let mut tensors = BTreeMap::new();
        for f in &files {
            if !f.exists() {
                return Err(PolicyError::Config(format!(
                    "{}: weight file listed in model.safetensors.index.json is missing",
                    f.display()
                )));
            }
            for (name, info) in read_header(f)? {
                if let Some(prev) = tensors.insert(name.clone(), info) {
                    return Err(PolicyError::Weights(format!(
                        "tensor `{name}` appears in both {} and {}",
                        prev.file.display(),
                        f.display()
                    )));
                }
            }
        }
        Ok(Self { files, tensors })
    }

    /// Total parameters.
    pub fn parameter_count(&self) -> u64 {
        self.tensors
            .values()
            .map(|t| t.shape.iter().map(|d| *d as u64).product::<u64>())
            .sum()
    }

    /// Checks that every `(name, shape)` a model needs is present, float and of that shape.
    pub fn check(&self, needed: &[(String, Vec<usize>)]) -> Result<(), PolicyError> {
        for (name, shape) in needed {
            let Some(info) = self.tensors.get(name) else {
                return Err(PolicyError::Weights(format!(
                    "tensor `{name}` (shape {shape:?}) is missing from {}",
                    self.files_list()
                )));
            };
            if !matches!(info.dtype.as_str(), "F32" | "F16" | "BF16" | "F64") {
                return Err(PolicyError::Weights(format!(
                    "{}: tensor `{name}` has dtype {}, a float type is needed",
                    info.file.display(),
                    info.dtype
                )));
            }
            if &info.shape != shape {
                return Err(PolicyError::Weights(format!(
                    "{}: tensor `{name}` has shape {:?} but the configuration needs {shape:?}",
                    info.file.display(),
                    info.shape
                )));
            }
        }
        Ok(())
    }

    fn files_list(&self) -> String {
        self.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A var builder over the files, memory-mapped, converting to `dtype` on `device`.
    pub fn var_builder(
        &self,
        dtype: DType,
        device: &Device,
    ) -> Result<VarBuilder<'static>, PolicyError> {
        // SAFETY: memory-mapping is sound as long as the files are not modified while the
        // model is loaded; every header was validated above. This is the only unsafe block of
        // the policy engine.
        #[allow(unsafe_code)]
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&self.files, dtype, device) };
        vb.map_err(|e| PolicyError::Weights(format!("{}: {e}", self.files_list())))
    }
}

/// Builds a model from the checkpoint in `dir` after checking every tensor it reads
/// (`required`, from [`RecordingBackend`]) against the file headers.
pub fn load_checked<M>(
    dir: &Path,
    dtype: DType,
    device: &Device,
    required: &[(String, Vec<usize>)],
    build: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<M>,
) -> Result<M, PolicyError> {
    let ckpt = Checkpoint::open(dir)?;
    ckpt.check(required)?;
    let vb = ckpt.var_builder(dtype, device)?;
    build(vb).map_err(|e| PolicyError::Weights(format!("{}: {e}", dir.display())))
}

/// `dir/tokenizer.json`.
pub fn load_tokenizer(dir: &Path) -> Result<tokenizers::Tokenizer, PolicyError> {
    let path = dir.join("tokenizer.json");
    tokenizers::Tokenizer::from_file(&path).map_err(|e| PolicyError::Parse(path, e.to_string()))
}

/// A var-builder backend that records the name and shape of every tensor requested and hands
/// out zero-stride broadcasts (no memory), so a model can be "built" to list its tensors.
#[derive(Default)]
pub struct RecordingBackend {
    requested: Mutex<Vec<(String, Vec<usize>)>>,
}

impl RecordingBackend {
    /// A var builder over a fresh recorder, and a handle to read the record afterwards.
    pub fn var_builder(dtype: DType) -> (VarBuilder<'static>, std::sync::Arc<Self>) {
        let rec = std::sync::Arc::new(Self::default());
        let vb =
            VarBuilder::from_backend(Box::new(SharedRecorder(rec.clone())), dtype, Device::Cpu);
        (vb, rec)
    }

    /// Everything requested so far, in order, without duplicates.
    pub fn requested(&self) -> Vec<(String, Vec<usize>)> {
        let mut seen = HashMap::new();
        let v = self.requested.lock().map(|g| g.clone()).unwrap_or_default();
        v.into_iter()
            .filter(|(n, _)| seen.insert(n.clone(), ()).is_none())
            .collect()
    }
}

struct SharedRecorder(std::sync::Arc<RecordingBackend>);

impl SimpleBackend for SharedRecorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Ok(mut g) = self.0.requested.lock() {
            g.push((name.to_owned(), s.dims().to_vec()));
        }
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!(
            "tensor `{name}` requested without a shape while listing a model's tensors"
        )
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}
