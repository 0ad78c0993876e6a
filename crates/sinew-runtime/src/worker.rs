//! Where the policy runs: on its own named thread for real-time loops ([`Inference::Threaded`]:
//! the control loop hands an observation over through a channel of one and collects the chunk
//! on a later tick, never waiting), or on the loop's thread for lockstep and replay
//! ([`Inference::Inline`]: simulated time stands still while the model thinks). A policy that
//! panics is reported as a fatal error and never called again; one that stalls is seen by the
//! runtime's watchdog (the request's age), not here.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use sinew_core::handoff::{Consumer, Handoff};
use sinew_core::{ActionChunk, Observation, Policy};

/// A request: the observation of one policy step.
#[derive(Debug)]
pub struct Job {
    /// The policy step.
    pub step: u64,
    /// The observation.
    pub observation: Observation,
    /// Real-time chunking: the actions the robot executes while this chunk is computed (the
    /// policy's action space), which the chunk must begin with; empty otherwise.
    pub committed: Vec<Vec<f64>>,
}

/// What came back.
#[derive(Debug)]
pub enum Outcome {
    /// A chunk, with the wall time of the call (ms).
    Chunk {
        /// The request's step.
        step: u64,
        /// The chunk.
        chunk: ActionChunk,
        /// Wall time of `infer`, ms.
        wall_ms: f64,
        /// The joint positions of the observation.
        q_observed: Vec<f64>,
    },
    /// The policy returned an error (the next request may succeed).
    Error {
        /// The request's step.
        step: u64,
        /// The error.
        error: String,
    },
    /// The policy panicked or its thread is gone: it will not be called again.
    Dead {
        /// What happened.
        error: String,
    },
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `policy` once on the calling thread, turning a panic into a fatal outcome.
pub fn infer_inline(policy: &mut dyn Policy, step: u64, observation: &Observation) -> Outcome {
    infer_committed(policy, step, observation, &[])
}

/// [`infer_inline`] with the chunk conditioned on `committed` actions (real-time chunking;
/// empty: a plain inference).
pub fn infer_committed(
    policy: &mut dyn Policy,
    step: u64,
    observation: &Observation,
    committed: &[Vec<f64>],
) -> Outcome {
    let t0 = Instant::now();
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if committed.is_empty() {
            policy.infer(observation)
        } else {
            policy.infer_with_prefix(observation, committed)
        }
    }));
    let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
    match r {
        Ok(Ok(chunk)) => Outcome::Chunk {
            step,
            chunk,
            wall_ms,
            q_observed: observation.joint_positions.clone(),
        },
        Ok(Err(e)) => Outcome::Error {
            step,
            error: e.to_string(),
        },
        Err(p) => Outcome::Dead {
            error: format!("the policy panicked: {}", panic_message(p.as_ref())),
        },
    }
}

/// The inference thread's side: the policy, and where its results go.
struct PolicyConsumer {
    policy: Box<dyn Policy>,
    results: Sender<Outcome>,
}

impl Consumer for PolicyConsumer {
    type Item = Job;
    type Report = ();

    fn consume(&mut self, job: Job) -> Result<(), String> {
        let out = infer_committed(
            self.policy.as_mut(),
            job.step,
            &job.observation,
            &job.committed,
        );
        let dead = match &out {
            Outcome::Dead { error } => Some(error.clone()),
            _ => None,
        };
        if self.results.send(out).is_err() {
            return Err("the control loop is gone".into());
        }
        dead.map_or(Ok(()), Err)
    }

    fn finish(self) {}
}

/// The policy on the thread `sinew-inference`.
#[derive(Debug)]
pub struct InferenceWorker {
    jobs: Option<Handoff<PolicyConsumer>>,
    results: Receiver<Outcome>,
    dead: bool,
}

impl std::fmt::Debug for PolicyConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyConsumer")
            .field("policy", &self.policy.spec().architecture)
            .finish()
    }
}

