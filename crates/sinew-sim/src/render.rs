//! CPU camera rendering by triangle rasterisation: RGB (`rgb8`) and depth (`32FC1`, metres
//! along the optical axis) from a pinhole camera.
//!
//! Every collider is turned into a triangle mesh once (in its own frame); a frame transforms
//! the vertices into the camera's optical frame (z forward, x right, y down), clips against the
//! near plane, and fills a z-buffer. Shading is Lambertian with one directional light plus an
//! ambient term, so colours stay distinguishable and faces of different orientation differ.

use nalgebra::{Isometry3, Point3, Vector3};

/// A triangle mesh in its owner's local frame, with one colour.
#[derive(Debug, Clone)]
pub struct Mesh {
    /// Vertices, metres.
    pub vertices: Vec<Point3<f32>>,
    /// Triangles as vertex indices.
    pub triangles: Vec<[u32; 3]>,
    /// Base colour, linear 0-1.
    pub color: [f32; 3],
}

/// Pinhole camera intrinsics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intrinsics {
    /// Image width, pixels.
    pub width: u32,
    /// Image height, pixels.
    pub height: u32,
    /// Vertical field of view, radians.
    pub fov_y: f64,
}

impl Intrinsics {
    /// Focal length in pixels (square pixels).
    pub fn focal_px(&self) -> f64 {
        self.height as f64 / 2.0 / (self.fov_y / 2.0).tan()
    }

    /// Pixel coordinates (u right, v down; centre of pixel (0,0) is (0.5, 0.5)) of a point
    /// in the optical frame, or `None` behind the camera.
    pub fn project(&self, p_in_camera: &Point3<f64>) -> Option<(f64, f64)> {
        if p_in_camera.z <= 1e-9 {
            return None;
        }
        let f = self.focal_px();
        Some((
            self.width as f64 / 2.0 + f * p_in_camera.x / p_in_camera.z,
            self.height as f64 / 2.0 + f * p_in_camera.y / p_in_camera.z,
        ))
    }
}

/// A rendered frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// `rgb8`, row major.
    pub rgb: Vec<u8>,
    /// Depth along the optical axis, metres; `f32::INFINITY` where nothing was hit.
    pub depth: Vec<f32>,
    /// Index of the mesh seen at each pixel (`u32::MAX` for background).
    pub ids: Vec<u32>,
}

const NEAR: f32 = 0.01;
const BACKGROUND: [u8; 3] = [200, 214, 230];

/// Renders `meshes` posed by `world_from_mesh` from a camera at `world_from_camera`.
pub fn render(
    meshes: &[(&Mesh, Isometry3<f32>)],
    world_from_camera: &Isometry3<f32>,
    k: &Intrinsics,
) -> Frame {
    let (w, h) = (k.width as usize, k.height as usize);
    let mut frame = Frame {
        width: k.width,
        height: k.height,
        rgb: BACKGROUND.repeat(w * h),
        depth: vec![f32::INFINITY; w * h],
        ids: vec![u32::MAX; w * h],
    };
    let f = k.focal_px() as f32;
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let camera_from_world = world_from_camera.inverse();
    // Light from above, slightly in front and to the side, fixed in the world.
    let light_in_world = Vector3::new(0.3f32, -0.4, 1.0).normalize();
    let mut cam_pts: Vec<Point3<f32>> = Vec::new();
    for (id, (mesh, world_from_mesh)) in meshes.iter().enumerate() {
        let camera_from_mesh = camera_from_world * world_from_mesh;
        cam_pts.clear();
        cam_pts.extend(mesh.vertices.iter().map(|v| camera_from_mesh * v));
        for tri in &mesh.triangles {
            let p = [
                cam_pts[tri[0] as usize],
                cam_pts[tri[1] as usize],
                cam_pts[tri[2] as usize],
            ];
            if p.iter().all(|q| q.z < NEAR) {
                continue;
            }
            // Face normal in the world for shading; two-sided.
            let n_cam = (p[1] - p[0]).cross(&(p[2] - p[0]));
            let n_norm = n_cam.norm();
            if n_norm < 1e-12 {
                continue;
            }
            let n_world = world_from_camera.rotation * (n_cam / n_norm);
            let lambert = n_world.dot(&light_in_world).abs();
            let shade = 0.45 + 0.55 * lambert;
            let c = mesh.color;
            let rgb = [
                (c[0] * shade * 255.0).clamp(0.0, 255.0) as u8,
                (c[1] * shade * 255.0).clamp(0.0, 255.0) as u8,
                (c[2] * shade * 255.0).clamp(0.0, 255.0) as u8,
            ];
            // Clip against the near plane (a triangle becomes at most a quad).
            let mut poly: [Point3<f32>; 4] = [p[0]; 4];
            let mut n = 0usize;
            for i in 0..3 {
                let a = p[i];
                let b = p[(i + 1) % 3];
                if a.z >= NEAR {
                    poly[n] = a;
                    n += 1;
                }
                if (a.z >= NEAR) != (b.z >= NEAR) && n < 4 {
                    let t = (NEAR - a.z) / (b.z - a.z);
                    poly[n] = a + (b - a) * t;
                    n += 1;
                }
            }
            for i in 1..n.saturating_sub(1) {
                raster(
                    &mut frame,
                    [poly[0], poly[i], poly[i + 1]],
                    f,
                    cx,
                    cy,
                    rgb,
                    id as u32,
                );
            }
        }
    }
    frame
}

