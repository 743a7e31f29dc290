//! Criterion benchmarks: one group per workload, with functions `ferrite` and
//! `wasmi` measuring the same call, so that criterion's report shows the ratio.
//!
//! `cargo bench -p ferrite-bench` runs all of them; `cargo bench -p ferrite-bench
//! -- sort` one group.

use criterion::{criterion_group, criterion_main, Criterion};
use ferrite_bench::{FerriteRunner, WasmiRunner, WORKLOADS};
use std::{hint::black_box, time::Duration};

fn workloads(c: &mut Criterion) {
    for workload in WORKLOADS {
        let wasm = workload.wasm();
        let mut ferrite = FerriteRunner::new(&wasm).expect("ferrite instantiates the workload");
        let mut wasmi = WasmiRunner::new(&wasm).expect("wasmi instantiates the workload");
        let expected = wasmi.run(workload.arg).expect("wasmi runs the workload");
        let actual = ferrite
            .run(workload.arg)
            .expect("ferrite runs the workload");
        assert_eq!(
            actual, expected,
            "{}: ferrite and wasmi disagree",
            workload.name
        );

        let mut group = c.benchmark_group(workload.name);
        // Each call takes tens of milliseconds: few samples suffice, and the whole
        // suite stays within a couple of minutes on a shared 2-core machine.
        group.sample_size(10).warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        group.bench_function("ferrite", |b| {
            b.iter(|| ferrite.run(black_box(workload.arg)).expect("ferrite run"));
        });
        group.bench_function("wasmi", |b| {
            b.iter(|| wasmi.run(black_box(workload.arg)).expect("wasmi run"));
        });
        group.finish();
    }
}

criterion_group!(benches, workloads);
criterion_main!(benches);
