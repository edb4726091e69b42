//! `cargo bench --bench pkcs11_sign`: one RSA-2048 PKCS#1 v1.5 SHA-256 signature of a
//! SignedInfo-sized message through a SoftHSM2 token (the `Pkcs11Signer` path: queue, worker
//! thread, `C_Sign`) next to the in-memory software key (aws-lc-rs) as the baseline, and 4
//! signatures at once (4 threads, a pool of 4 sessions) next to 4 in a row. Report the ratios
//! pkcs11_sign / software_sign and 4_at_once / 4_in_a_row, not absolute times (the second
//! depends on the cores free). Needs `softhsm2-util` and the SoftHSM module (Debian
//! `softhsm2`); without them it prints SKIP.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use fedsts::config::Pkcs11Config;
use fedsts::crypto::pkcs11::{Pkcs11Signer, generate_key_pair};
use fedsts::crypto::{Signer, SoftwareSigner, generate_self_signed};
use fedsts::secret::Secret;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "bench-pin";

/// A token in a temp dir with a generated key; `None` when SoftHSM is not installed.
fn token(dir: &Path) -> Option<Pkcs11Config> {
    if !Path::new(MODULE).exists() {
        eprintln!("SKIP pkcs11_sign: {MODULE} missing (apt-get install softhsm2)");
        return None;
    }
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    let status = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--so-pin",
            "bench-so",
            "--pin",
            PIN,
        ])
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("SKIP pkcs11_sign: softhsm2-util --init-token failed or is missing");
        return None;
    }
    // Set before the module is loaded (SoftHSM reads it at C_Initialize); no other thread yet.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    let config: Pkcs11Config = toml::from_str(&format!(
        "module = \"{MODULE}\"\ntoken_label = \"bench\"\nkey_label = \"bench\"\nsessions = 4\n"
    ))
    .unwrap();
    let config = Pkcs11Config {
        pin: Some(Secret::new(PIN.to_owned())),
        ..config
    };
    generate_key_pair(&config).unwrap();
    Some(config)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let Some(config) = token(dir.path()) else {
        return;
    };
    let generated = generate_self_signed("bench signing", &[], 30).unwrap();
    let software = SoftwareSigner::from_pem(&generated.private_key_pem).unwrap();
    let token = Arc::new(Pkcs11Signer::open(&config).unwrap());
    let signed_info = vec![b'x'; 700];

    let mut group = c.benchmark_group("pkcs11_sign");
    group.bench_function("software_sign", |b| {
        b.iter(|| software.sign_rsa_sha256(black_box(&signed_info)).unwrap())
    });
    group.bench_function("pkcs11_sign", |b| {
        b.iter(|| token.sign_rsa_sha256(black_box(&signed_info)).unwrap())
    });
    group.bench_function("pkcs11_sign_4_in_a_row", |b| {
        b.iter(|| {
            for _ in 0..4 {
                token.sign_rsa_sha256(black_box(&signed_info)).unwrap();
            }
        })
    });
    group.bench_function("pkcs11_sign_4_at_once", |b| {
        b.iter(|| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let token = token.clone();
                    let message = signed_info.clone();
                    std::thread::spawn(move || token.sign_rsa_sha256(&message).unwrap())
                })
                .collect();
            threads.into_iter().for_each(|t| {
                t.join().unwrap();
            })
        })
    });
    group.bench_function("software_sign_4_at_once", |b| {
        let software = Arc::new(SoftwareSigner::from_pem(&generated.private_key_pem).unwrap());
        b.iter(|| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let software = software.clone();
                    let message = signed_info.clone();
                    std::thread::spawn(move || software.sign_rsa_sha256(&message).unwrap())
                })
                .collect();
            threads.into_iter().for_each(|t| {
                t.join().unwrap();
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
