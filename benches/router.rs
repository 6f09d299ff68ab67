//! Routing one publish through the subscription index.
//!
//! Two indexes: 10,000 exact channels with one subscriber each, and the same plus
//! 1,000 wildcard subscriptions spread so a typical publish matches its exact
//! subscriber and two or three patterns (which also exercises de-duplication). Lookups
//! cycle through all channels so the hash map and trie are not answered from one hot
//! cache line. Throughput is one element per lookup.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pubsub::protocol::validate_pattern;
use pubsub::router::Router;

/// Regions and devices per region: 100 x 100 = 10,000 exact channels.
const REGIONS: usize = 100;
const DEVICES: usize = 100;

/// `r<region>.dev<device>.temp`, the exact channels.
fn channels() -> Vec<String> {
    (0..REGIONS)
        .flat_map(|r| (0..DEVICES).map(move |d| format!("r{r}.dev{d}.temp")))
        .collect()
}

/// 1,000 patterns, 10 per region: `r<r>.*.temp`, `r<r>.>`, and eight
/// `r<r>.dev<d>.*` for scattered devices.
fn patterns() -> Vec<String> {
    (0..1000)
        .map(|k| {
            let (r, kind) = (k % REGIONS, k / REGIONS);
            match kind {
                0 => format!("r{r}.*.temp"),
                1 => format!("r{r}.>"),
                _ => format!("r{r}.dev{}.*", (kind * 7 + r) % DEVICES),
            }
        })
        .collect()
}

/// An index with one subscriber per exact channel, and the patterns when asked;
/// connection ids are all distinct.
fn build(channels: &[String], patterns: &[String]) -> Router<usize> {
    let mut router = Router::new();
    for (i, ch) in channels.iter().enumerate() {
        router.insert(ch, false, i);
    }
    for (i, p) in patterns.iter().enumerate() {
        assert_eq!(validate_pattern(p), Ok(true), "{p}");
        router.insert(p, true, channels.len() + i);
    }
    router
}

/// Looks up every channel in turn, one per iteration; returns the matches of the last.
fn bench_lookups(b: &mut criterion::Bencher<'_>, router: &mut Router<usize>, names: &[String]) {
    let mut out = Vec::with_capacity(64);
    let mut i = 0;
    b.iter(|| {
        out.clear();
        router.lookup(black_box(&names[i]), &mut out);
        i += 1;
        if i == names.len() {
            i = 0;
        }
        out.len()
    })
}

fn lookup(c: &mut Criterion) {
    let chans = channels();
    let pats = patterns();
    let misses: Vec<String> = (0..chans.len())
        .map(|i| format!("r{}.dev{}.humidity", i % REGIONS, i))
        .collect();
    let mut exact = build(&chans, &[]);
    let mut mixed = build(&chans, &pats);

    // Sanity: the mix matches what the docs above promise.
    let mut out = Vec::new();
    mixed.lookup("r3.dev5.temp", &mut out);
    assert!(out.len() >= 3, "{out:?}");

    let mut g = c.benchmark_group("router_lookup");
    g.throughput(Throughput::Elements(1));
    g.bench_function("exact10k_hit", |b| bench_lookups(b, &mut exact, &chans));
    g.bench_function("exact10k_miss", |b| bench_lookups(b, &mut exact, &misses));
    g.bench_function("mixed10k+1kwild_hit", |b| {
        bench_lookups(b, &mut mixed, &chans)
    });
    // Misses the exact map but still matches `r<r>.>` (and sometimes `r<r>.dev<d>.*`).
    g.bench_function("mixed10k+1kwild_wildonly", |b| {
        bench_lookups(b, &mut mixed, &misses)
    });
    // No pattern shares even the first token: the trie is entered and left at once.
    let strangers: Vec<String> = (0..1000).map(|i| format!("x{i}.y.z")).collect();
    g.bench_function("mixed10k+1kwild_miss", |b| {
        bench_lookups(b, &mut mixed, &strangers)
    });

    // One channel with 1,000 subscribers: the lookup copies 1,000 ids (the routing part
    // of the fan-out bench in benches/fanout.rs).
    let mut big: Router<usize> = Router::new();
    for id in 0..1000 {
        big.insert("fan.out", false, id);
    }
    g.throughput(Throughput::Elements(1000));
    g.bench_function("exact_1000_subscribers", |b| {
        bench_lookups(b, &mut big, &["fan.out".to_string()])
    });
    // The same 1,000 plus one matching pattern: forces the sort-and-dedup pass.
    big.insert("fan.*", true, 5000);
    g.bench_function("exact_1000_subscribers+1wild", |b| {
        bench_lookups(b, &mut big, &["fan.out".to_string()])
    });
    g.finish();
}

fn churn(c: &mut Criterion) {
    let chans = channels();
    let pats = patterns();
    let mut mixed = build(&chans, &pats);
    let mut g = c.benchmark_group("router_subscribe_unsubscribe");
    g.throughput(Throughput::Elements(1));
    // A second subscriber joins and leaves an existing exact channel.
    g.bench_function("exact_existing", |b| {
        let mut i = 0;
        b.iter(|| {
            let ch = &chans[i % chans.len()];
            mixed.insert(black_box(ch), false, 99_999);
            let removed = mixed.remove(ch, false, 99_999);
            i += 1;
            removed
        })
    });
    // A new exact channel is created and pruned again (allocates the key).
    g.bench_function("exact_new", |b| {
        b.iter(|| {
            mixed.insert(black_box("fresh.channel.name"), false, 99_999);
            mixed.remove("fresh.channel.name", false, 99_999)
        })
    });
    // A wildcard pattern in a fresh trie branch, created and pruned.
    g.bench_function("wildcard_new", |b| {
        b.iter(|| {
            mixed.insert(black_box("fresh.*.name"), true, 99_999);
            mixed.remove("fresh.*.name", true, 99_999)
        })
    });
    g.finish();
}

criterion_group!(benches, lookup, churn);
criterion_main!(benches);
