//! Camera frames to model inputs: encoding conversion, resizing and per-channel normalisation.

use candle_core::{Device, Tensor};
use image::{imageops::FilterType, RgbImage};
use sinew_core::Image;

use crate::PolicyError;

/// The frame of camera `cam` in an observation, or an error listing the cameras it has.
pub fn camera_frame<'a>(
    obs: &'a sinew_core::Observation,
    cam: &str,
) -> Result<&'a Image, PolicyError> {
    obs.images.get(cam).ok_or_else(|| {
        PolicyError::Observation(format!(
            "no image from camera `{cam}` (have: {})",
            obs.images.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })
}

/// A camera frame as packed RGB, whatever its wire encoding (`rgb8`, `bgr8`, `rgba8`, `bgra8`,
/// `mono8`). `what` names the frame in errors (the camera).
pub fn to_rgb(img: &Image, what: &str) -> Result<RgbImage, PolicyError> {
    let out = img
        .to_packed_rgb()
        .map_err(|e| PolicyError::Observation(format!("camera `{what}`: {e}")))?;
    let (w, h) = (img.width as usize, img.height as usize);
    RgbImage::from_raw(w as u32, h as u32, out)
        .ok_or_else(|| PolicyError::Observation(format!("camera `{what}`: image buffer size")))
}

/// Resizes to `(width, height)` with a bicubic (Catmull-Rom) filter that averages when
/// shrinking (what OpenVLA's bicubic resize approximates); a frame already at that size is
/// returned unchanged.
pub fn resize(img: RgbImage, width: u32, height: u32) -> RgbImage {
    resize_with(img, width, height, FilterType::CatmullRom)
}

/// Resizes with a chosen filter (sinew-tiny uses the cheaper `Triangle`, in training too).
pub fn resize_with(img: RgbImage, width: u32, height: u32, filter: FilterType) -> RgbImage {
    if img.width() == width && img.height() == height {
        img
    } else {
        image::imageops::resize(&img, width, height, filter)
    }
}

/// `(1, 3, H, W)` f32 tensor of `(x / 255 - mean) / std` per channel.
pub fn normalize(
    img: &RgbImage,
    mean: [f32; 3],
    std: [f32; 3],
    device: &Device,
) -> Result<Tensor, PolicyError> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut planes = vec![0f32; 3 * w * h];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            planes[c * w * h + i] = (px.0[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    Tensor::from_vec(planes, (1, 3, h, w), device).map_err(|e| PolicyError::Model(e.to_string()))
}

/// A camera frame as packed RGB resized to `width` x `height` with sinew-tiny's filter
/// (`Triangle`): how datasets store frames, so training sees what inference sees.
pub fn resized_rgb(
    img: &Image,
    what: &str,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, PolicyError> {
    Ok(resize_with(to_rgb(img, what)?, width, height, FilterType::Triangle).into_raw())
}

/// An image file (any format the `image` crate reads here: PNG) as an `rgb8` frame.
pub fn read_image_file(path: &std::path::Path) -> Result<Image, PolicyError> {
    let img = image::open(path)
        .map_err(|e| PolicyError::Io(path.to_owned(), std::io::Error::other(e.to_string())))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    Ok(Image {
        width: w,
        height: h,
        encoding: "rgb8".into(),
        step: 3 * w,
        data: img.into_raw().into(),
        ..Default::default()
    })
}
