//! `cargo bench --bench metrics`: what the metrics add to one request (one token decision, one
//! request-latency and one password-check observation, as a usernamemixed sign-in records them),
//! alone and with four threads counting into the same series, and one scrape's encoding, next
//! to a raw RSA-2048 signature (the cheapest part of issuing a token) in the same run. Report
//! the ratios to `rsa2048_sign`, not absolute times.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fedsts::crypto::{Certificate, SigningIdentity, SoftwareSigner, generate_self_signed};
use fedsts::metrics::{Counted, Metrics};

/// What one usernamemixed sign-in counts.
fn count_one_sign_in(metrics: &Metrics, app: &Arc<String>, directory: &Arc<String>) {
    metrics.password_check(directory, "accepted", Duration::from_millis(30));
    metrics.decision(Counted::Issued, app, "trust/13/usernamemixed", "ok");
    metrics.request("trust/13/usernamemixed", Duration::from_millis(35));
}

fn bench(c: &mut Criterion) {
    let generated = generate_self_signed("bench signing", &[], 30).unwrap();
    let signer = Arc::new(SoftwareSigner::from_pem(&generated.private_key_pem).unwrap());
    let certificate = Certificate::from_pem(&generated.certificate_pem).unwrap();
    let identity = SigningIdentity::new(signer, certificate).unwrap();
    let signed_info = vec![b'x'; 700];
    let metrics = Arc::new(Metrics::new());
    let app = Arc::new("demo".to_owned());
    let directory = Arc::new("users".to_owned());
    for reason in [
        "wrong_password",
        "unknown_user",
        "rate_limited",
        "account_locked_unfamiliar",
    ] {
        metrics.decision(Counted::Refused, &app, "trust/13/usernamemixed", reason);
    }

    let mut group = c.benchmark_group("metrics");
    group.bench_function("rsa2048_sign", |b| {
        b.iter(|| {
            identity
                .signer
                .sign_rsa_sha256(black_box(&signed_info))
                .unwrap()
        })
    });
    group.bench_function("count_one_sign_in", |b| {
        b.iter(|| count_one_sign_in(black_box(&metrics), &app, &directory))
    });
    group.bench_function("count_one_sign_in_4_threads", |b| {
        b.iter_custom(|iterations| {
            let started = std::time::Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..4 {
                    scope.spawn(|| {
                        for _ in 0..iterations {
                            count_one_sign_in(&metrics, &app, &directory);
                        }
                    });
                }
            });
            // Per sign-in counted, over the four threads together.
            started.elapsed() / 4
        })
    });
    group.bench_function("encode_scrape", |b| b.iter(|| black_box(metrics.encode())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
