//! Action chunks on a timeline of policy steps: when to ask for the next chunk, and which joint
//! target applies at each step when chunks overlap.
//!
//! A chunk predicted from the observation of policy step `s` holds the targets of steps
//! `s, s+1, ...`. It usually arrives later than `s` (inference takes time); its entries for
//! steps already executed are never used, so the robot continues from the chunk's entry for the
//! step it has reached (latency compensation, docs/references.md section 3).

use std::collections::VecDeque;

/// How overlapping chunks are merged at a step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Merge {
    /// The newest chunk's entry.
    LatestOnly,
    /// Newer chunks blended in pairwise: `old_weight * older + (1 - old_weight) * newer`
    /// (LeRobot's `weighted_average` is 0.3).
    WeightedAverage {
        /// Weight of the older value.
        old_weight: f64,
    },
    /// ACT's temporal ensembling: the i-th prediction for a step (i = 0 the oldest) is weighted
    /// `exp(-m * i)`.
    TemporalEnsemble {
        /// The decay `m` (ACT: 0.01).
        m: f64,
    },
}

/// When chunks are requested.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Execution {
    /// Execute `steps` entries of each chunk (at most its length), then ask for the next one;
    /// the robot holds its last target while the next chunk is computed.
    Sync {
        /// Entries executed per chunk.
        steps: usize,
    },
    /// Ask for the next chunk while `threshold` or fewer steps of the newest chunk remain; merge
    /// overlapping chunks.
    Async {
        /// Remaining steps that trigger the next request.
        threshold: usize,
        /// How overlapping entries are merged.
        merge: Merge,
    },
}

#[derive(Debug, Clone)]
struct Chunk {
    start: u64,
    targets: Vec<Vec<f64>>,
    /// Sync mode: entries at or after this step are not used.
    end: u64,
}

impl Chunk {
    fn get(&self, step: u64) -> Option<&Vec<f64>> {
        if step < self.start || step >= self.end {
            return None;
        }
        self.targets.get((step - self.start) as usize)
    }
}

/// The timeline of chunks.
#[derive(Debug, Clone)]
pub struct ChunkScheduler {
    execution: Execution,
    chunks: VecDeque<Chunk>,
    /// Steps dropped because they arrived late, over all chunks.
    pub late_steps: u64,
}

impl ChunkScheduler {
    /// An empty timeline.
    pub fn new(execution: Execution) -> Self {
        Self {
            execution,
            chunks: VecDeque::new(),
            late_steps: 0,
        }
    }

    /// The execution mode.
    pub fn execution(&self) -> Execution {
        self.execution
    }

    /// Adds a chunk predicted from the observation of step `start`, arriving at step `now`.
    /// Returns how many of its entries were already in the past.
    pub fn insert(&mut self, start: u64, targets: Vec<Vec<f64>>, now: u64) -> u64 {
        let len = targets.len() as u64;
        let end = match self.execution {
            Execution::Sync { steps } => start + (steps as u64).min(len),
            Execution::Async { .. } => start + len,
        };
        let late = now.saturating_sub(start).min(len);
        self.late_steps += late;
        if let Execution::Sync { .. } = self.execution {
            // In sync mode a new chunk replaces the timeline from its start.
            self.chunks.clear();
        }
        self.chunks.push_back(Chunk {
            start,
            targets,
            end,
        });
        self.prune(now);
        late
    }

    /// Drops chunks that end before `now`.
    pub fn prune(&mut self, now: u64) {
        while self.chunks.len() > 1 && self.chunks.front().is_some_and(|c| c.end <= now) {
            self.chunks.pop_front();
        }
    }

    /// Forgets every chunk (after a hold, an e-stop, or an episode's end).
    pub fn clear(&mut self) {
        self.chunks.clear();
    }

    /// Steps of the newest chunk left from `now` on (0 when it is used up or none exists).
    pub fn remaining(&self, now: u64) -> usize {
        self.chunks
            .back()
            .map_or(0, |c| c.end.saturating_sub(now) as usize)
    }

    /// Whether a new chunk should be requested at step `now` (none is being computed).
    pub fn wants_chunk(&self, now: u64) -> bool {
        match self.execution {
            Execution::Sync { .. } => self.remaining(now) == 0,
            // At most one chunk per policy step: a chunk predicted from this step's
            // observation is not asked for again within the step.
            Execution::Async { threshold, .. } => {
                self.remaining(now) <= threshold && self.chunks.back().is_none_or(|c| c.start < now)
            }
        }
    }

    /// The target of step `step`, merging every chunk that covers it; `None` when none does.
    pub fn target(&self, step: u64) -> Option<Vec<f64>> {
        let entries: Vec<&Vec<f64>> = self.chunks.iter().filter_map(|c| c.get(step)).collect();
        let newest = *entries.last()?;
        let merge = match self.execution {
            Execution::Sync { .. } => Merge::LatestOnly,
            Execution::Async { merge, .. } => merge,
        };
        let dim = newest.len();
        let entries: Vec<&Vec<f64>> = entries.into_iter().filter(|e| e.len() == dim).collect();
        Some(match merge {
            Merge::LatestOnly => newest.clone(),
            Merge::WeightedAverage { old_weight } => {
                let mut acc = entries[0].clone();
                for e in &entries[1..] {
                    for (a, b) in acc.iter_mut().zip(e.iter()) {
                        *a = old_weight * *a + (1.0 - old_weight) * b;
                    }
                }
                acc
            }
            Merge::TemporalEnsemble { m } => {
                let mut acc = vec![0.0; dim];
                let mut total = 0.0;
                for (i, e) in entries.iter().enumerate() {
                    let w = (-m * i as f64).exp();
                    total += w;
                    for (a, b) in acc.iter_mut().zip(e.iter()) {
                        *a += w * b;
                    }
                }
                acc.iter_mut().for_each(|a| *a /= total);
                acc
            }
        })
    }
}
