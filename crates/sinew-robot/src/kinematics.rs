//! The kinematic tree of a URDF: forward kinematics, geometric Jacobians and damped
//! least-squares inverse kinematics that respects joint limits.
//!
//! Frames: every pose is `base_from_<link>`, the link's frame expressed in the root link's
//! frame. Positions in metres, angles in radians.

use nalgebra::{DMatrix, DVector, Isometry3, Translation3, Unit, UnitQuaternion, Vector3, Vector6};

use crate::RobotError;

/// The motion a joint allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JointKind {
    /// Rotation about `axis` (revolute or continuous).
    Revolute,
    /// Translation along `axis`.
    Prismatic,
    /// No motion.
    Fixed,
}

/// One URDF joint.
#[derive(Debug, Clone)]
pub struct TreeJoint {
    /// URDF name.
    pub name: String,
    /// Motion.
    pub kind: JointKind,
    /// Parent link index.
    pub parent: usize,
    /// Child link index.
    pub child: usize,
    /// Joint frame in the parent link's frame (the URDF `<origin>`).
    pub parent_from_joint: Isometry3<f64>,
    /// Unit axis in the joint frame.
    pub axis: Unit<Vector3<f64>>,
    /// Position limits from the URDF (rad or m); `None` for continuous or fixed joints.
    pub limits: Option<(f64, f64)>,
    /// Velocity limit from the URDF.
    pub velocity: f64,
    /// Effort limit from the URDF.
    pub effort: f64,
    /// `(source joint index, multiplier, offset)` when this joint mimics another.
    pub mimic: Option<(usize, f64, f64)>,
}

/// A kinematic tree rooted at one link.
#[derive(Debug, Clone)]
pub struct KinematicTree {
    /// Link names; index 0 is the root.
    pub links: Vec<String>,
    /// Joints ordered parents before children.
    pub joints: Vec<TreeJoint>,
    /// For each link, the joint whose child it is (`None` for the root).
    pub parent_joint: Vec<Option<usize>>,
    /// Joint indices of the variables of `q`, in order.
    pub active: Vec<usize>,
}

fn rpy_to_quat(rpy: [f64; 3]) -> UnitQuaternion<f64> {
    // URDF: fixed-axis roll about x, then pitch about y, then yaw about z.
    UnitQuaternion::from_euler_angles(rpy[0], rpy[1], rpy[2])
}

