//! `cargo bench --bench state_store`: one replay mark written into the in-memory state store
//! holding 1 000 and 100 000 live entries (the per-request state work of a token). The two
//! times should be close: expiry is amortised O(1), not a scan of the map. Report the ratio.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fedsts::state::StateStore;
use fedsts::state::memory::MemoryStore;
use time::{Duration, OffsetDateTime};

fn filled(entries: usize, now: OffsetDateTime) -> MemoryStore {
    let store = MemoryStore::new("bench");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        for n in 0..entries {
            let ttl = Duration::minutes(30);
            store
                .set_if_absent(&format!("live:{n}"), "1", ttl, now)
                .await
                .unwrap();
        }
    });
    store
}

fn replay_mark_write(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("replay_mark_write");
    for entries in [1_000, 100_000] {
        let store = filled(entries, now);
        let mut n = 0u64;
        group.bench_with_input(BenchmarkId::from_parameter(entries), &entries, |b, _| {
            b.iter(|| {
                n += 1;
                let key = format!("replay:{n}");
                runtime.block_on(async {
                    let ttl = Duration::seconds(1);
                    black_box(store.set_if_absent(&key, "1", ttl, now).await.unwrap())
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, replay_mark_write);
criterion_main!(benches);
