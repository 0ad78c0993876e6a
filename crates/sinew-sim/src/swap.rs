//! The instruction swap: the same scene, with the instruction naming another of its objects.
//! A policy that reads the instruction acts on whichever object is named; one that learned
//! where the target usually is, or which colour usually comes first, does not.

use crate::task::Episode;
use crate::SimError;

impl Episode {
    /// This episode with object `k` (a distractor, `k >= 1`) as the target: the objects stay
    /// where they are, `k` moves to index 0 (the one success is checked on, the first one in
    /// its old place), and the instruction is the same template filled with its colour.
    pub fn retarget(&self, k: usize) -> Result<Episode, SimError> {
        if k == 0 || k >= self.objects.len() {
            return Err(SimError::Command(format!(
                "task {} seed {}: no distractor {k} to name instead (the scene has {} object(s))",
                self.task,
                self.seed,
                self.objects.len()
            )));
        }
        let mut ep = self.clone();
        ep.objects.swap(0, k);
        let mut instruction = ep.template_text.replace("{color}", &ep.objects[0].color);
        if let Some(z) = ep.goal_zone.and_then(|z| ep.zones.get(z)) {
            instruction = instruction.replace("{zone}", &z.name);
        }
        ep.instruction = instruction;
        Ok(ep)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::task::{Phrasing, TaskSpec};

    const TASK: &str = r#"
name = "push"
instructions = ["push the {color} cube into the {zone} zone"]
held_out_instructions = ["{zone} region: nudge the {color} block there"]
step_limit = 100
control_rate_hz = 10.0
success = "in_zone"
colors = ["red", "green", "blue", "yellow"]
distractors = [1, 2]
cube_size_m = 0.03

[region.so101]
x = [0.16, 0.26]
y = [-0.05, 0.05]

[[zones.so101]]
name = "left"
color = "purple"
center = [0.21, 0.15]
half_extents = [0.03, 0.03]
"#;

    #[test]
    fn a_swap_names_a_distractor_in_the_same_scene_and_template() {
        let task = TaskSpec::from_str_at(TASK, Path::new("push.toml")).expect("task");
        for seed in 0..20 {
            let ep = task
                .sample_phrased("so101", seed, Phrasing::HeldOut)
                .expect("episode");
            let swapped = ep.retarget(1).expect("swap");
            assert_eq!(swapped.objects[0], ep.objects[1]);
            assert_eq!(swapped.objects[1], ep.objects[0]);
            assert_eq!(swapped.objects[2..], ep.objects[2..]);
            assert_eq!(
                swapped.instruction,
                format!("left region: nudge the {} block there", ep.objects[1].color)
            );
            assert_eq!(
                (swapped.template, swapped.held_out, swapped.goal_zone),
                (ep.template, ep.held_out, ep.goal_zone)
            );
            assert!(ep.retarget(0).is_err());
            assert!(ep.retarget(ep.objects.len()).is_err());
        }
    }
}