impl KinematicTree {
    /// Builds the tree of `urdf`, rooted at `root` (or at the URDF's only parentless link).
    /// `active` names the joints that make up `q`, in order; `None` takes every movable,
    /// non-mimic joint in URDF order.
    pub fn from_urdf(
        urdf: &urdf_rs::Robot,
        file: &std::path::Path,
        root: Option<&str>,
        active: Option<&[String]>,
    ) -> Result<Self, RobotError> {
        let err = |what: String, reason: String| {
            RobotError::from(sinew_core::files::FileError::field(file, what, reason))
        };
        let names: Vec<&str> = urdf.links.iter().map(|l| l.name.as_str()).collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(err(format!("link {n:?}"), "defined twice".into()));
            }
        }
        let link_index = |n: &str| names.iter().position(|x| *x == n);
        // Parent joint of each link, checking that each link has at most one.
        let mut parent_of: Vec<Option<usize>> = vec![None; names.len()];
        for (ji, j) in urdf.joints.iter().enumerate() {
            let Some(c) = link_index(&j.child.link) else {
                return Err(err(
                    format!("joint {:?} child", j.name),
                    format!("no link named {:?}", j.child.link),
                ));
            };
            if link_index(&j.parent.link).is_none() {
                return Err(err(
                    format!("joint {:?} parent", j.name),
                    format!("no link named {:?}", j.parent.link),
                ));
            }
            if parent_of[c].is_some() {
                return Err(err(
                    format!("link {:?}", j.child.link),
                    "is the child of more than one joint".into(),
                ));
            }
            parent_of[c] = Some(ji);
        }
        let root_idx = match root {
            Some(r) => link_index(r).ok_or_else(|| {
                err(
                    "base_link".into(),
                    format!("no link named {r:?} in the URDF"),
                )
            })?,
            None => {
                let roots: Vec<usize> = (0..names.len())
                    .filter(|i| parent_of[*i].is_none())
                    .collect();
                match roots.as_slice() {
                    [r] => *r,
                    [] => return Err(err("links".into(), "no root link (a cycle?)".into())),
                    many => {
                        return Err(err(
                            "links".into(),
                            format!(
                                "{} links have no parent ({}); a URDF has exactly one root",
                                many.len(),
                                many.iter()
                                    .map(|i| names[*i])
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ))
                    }
                }
            }
        };
        // Breadth-first from the root: link order and joint order, parents first.
        let mut links = vec![names[root_idx].to_owned()];
        let mut old_to_new: Vec<Option<usize>> = vec![None; names.len()];
        old_to_new[root_idx] = Some(0);
        let mut order: Vec<usize> = Vec::new();
        let mut frontier = vec![root_idx];
        while let Some(l) = frontier.pop() {
            for (ji, j) in urdf.joints.iter().enumerate() {
                if j.parent.link == names[l] {
                    let c = link_index(&j.child.link).unwrap_or(0);
                    if old_to_new[c].is_some() {
                        return Err(err(format!("joint {:?}", j.name), "closes a cycle".into()));
                    }
                    old_to_new[c] = Some(links.len());
                    links.push(names[c].to_owned());
                    order.push(ji);
                    frontier.push(c);
                }
            }
        }
        let mut joints = Vec::with_capacity(order.len());
        for &ji in &order {
            let j = &urdf.joints[ji];
            let parent = old_to_new[link_index(&j.parent.link).unwrap_or(0)].unwrap_or(0);
            let child = old_to_new[link_index(&j.child.link).unwrap_or(0)].unwrap_or(0);
            joints.push(tree_joint(j, file, parent, child)?);
        }
        if links.len() < names.len() {
            let unreachable: Vec<&str> = (0..names.len())
                .filter(|i| old_to_new[*i].is_none())
                .map(|i| names[i])
                .collect();
            tracing::warn!(links = ?unreachable, "links not under the root are ignored");
        }
        let joint_index = |n: &str, joints: &[TreeJoint]| joints.iter().position(|j| j.name == n);
        // Mimic joints.
        for &ji in &order {
            let j = &urdf.joints[ji];
            if let Some(m) = &j.mimic {
                let me = joint_index(&j.name, &joints).unwrap_or(0);
                let Some(src) = joint_index(&m.joint, &joints) else {
                    return Err(err(
                        format!("joint {:?} mimic", j.name),
                        format!("no joint named {:?}", m.joint),
                    ));
                };
                joints[me].mimic =
                    Some((src, m.multiplier.unwrap_or(1.0), m.offset.unwrap_or(0.0)));
            }
        }
        let active: Vec<usize> = match active {
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let ji = joint_index(n, &joints).ok_or_else(|| {
                        err(
                            format!("joints[{i}].name"),
                            format!("no joint {n:?} in the URDF"),
                        )
                    })?;
                    if joints[ji].kind == JointKind::Fixed {
                        return Err(err(
                            format!("joints[{i}].name"),
                            format!("{n:?} is a fixed joint"),
                        ));
                    }
                    Ok(ji)
                })
                .collect::<Result<_, _>>()?,
            None => (0..joints.len())
                .filter(|i| joints[*i].kind != JointKind::Fixed && joints[*i].mimic.is_none())
                .collect(),
        };
        let mut parent_joint = vec![None; links.len()];
        for (ji, j) in joints.iter().enumerate() {
            parent_joint[j.child] = Some(ji);
        }
        Ok(Self {
            links,
            joints,
            parent_joint,
            active,
        })
    }

    /// Number of joint variables.
    pub fn dof(&self) -> usize {
        self.active.len()
    }

    /// Index of a link by name.
    pub fn link_index(&self, name: &str) -> Option<usize> {
        self.links.iter().position(|l| l == name)
    }

    /// The tree drawn as text, one line per joint, indented by depth from the root:
    /// `parent --[joint kind (mimics src xM+O)]--> child`.
    pub fn drawing(&self) -> Vec<String> {
        fn walk(t: &KinematicTree, link: usize, depth: usize, out: &mut Vec<String>) {
            for j in t.joints.iter().filter(|j| j.parent == link) {
                let kind = match j.kind {
                    JointKind::Revolute => "revolute",
                    JointKind::Prismatic => "prismatic",
                    JointKind::Fixed => "fixed",
                };
                let mimic = j
                    .mimic
                    .map(|(s, m, o)| format!(" mimics {} x{m}+{o}", t.joints[s].name))
                    .unwrap_or_default();
                out.push(format!(
                    "{}{} --[{} {kind}{mimic}]--> {}",
                    "  ".repeat(depth + 1),
                    t.links[j.parent],
                    j.name,
                    t.links[j.child]
                ));
                walk(t, j.child, depth + 1, out);
            }
        }
        let mut out = Vec::new();
        walk(self, 0, 0, &mut out);
        out
    }

    /// Names of the joint variables, in `q` order.
    pub fn active_names(&self) -> Vec<&str> {
        self.active
            .iter()
            .map(|&j| self.joints[j].name.as_str())
            .collect()
    }

    /// The value of every joint (not only the active ones) for variables `q`: mimic joints
    /// follow their source; joints that are neither active nor mimic stay at zero (or their
    /// limit nearest zero).
    pub fn all_joint_values(&self, q: &[f64]) -> Result<Vec<f64>, RobotError> {
        if q.len() != self.dof() {
            return Err(RobotError::JointCount {
                expected: self.dof(),
                got: q.len(),
            });
        }
        if let Some(i) = q.iter().position(|v| !v.is_finite()) {
            return Err(RobotError::NonFinite {
                what: format!("joint {}", self.joints[self.active[i]].name),
            });
        }
        let mut v: Vec<f64> = self
            .joints
            .iter()
            .map(|j| j.limits.map_or(0.0, |(lo, hi)| 0.0f64.clamp(lo, hi)))
            .collect();
        for (k, &ji) in self.active.iter().enumerate() {
            v[ji] = q[k];
        }
        for ji in 0..self.joints.len() {
            if let Some((src, m, o)) = self.joints[ji].mimic {
                v[ji] = v[src] * m + o;
            }
        }
        Ok(v)
    }

    fn joint_motion(j: &TreeJoint, value: f64) -> Isometry3<f64> {
        match j.kind {
            JointKind::Revolute => Isometry3::from_parts(
                Translation3::identity(),
                UnitQuaternion::from_axis_angle(&j.axis, value),
            ),
            JointKind::Prismatic => Isometry3::from_parts(
                Translation3::from(j.axis.into_inner() * value),
                UnitQuaternion::identity(),
            ),
            JointKind::Fixed => Isometry3::identity(),
        }
    }

    /// Forward kinematics: `base_from_link` for every link, indexed like `links`.
    pub fn forward(&self, q: &[f64]) -> Result<Vec<Isometry3<f64>>, RobotError> {
        let values = self.all_joint_values(q)?;
        let mut poses = vec![Isometry3::identity(); self.links.len()];
        for (ji, j) in self.joints.iter().enumerate() {
            poses[j.child] =
                poses[j.parent] * j.parent_from_joint * Self::joint_motion(j, values[ji]);
        }
        Ok(poses)
    }

    /// `base_from_link` of one link.
    pub fn link_pose(&self, q: &[f64], link: usize) -> Result<Isometry3<f64>, RobotError> {
        Ok(self.forward(q)?[link])
    }

    /// Geometric Jacobian (6 x dof) of `link`'s origin in the base frame: rows 0-2 linear
    /// velocity (m/s per unit joint speed), rows 3-5 angular velocity.
    pub fn jacobian(&self, q: &[f64], link: usize) -> Result<DMatrix<f64>, RobotError> {
        let poses = self.forward(q)?;
        let p_link = poses[link].translation.vector;
        let mut jac = DMatrix::zeros(6, self.dof());
        let mut cur = link;
        while let Some(ji) = self.parent_joint[cur] {
            let j = &self.joints[ji];
            cur = j.parent;
            if j.kind == JointKind::Fixed {
                continue;
            }
            // The joint frame sits at the child link's origin.
            let base_from_joint = poses[j.child];
            let axis = base_from_joint.rotation * j.axis.into_inner();
            let col = match j.kind {
                JointKind::Revolute => {
                    let r = p_link - base_from_joint.translation.vector;
                    Vector6::new(0.0, 0.0, 0.0, axis.x, axis.y, axis.z)
                        + Vector6::from_iterator(axis.cross(&r).iter().cloned().chain([0.0; 3]))
                }
                JointKind::Prismatic => Vector6::new(axis.x, axis.y, axis.z, 0.0, 0.0, 0.0),
                JointKind::Fixed => Vector6::zeros(),
            };
            // Credit the column to the variable driving this joint (itself, or its mimic source).
            let (src, mult) = match j.mimic {
                Some((s, m, _)) => (s, m),
                None => (ji, 1.0),
            };
            if let Some(k) = self.active.iter().position(|&a| a == src) {
                for r in 0..6 {
                    jac[(r, k)] += col[r] * mult;
                }
            }
        }
        Ok(jac)
    }

    /// Limits of each variable (URDF limits; unbounded for continuous joints).
    pub fn active_limits(&self) -> Vec<(f64, f64)> {
        self.active
            .iter()
            .map(|&j| {
                self.joints[j]
                    .limits
                    .unwrap_or((f64::NEG_INFINITY, f64::INFINITY))
            })
            .collect()
    }
}

