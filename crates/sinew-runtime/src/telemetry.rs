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

/// Smoothness of a command stream: the RMS of its third finite difference (jerk) per joint.
#[derive(Debug, Clone)]
pub struct JerkMeter {
    dt_s: f64,
    /// The last three commands, oldest first.
    last: VecDeque<Vec<f64>>,
    sum_sq: Vec<f64>,
    n: u64,
}

impl JerkMeter {
    /// For commands sent every `dt_s` seconds.
    pub fn new(dt_s: f64) -> Self {
        Self {
            dt_s,
            last: VecDeque::with_capacity(3),
            sum_sq: Vec::new(),
            n: 0,
        }
    }

    /// The next command.
    pub fn push(&mut self, q: &[f64]) {
        if self.last.len() == 3 {
            let (a, b, c) = (&self.last[0], &self.last[1], &self.last[2]);
            if a.len() == q.len() && b.len() == q.len() && c.len() == q.len() {
                if self.sum_sq.len() != q.len() {
                    self.sum_sq = vec![0.0; q.len()];
                    self.n = 0;
                }
                let dt3 = self.dt_s.powi(3);
                for (i, s) in self.sum_sq.iter_mut().enumerate() {
                    let j = (q[i] - 3.0 * c[i] + 3.0 * b[i] - a[i]) / dt3;
                    *s += j * j;
                }
                self.n += 1;
            }
        }
        // The oldest buffer is reused: no allocation per command.
        let mut buf = if self.last.len() == 3 {
            self.last.pop_front().unwrap_or_default()
        } else {
            Vec::new()
        };
        buf.clear();
        buf.extend_from_slice(q);
        self.last.push_back(buf);
    }

    /// RMS jerk per joint (units/s³); empty before four commands.
    pub fn rms_per_joint(&self) -> Vec<f64> {
        if self.n == 0 {
            return Vec::new();
        }
        self.sum_sq
            .iter()
            .map(|s| (s / self.n as f64).sqrt())
            .collect()
    }

    /// The mean over joints of the RMS jerk (0 before four commands).
    pub fn rms(&self) -> f64 {
        let per = self.rms_per_joint();
        per.iter().sum::<f64>() / per.len().max(1) as f64
    }
}
