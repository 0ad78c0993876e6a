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

/// Checks a crop: `[x0, y0, x1, y1]`, the kept rectangle as fractions of the image's width
/// and height (left, top, right, bottom), with `0 <= x0 < x1 <= 1` and `0 <= y0 < y1 <= 1`.
pub fn check_crop(c: &[f64; 4]) -> Result<(), String> {
    let [x0, y0, x1, y1] = *c;
    let ok = |a: f64, b: f64| a.is_finite() && b.is_finite() && 0.0 <= a && a < b && b <= 1.0;
    if ok(x0, x1) && ok(y0, y1) {
        Ok(())
    } else {
        Err(format!(
            "crop {c:?} is not [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 (fractions of the image)"
        ))
    }
}

/// The pixel rectangle `(x, y, width, height)` a crop keeps of `img` (see [`check_crop`]);
/// edges are rounded to the nearest pixel and at least one pixel is kept.
fn crop_rect(
    img: &RgbImage,
    c: &[f64; 4],
    what: &str,
) -> Result<(u32, u32, u32, u32), PolicyError> {
    check_crop(c).map_err(|e| PolicyError::Observation(format!("camera `{what}`: {e}")))?;
    let (w, h) = (img.width() as f64, img.height() as f64);
    let x0 = (c[0] * w).round() as u32;
    let y0 = (c[1] * h).round() as u32;
    let x1 = ((c[2] * w).round() as u32).max(x0 + 1).min(img.width());
    let y1 = ((c[3] * h).round() as u32).max(y0 + 1).min(img.height());
    if x0 >= x1 || y0 >= y1 {
        return Err(PolicyError::Observation(format!(
            "camera `{what}`: crop {c:?} of a {}x{} frame keeps no pixel",
            img.width(),
            img.height()
        )));
    }
    Ok((x0, y0, x1 - x0, y1 - y0))
}

/// The part of `img` a crop keeps (see [`check_crop`]).
pub fn crop(img: &RgbImage, c: &[f64; 4], what: &str) -> Result<RgbImage, PolicyError> {
    let (x, y, w, h) = crop_rect(img, c, what)?;
    Ok(image::imageops::crop_imm(img, x, y, w, h).to_image())
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

/// A camera frame as RGB, cropped when a crop is given, then resized to `width` x `height`
/// with sinew-tiny's filter (`Triangle`): how datasets store frames and how sinew-tiny reads
/// them, so training sees what inference sees. The crop is resized from a view, not copied.
pub fn prepared_rgb(
    img: &Image,
    what: &str,
    width: u32,
    height: u32,
    crop_to: Option<&[f64; 4]>,
) -> Result<RgbImage, PolicyError> {
    let rgb = to_rgb(img, what)?;
    Ok(match crop_to {
        None => resize_with(rgb, width, height, FilterType::Triangle),
        Some(c) => {
            let (x, y, w, h) = crop_rect(&rgb, c, what)?;
            let view = image::imageops::crop_imm(&rgb, x, y, w, h);
            image::imageops::resize(&*view, width, height, FilterType::Triangle)
        }
    })
}

/// [`prepared_rgb`] as packed bytes (how datasets store frames).
pub fn resized_rgb(
    img: &Image,
    what: &str,
    width: u32,
    height: u32,
    crop_to: Option<&[f64; 4]>,
) -> Result<Vec<u8>, PolicyError> {
    Ok(prepared_rgb(img, what, width, height, crop_to)?.into_raw())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crop_keeps_the_named_rectangle_of_pixels() {
        // Pixel (x, y) holds (x, y, 7).
        let img = RgbImage::from_fn(10, 20, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let c = crop(&img, &[0.2, 0.25, 0.7, 0.9], "front").expect("crop");
        assert_eq!(c.dimensions(), (5, 13));
        assert_eq!(c.get_pixel(0, 0).0, [2, 5, 7]);
        assert_eq!(c.get_pixel(4, 12).0, [6, 17, 7]);
        // The whole frame is the frame.
        assert_eq!(
            crop(&img, &[0.0, 0.0, 1.0, 1.0], "front").expect("crop"),
            img
        );
        // A sliver still keeps one pixel.
        let one = crop(&img, &[0.5, 0.5, 0.51, 0.51], "front").expect("crop");
        assert_eq!(one.dimensions(), (1, 1));
    }

    #[test]
    fn bad_crops_are_refused_naming_the_camera() {
        let img = RgbImage::new(8, 8);
        for c in [
            [0.5, 0.0, 0.4, 1.0],
            [0.0, 0.0, 1.0, 1.5],
            [-0.1, 0.0, 1.0, 1.0],
            [0.0, f64::NAN, 1.0, 1.0],
        ] {
            assert!(check_crop(&c).is_err(), "{c:?}");
            let e = crop(&img, &c, "wrist").expect_err("refused").to_string();
            assert!(e.contains("`wrist`") && e.contains("x0 < x1"), "{e}");
        }
    }
}
