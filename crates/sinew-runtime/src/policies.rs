//! Policies made of other policies.

use sinew_core::rng::SplitMix64;
use sinew_core::{ActionChunk, Observation, Policy, PolicyError, PolicySpec};

/// Exploration noise on what a policy commands (DART, Laskey et al. 2017): Gaussian noise of
/// standard deviation `sigma` (rad or m) on every action of every chunk, the gripper excepted.
/// The chunk's `label` keeps the clean action, so a dataset records what the demonstrator
/// meant while the robot executes the perturbed command and the demonstrator, acting on the
/// perturbed state, shows how to recover.
pub struct ActionNoise {
    inner: Box<dyn Policy>,
    sigma: f64,
    skip: Option<usize>,
    rng: SplitMix64,
}

impl std::fmt::Debug for ActionNoise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionNoise")
            .field("inner", &self.inner.spec().architecture)
            .field("sigma", &self.sigma)
            .finish()
    }
}

impl ActionNoise {
    /// `inner` with noise of `sigma` on every dimension but `skip` (the gripper), drawn from
    /// `rng`.
    pub fn new(inner: Box<dyn Policy>, sigma: f64, skip: Option<usize>, rng: SplitMix64) -> Self {
        Self {
            inner,
            sigma,
            skip,
            rng,
        }
    }
}

impl Policy for ActionNoise {
    fn spec(&self) -> &PolicySpec {
        self.inner.spec()
    }

    fn reset(&mut self) {
        self.inner.reset();
    }

    fn infer(&mut self, observation: &Observation) -> Result<ActionChunk, PolicyError> {
        let mut chunk = self.inner.infer(observation)?;
        if self.sigma > 0.0 {
            if chunk.label.is_none() {
                chunk.label = chunk.actions.first().cloned();
            }
            for a in chunk.actions.iter_mut() {
                for (i, v) in a.iter_mut().enumerate() {
                    if Some(i) != self.skip {
                        *v += self.sigma * self.rng.normal();
                    }
                }
            }
        }
        Ok(chunk)
    }
}

/// Builds the policy that takes over, from the observation of the step it takes over at.
pub type TakeOver = Box<dyn FnMut(&Observation) -> Result<Box<dyn Policy>, PolicyError> + Send>;

/// One policy drives up to a policy step, then another takes over from wherever the first
/// left the robot (takeover data collection: a learner drives, a scripted expert finishes).
/// The first policy's chunks are cut at the switch step, so the loop asks again exactly there.
pub struct Handover {
    first: Box<dyn Policy>,
    switch_step: u64,
    take_over: TakeOver,
    second: Option<Box<dyn Policy>>,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover")
            .field("first", &self.first.spec().architecture)
            .field("switch_step", &self.switch_step)
            .field("switched", &self.second.is_some())
            .finish()
    }
}

impl Handover {
    /// `first` drives until policy step `switch_step`; then `take_over` builds the policy
    /// that drives from there on.
    pub fn new(first: Box<dyn Policy>, switch_step: u64, take_over: TakeOver) -> Self {
        Self {
            first,
            switch_step,
            take_over,
            second: None,
        }
    }

    /// Whether the second policy has taken over.
    pub fn switched(&self) -> bool {
        self.second.is_some()
    }
}

impl Policy for Handover {
    /// The first policy's: the loop is set up for it (cameras, rate, execution).
    fn spec(&self) -> &PolicySpec {
        self.first.spec()
    }

    fn reset(&mut self) {
        self.first.reset();
        self.second = None;
    }

    fn infer(&mut self, observation: &Observation) -> Result<ActionChunk, PolicyError> {
        if self.second.is_none() && observation.step >= self.switch_step {
            self.second = Some((self.take_over)(observation)?);
        }
        if let Some(p) = self.second.as_mut() {
            return p.infer(observation);
        }
        let mut chunk = self.first.infer(observation)?;
        let left = (self.switch_step - observation.step) as usize;
        chunk.actions.truncate(left);
        Ok(chunk)
    }
}

/// A policy several owners share, one call at a time: a worker keeps its model across
/// episodes while each episode's loop (and wrappers such as [`Handover`]) own a handle.
#[derive(Clone)]
pub struct SharedPolicy {
    inner: std::sync::Arc<std::sync::Mutex<Box<dyn Policy>>>,
    spec: PolicySpec,
}

impl std::fmt::Debug for SharedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPolicy")
            .field("architecture", &self.spec.architecture)
            .finish()
    }
}

impl SharedPolicy {
    /// Shares `policy`.
    pub fn new(policy: Box<dyn Policy>) -> Self {
        Self {
            spec: policy.spec().clone(),
            inner: std::sync::Arc::new(std::sync::Mutex::new(policy)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn Policy>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Policy for SharedPolicy {
    fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    fn reset(&mut self) {
        self.lock().reset();
    }

    fn infer(&mut self, observation: &Observation) -> Result<ActionChunk, PolicyError> {
        self.lock().infer(observation)
    }
}
