//! The success tracker: a cube still gripped inside the bowl is not a success, a released one
//! is after it has rested for `settle_s`; a cube sliding through the goal zone is not until it
//! has rested there.

use std::path::{Path, PathBuf};

use rapier3d::prelude::Vector;
use sinew_robot::RobotDescription;
use sinew_sim::expert::{success, Expert};
use sinew_sim::success::CONTACT_GAP_M;
use sinew_sim::{SimWorld, SuccessKind, SuccessRule, SuccessTracker, TaskSpec, PHYSICS_HZ};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn robot(name: &str) -> RobotDescription {
    RobotDescription::load(&root().join("robots").join(name)).expect("robot loads")
}

fn strict(kind: SuccessKind, release: bool) -> SuccessRule {
    SuccessRule {
        kind,
        touch_distance_m: 0.005,
        touch_contact: false,
        release,
        settle_s: 0.5,
        rest_speed_m_s: 0.01,
    }
}

#[test]
fn a_cube_gripped_in_the_bowl_is_not_placed_until_released_and_settled() {
    let task = TaskSpec::load_named(&root(), "pick-place").expect("task");
    let r = robot("panda");
    let g = r.config.gripper.clone().expect("gripper");
    let gi = r.config.gripper_index().expect("gripper joint");
    // The target starts in the bowl, alone: the expert grips it there. The Panda's open
    // fingers barely fit the bowl's 90 mm inside: the descent jams the cube against a finger
    // or the wall rather than gripping it cleanly, which is touching all the same, and what
    // the tracker must refuse. The cube lies diagonally, so the grasp (across its faces)
    // comes down along the bowl's diagonal; with the sampled yaw the fingers landed on the
    // wall and never touched it.
    let mut ep = task.sample("panda", 3).expect("episode");
    let (bowl_xy, _) = ep.bowl.expect("bowl");
    ep.objects.truncate(1);
    ep.objects[0].xy = bowl_xy;
    ep.objects[0].yaw = std::f64::consts::FRAC_PI_4;
    let mut world = SimWorld::new(r, Some(&ep), None).expect("world");
    world.advance(0.5);
    let dt = 0.1;
    let mut tracker = SuccessTracker::with_rule(strict(SuccessKind::InBowl, true));
    let mut expert = Expert::new(SuccessKind::InBowl);
    let mut above = None;
    let mut cmd = Vec::new();
    for _ in 0..80 {
        if expert.phase_name() == "lift" {
            break;
        }
        cmd = expert.act(&world, dt).expect("act");
        if expert.phase_name() == "down" && above.is_none() {
            above = Some(world.targets().to_vec());
        }
        world.command(&cmd).expect("command");
        world.advance(dt);
    }
    assert_eq!(
        expert.phase_name(),
        "lift",
        "the expert never gripped the cube"
    );
    // Gripped on the bowl's floor for a second: the old predicate holds, the tracker does not.
    for _ in 0..10 {
        world.command(&cmd).expect("command");
        world.advance(dt);
        assert!(world.object_touches_robot(0, CONTACT_GAP_M), "not gripped");
        assert!(success(&world, SuccessKind::InBowl, 0.01).expect("check"));
        assert!(!tracker.update(&world).expect("check"), "gripped counted");
    }
    // Open, then go back up: success once it has rested, released, for 0.5 s.
    cmd[gi] = g.open;
    let mut released_at = None;
    let mut succeeded_at = None;
    for k in 0..30 {
        if k == 3 {
            cmd = above.clone().expect("above");
            cmd[gi] = g.open;
        }
        world.command(&cmd).expect("command");
        world.advance(dt);
        let ok = tracker.update(&world).expect("check");
        if ok && succeeded_at.is_none() {
            succeeded_at = Some(world.time_s);
        }
        if tracker.held_for_s(world.time_s).is_none() {
            released_at = None;
        } else if released_at.is_none() {
            released_at = Some(world.time_s);
        }
        if !ok {
            assert!(succeeded_at.is_none(), "success did not last");
        }
    }
    let (released, done) = (
        released_at.expect("never released at rest"),
        succeeded_at.expect("never succeeded"),
    );
    assert!(!world.object_touches_robot(0, CONTACT_GAP_M));
    assert!(
        (done - released - 0.5).abs() < 1e-6,
        "success {done} s, released and at rest from {released} s"
    );
}

#[test]
fn a_cube_sliding_in_the_goal_zone_is_not_pushed_until_it_rests() {
    let task = TaskSpec::load_named(&root(), "push").expect("task");
    let r = robot("panda");
    let mut ep = task.sample("panda", 0).expect("episode");
    let zone = ep.zones[ep.goal_zone.expect("goal")].clone();
    ep.objects.truncate(1);
    // Start at the zone's near edge, sliding across it.
    ep.objects[0].xy = [zone.center[0] - zone.half_extents[0] * 0.6, zone.center[1]];
    ep.objects[0].yaw = 0.0;
    let mut world = SimWorld::new(r, Some(&ep), None).expect("world");
    world.step(4);
    let body = world.objects[0].body;
    world.physics.bodies[body].set_linvel(Vector::new(0.6, 0.0, 0.0), true);
    let mut tracker = SuccessTracker::with_rule(strict(SuccessKind::InZone, true));
    let (mut moving_inside, mut rest_from, mut done) = (0, None, None);
    // Checked at every physics step for 1.5 s.
    for _ in 0..(1.5 * PHYSICS_HZ) as u32 {
        world.step(1);
        let inside = success(&world, SuccessKind::InZone, 0.0).expect("check");
        assert!(inside, "the cube left the zone");
        let ok = tracker.update(&world).expect("check");
        let speed = world.object_point_speed(0).expect("speed");
        if speed >= 0.01 {
            moving_inside += 1;
            assert!(!ok, "a moving cube counted at {} s", world.time_s);
            rest_from = None;
        } else if rest_from.is_none() {
            rest_from = Some(world.time_s);
        }
        if ok && done.is_none() {
            done = Some(world.time_s);
        }
    }
    assert!(
        moving_inside > 5,
        "the cube hardly slid ({moving_inside} steps)"
    );
    let (rest, done) = (
        rest_from.expect("never rested"),
        done.expect("never pushed"),
    );
    assert!(
        done - rest >= 0.5 - 0.5 / PHYSICS_HZ && done - rest < 0.5 + 1.5 / PHYSICS_HZ,
        "success at {done} s, at rest from {rest} s"
    );
}

#[test]
fn the_default_rule_is_the_first_instant_as_before() {
    let spec = TaskSpec::load_named(&root(), "v1/push").expect("v1 push");
    let rule = SuccessRule::of(&spec);
    assert_eq!(
        rule,
        SuccessRule::instant(SuccessKind::InZone, spec.touch_distance_m)
    );
}
