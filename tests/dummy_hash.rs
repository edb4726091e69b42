//! Equal cost for unknown users: with users hashed by another tool's parameters (argon2-cffi's
//! defaults, m=64 MiB t=3 p=4, made here at test time), the dummy hash checked for unknown users
//! has those parameters, so an unknown user takes about as long as a wrong password (compared
//! as a generous ratio of medians measured in the same test), and `check-config` warns when the
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

/// The median time of `n` failed checks of `user`.
async fn median_failure(directory: &FileDirectory, user: &str, n: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        assert!(directory.authenticate(user, "wrong").await.is_err());
        times.push(start.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test]
async fn unknown_users_cost_what_the_users_hashes_cost() {
    let hash = hash_with("right", CFFI);
    let directory = FileDirectory::parse(&users(&[hash.clone(), hash])).unwrap();
    assert_eq!(directory.dummy_cost(), Some(CFFI));
    let wrong = median_failure(&directory, "u0@example.com", 3).await;
    let unknown = median_failure(&directory, "nobody@example.com", 3).await;
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    eprintln!("wrong password {wrong:?}, unknown user {unknown:?} (x{ratio:.2})");
    assert!(
        (0.75..1.33).contains(&ratio),
        "unknown user {unknown:?} vs wrong password {wrong:?}: x{ratio:.2}"
    );
}

#[test]
fn check_config_warns_when_users_hash_costs_differ_widely() {
    let dir = tempfile::tempdir().unwrap();
    fedsts::defaults::prepare(dir.path(), "127.0.0.1:8443").unwrap();
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
