//! A latency sweep (`sinew eval --latency 0,100,200 --modes sync,async-latest,...`): every
//! (execution mode, simulated latency) cell evaluated on the same seeds, with success and
//! motion smoothness per cell, as a Markdown table, JSON and a hand-written SVG plot.

use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;
use sinew_runtime::LatencyModel;

use crate::batch::{run_batch, task_rows, BatchSpec, EpisodeRow};

/// A sweep: the batch (policy, tasks, seeds, the execution's other settings) run once per
/// mode and latency.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    /// Everything but the mode and the latency.
    pub batch: BatchSpec,
    /// Execution modes by name (`sync`, `async-latest`, `async-weighted`, `async-ensemble`).
    pub modes: Vec<String>,
    /// Latencies (`None`: none, today's lockstep).
    pub latencies: Vec<Option<LatencyModel>>,
}

/// One cell of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepCell {
    /// Execution mode.
    pub mode: String,
    /// The latency, in words (`0 ms`, `100±30 ms`, `recorded (...)`).
    pub latency: String,
    /// Its mean, ms (the plot's x axis).
    pub latency_ms: f64,
    /// Episodes.
    pub n_episodes: u64,
    /// Success over all tasks, %.
    pub pc_success: f64,
    /// Success per task, % (the batch's task order).
    pub per_task: Vec<(String, f64)>,
    /// Mean over episodes of the RMS jerk of the commands (mean over joints), rad/s³.
    pub rms_jerk: f64,
    /// Velocity interventions of the safety filter, all episodes.
    pub velocity_interventions: u64,
    /// Acceleration interventions of the safety filter, all episodes.
    pub acceleration_interventions: u64,
    /// Mean policy steps per episode.
    pub mean_length: f64,
    /// Wall time of the cell, s.
    pub wall_s: f64,
}

/// What a sweep did.
#[derive(Debug, Clone)]
pub struct SweepReport {
    /// Cells, mode by mode, latencies in the order given.
    pub cells: Vec<SweepCell>,
    /// Every episode, with its cell's mode and latency.
    pub rows: Vec<(String, String, EpisodeRow)>,
    /// Wall time, s.
    pub wall_s: f64,
}

fn cell(
    spec: &BatchSpec,
    mode: &str,
    latency: &Option<LatencyModel>,
    rows: &[EpisodeRow],
    wall_s: f64,
) -> SweepCell {
    let n = rows.len().max(1) as f64;
    SweepCell {
        mode: mode.to_owned(),
        latency: latency
            .as_ref()
            .map_or_else(|| "0 ms".to_owned(), LatencyModel::label),
        latency_ms: latency.as_ref().map_or(0.0, LatencyModel::mean_ms),
        n_episodes: rows.len() as u64,
        pc_success: 100.0 * rows.iter().filter(|r| r.result.success).count() as f64 / n,
        per_task: task_rows(&spec.tasks, rows)
            .into_iter()
            .map(|t| (t.task, t.pc_success))
            .collect(),
        rms_jerk: rows.iter().map(|r| r.result.rms_jerk).sum::<f64>() / n,
        velocity_interventions: rows.iter().map(|r| r.result.velocity_interventions).sum(),
        acceleration_interventions: rows
            .iter()
            .map(|r| r.result.acceleration_interventions)
            .sum(),
        mean_length: rows.iter().map(|r| r.result.steps as f64).sum::<f64>() / n,
        wall_s,
    }
}

