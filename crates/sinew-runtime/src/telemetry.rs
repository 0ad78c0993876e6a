//! Loop timing statistics: a bounded window of samples and their percentiles.

use std::collections::VecDeque;

/// A rolling window of durations (ms) with percentiles.
#[derive(Debug, Clone)]
pub struct Window {
    samples: VecDeque<f64>,
    capacity: usize,
    count: u64,
}

impl Window {
    /// Keeps the newest `capacity` samples.
    pub fn new(capacity: usize) -> Self {
        Self {
            samples: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
            count: 0,
        }
    }

    /// Adds a sample.
    pub fn push(&mut self, v: f64) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(v);
        self.count += 1;
    }

    /// Samples seen in all.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile (0..1) of the window (nearest rank), NaN when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let mut v: Vec<f64> = self.samples.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize]
    }
}

/// Timing of the control loop and of inference.
#[derive(Debug, Clone)]
pub struct LoopStats {
    /// Period between loop iterations, ms.
    pub period_ms: Window,
    /// Work per iteration (observation in, command out), ms.
    pub work_ms: Window,
    /// Inference wall time, ms.
    pub inference_ms: Window,
}

impl Default for LoopStats {
    fn default() -> Self {
        Self {
            period_ms: Window::new(2000),
            work_ms: Window::new(2000),
            inference_ms: Window::new(200),
        }
    }
}