/// What inverse kinematics should match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IkTarget {
    /// Position of the link origin in the base frame, m.
    Position(Vector3<f64>),
    /// Full pose `base_from_link`.
    Pose(Isometry3<f64>),
    /// Position of the link origin, and a direction: the link's `axis_in_link` must point
    /// along `direction_in_base` (rotation about that axis is free). For example a gripper's
    /// approach axis pointing down.
    PositionAxis {
        /// Target position, base frame, m.
        position: Vector3<f64>,
        /// Unit axis in the link frame.
        axis_in_link: Unit<Vector3<f64>>,
        /// Unit direction in the base frame.
        direction_in_base: Unit<Vector3<f64>>,
    },
}

/// Options of [`solve_ik`].
#[derive(Debug, Clone)]
pub struct IkOptions {
    /// Damping factor lambda of damped least squares, used at errors of 5 cm and more and
    /// scaled down in proportion below that.
    pub damping: f64,
    /// Largest joint step per iteration, rad or m.
    pub max_step: f64,
    /// Iteration budget (per attempt).
    pub max_iterations: usize,
    /// Position tolerance, m.
    pub position_tolerance: f64,
    /// Orientation tolerance, rad.
    pub orientation_tolerance: f64,
    /// Weight of orientation error against position error (m per rad).
    pub orientation_weight: f64,
    /// Which variables may move (`None`: all).
    pub free: Option<Vec<bool>>,
    /// Additional attempts from perturbed starts when the first does not converge.
    pub restarts: usize,
    /// Joint limits used, per variable; `None` takes the tree's.
    pub limits: Option<Vec<(f64, f64)>>,
}

