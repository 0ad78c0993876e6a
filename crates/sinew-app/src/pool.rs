//! One worker pool for every batch of episodes (`sim run`, `eval`, `dataset record`): jobs are
//! handed out in order to J named threads, each with its own state (a copy of the policy, its
//! own recorder), and their results come back to the caller in job order, so the output does
//! not depend on J.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, Result};

/// Whether the caller wants more results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Enough: the workers stop taking jobs.
    Stop,
}

enum Msg<J, R> {
    Done(usize, J, Result<R, String>),
    InitFailed(String),
}

/// What each worker does: start, work on a job, end.
pub struct Workers<'a, S, J, R> {
    /// Thread names are `<name>-<k>`.
    pub name: &'a str,
    /// How many.
    pub count: usize,
    /// Worker `k`'s state (its policy copy, its recorder).
    pub init: &'a (dyn Fn(usize) -> Result<S> + Sync),
    /// One job.
    pub work: &'a (dyn Fn(&mut S, &J) -> Result<R> + Sync),
    /// A worker's state when it ends (close its files).
    pub end: &'a (dyn Fn(S) + Sync),
}

/// Runs `workers` on `jobs` and hands each job and its result to `consume` in job order.
/// Stops at the first error (work or consume), when `consume` says so, or when `stop`
/// returns true (the results finished so far are still consumed in order).
pub fn ordered_pool<J, S, R, I>(
    jobs: I,
    workers: &Workers<'_, S, J, R>,
    mut consume: impl FnMut(J, R) -> Result<Flow>,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<()>
where
    J: Send,
    R: Send,
    I: Iterator<Item = J> + Send,
{
    let jobs = Mutex::new(jobs.enumerate());
    let done = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::unbounded::<Msg<J, R>>();
    std::thread::scope(|s| -> Result<()> {
        for k in 0..workers.count.max(1) {
            let tx = tx.clone();
            let (jobs, done) = (&jobs, &done);
            std::thread::Builder::new()
                .name(format!("{}-{k}", workers.name))
                .spawn_scoped(s, move || {
                    let mut state = match (workers.init)(k) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(Msg::InitFailed(format!("{e:#}")));
                            return;
                        }
                    };
                    while !done.load(Ordering::Relaxed) && !stop() {
                        let next = jobs.lock().map(|mut j| j.next()).unwrap_or(None);
                        let Some((i, job)) = next else { break };
                        let r = (workers.work)(&mut state, &job).map_err(|e| format!("{e:#}"));
                        if tx.send(Msg::Done(i, job, r)).is_err() {
                            break;
                        }
                    }
                    (workers.end)(state);
                })?;
        }
        drop(tx);
        let mut pending: BTreeMap<usize, (J, Result<R, String>)> = BTreeMap::new();
        let mut want = 0usize;
        let result = (|| -> Result<()> {
            for m in rx.iter() {
                match m {
                    Msg::InitFailed(e) => return Err(anyhow!(e)),
                    Msg::Done(i, job, r) => {
                        pending.insert(i, (job, r));
                    }
                }
                while let Some((job, r)) = pending.remove(&want) {
                    want += 1;
                    let r = r.map_err(|e| anyhow!(e))?;
                    if consume(job, r)? == Flow::Stop {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })();
        // Stops the workers whether the batch is complete, interrupted or failed.
        done.store(true, Ordering::Relaxed);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_job_order_whatever_the_workers() {
        for workers in [1, 3] {
            let mut seen = Vec::new();
            let w = Workers {
                name: "test",
                count: workers,
                init: &|k| Ok(k),
                work: &|_, j: &u64| {
                    std::thread::yield_now();
                    Ok(j * 10)
                },
                end: &|_| {},
            };
            ordered_pool(
                0..20u64,
                &w,
                |j, r| {
                    seen.push((j, r));
                    Ok(if j == 14 { Flow::Stop } else { Flow::Continue })
                },
                &|| false,
            )
            .expect("runs");
            let want: Vec<(u64, u64)> = (0..15).map(|j| (j, j * 10)).collect();
            assert_eq!(seen, want, "{workers} workers");
        }
    }

    #[test]
    fn the_first_error_in_job_order_ends_the_batch() {
        let w = Workers {
            name: "test",
            count: 2,
            init: &|_| Ok(()),
            work: &|_, j: &u64| {
                if *j == 3 {
                    anyhow::bail!("job 3 is broken")
                }
                Ok(*j)
            },
            end: &|_| {},
        };
        let e = ordered_pool(0..10u64, &w, |_, _| Ok(Flow::Continue), &|| false)
            .expect_err("job 3 fails");
        assert_eq!(e.to_string(), "job 3 is broken");
        let w = Workers {
            name: "test",
            count: 2,
            init: &|k| -> Result<()> { anyhow::bail!("worker {k} cannot start") },
            work: &|_, j: &u64| Ok(*j),
            end: &|_| {},
        };
        let e = ordered_pool(0..3u64, &w, |_, _| Ok(Flow::Continue), &|| false)
            .expect_err("no worker starts");
        assert!(e.to_string().contains("cannot start"), "{e}");
    }
}
