//! Devices and dtypes from their command-line names (`cpu`, `cuda`, `cuda:N`; `f32`, `bf16`,
//! `f16`).

use candle_core::{DType, Device};

use crate::PolicyError;

/// The device named `name`. CUDA needs a build with the `cuda` feature and a GPU.
pub fn parse_device(name: &str) -> Result<Device, PolicyError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ if name == "cuda" || name.starts_with("cuda:") => {
            let ordinal = match name.strip_prefix("cuda:") {
                Some(n) => n.parse::<usize>().map_err(|_| {
                    PolicyError::Config(format!("device `{name}`: expected cuda:N with N a number"))
                })?,
                None => 0,
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(PolicyError::Config(format!(
                    "device `{name}`: this sinew was built without the `cuda` feature (cargo build --features cuda)"
                )));
            }
            Device::new_cuda(ordinal)
                .map_err(|e| PolicyError::Config(format!("device `{name}`: {e}")))
        }
        other => Err(PolicyError::Config(format!(
            "device `{other}`: expected cpu, cuda or cuda:N"
        ))),
    }
}

/// The dtype named `name`, or the device's default (f32 on the CPU, bf16 on CUDA) for `auto`.
pub fn parse_dtype(name: &str, device: &Device) -> Result<DType, PolicyError> {
    Ok(match name {
        "auto" => {
            if device.is_cuda() {
                DType::BF16
            } else {
                DType::F32
            }
        }
        "f32" => DType::F32,
        "bf16" if !device.is_cuda() => {
            return Err(PolicyError::Config(
                "dtype bf16 is not supported on the CPU (candle's CPU matmul and convolutions lack it); use f32 or f16".into(),
            ))
        }
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        other => {
            return Err(PolicyError::Config(format!(
                "dtype `{other}`: expected auto, f32, bf16 or f16"
            )))
        }
    })
}