impl Default for IkOptions {
    fn default() -> Self {
        Self {
            damping: 0.05,
            max_step: 0.2,
            max_iterations: 200,
            position_tolerance: 1e-4,
            orientation_tolerance: 1e-3,
            orientation_weight: 0.3,
            free: None,
            restarts: 24,
            limits: None,
        }
    }
}

/// Result of [`solve_ik`].
#[derive(Debug, Clone, PartialEq)]
pub struct IkSolution {
    /// Joint variables, always within limits.
    pub q: Vec<f64>,
    /// Remaining position error, m.
    pub position_error: f64,
    /// Remaining orientation error, rad (0 for position targets).
    pub orientation_error: f64,
    /// Iterations used in total.
    pub iterations: usize,
    /// Whether the tolerances were met.
    pub converged: bool,
}

fn pose_error(target: &IkTarget, current: &Isometry3<f64>) -> (Vector3<f64>, Vector3<f64>) {
    match target {
        IkTarget::Position(p) => (p - current.translation.vector, Vector3::zeros()),
        IkTarget::Pose(t) => {
            let dp = t.translation.vector - current.translation.vector;
            let dr = (t.rotation * current.rotation.inverse()).scaled_axis();
            (dp, dr)
        }
        IkTarget::PositionAxis {
            position,
            axis_in_link,
            direction_in_base,
        } => {
            let dp = position - current.translation.vector;
            let a = current.rotation * axis_in_link.into_inner();
            let b = direction_in_base.into_inner();
            // Rotation vector taking a onto b (perpendicular to both).
            let c = a.cross(&b);
            let sin = c.norm();
            let cos = a.dot(&b);
            let angle = sin.atan2(cos);
            let dr = if sin > 1e-12 {
                c * (angle / sin)
            } else if cos < 0.0 {
                // Opposite: any perpendicular axis.
                let p = if a.x.abs() < 0.9 {
                    Vector3::x()
                } else {
                    Vector3::y()
                };
                a.cross(&p).normalize() * std::f64::consts::PI
            } else {
                Vector3::zeros()
            };
            (dp, dr)
        }
    }
}

