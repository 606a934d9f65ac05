//! Scoring speed: aligning and scoring every shared HyPoradise test set (11,844 records, 5
//! hypotheses each: 1-best, N-best and compositional oracles, CER) on one thread, per
//! normaliser, with and without reading the files; plus the single-pair building blocks.
//!
//!     cargo bench --bench metrics
//!
//! The HyPoradise groups need `../shared/data/hyporadise/test` beside the repository and are
//! skipped (with a message) without it.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use neko::eval::{self, GroupBy, Settings};
use neko::metrics::bleu::BleuStats;
use neko::metrics::chrf::ChrfStats;
use neko::metrics::ter::TerStats;
use neko::metrics::{char_counts, word_counts};
use neko::normalize::Normalizer;

fn hyporadise_files() -> Option<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/hyporadise/test");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Some(files)
}

fn settings(normalizer: &str) -> Settings {
    Settings {
        task: None,
        normalizers: vec![normalizer.parse::<Normalizer>().unwrap()],
        group_by: GroupBy::Auto,
        paired_bs: None,
        paired_ar: None,
        confidence: None,
        per_record: false,
        against: None,
        bleu: Default::default(),
        chrf: Default::default(),
        ter: Default::default(),
    }
}

fn hyporadise(c: &mut Criterion) {
    let Some(files) = hyporadise_files() else {
        eprintln!("SKIP: ../shared/data/hyporadise/test not found");
        return;
    };
    // One thread, whatever the environment says: the figure is per core.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (inputs, errors) = eval::read(&files, neko::record::DEFAULT_MAX_RECORD_BYTES);
    assert!(errors.is_empty(), "{errors:?}");
    let mut g = c.benchmark_group("hyporadise-test");
    g.sample_size(10);
    for norm in ["none", "h2t", "whisper-en"] {
        let s = settings(norm);
        g.bench_function(format!("score/{norm}"), |b| {
            b.iter(|| pool.install(|| black_box(eval::evaluate(&inputs, &s))))
        });
    }
    let s = settings("none");
    g.bench_function("read+score/none", |b| {
        b.iter(|| {
            pool.install(|| {
                let (inputs, _) = eval::read(&files, neko::record::DEFAULT_MAX_RECORD_BYTES);
                black_box(eval::evaluate(&inputs, &s))
            })
        })
    });
    g.finish();
}

fn pairs(c: &mut Criterion) {
    let r =
        "i would like to find a flight from charlotte to las vegas that makes a stop in st louis";
    let h =
        "i would like to find flight from charlotte to las vegas that make a stop in saint louis";
    c.bench_function("pair/word_counts", |b| {
        b.iter(|| word_counts(black_box(r), black_box(h)))
    });
    c.bench_function("pair/char_counts", |b| {
        b.iter(|| char_counts(black_box(r), black_box(h)))
    });
    c.bench_function("pair/bleu_segment", |b| {
        b.iter(|| BleuStats::segment(black_box(h), black_box(r)))
    });
    c.bench_function("pair/chrf_segment", |b| {
        b.iter(|| ChrfStats::segment(black_box(h), black_box(r)))
    });
    c.bench_function("pair/ter_segment", |b| {
        b.iter(|| TerStats::segment_refs(black_box(h), &[black_box(r)]))
    });
    // A moved clause: Tercom's shift search at work.
    let moved =
        "that makes a stop in st louis i would like to find a flight from charlotte to las vegas";
    c.bench_function("pair/ter_segment_shifted", |b| {
        b.iter(|| TerStats::segment_refs(black_box(moved), &[black_box(r)]))
    });
    let n: Normalizer = "whisper-en".parse().unwrap();
    c.bench_function("pair/whisper_en", |b| b.iter(|| n.apply(black_box(r))));
}

criterion_group!(benches, hyporadise, pairs);
criterion_main!(benches);