/// Runs every cell; `on_cell` sees each as it finishes. A stop ends the sweep after the
/// finished cells (the one under way is left out).
pub fn run_sweep(
    spec: &SweepSpec,
    mut on_cell: impl FnMut(&SweepCell),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<SweepReport> {
    let t0 = std::time::Instant::now();
    let mut cells = Vec::new();
    let mut all = Vec::new();
    for mode in &spec.modes {
        let exec = spec
            .batch
            .exec
            .with_mode(mode)
            .map_err(anyhow::Error::msg)?;
        for latency in &spec.latencies {
            if stop() {
                break;
            }
            let mut b = spec.batch.clone();
            b.exec = exec.clone();
            b.exec.latency = latency.clone();
            let r = run_batch(&b, |_| {}, stop)?;
            if stop() {
                // A cell cut short would read as a result; the finished cells stand.
                break;
            }
            let c = cell(&b, mode, latency, &r.rows, r.wall_s);
            on_cell(&c);
            all.extend(
                r.rows
                    .into_iter()
                    .map(|row| (c.mode.clone(), c.latency.clone(), row)),
            );
            cells.push(c);
        }
    }
    Ok(SweepReport {
        cells,
        rows: all,
        wall_s: t0.elapsed().as_secs_f64(),
    })
}

/// The sweep's table: one row per cell.
pub fn sweep_markdown(spec: &SweepSpec, report: &SweepReport) -> String {
    let b = &spec.batch;
    let mut md = format!(
        "# Latency sweep of `{}` on {}\n\nSeeds {}..{} per task ({}), the same in every cell; {} episodes, {:.0} s wall.\n\n| mode | latency |",
        b.policy.as_str(),
        b.robot.config.name,
        b.seed,
        b.seed + b.episodes,
        b.tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "),
        report.cells.iter().map(|c| c.n_episodes).sum::<u64>(),
        report.wall_s
    );
    for t in &b.tasks {
        let _ = write!(md, " {} |", t.name);
    }
    md += " all | RMS jerk (rad/s³) | velocity / acceleration interventions per episode | mean length (steps) |\n|---|---|";
    md += &"---|".repeat(b.tasks.len() + 4);
    md += "\n";
    for c in &report.cells {
        let n = c.n_episodes.max(1) as f64;
        let _ = write!(md, "| {} | {} |", c.mode, c.latency);
        for (_, pc) in &c.per_task {
            let _ = write!(md, " {pc:.0}% |");
        }
        let _ = writeln!(
            md,
            " **{:.1}%** | {:.1} | {:.1} / {:.1} | {:.1} |",
            c.pc_success,
            c.rms_jerk,
            c.velocity_interventions as f64 / n,
            c.acceleration_interventions as f64 / n,
            c.mean_length
        );
    }
    md
}

/// `eval.json` of a sweep.
pub fn sweep_json(spec: &SweepSpec, report: &SweepReport) -> serde_json::Value {
    let b = &spec.batch;
    let rows: Vec<serde_json::Value> = report
        .rows
        .iter()
        .map(|(mode, latency, row)| {
            let mut v = serde_json::to_value(row).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("mode".into(), mode.clone().into());
                o.insert("latency".into(), latency.clone().into());
            }
            v
        })
        .collect();
    serde_json::json!({
        "policy": b.policy.as_str(),
        "robot": b.robot.config.name,
        "seeds": format!("{}..{}", b.seed, b.seed + b.episodes),
        "tasks": b.tasks.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        "execution": b.exec,
        "aggregated": {
            "n_episodes": report.rows.len(),
            "eval_s": report.wall_s,
            "eval_ep_s": report.wall_s / report.rows.len().max(1) as f64,
        },
        "sweep": {
            "modes": spec.modes,
            "latencies": spec.latencies,
            "cells": report.cells,
            "table": sweep_markdown(spec, report),
        },
        "per_episode": rows,
    })
}

const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten, at least `v`.
fn nice_max(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|x| *x >= v)
        .unwrap_or(10.0 * p)
}

