//! The task files: the frozen v1 tasks sample exactly the episodes they always did, the
//! current tasks make the instruction decide, and the two phrasings share the scene.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sinew_sim::{Phrasing, TaskSpec};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

type Object = (&'static str, [f64; 2], f64);

/// (task, robot, seed, template, instruction, goal zone, bowl centre, objects: colour, xy, yaw).
/// Printed by `TaskSpec::sample` on `sim/tasks/v1/*.toml` with the code of commit 46255d4,
/// before held-out templates, shared regions and the success tracker were added.
#[allow(clippy::type_complexity)]
const V1_EPISODES: &[(
    &str,
    &str,
    u64,
    usize,
    &str,
    Option<usize>,
    Option<[f64; 2]>,
    &[Object],
)] = &[
    (
        "reach",
        "so101",
        0,
        1,
        "reach for the yellow cube",
        None,
        None,
        &[
            (
                "yellow",
                [0.2291375998464153, 0.06811967057437546],
                0.5849299506616741,
            ),
            (
                "green",
                [0.1768187172973837, -0.03998435788115731],
                0.5156581910678135,
            ),
            (
                "blue",
                [0.21184240357778064, -0.11330929884434673],
                -0.12122819019790687,
            ),
        ],
    ),
    (
        "reach",
        "so101",
        1,
        1,
        "reach for the yellow cube",
        None,
        None,
        &[
            (
                "yellow",
                [0.16630833988701565, -0.04388942391070051],
                0.39249162492837586,
            ),
            (
                "blue",
                [0.23333399435526955, 0.11798576697080473],
                0.7470236639044323,
            ),
            (
                "red",
                [0.2469026263889954, -0.07015476763567696],
                -0.5998836691780974,
            ),
        ],
    ),
    (
        "reach",
        "so101",
        7,
        1,
        "reach for the green cube",
        None,
        None,
        &[
            (
                "green",
                [0.1677485353022285, 0.06753028894066615],
                -0.637607332281766,
            ),
            (
                "red",
                [0.16399496817223091, -0.02677212263370171],
                0.41857007540253277,
            ),
        ],
    ),
    (
        "reach",
        "so101",
        42,
        0,
        "touch the yellow cube",
        None,
        None,
        &[
            (
                "yellow",
                [0.23685408103133315, 0.022961056324866308],
                0.06767155551349102,
            ),
            (
                "blue",
                [0.18711169794502802, 0.07647907353607064],
                -0.5061519547602472,
            ),
            (
                "green",
                [0.16648069127504422, -0.03837789279568801],
                0.035373809263847145,
            ),
        ],
    ),
    (
        "reach",
        "so101",
        1000,
        1,
        "reach for the red cube",
        None,
        None,
        &[
            (
                "red",
                [0.23407337819140014, -0.07517120129259305],
                -0.41987260242546953,
            ),
            (
                "yellow",
                [0.23397184924874365, 0.032074476668973534],
                -0.09738064132554425,
            ),
            (
                "green",
                [0.16365712815735364, -0.07319895102223936],
                0.35880153429631534,
            ),
        ],
    ),
    (
        "reach",
        "panda",
        0,
        2,
        "move the gripper to the yellow cube",
        None,
        None,
        &[
            (
                "yellow",
                [0.5382751996928306, 0.1135327842906258],
                0.5849299506616741,
            ),
            (
                "green",
                [0.4336374345947674, -0.06664059646859552],
                0.5156581910678135,
            ),
            (
                "blue",
                [0.5388909768170652, -0.07545509784414538],
                -0.04139480924386019,
            ),
        ],
    ),
    (
        "reach",
        "panda",
        1,
        0,
        "touch the yellow cube",
        None,
        None,
        &[
            (
                "yellow",
                [0.4126166797740313, -0.07314903985116752],
                0.39249162492837586,
            ),
            (
                "blue",
                [0.5466679887105391, 0.19664294495134127],
                0.7470236639044323,
            ),
            (
                "red",
                [0.5119336610609769, -0.06482041541215283],
                -0.473033702278958,
            ),
        ],
    ),
    (
        "reach",
        "panda",
        7,
        1,
        "reach for the green cube",
        None,
        None,
        &[
            (
                "green",
                [0.415497070604457, 0.11255048156777692],
                -0.637607332281766,
            ),
            (
                "red",
                [0.40798993634446185, -0.04462020438950284],
                0.41857007540253277,
            ),
        ],
    ),
    (
        "reach",
        "panda",
        42,
        0,
        "touch the yellow cube",
        None,
        None,
        &[
            (
                "yellow",
                [0.5537081620626663, 0.038268427208110495],
                0.06767155551349102,
            ),
            (
                "blue",
                [0.4925815514155337, 0.1256624502192285],
                -0.35952860794522096,
            ),
            (
                "green",
                [0.5637325612800589, -0.12889053688914998],
                0.7314697849877663,
            ),
        ],
    ),
    (
        "reach",
        "panda",
        1000,
        2,
        "move the gripper to the red cube",
        None,
        None,
        &[
            (
                "red",
                [0.5481467563828003, -0.12528533548765508],
                -0.41987260242546953,
            ),
            (
                "yellow",
                [0.5359883282781575, -0.014139880317247971],
                0.3972131911732091,
            ),
            (
                "green",
                [0.4752897598802237, 0.09588739699497462],
                0.20992695889788437,
            ),
        ],
    ),
    (
        "push",
        "so101",
        0,
        1,
        "slide the yellow cube to the right zone",
        Some(1),
        None,
        &[
            (
                "yellow",
                [0.22135327842906258, 0.014895118881648624],
                -0.5212103698761275,
            ),
            (
                "green",
                [0.28761302312894615, 0.038604073130832244],
                0.028940407724516004,
            ),
        ],
    ),
    (
        "push",
        "so101",
        1,
        0,
        "push the yellow cube into the left zone",
        Some(0),
        None,
        &[
            (
                "yellow",
                [0.20268509601488324, 0.009994717156723388],
                0.36652952622710266,
            ),
            (
                "blue",
                [0.28983214724756706, 0.038045602789442905],
                0.0937267547989894,
            ),
        ],
    ),
    (
        "push",
        "so101",
        7,
        2,
        "move the green cube onto the left zone",
        Some(0),
        None,
        &[(
            "green",
            [0.2212550481567777, -0.01623653738948475],
            -0.72264535009142,
        )],
    ),
    (
        "push",
        "so101",
        42,
        2,
        "move the yellow cube onto the left zone",
        Some(0),
        None,
        &[
            (
                "yellow",
                [0.21382684272081107, 0.0017232420106703533],
                -0.05826435893498194,
            ),
            (
                "blue",
                [0.28628312251096144, -0.0183106416439776],
                0.5005543657797356,
            ),
        ],
    ),
    (
        "push",
        "so101",
        1000,
        0,
        "push the red cube into the left zone",
        Some(0),
        None,
        &[
            (
                "red",
                [0.1974714664512345, -0.010691968023179456],
                0.14869082931943423,
            ),
            (
                "yellow",
                [0.27488488318252324, 0.014395331311262992],
                -0.055527180159131495,
            ),
        ],
    ),
    (
        "push",
        "panda",
        0,
        0,
        "push the yellow cube into the right zone",
        Some(1),
        None,
        &[
            (
                "yellow",
                [0.5283831960726565, 0.022342678322472935],
                -0.5212103698761275,
            ),
            (
                "green",
                [0.6433359403531405, 0.05252451203473123],
                0.6536904063937976,
            ),
        ],
    ),
    (
        "push",
        "panda",
        1,
        0,
        "push the yellow cube into the left zone",
        Some(0),
        None,
        &[
            (
                "yellow",
                [0.48171274003720815, 0.014992075735085084],
                0.36652952622710266,
            ),
            (
                "blue",
                [0.6696642944951342, 0.07609120557888581],
                0.0937267547989894,
            ),
        ],
    ),
    (
        "push",
        "panda",
        7,
        2,
        "move the green cube onto the left zone",
        Some(0),
        None,
        &[(
            "green",
            [0.5281376203919442, -0.02435480608422712],
            -0.72264535009142,
        )],
    ),
    (
        "push",
        "panda",
        42,
        2,
        "move the yellow cube onto the left zone",
        Some(0),
        None,
        &[
            (
                "yellow",
                [0.5095671068020277, 0.00258486301600553],
                -0.05826435893498194,
            ),
            (
                "blue",
                [0.6625662450219229, -0.0366212832879552],
                0.5005543657797356,
            ),
        ],
    ),
    (
        "push",
        "panda",
        1000,
        0,
        "push the red cube into the left zone",
        Some(0),
        None,
        &[
            (
                "red",
                [0.46867866612808623, -0.016037952034769185],
                0.14869082931943423,
            ),
            (
                "yellow",
                [0.6397697663650466, 0.028790662622525984],
                -0.055527180159131495,
            ),
        ],
    ),
    (
        "pick-place",
        "so101",
        0,
        0,
        "put the yellow cube in the bowl",
        None,
        Some([0.21765503993856614, -0.08648504117820308]),
        &[
            (
                "yellow",
                [0.23234267832247293, 0.05177310210816859],
                -0.261697010370727,
            ),
            (
                "green",
                [0.28570695500542675, 0.10993826852607494],
                0.6486931745339435,
            ),
        ],
    ),
    (
        "pick-place",
        "so101",
        1,
        1,
        "place the yellow cube into the bowl",
        None,
        Some([0.19252333595480625, -0.10048617798883756]),
        &[
            (
                "yellow",
                [0.22499207573508506, 0.09133379604868869],
                0.7722150390492446,
            ),
            (
                "blue",
                [0.2734487240367405, 0.023862887055957058],
                0.1183961114327049,
            ),
        ],
    ),
    (
        "pick-place",
        "so101",
        7,
        0,
        "put the green cube in the bowl",
        None,
        Some([0.1930994141208914, -0.08655871388241673]),
        &[(
            "green",
            [0.18564519391577286, 0.04279647772056164],
            -0.1752231328896715,
        )],
    ),
    (
        "pick-place",
        "so101",
        42,
        1,
        "place the yellow cube into the bowl",
        None,
        Some([0.22074163241253325, -0.09212986795939171]),
        &[
            (
                "yellow",
                [0.21258486301600552, 0.07240354299543682],
                0.4934752880510267,
            ),
            (
                "blue",
                [0.26944434144442814, 0.11588017536152105],
                0.3254726692320593,
            ),
        ],
    ),
    (
        "pick-place",
        "so101",
        1000,
        2,
        "pick up the red cube and drop it in the bowl",
        None,
        Some([0.21962935127656005, -0.10439640016157413]),
        &[
            (
                "red",
                [0.1939620479652308, 0.08162616653401397],
                -0.4017403354009635,
            ),
            (
                "yellow",
                [0.2819985410347697, 0.05575803590482561],
                0.3972131911732091,
            ),
        ],
    ),
    (
        "pick-place",
        "panda",
        0,
        0,
        "put the yellow cube in the bowl",
        None,
        Some([0.5191375998464154, -0.13729344314187486]),
        &[
            (
                "yellow",
                [0.5595804755265945, 0.07522807594607554],
                -0.261697010370727,
            ),
            (
                "green",
                [0.6714139100108536, 0.17903805942932277],
                0.6486931745339435,
            ),
        ],
    ),
    (
        "pick-place",
        "panda",
        1,
        0,
        "put the yellow cube in the bowl",
        None,
        Some([0.45630833988701563, -0.1746298079702335]),
        &[
            (
                "yellow",
                [0.5399788686268935, 0.16000099153290434],
                0.7722150390492446,
            ),
            (
                "blue",
                [0.6787785017434018, 0.08991707632622119],
                -0.25454917607682237,
            ),
        ],
    ),
    (
        "pick-place",
        "panda",
        7,
        0,
        "put the green cube in the bowl",
        None,
        Some([0.4577485353022285, -0.13748990368644462]),
        &[(
            "green",
            [0.43505385044206096, 0.05599245225834636],
            -0.1752231328896715,
        )],
    ),
    (
        "pick-place",
        "panda",
        42,
        1,
        "place the yellow cube into the bowl",
        None,
        Some([0.5268540810313331, -0.1523463145583779]),
        &[
            (
                "yellow",
                [0.5068929680426814, 0.11943616356165032],
                0.4934752880510267,
            ),
            (
                "blue",
                [0.643555848972514, 0.1546657016000736],
                -0.5061519547602472,
            ),
        ],
    ),
    (
        "pick-place",
        "panda",
        1000,
        2,
        "pick up the red cube and drop it in the bowl",
        None,
        Some([0.5240733781914002, -0.18505706709753103]),
        &[
            (
                "red",
                [0.4572321279072822, 0.13919892828717279],
                -0.4017403354009635,
            ),
            (
                "yellow",
                [0.6639970820695394, 0.06616257480172001],
                0.3972131911732091,
            ),
        ],
    ),
];

#[test]
fn v1_tasks_sample_exactly_the_episodes_they_always_did() {
    for &(task, robot, seed, template, instruction, goal_zone, bowl, objects) in V1_EPISODES {
        let spec = TaskSpec::load_named(&root(), &format!("v1/{task}")).expect("v1 task");
        assert!(spec.held_out_instructions.is_empty());
        let ep = spec.sample(robot, seed).expect("sample");
        let at = format!("{task} {robot} seed {seed}");
        assert_eq!(ep.template, template, "{at}");
        assert_eq!(ep.instruction, instruction, "{at}");
        assert_eq!(ep.template_text, spec.instructions[template], "{at}");
        assert!(!ep.held_out, "{at}");
        assert_eq!(ep.goal_zone, goal_zone, "{at}");
        assert_eq!(ep.bowl.map(|b| b.0), bowl, "{at}");
        assert_eq!(ep.objects.len(), objects.len(), "{at}");
        for (o, &(color, xy, yaw)) in ep.objects.iter().zip(objects) {
            assert_eq!((o.color.as_str(), o.xy, o.yaw), (color, xy, yaw), "{at}");
        }
        let err = spec
            .sample_phrased(robot, seed, Phrasing::HeldOut)
            .expect_err("v1 has no held-out templates")
            .to_string();
        assert!(
            err.contains("held_out_instructions") && err.contains("v1"),
            "{err}"
        );
    }
}

/// (task, robot, seed, success, control steps) of the scripted expert on the v1 tasks, from
/// `run_expert_episode` with the code of commit 46255d4 (before the success tracker). The
/// Panda's pick-and-place rows were measured again when its grasp yaw changed (d4c61c8: the
/// yaw the wrist reaches by turning least), which shortened its path, not the success rule;
/// they were 37, 42 and 45 steps.
const V1_EXPERT: &[(&str, &str, u64, bool, u32)] = &[
    ("reach", "so101", 0, true, 11),
    ("reach", "so101", 1, true, 10),
    ("reach", "so101", 2, true, 11),
    ("reach", "panda", 0, true, 12),
    ("reach", "panda", 1, true, 11),
    ("reach", "panda", 2, true, 12),
    ("push", "so101", 0, true, 17),
    ("push", "so101", 1, true, 15),
    ("push", "so101", 2, true, 15),
    ("push", "panda", 0, true, 20),
    ("push", "panda", 1, true, 18),
    ("push", "panda", 2, true, 18),
    ("pick-place", "so101", 0, true, 69),
    ("pick-place", "so101", 1, true, 62),
    ("pick-place", "so101", 2, true, 52),
    ("pick-place", "panda", 0, true, 36),
    ("pick-place", "panda", 1, true, 38),
    ("pick-place", "panda", 2, true, 36),
];

#[test]
fn v1_tasks_keep_their_old_success_definition() {
    for &(task, robot, seed, success, steps) in V1_EXPERT {
        let spec = TaskSpec::load_named(&root(), &format!("v1/{task}")).expect("v1 task");
        let r =
            sinew_robot::RobotDescription::load(&root().join("robots").join(robot)).expect("robot");
        let out = sinew_sim::expert::run_expert_episode(&r, &spec, seed).expect("episode");
        assert_eq!(
            (out.success, out.steps),
            (success, steps),
            "{task} {robot} seed {seed}"
        );
    }
}

const TASKS: [&str; 3] = ["reach", "push", "pick-place"];
const ROBOTS: [&str; 2] = ["so101", "panda"];

#[test]
fn both_phrasings_give_the_same_scene_for_a_seed() {
    for task in TASKS {
        let spec = TaskSpec::load_named(&root(), task).expect("task");
        for robot in ROBOTS {
            for seed in 0..50 {
                let train = spec.sample(robot, seed).expect("training");
                let held = spec
                    .sample_phrased(robot, seed, Phrasing::HeldOut)
                    .expect("held out");
                assert_eq!(train.objects, held.objects, "{task} {robot} {seed}");
                assert_eq!(train.zones, held.zones);
                assert_eq!(train.goal_zone, held.goal_zone);
                assert_eq!(train.bowl, held.bowl);
                assert!(!train.held_out && held.held_out);
                assert_eq!(train.template_text, spec.instructions[train.template]);
                assert_eq!(
                    held.template_text,
                    spec.held_out_instructions[held.template]
                );
                assert!(held.instruction.contains(&held.objects[0].color));
                assert!(!held.instruction.contains('{'), "{}", held.instruction);
            }
        }
    }
}

fn words(t: &str) -> BTreeSet<String> {
    t.split(|c: char| !c.is_alphanumeric() && c != '{' && c != '}')
        .filter(|w| !w.is_empty() && !w.starts_with('{'))
        .map(str::to_lowercase)
        .collect()
}

#[test]
fn held_out_templates_use_words_no_training_template_has() {
    for task in TASKS {
        let spec = TaskSpec::load_named(&root(), task).expect("task");
        assert!(spec.instructions.len() >= 10, "{task}");
        assert!(spec.held_out_instructions.len() >= 5, "{task}");
        let seen: BTreeSet<String> = spec.instructions.iter().flat_map(|t| words(t)).collect();
        for t in &spec.held_out_instructions {
            let new: Vec<String> = words(t).difference(&seen).cloned().collect();
            assert!(
                new.len() >= 2,
                "{task}: held-out {t:?} has too few unseen words ({new:?})"
            );
        }
    }
}

#[test]
fn phrasing_reads_and_writes_its_names() {
    for p in [Phrasing::Training, Phrasing::HeldOut] {
        assert_eq!(p.to_string().parse::<Phrasing>(), Ok(p));
    }
    assert_eq!("held-out".parse::<Phrasing>(), Ok(Phrasing::HeldOut));
    assert!("heldout".parse::<Phrasing>().is_err());
}

#[test]
fn bad_templates_name_the_file_and_field() {
    let base = std::fs::read_to_string(root().join("sim/tasks/push.toml")).expect("push");
    let p = Path::new("sim/tasks/push.toml");
    let cases = [
        (
            "no zone",
            base.replace(
                "\"push the {color} cube into the {zone} zone\",",
                "\"push the {color} cube\",",
            ),
            "instructions",
        ),
        (
            "no colour",
            base.replace(
                "\"nudge the {color} block until it sits in the {zone} square\",",
                "\"nudge the block into the {zone} square\",",
            ),
            "held_out_instructions",
        ),
        (
            "duplicate",
            base.replace(
                "\"get the {color} cube into the {zone} zone\",",
                "\"push the {color} cube into the {zone} zone\",",
            ),
            "listed twice",
        ),
        (
            "held out is a training template",
            base.replace(
                "\"the {color} block goes in the {zone} square\",",
                "\"push the {color} cube into the {zone} zone\",",
            ),
            "also a training template",
        ),
    ];
    for (what, text, want) in cases {
        assert_ne!(text, base, "{what}: the replacement did not apply");
        let err = TaskSpec::from_str_at(&text, p).expect_err(what).to_string();
        assert!(
            err.contains(want) && err.contains("push.toml"),
            "{what}: {err}"
        );
    }
    let reach = std::fs::read_to_string(root().join("sim/tasks/reach.toml")).expect("reach");
    let text = reach.replace(
        "\"tap the {color} block\",",
        "\"tap the {color} block in {zone}\",",
    );
    let err = TaskSpec::from_str_at(&text, Path::new("reach.toml"))
        .expect_err("zone in a reach template")
        .to_string();
    assert!(err.contains("held_out_instructions"), "{err}");
}

#[test]
fn in_the_current_tasks_only_the_instruction_names_the_target() {
    for task in TASKS {
        let spec = TaskSpec::load_named(&root(), task).expect("task");
        assert!(
            spec.distractor_region.is_empty(),
            "{task}: one shared region"
        );
        assert!(spec.colors.len() >= 6, "{task}: six colours or more");
        let min = if task == "reach" { 2 } else { 1 };
        assert!(spec.distractors[0] >= min, "{task}: too few distractors");
        for robot in ROBOTS {
            let region = spec.region[robot];
            let mut colours = BTreeSet::new();
            let mut targets_at_distractor_spots = 0;
            for seed in 0..200 {
                let ep = spec.sample(robot, seed).expect("sample");
                assert!(ep.objects.len() > min as usize, "{task} {robot} {seed}");
                for o in &ep.objects {
                    assert!(
                        (region.x[0]..=region.x[1]).contains(&o.xy[0])
                            && (region.y[0]..=region.y[1]).contains(&o.xy[1]),
                        "{task} {robot} {seed}: {} outside the shared region",
                        o.name
                    );
                }
                colours.insert(ep.objects[0].color.clone());
                // The target is not always the cube nearest the goal (or any fixed rank).
                let goal = ep
                    .bowl
                    .map(|b| b.0)
                    .or(ep.goal_zone.map(|z| ep.zones[z].center))
                    .unwrap_or([0.0, 0.0]);
                let d = |xy: [f64; 2]| (xy[0] - goal[0]).hypot(xy[1] - goal[1]);
                if ep.objects[1..]
                    .iter()
                    .any(|o| d(o.xy) < d(ep.objects[0].xy))
                {
                    targets_at_distractor_spots += 1;
                }
            }
            assert!(colours.len() >= 6, "{task} {robot}: targets of {colours:?}");
            assert!(
                targets_at_distractor_spots > 40,
                "{task} {robot}: the target is nearly always nearest the goal"
            );
        }
    }
}

#[test]
fn a_table_friction_out_of_range_is_refused_by_name() {
    let base = std::fs::read_to_string(root().join("sim/tasks/push.toml")).expect("push");
    assert!(base.contains("table_friction = 0.4"));
    for bad in ["0.0", "-0.3", "2.5", "nan"] {
        let text = base.replace("table_friction = 0.4", &format!("table_friction = {bad}"));
        let err = TaskSpec::from_str_at(&text, Path::new("sim/tasks/push.toml"))
            .expect_err(bad)
            .to_string();
        assert!(
            err.contains("table_friction") && err.contains("push.toml"),
            "{bad}: {err}"
        );
    }
    // Absent: the table of the version-1 tasks.
    let v1 = TaskSpec::load_named(&root(), "v1/push").expect("v1 push");
    assert_eq!(v1.table_friction, sinew_sim::task::DEFAULT_TABLE_FRICTION);
}
