//! No command leaves the limits, whatever the targets: random and adversarial policies.

use proptest::prelude::*;
use sinew_runtime::safety::{JointLimits, SafetyFilter};

fn limits() -> Vec<JointLimits> {
    vec![
        JointLimits {
            position_min: -1.9,
            position_max: 1.9,
            velocity_max: 3.0,
            acceleration_max: 15.0,
        },
        JointLimits {
            position_min: -0.5,
            position_max: 0.25,
            velocity_max: 1.0,
            acceleration_max: 4.0,
        },
        JointLimits {
            position_min: 0.0,
            position_max: 0.04,
            velocity_max: 0.2,
            acceleration_max: 1.0,
        },
    ]
}

const DT: f64 = 0.01;
const EPS: f64 = 1e-9;

/// Checks one run of commands against every limit.
fn check(cmds: &[Vec<f64>], start: &[f64]) -> Result<(), String> {
    let l = limits();
    let mut q_prev = start.to_vec();
    let mut v_prev = vec![0.0; l.len()];
    for (k, q) in cmds.iter().enumerate() {
        for i in 0..l.len() {
            let v = (q[i] - q_prev[i]) / DT;
            if !q[i].is_finite() || q[i] < l[i].position_min - EPS || q[i] > l[i].position_max + EPS
            {
                return Err(format!("step {k} joint {i}: position {}", q[i]));
            }
            if v.abs() > l[i].velocity_max * (1.0 + 1e-9) + EPS {
                return Err(format!("step {k} joint {i}: velocity {v}"));
            }
            if (v - v_prev[i]).abs() > l[i].acceleration_max * DT * (1.0 + 1e-6) + 1e-6 {
                return Err(format!(
                    "step {k} joint {i}: acceleration {}",
                    (v - v_prev[i]) / DT
                ));
            }
            v_prev[i] = v;
        }
        q_prev = q.clone();
    }
    Ok(())
}

fn target_strategy() -> impl Strategy<Value = Option<Vec<f64>>> {
    prop_oneof![
        4 => proptest::collection::vec(-3.0f64..3.0, 3).prop_map(Some),
        1 => Just(Some(vec![f64::NAN, 0.0, 0.0])),
        1 => Just(Some(vec![f64::INFINITY, -1e300, 1e300])),
        1 => Just(Some(vec![0.0, 0.0])),
        1 => Just(None),
        2 => proptest::collection::vec(prop_oneof![Just(-1e6), Just(1e6), Just(1.9), Just(-1.9)], 3).prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn random_and_adversarial_targets_never_leave_the_limits(
        start in (-1.9f64..1.9, -0.5f64..0.25, 0.0f64..0.04),
        targets in proptest::collection::vec((target_strategy(), 1usize..40), 1..30),
    ) {
        let start = vec![start.0, start.1, start.2];
        let mut f = SafetyFilter::new(limits(), DT, &start).expect("filter");
        let mut cmds = Vec::new();
        // Each target is held for a random number of steps (a policy's chunks), up to ~700 steps.
        for (t, hold) in &targets {
            for _ in 0..*hold {
                cmds.push(f.filter(t.as_deref()).0);
            }
        }
        check(&cmds, &start).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn bang_bang_policy_at_the_limits_stays_inside() {
    // A policy that alternates between far outside each limit every step: the worst case for
    // braking before the position limits.
    let start = vec![1.8, 0.2, 0.03];
    let mut f = SafetyFilter::new(limits(), DT, &start).expect("filter");
    let mut cmds = Vec::new();
    for k in 0..5000 {
        let s = if (k / 7) % 2 == 0 { 1e3 } else { -1e3 };
        cmds.push(f.filter(Some(&[s, s, s])).0);
    }
    check(&cmds, &start).expect("limits");
    let st = f.stats();
    assert!(
        st.position > 0 && st.velocity > 0 && st.acceleration > 0,
        "{st:?}"
    );
}

#[test]
fn reachable_targets_are_reached_and_holding_stops() {
    let start = vec![0.0, 0.0, 0.0];
    let mut f = SafetyFilter::new(limits(), DT, &start).expect("filter");
    let goal = [1.0, -0.3, 0.02];
    let mut last = Vec::new();
    for _ in 0..400 {
        last = f.filter(Some(&goal)).0;
    }
    for i in 0..3 {
        assert!(
            (last[i] - goal[i]).abs() < 1e-6,
            "joint {i}: {} vs {}",
            last[i],
            goal[i]
        );
    }
    // Moving fast, then hold: it brakes and stops, within the limits.
    let mut cmds = Vec::new();
    for _ in 0..30 {
        cmds.push(f.filter(Some(&[-1.9, 0.25, 0.0])).0);
    }
    let moving = f.last_velocity()[0].abs();
    assert!(moving > 1.0);
    for _ in 0..200 {
        cmds.push(f.filter(None).0);
    }
    assert!(
        f.last_velocity().iter().all(|v| v.abs() < 1e-9),
        "{:?}",
        f.last_velocity()
    );
    check(&cmds, &last).expect("limits");
    // NaN targets are rejected and counted.
    f.filter(Some(&[f64::NAN, 0.0, 0.0]));
    assert_eq!(f.stats().non_finite, 1);
}

#[test]
fn start_outside_the_limits_is_refused() {
    let e = SafetyFilter::new(limits(), DT, &[2.5, 0.0, 0.0]).expect_err("outside");
    assert!(e.to_string().contains("joint 0"), "{e}");
    assert!(SafetyFilter::new(limits(), DT, &[f64::NAN, 0.0, 0.0]).is_err());
    assert!(SafetyFilter::new(limits(), DT, &[0.0, 0.0]).is_err());
}

#[test]
fn workspace_box_vetoes_motions_that_leave_it() {
    // A 1-D "end effector" equal to joint 0's position.
    let start = vec![0.0, 0.0, 0.0];
    let mut f = SafetyFilter::new(limits(), DT, &start).expect("filter");
    f.set_workspace(
        [-0.5, -1.0, -1.0],
        [0.5, 1.0, 1.0],
        Box::new(|q: &[f64]| Some([q[0], 0.0, 0.0])),
    );
    let mut cmds = Vec::new();
    for _ in 0..300 {
        cmds.push(f.filter(Some(&[1.5, 0.0, 0.0])).0);
    }
    check(&cmds, &start).expect("limits");
    let max = cmds.iter().map(|q| q[0]).fold(f64::MIN, f64::max);
    // Braking from the approach speed overshoots the box by at most v^2 / 2a.
    assert!(max <= 0.5 + 3.0 * 3.0 / (2.0 * 15.0) + 1e-9, "max {max}");
    assert!(f.stats().workspace > 0);
}
