//! A connection flood against `fedsts serve` running under a hard descriptor limit of 1024 (what
//! many distributions give a service by default), so the server cannot raise its limit out of
//! the flood's reach. Loopback only, bounded in count (1,400 connects) and time.
//!
//! Before the connection caps, such a flood ran the server out of descriptors: `accept` failed
//! in a tight loop, logging each failure (39 MB in seconds, both cores busy). Now the default cap
//! (derived from the limit) sheds connections before descriptors run out, so the log stays a few
//! lines, the CPU stays idle, and the server answers again once the flood is gone.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fedsts");
/// More connections than the server has descriptors.
const FLOOD: usize = 1400;
/// How long the flood is held open.
const HOLD: Duration = Duration::from_secs(3);

/// `fedsts serve` on embedded defaults under `prlimit --nofile=1024:1024`, its log in `log`.
fn serve_with_1024_descriptors(dir: &std::path::Path, port: u16, log: &std::path::Path) -> Child {
    let mut child = Command::new("prlimit")
        .args(["--nofile=1024:1024", "--", BIN, "serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir)
        .env("FEDSTS_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("prlimit (util-linux) is needed for this test");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "serve printed no banner");
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!(
                "serve exited early: {}",
                std::fs::read_to_string(log).unwrap()
            );
        }
        if line.starts_with("demo password: ") {
            break;
        }
    }
    // Keep reading stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    child
}

/// User plus system CPU time of process `pid`, in clock ticks (`/proc/PID/stat` fields 14, 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `GET /healthz` over HTTPS with curl; the status code, or 0 when nothing answered.
fn healthz(port: u16) -> u16 {
    let out = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "3",
        ])
        .arg(format!("https://127.0.0.1:{port}/healthz"))
        .output()
        .expect("curl is needed for this test");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_flood_past_a_1024_descriptor_limit_leaves_the_server_quiet_and_alive() {
    // The flood's own sockets must not be what runs out.
    rlimit::increase_nofile_limit(FLOOD as u64 + 256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let port = common::free_port();
    let mut child = serve_with_1024_descriptors(dir.path(), port, &log);
    assert_eq!(healthz(port), 200, "the server answers before the flood");

    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        if let Ok(stream) = TcpStream::connect_timeout(&target, Duration::from_millis(200)) {
            flood.push(stream);
        }
    }
    let ticks_before = cpu_ticks(child.id());
    std::thread::sleep(HOLD);
    let ticks_held = cpu_ticks(child.id()) - ticks_before;
    drop(flood);

    let log_bytes = std::fs::metadata(&log).unwrap().len();
    // 100 ticks a second is Linux's USER_HZ; a spinning accept loop burns at least one core.
    let hold_ticks = HOLD.as_secs() * 100;
    assert!(
        ticks_held * 4 < hold_ticks,
        "the server used {ticks_held} CPU ticks while the flood was held ({hold_ticks} ticks)"
    );
    assert!(
        log_bytes < 64 * 1024,
        "the flood produced {log_bytes} bytes of log"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    while healthz(port) != 200 {
        assert!(
            Instant::now() < deadline,
            "the server did not recover after the flood: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
