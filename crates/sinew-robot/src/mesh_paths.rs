//! Where a URDF's mesh filenames point: `package://`, `file://`, absolute and relative paths,
//! resolved the way ROS and pybullet users expect, so robot descriptions found in the wild load
//! unchanged.
//!
//! `package://PKG/rest` is tried, in order:
//! 1. explicit mappings (`--package PKG=DIR`): `DIR/rest`;
//! 2. `ROS_PACKAGE_PATH` (colon-separated roots): the first folder under a root, a few levels
//!    deep, whose `package.xml` names `PKG` (else one named `PKG`), as `rospack` crawls;
//! 3. walking up from the URDF's folder: the first ancestor named `PKG` or whose `package.xml`
//!    names it (the URDF lies inside its own package);
//! 4. pybullet's way: `package://` stripped and the rest (`PKG/rest`) taken relative to the
//!    URDF's folder, then its parent and grandparent (bullet3's `UrdfFindMeshFile` tries every
//!    ancestor and the working directory; Sinew does not depend on where it runs), so
//!    `package://meshes/visual/link0.obj` beside `franka_panda/panda.urdf` is
//!    `franka_panda/meshes/visual/link0.obj`, and a sibling package
//!    (`src/x_bringup/urdf/x.urdf` naming `package://x_description/...`) is found too;
//! 5. the robot folder as the package: `DIR/rest` for the URDF's folder and the robot folder.
//!
//! `file:///abs/x.stl` is `/abs/x.stl`; other paths are relative to the URDF's folder (then
//! the robot folder). The first candidate that is a file wins; every candidate is recorded so
//! a miss can say where it looked.
//!
//! ```
//! use sinew_robot::mesh_paths::MeshResolver;
//! let mut r = MeshResolver::new("robots/x/robot.urdf".as_ref(), "robots/x".as_ref(), &[], Vec::new());
//! let lookup = r.resolve("package://x_description/meshes/base.stl");
//! assert!(lookup.found.is_none() && !lookup.looked.is_empty());
//! ```

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// How many folders the pybullet rule tries: the URDF's, its parent and grandparent.
pub const PYBULLET_LEVELS: usize = 3;

/// How deep below a `ROS_PACKAGE_PATH` root packages are searched for.
pub const ROS_SEARCH_DEPTH: usize = 5;

/// The outcome of resolving one mesh filename.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshLookup {
    /// The first candidate that is a file.
    pub found: Option<PathBuf>,
    /// Every place looked, in order, each with the rule that proposed it.
    pub looked: Vec<String>,
    /// The first path looked at.
    pub first: Option<PathBuf>,
}

/// Resolves the mesh filenames of one URDF; caches package look-ups between meshes.
#[derive(Debug, Clone)]
pub struct MeshResolver {
    urdf_dir: PathBuf,
    robot_dir: PathBuf,
    packages: Vec<(String, PathBuf)>,
    ros_roots: Vec<PathBuf>,
    ros_cache: HashMap<String, Option<PathBuf>>,
    walk_cache: HashMap<String, Option<PathBuf>>,
}

impl MeshResolver {
    /// A resolver for the URDF at `urdf_path` in the robot folder `robot_dir`, with explicit
    /// package folders (tried first) and `ROS_PACKAGE_PATH` roots (see
    /// [`ros_package_path_from_env`]).
    pub fn new(
        urdf_path: &Path,
        robot_dir: &Path,
        packages: &[(String, PathBuf)],
        ros_roots: Vec<PathBuf>,
    ) -> Self {
        let urdf_dir = match urdf_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self {
            urdf_dir,
            robot_dir: robot_dir.to_path_buf(),
            packages: packages.to_vec(),
            ros_roots,
            ros_cache: HashMap::new(),
            walk_cache: HashMap::new(),
        }
    }

    /// Resolves `filename` as written in the URDF.
    pub fn resolve(&mut self, filename: &str) -> MeshLookup {
        let mut c = Candidates::default();
        if let Some(rest) = filename.strip_prefix("package://") {
            self.package_candidates(rest, &mut c);
        } else {
            let path = filename.strip_prefix("file://").unwrap_or(filename);
            let p = Path::new(path);
            if p.is_absolute() {
                c.push(p.to_path_buf(), "absolute path");
            } else {
                c.push(self.urdf_dir.join(p), "relative to the URDF");
                if self.robot_dir != self.urdf_dir {
                    c.push(self.robot_dir.join(p), "relative to the robot folder");
                }
            }
        }
        c.finish()
    }

    fn package_candidates(&mut self, rest: &str, c: &mut Candidates) {
        let (pkg, sub) = rest.split_once('/').unwrap_or((rest, ""));
        // 1. --package PKG=DIR.
        for (name, dir) in &self.packages {
            if name == pkg {
                c.push(dir.join(sub), format!("--package {pkg}={}", dir.display()));
            }
        }
        // 2. ROS_PACKAGE_PATH.
        if !self.ros_roots.is_empty() {
            let roots = &self.ros_roots;
            let found = self
                .ros_cache
                .entry(pkg.to_owned())
                .or_insert_with(|| roots.iter().find_map(|r| find_package_under(r, pkg)));
            match found {
                Some(dir) => c.push(dir.join(sub), "ROS_PACKAGE_PATH"),
                None => c.note(format!(
                    "no package {pkg:?} under ROS_PACKAGE_PATH ({})",
                    join_paths(&self.ros_roots)
                )),
            }
        }
        // 3. Walking up from the URDF's folder.
        let start = absolute(&self.urdf_dir);
        let found = self
            .walk_cache
            .entry(pkg.to_owned())
            .or_insert_with(|| find_package_above(&start, pkg));
        match found {
            Some(dir) => c.push(dir.join(sub), "walking up from the URDF"),
            None => c.note(format!(
                "no folder {pkg:?} above {} (walking up from the URDF)",
                start.display()
            )),
        }
        // 4. pybullet: the whole rest relative to the URDF's folder, then its ancestors.
        for dir in start.ancestors().take(PYBULLET_LEVELS) {
            c.push(dir.join(rest), "pybullet: relative to the URDF's folders");
        }
        // 5. The robot folder (or the URDF's) as the package itself.
        c.push(self.urdf_dir.join(sub), "the URDF's folder as the package");
        if self.robot_dir != self.urdf_dir {
            c.push(self.robot_dir.join(sub), "the robot folder as the package");
        }
    }
}

