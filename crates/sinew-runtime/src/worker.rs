//! The policy on its own named thread. The control loop hands it observations through a
//! bounded channel of one (it never blocks: a request made while one is pending is refused)
//! and polls for results. A policy that panics is reported as a fatal error and the thread
//! ends; one that stalls is seen by the runtime's watchdog (the request's age), not here.

use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use sinew_core::{ActionChunk, Observation, Policy};

/// A request: the observation of one policy step.
#[derive(Debug)]
pub struct Job {
    /// The policy step.
    pub step: u64,
    /// The observation.
    pub observation: Observation,
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

/// The inference thread.
#[derive(Debug)]
pub struct InferenceWorker {
    jobs: Option<Sender<Job>>,
    results: Receiver<Outcome>,
    handle: Option<JoinHandle<()>>,
    dead: bool,
}

impl InferenceWorker {
    /// Starts the thread `sinew-inference` owning `policy`.
    pub fn spawn(mut policy: Box<dyn Policy>) -> std::io::Result<Self> {
        let (job_tx, job_rx) = bounded::<Job>(1);
        let (res_tx, res_rx) = bounded::<Outcome>(4);
        let handle = std::thread::Builder::new()
            .name("sinew-inference".into())
            .spawn(move || {
                for job in job_rx.iter() {
                    let t0 = Instant::now();
                    let q = job.observation.joint_positions.clone();
                    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        policy.infer(&job.observation)
                    }));
                    let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
                    let out = match r {
                        Ok(Ok(chunk)) => Outcome::Chunk {
                            step: job.step,
                            chunk,
                            wall_ms,
                            q_observed: q,
                        },
                        Ok(Err(e)) => Outcome::Error {
                            step: job.step,
                            error: e.to_string(),
                        },
                        Err(p) => {
                            let msg = p
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| p.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "unknown panic".into());
                            let _ = res_tx.send(Outcome::Dead {
                                error: format!("the policy panicked: {msg}"),
                            });
                            return;
                        }
                    };
                    if res_tx.send(out).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(job_tx),
            results: res_rx,
            handle: Some(handle),
            dead: false,
        })
    }

    /// Hands an observation to the thread; `false` when one is still pending or the thread is
    /// gone (never blocks).
    pub fn submit(&mut self, job: Job) -> bool {
        match &self.jobs {
            Some(tx) => match tx.try_send(job) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => false,
                Err(TrySendError::Disconnected(_)) => {
                    self.dead = true;
                    false
                }
            },
            None => false,
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

    /// Waits for the next result (lockstep harnesses and tests).
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
        self.jobs = None;
        if let Some(h) = self.handle.take() {
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for InferenceWorker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs `policy` once on the calling thread, turning a panic into a fatal outcome (lockstep).
pub fn infer_inline(policy: &mut dyn Policy, step: u64, observation: &Observation) -> Outcome {
    let t0 = Instant::now();
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| policy.infer(observation)));
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
        Err(_) => Outcome::Dead {
            error: "the policy panicked".into(),
        },
    }
}