/// Damped least-squares IK for `link`, starting from `q0`. Every iterate is clamped to the
/// joint limits, so the answer is always feasible; when the target is out of reach, the
/// closest configuration found is returned with `converged: false`.
pub fn solve_ik(
    tree: &KinematicTree,
    link: usize,
    target: IkTarget,
    q0: &[f64],
    opts: &IkOptions,
) -> Result<IkSolution, RobotError> {
    let n = tree.dof();
    if q0.len() != n {
        return Err(RobotError::JointCount {
            expected: n,
            got: q0.len(),
        });
    }
    let limits = opts.limits.clone().unwrap_or_else(|| tree.active_limits());
    let free = opts.free.clone().unwrap_or_else(|| vec![true; n]);
    let clamp = |q: &mut [f64]| {
        for (v, (lo, hi)) in q.iter_mut().zip(&limits) {
            *v = v.clamp(*lo, *hi);
        }
    };
    let with_rot = !matches!(target, IkTarget::Position(_));
    let w = opts.orientation_weight;
    let mut best: Option<IkSolution> = None;
    let mut total_iters = 0usize;
    // Deterministic perturbations for restarts (a small LCG; no global RNG).
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next_unit = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 11) as f64) / ((1u64 << 53) as f64)
    };
    for attempt in 0..=opts.restarts {
        let mut q: Vec<f64> = q0.to_vec();
        if attempt > 0 {
            for (k, v) in q.iter_mut().enumerate() {
                if free[k] {
                    let (lo, hi) = limits[k];
                    let (lo, hi) = (lo.max(-std::f64::consts::PI), hi.min(std::f64::consts::PI));
                    *v = lo + (hi - lo) * next_unit();
                }
            }
        }
        clamp(&mut q);
        let mut sol = IkSolution {
            q: q.clone(),
            position_error: f64::INFINITY,
            orientation_error: f64::INFINITY,
            iterations: 0,
            converged: false,
        };
        for it in 0..opts.max_iterations {
            total_iters += 1;
            let pose = tree.link_pose(&q, link)?;
            let (dp, dr) = pose_error(&target, &pose);
            sol.q.clone_from(&q);
            sol.position_error = dp.norm();
            sol.orientation_error = dr.norm();
            sol.iterations = it;
            if sol.position_error < opts.position_tolerance
                && sol.orientation_error < opts.orientation_tolerance
            {
                sol.converged = true;
                break;
            }
            let jac = tree.jacobian(&q, link)?;
            let rows = if with_rot { 6 } else { 3 };
            let mut j = DMatrix::zeros(rows, n);
            let mut e = DVector::zeros(rows);
            for r in 0..3 {
                e[r] = dp[r];
                for c in 0..n {
                    j[(r, c)] = if free[c] { jac[(r, c)] } else { 0.0 };
                }
            }
            if with_rot {
                for r in 0..3 {
                    e[3 + r] = dr[r] * w;
                    for c in 0..n {
                        j[(3 + r, c)] = if free[c] { jac[(3 + r, c)] * w } else { 0.0 };
                    }
                }
            }
            // Damping shrinks with the error: robust far from the target, Gauss-Newton fast
            // near it (a Levenberg-Marquardt style schedule).
            let scale = (e.norm() / 0.05).min(1.0);
            let lambda2 = (opts.damping * scale).powi(2) + 1e-9;
            let jjt = &j * j.transpose() + DMatrix::identity(rows, rows) * lambda2;
            let Some(y) = jjt.lu().solve(&e) else {
                break;
            };
            let mut dq = j.transpose() * y;
            let largest = dq.amax();
            if largest > opts.max_step {
                dq *= opts.max_step / largest;
            }
            for k in 0..n {
                q[k] += dq[k];
            }
            clamp(&mut q);
        }
        let better = match &best {
            None => true,
            Some(b) => {
                sol.converged && !b.converged
                    || (sol.converged == b.converged
                        && sol.position_error + sol.orientation_error * w
                            < b.position_error + b.orientation_error * w)
            }
        };
        if better {
            best = Some(sol);
        }
        if best.as_ref().is_some_and(|b| b.converged) {
            break;
        }
    }
    let mut best = best.ok_or(RobotError::JointCount {
        expected: n,
        got: 0,
    })?;
    best.iterations = total_iters;
    Ok(best)
}