/// The sweep as an SVG: success rate (left) and RMS jerk (right) against latency, one line per
/// mode. Written by hand: no plotting dependency.
pub fn sweep_svg(spec: &SweepSpec, report: &SweepReport) -> String {
    let (w, h) = (900.0, 380.0);
    let (pw, ph) = (340.0, 250.0);
    let panels = [(70.0, "success (%)"), (510.0, "RMS jerk (rad/s³)")];
    let x_max = nice_max(
        report
            .cells
            .iter()
            .map(|c| c.latency_ms)
            .fold(0.0, f64::max),
    );
    let jerk_max = nice_max(report.cells.iter().map(|c| c.rms_jerk).fold(0.0, f64::max));
    let top = 50.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{} on {}: seeds {}..{} per task ({})</text>\n",
        w / 2.0,
        esc(spec.batch.policy.as_str()),
        esc(&spec.batch.robot.config.name),
        spec.batch.seed,
        spec.batch.seed + spec.batch.episodes,
        esc(&spec
            .batch
            .tasks
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")),
    );
    for (pi, (x0, title)) in panels.iter().enumerate() {
        let y_max = if pi == 0 { 100.0 } else { jerk_max };
        let px = |ms: f64| x0 + pw * ms / x_max;
        let py = |v: f64| top + ph - ph * (v / y_max).clamp(0.0, 1.05);
        // Frame, grid and ticks.
        let _ = writeln!(
            s,
            "<rect x=\"{x0}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>"
        );
        for k in 0..=5 {
            let v = y_max * k as f64 / 5.0;
            let y = py(v);
            let _ = writeln!(
                s,
                "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                x0 + pw,
                x0 - 6.0,
                y + 4.0,
                if y_max >= 10.0 { format!("{v:.0}") } else { format!("{v:.1}") }
            );
            let ms = x_max * k as f64 / 5.0;
            let x = px(ms);
            let _ = writeln!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#444\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{ms:.0}</text>",
                top + ph,
                top + ph + 5.0,
                top + ph + 18.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">simulated inference latency (ms)</text>",
            x0 + pw / 2.0,
            top - 8.0,
            esc(title),
            x0 + pw / 2.0,
            top + ph + 36.0
        );
        for (mi, mode) in spec.modes.iter().enumerate() {
            let colour = COLOURS[mi % COLOURS.len()];
            let mut pts: Vec<(f64, f64)> = report
                .cells
                .iter()
                .filter(|c| &c.mode == mode)
                .map(|c| {
                    let v = if pi == 0 { c.pc_success } else { c.rms_jerk };
                    (px(c.latency_ms), py(v))
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let line: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
                line.join(" ")
            );
            for (x, y) in &pts {
                let _ = writeln!(
                    s,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{colour}\"/>"
                );
            }
        }
    }
    // Legend.
    for (mi, mode) in spec.modes.iter().enumerate() {
        let x = 70.0 + 170.0 * mi as f64;
        let y = h - 12.0;
        let _ = writeln!(
            s,
            "<line x1=\"{x}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"3\"/><text x=\"{:.1}\" y=\"{y}\">{}</text>",
            y - 4.0,
            x + 24.0,
            y - 4.0,
            COLOURS[mi % COLOURS.len()],
            x + 30.0,
            esc(mode)
        );
    }
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::episode::{EpisodeResult, PolicyName};
    use crate::execution::ExecutionSpec;
    use crate::recording::RerunSpec;
    use crate::resolve::{load_robot, load_task, DeviceSpec};

    #[test]
    fn a_sweeps_cells_become_a_table_and_a_plot_with_a_line_per_mode() {
        let spec = SweepSpec {
            batch: BatchSpec {
                robot: load_robot("so101").expect("robot"),
                tasks: vec![load_task("reach").expect("task")],
                policy: PolicyName::Expert,
                episodes: 2,
                seed: 1,
                exec: ExecutionSpec::default(),
                device: DeviceSpec::default(),
                record: None,
                task_folders: true,
                rerun: RerunSpec::default(),
                encodings: sinew_record::Encodings::default(),
                jobs: 1,
                phrasings: Some(vec![sinew_sim::Phrasing::Training]),
                swap: false,
            },
            modes: vec!["sync".into(), "async-latest".into()],
            latencies: vec![None, Some(LatencyModel::parse("200±50", 0.0).expect("l"))],
        };
        let row = |seed, success, jerk| EpisodeRow {
            task: "reach".into(),
            phrasing: sinew_sim::Phrasing::Training,
            swapped: false,
            named: "red".into(),
            first_approached: None,
            closest_to_named_mm: None,
            failure: None,
            named_to_goal_mm: None,
            named_end_from_goal_mm: None,
            named_stall: None,
            template: 0,
            template_text: String::new(),
            result: EpisodeResult {
                seed,
                instruction: String::new(),
                success,
                steps: 10,
                commands: 100,
                inferences: 2,
                mean_inference_ms: 1.0,
                holds: Default::default(),
                safety_interventions: 3,
                sim_time_s: 1.0,
                wall_s: 0.1,
                rms_jerk: jerk,
                velocity_interventions: 1,
                acceleration_interventions: 2,
            },
        };
        let mut cells = Vec::new();
        for mode in &spec.modes {
            for l in &spec.latencies {
                let rows = [row(1, true, 100.0), row(2, l.is_none(), 300.0)];
                cells.push(cell(&spec.batch, mode, l, &rows, 1.0));
            }
        }
        let report = SweepReport {
            cells,
            rows: Vec::new(),
            wall_s: 4.0,
        };
        let md = sweep_markdown(&spec, &report);
        assert!(
            md.contains("| sync | 200±50 ms | 50% | **50.0%** | 200.0 | 1.0 / 2.0 | 10.0 |"),
            "{md}"
        );
        assert_eq!(
            md.lines()
                .filter(|l| l.starts_with("| async-latest"))
                .count(),
            2
        );
        let svg = sweep_svg(&spec, &report);
        // Two panels, a line per mode in each; success 100% at 0 ms is the panel's top.
        assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
        assert!(svg.contains("points=\"70.0,50.0 "), "{svg}");
        assert_eq!(nice_max(230.0), 500.0);
        assert_eq!(nice_max(0.0), 1.0);
    }
}
