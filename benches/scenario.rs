//! Cases per second of `ticket-oversell`: what bounds how much proptest can search. Each
//! case forks a case leader in its own process group, which forks the buyers, runs the
//! forced schedule over a turnstile in shared memory, joins them under the watchdog and
//! judges the history. Target: >= 100 cases/s on 2 cores.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use ipcbench::scenario::{self, run_case, Case, Schedule};
use std::time::{Duration, Instant};

fn ticket_oversell(c: &mut Criterion) {
    let mut group = c.benchmark_group("scenario/ticket-oversell");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let scenario = scenario::find("ticket-oversell").expect("in the catalogue");
    let case = Case {
        params: serde_json::json!({"buyers": 2, "tickets": 1, "attempts": 1}),
        schedule: Schedule::new(vec![1, 0]),
    };
    for variant in ["unlocked", "flock", "shm-mutex"] {
        group.bench_function(format!("{variant}/2-buyers"), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    let outcome = run_case(scenario, variant, &case).expect("case runs");
                    std::hint::black_box(outcome);
                }
                started.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = ticket_oversell
}
criterion_main!(benches);