/// Candidates in order; the first that is a file wins, the rest are not even checked.
#[derive(Default)]
struct Candidates {
    found: Option<PathBuf>,
    looked: Vec<String>,
    seen: Vec<PathBuf>,
}

impl Candidates {
    fn push(&mut self, path: PathBuf, how: impl std::fmt::Display) {
        if self.found.is_some() || self.seen.contains(&path) {
            return;
        }
        self.seen.push(path.clone());
        self.looked.push(format!("{} ({how})", path.display()));
        if path.is_file() {
            self.found = Some(path);
        }
    }

    fn note(&mut self, what: String) {
        if self.found.is_none() {
            self.looked.push(what);
        }
    }

    fn finish(self) -> MeshLookup {
        MeshLookup {
            found: self.found,
            looked: self.looked,
            first: self.seen.into_iter().next(),
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// The roots in `ROS_PACKAGE_PATH` (empty when unset).
pub fn ros_package_path_from_env() -> Vec<PathBuf> {
    std::env::var_os("ROS_PACKAGE_PATH")
        .map(|v| split_ros_package_path(&v))
        .unwrap_or_default()
}

/// Splits a `ROS_PACKAGE_PATH` value (colon-separated on Unix), dropping empty entries.
pub fn split_ros_package_path(value: &OsStr) -> Vec<PathBuf> {
    std::env::split_paths(value)
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

/// The `<name>` in a `package.xml`, if the file exists and has one.
pub fn package_xml_name(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("package.xml")).ok()?;
    // Drop comments, then take the first <name> element.
    let mut clean = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("<!--") {
        clean.push_str(&rest[..i]);
        rest = rest[i..].find("-->").map_or("", |j| &rest[i + j + 3..]);
    }
    clean.push_str(rest);
    let start = clean.find("<name>")? + "<name>".len();
    let len = clean[start..].find("</name>")?;
    let name = clean[start..start + len].trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn is_package(dir: &Path, pkg: &str) -> bool {
    package_xml_name(dir).as_deref() == Some(pkg)
}

/// The package `pkg` under `root`, searched breadth-first to [`ROS_SEARCH_DEPTH`] levels the
/// way `rospack` crawls: hidden folders and folders with `CATKIN_IGNORE`, `COLCON_IGNORE` or
/// `AMENT_IGNORE` are skipped, and a package's own subfolders are not searched. A folder whose
/// `package.xml` names `pkg` wins over one merely named `pkg`.
pub fn find_package_under(root: &Path, pkg: &str) -> Option<PathBuf> {
    if pkg.is_empty() || !root.is_dir() {
        return None;
    }
    if is_package(root, pkg) {
        return Some(root.to_path_buf());
    }
    let mut by_name = (root.file_name() == Some(OsStr::new(pkg))).then(|| root.to_path_buf());
    if root.join("package.xml").is_file() {
        return by_name;
    }
    let mut level = vec![root.to_path_buf()];
    for _ in 0..ROS_SEARCH_DEPTH {
        let mut next = Vec::new();
        for dir in &level {
            for sub in subfolders(dir) {
                if is_package(&sub, pkg) {
                    return Some(sub);
                }
                if by_name.is_none() && sub.file_name() == Some(OsStr::new(pkg)) {
                    by_name = Some(sub.clone());
                }
                if !sub.join("package.xml").is_file() {
                    next.push(sub);
                }
            }
        }
        level = next;
    }
    by_name
}

/// Subfolders of `dir` a package crawl enters, sorted by name.
fn subfolders(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && !["CATKIN_IGNORE", "COLCON_IGNORE", "AMENT_IGNORE"]
                    .iter()
                    .any(|f| p.join(f).exists())
        })
        .collect();
    out.sort();
    out
}

/// Walking up from `start`: the first ancestor that is the package, named `pkg` or with a
/// `package.xml` that names it. (Packages beside the URDF's folder are pybullet's rule.)
pub fn find_package_above(start: &Path, pkg: &str) -> Option<PathBuf> {
    if pkg.is_empty() {
        return None;
    }
    start
        .ancestors()
        .find(|dir| dir.file_name() == Some(OsStr::new(pkg)) || is_package(dir, pkg))
        .map(Path::to_path_buf)
}

/// Parses `NAME=DIR` (the `--package` option).
pub fn parse_package_arg(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, dir)) if !name.is_empty() && !dir.is_empty() && !name.contains('/') => {
            Ok((name.to_owned(), PathBuf::from(dir)))
        }
        _ => Err(format!(
            "expected NAME=DIR (a package name and its folder), got {s:?}"
        )),
    }
}
