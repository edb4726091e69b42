//! Equal cost for unknown users: with users hashed by another tool's parameters (argon2-cffi's
//! defaults, m=64 MiB t=3 p=4, made here at test time), the dummy hash checked for unknown users
//! has those parameters, so an unknown user takes about as long as a wrong password (a generous
//! ratio of the fastest of each, measured in the same test), and `check-config` warns when the
//! users' parameters differ widely.

use std::process::Command;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use fedsts::directory::Directory;
use fedsts::directory::file::{FileDirectory, HashCost};

/// argon2-cffi's default parameters.
const CFFI: HashCost = HashCost {
    m_kib: 65536,
    t: 3,
    p: 4,
};

fn hash_with(password: &str, cost: HashCost) -> String {
    let params = Params::new(cost.m_kib, cost.t, cost.p, None).unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes())
        .unwrap()
        .to_string()
}

fn users(hashes: &[String]) -> String {
    hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            format!("[[users]]\nupn='u{i}@example.com'\nimmutable_id='id{i}'\npassword='{h}'\n")
        })
        .collect()
}

/// The time of one failed check of `user`.
async fn failure_time(directory: &FileDirectory, user: &str) -> Duration {
    let start = Instant::now();
    assert!(directory.authenticate(user, "wrong").await.is_err());
    start.elapsed()
}

#[tokio::test]
async fn unknown_users_cost_what_the_users_hashes_cost() {
    let hash = hash_with("right", CFFI);
    let directory = FileDirectory::parse(&users(&[hash.clone(), hash])).unwrap();
    assert_eq!(directory.dummy_cost(), Some(CFFI));
    // Interleaved, and the fastest of each: the least disturbed by other load on the machine.
    let (mut wrong, mut unknown) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        wrong = wrong.min(failure_time(&directory, "u0@example.com").await);
        unknown = unknown.min(failure_time(&directory, "nobody@example.com").await);
    }
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    eprintln!("wrong password {wrong:?}, unknown user {unknown:?} (x{ratio:.2})");
    assert!(
        (0.6..1.67).contains(&ratio),
        "unknown user {unknown:?} vs wrong password {wrong:?}: x{ratio:.2}"
    );
}

#[test]
fn check_config_warns_when_users_hash_costs_differ_widely() {
    let dir = tempfile::tempdir().unwrap();
    fedsts::first_run::prepare(dir.path(), "127.0.0.1:8443").unwrap();
    let cheap = HashCost {
        m_kib: 8192,
        t: 1,
        p: 1,
    };
    std::fs::write(
        dir.path().join("users.toml"),
        users(&[hash_with("a", cheap), hash_with("b", CFFI)]),
    )
    .unwrap();
    let config = r#"[server]
listen = "127.0.0.1:8443"
public_url = "https://localhost:8443"
tls_cert = "certs/tls.crt"
tls_key = "certs/tls.key"

[[apps]]
id = "663a8fb979aa83c58df6081e"
domain = "example.com"
issuer_uri = "example.com"
signing_cert = "certs/signing.crt"
signing_key = "certs/signing.key"
directory = "local"

[directories.local]
kind = "file"
path = "users.toml"
"#;
    let path = dir.path().join("fedsts.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fedsts"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with(
            "warning: directories.local.path: password hashes differ widely in cost (cheapest m=8192,t=1,p=1, costliest m=65536,t=3,p=4)"
        )),
        "{stdout}"
    );
}