fn raster(frame: &mut Frame, p: [Point3<f32>; 3], f: f32, cx: f32, cy: f32, rgb: [u8; 3], id: u32) {
    let w = frame.width as usize;
    let h = frame.height as usize;
    // Screen positions and inverse depths (perspective-correct depth interpolation).
    let s: [(f32, f32, f32); 3] = p.map(|q| (cx + f * q.x / q.z, cy + f * q.y / q.z, 1.0 / q.z));
    let area = (s[1].0 - s[0].0) * (s[2].1 - s[0].1) - (s[2].0 - s[0].0) * (s[1].1 - s[0].1);
    if area.abs() < 1e-12 {
        return;
    }
    let min_x = s
        .iter()
        .map(|v| v.0)
        .fold(f32::INFINITY, f32::min)
        .floor()
        .max(0.0) as usize;
    let max_x = s
        .iter()
        .map(|v| v.0)
        .fold(f32::NEG_INFINITY, f32::max)
        .ceil()
        .min(w as f32) as usize;
    let min_y = s
        .iter()
        .map(|v| v.1)
        .fold(f32::INFINITY, f32::min)
        .floor()
        .max(0.0) as usize;
    let max_y = s
        .iter()
        .map(|v| v.1)
        .fold(f32::NEG_INFINITY, f32::max)
        .ceil()
        .min(h as f32) as usize;
    if min_x >= max_x || min_y >= max_y {
        return;
    }
    let inv_area = 1.0 / area;
    for y in min_y..max_y {
        let py = y as f32 + 0.5;
        for x in min_x..max_x {
            let px = x as f32 + 0.5;
            let w0 = ((s[1].0 - px) * (s[2].1 - py) - (s[2].0 - px) * (s[1].1 - py)) * inv_area;
            let w1 = ((s[2].0 - px) * (s[0].1 - py) - (s[0].0 - px) * (s[2].1 - py)) * inv_area;
            let w2 = 1.0 - w0 - w1;
            if w0 < 0.0 || w1 < 0.0 || w2 < 0.0 {
                continue;
            }
            let inv_z = w0 * s[0].2 + w1 * s[1].2 + w2 * s[2].2;
            let z = 1.0 / inv_z;
            let i = y * w + x;
            if z < frame.depth[i] {
                frame.depth[i] = z;
                frame.ids[i] = id;
                frame.rgb[3 * i..3 * i + 3].copy_from_slice(&rgb);
            }
        }
    }
}