/// One URDF joint as a joint of the tree, its parent and child given as tree link indices.
fn tree_joint(
    j: &urdf_rs::Joint,
    file: &std::path::Path,
    parent: usize,
    child: usize,
) -> Result<TreeJoint, RobotError> {
    let err = |what: String, reason: String| {
        RobotError::from(sinew_core::files::FileError::field(file, what, reason))
    };
    let xyz = j.origin.xyz.0;
    let rpy = j.origin.rpy.0;
    if !xyz.iter().chain(rpy.iter()).all(|v| v.is_finite()) {
        return Err(err(
            format!("joint {:?} origin", j.name),
            "NaN or infinity in xyz/rpy".into(),
        ));
    }
    let kind = match &j.joint_type {
        urdf_rs::JointType::Revolute | urdf_rs::JointType::Continuous => JointKind::Revolute,
        urdf_rs::JointType::Prismatic => JointKind::Prismatic,
        urdf_rs::JointType::Fixed => JointKind::Fixed,
        other => {
            tracing::warn!(joint = %j.name, "{other:?} joints are not supported; treated as fixed");
            JointKind::Fixed
        }
    };
    let a = Vector3::from(j.axis.xyz.0);
    let axis = if kind == JointKind::Fixed {
        Vector3::x_axis()
    } else {
        if !(a.iter().all(|v| v.is_finite()) && a.norm() > 1e-9) {
            return Err(err(
                format!("joint {:?} axis", j.name),
                "must be a non-zero finite vector".into(),
            ));
        }
        Unit::new_normalize(a)
    };
    let limits = match (kind, &j.joint_type) {
        (JointKind::Fixed, _) | (_, urdf_rs::JointType::Continuous) => None,
        _ => {
            let (lo, hi) = (j.limit.lower, j.limit.upper);
            if lo.is_nan() || hi.is_nan() {
                return Err(err(format!("joint {:?} limit", j.name), "NaN limit".into()));
            }
            if lo > hi {
                return Err(err(
                    format!("joint {:?} limit", j.name),
                    format!("lower {lo} is above upper {hi}"),
                ));
            }
            Some((lo, hi))
        }
    };
    Ok(TreeJoint {
        name: j.name.clone(),
        kind,
        parent,
        child,
        parent_from_joint: Isometry3::from_parts(
            Translation3::from(Vector3::from(xyz)),
            rpy_to_quat(rpy),
        ),
        axis,
        limits,
        velocity: j.limit.velocity,
        effort: j.limit.effort,
        mimic: None,
    })
}
