//! Chunk scheduling: sync and async execution, merging, latency compensation.

use sinew_runtime::chunks::{ChunkScheduler, Execution, Merge};

fn chunk(start_value: f64, n: usize) -> Vec<Vec<f64>> {
    (0..n).map(|i| vec![start_value + i as f64]).collect()
}

#[test]
fn sync_executes_k_steps_then_asks() {
    let mut s = ChunkScheduler::new(Execution::Sync { steps: 3 });
    assert!(s.wants_chunk(0));
    s.insert(0, chunk(10.0, 8), 0);
    assert!(!s.wants_chunk(0) && !s.wants_chunk(2));
    assert_eq!(s.target(2), Some(vec![12.0]));
    assert_eq!(s.target(3), None, "only 3 steps of a chunk are executed");
    assert!(s.wants_chunk(3));
    s.insert(3, chunk(20.0, 8), 3);
    assert_eq!(s.target(3), Some(vec![20.0]));
}

#[test]
fn async_asks_at_the_threshold_and_compensates_latency() {
    let mut s = ChunkScheduler::new(Execution::Async {
        threshold: 4,
        merge: Merge::LatestOnly,
    });
    s.insert(0, chunk(0.0, 10), 0);
    assert!(!s.wants_chunk(5));
    assert!(s.wants_chunk(6), "4 steps left at step 6");
    // A chunk predicted from step 6 arrives at step 8: its entries for 6 and 7 are skipped, and
    // the robot continues from its entry for step 8.
    let late = s.insert(6, chunk(100.0, 10), 8);
    assert_eq!(late, 2);
    assert_eq!(s.target(8), Some(vec![102.0]));
    assert_eq!(s.late_steps, 2);
}

#[test]
fn merging_overlapping_chunks() {
    let old = vec![vec![0.0]; 10];
    let new = vec![vec![10.0]; 10];
    let at = |merge| {
        let mut s = ChunkScheduler::new(Execution::Async {
            threshold: 5,
            merge,
        });
        s.insert(0, old.clone(), 0);
        s.insert(5, new.clone(), 5);
        (
            s.target(4).expect("old only")[0],
            s.target(7).expect("both")[0],
            s.target(12).expect("new only")[0],
        )
    };
    assert_eq!(at(Merge::LatestOnly), (0.0, 10.0, 10.0));
    let (a, b, c) = at(Merge::WeightedAverage { old_weight: 0.3 });
    assert_eq!((a, c), (0.0, 10.0));
    assert!((b - 7.0).abs() < 1e-12);
    // ACT: weights exp(-m i), i = 0 the oldest prediction.
    let m: f64 = 0.5;
    let (_, b, _) = at(Merge::TemporalEnsemble { m });
    let want = (1.0 * 0.0 + (-m).exp() * 10.0) / (1.0 + (-m).exp());
    assert!((b - want).abs() < 1e-12);
}

#[test]
fn async_asks_at_most_once_per_policy_step() {
    // Chunks of one step with a threshold of one: without the rule, the chunk predicted from
    // step 3 would be asked for again on every command tick of step 3.
    let mut s = ChunkScheduler::new(Execution::Async {
        threshold: 1,
        merge: Merge::LatestOnly,
    });
    assert!(s.wants_chunk(0), "nothing yet");
    s.insert(3, chunk(0.0, 1), 3);
    assert!(!s.wants_chunk(3), "already predicted from step 3");
    assert!(s.wants_chunk(4), "the next step asks again");
}