impl InferenceWorker {
    /// Starts the thread owning `policy`.
    pub fn spawn(policy: Box<dyn Policy>) -> std::io::Result<Self> {
        let (res_tx, res_rx) = bounded::<Outcome>(4);
        let jobs = Handoff::spawn(
            "sinew-inference",
            1,
            PolicyConsumer {
                policy,
                results: res_tx,
            },
        )?;
        Ok(Self {
            jobs: Some(jobs),
            results: res_rx,
            dead: false,
        })
    }

    /// Hands an observation to the thread; `false` when one is still pending or the policy is
    /// dead (never blocks).
    pub fn submit(&mut self, job: Job) -> bool {
        match &mut self.jobs {
            Some(h) if !self.dead => h.send(job),
            _ => false,
        }
    }

    /// A finished result, if any (never blocks).
    pub fn poll(&mut self) -> Option<Outcome> {
        match self.results.try_recv() {
            Ok(o) => {
                if matches!(o, Outcome::Dead { .. }) {
                    self.dead = true;
                }
                Some(o)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                if self.dead {
                    None
                } else {
                    self.dead = true;
                    Some(Outcome::Dead {
                        error: "the inference thread ended".into(),
                    })
                }
            }
        }
    }

    /// Waits for the next result (tests).
    pub fn recv(&mut self) -> Option<Outcome> {
        let o = self.results.recv().ok();
        if matches!(o, Some(Outcome::Dead { .. }) | None) {
            self.dead = true;
        }
        o
    }

    /// Whether the policy can no longer be used.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Stops taking work; the thread ends after its current call. A stalled policy is left
    /// running detached (the process exits without waiting for it).
    pub fn shutdown(&mut self) {
        if let Some(h) = self.jobs.take() {
            h.detach();
        }
    }
}

impl Drop for InferenceWorker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where the policy runs.
#[derive(Debug)]
pub enum Inference {
    /// On its own thread: real-time loops.
    Threaded(InferenceWorker),
    /// On the loop's thread: lockstep and replay, where time waits for the model.
    Inline(InlinePolicy),
}

/// A policy called on the loop's thread.
pub struct InlinePolicy {
    policy: Box<dyn Policy>,
    done: Option<Outcome>,
    dead: bool,
}

impl std::fmt::Debug for InlinePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlinePolicy")
            .field("policy", &self.policy.spec().architecture)
            .field("dead", &self.dead)
            .finish()
    }
}

impl Inference {
    /// `policy` on its own thread.
    pub fn threaded(policy: Box<dyn Policy>) -> std::io::Result<Self> {
        Ok(Self::Threaded(InferenceWorker::spawn(policy)?))
    }

    /// `policy` on the caller's thread.
    pub fn inline(policy: Box<dyn Policy>) -> Self {
        Self::Inline(InlinePolicy {
            policy,
            done: None,
            dead: false,
        })
    }

    /// Whether results arrive only on later ticks.
    pub fn is_threaded(&self) -> bool {
        matches!(self, Inference::Threaded(_))
    }

    /// Asks for a chunk; `false` when the request cannot be taken (one is pending, or the
    /// policy is dead). Inline, the chunk is computed before this returns.
    pub fn submit(&mut self, job: Job) -> bool {
        match self {
            Inference::Threaded(w) => w.submit(job),
            Inference::Inline(p) => {
                if p.dead || p.done.is_some() {
                    return false;
                }
                let out = infer_committed(
                    p.policy.as_mut(),
                    job.step,
                    &job.observation,
                    &job.committed,
                );
                p.dead = matches!(out, Outcome::Dead { .. });
                p.done = Some(out);
                true
            }
        }
    }

    /// A finished result, if any (never blocks).
    pub fn poll(&mut self) -> Option<Outcome> {
        match self {
            Inference::Threaded(w) => w.poll(),
            Inference::Inline(p) => p.done.take(),
        }
    }

    /// Releases the policy (a threaded one that is stalled is left running, detached).
    pub fn shutdown(&mut self) {
        if let Inference::Threaded(w) = self {
            w.shutdown();
        }
    }

    /// The inline policy back (to run the next episode with the same weights).
    pub fn into_policy(self) -> Option<Box<dyn Policy>> {
        match self {
            Inference::Inline(p) => Some(p.policy),
            Inference::Threaded(_) => None,
        }
    }
}
