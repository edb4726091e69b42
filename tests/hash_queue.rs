//! The password-hash queue under an unknown-user flood, on a real server over loopback: 10
//! client addresses (127.0.1.x) each send 20 unknown-user usernamemixed requests at once, all
//! within their per-address rate limit. A legitimate sign-in sent into the flood must answer
//! within a generous multiple of an unloaded sign-in measured in the same test (without a bound
//! it waits behind all 200 hashes) and, coming from where the user signed in before, get its
//! token from the queue's reserve; the overflow is refused at once with a `RequestFailed` fault
//! and `Retry-After`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{ALICE, Options, PASSWORD, Reply, TestServer};
use common::wstrust::{fault_subcode, path_of, rst};

/// Flooding client addresses, and requests per address (the default burst: all allowed).
const FLOOD_ADDRESSES: u8 = 10;
const PER_ADDRESS: usize = 20;
/// A sign-in during the flood may take at most this many unloaded sign-ins.
const LATENCY_RATIO_BOUND: f64 = 25.0;

async fn sign_in(server: &TestServer, source: IpAddr, user: &str) -> Reply {
    let url = server.app_url("trust/13/usernamemixed");
    let body = rst("13", &url, Some((user, PASSWORD)));
    server
        .post_soap_from(source, &path_of(&url), body)
        .await
        .unwrap()
}

/// The median time of `n` unloaded sign-ins of alice.
async fn unloaded_latency(server: &TestServer, n: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        let reply = sign_in(server, Ipv4Addr::new(127, 0, 2, 1).into(), ALICE).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        times.push(start.elapsed());
    }
    times.sort();
    times[n / 2]
}

fn is_busy(reply: &Reply) -> bool {
    reply.status == 500
        && fault_subcode(&reply.body) == Some("RequestFailed")
        && reply.body.contains("busy")
        && reply.headers.get("retry-after").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_user_flood_is_shed_and_a_real_sign_in_stays_fast() {
    let server = Arc::new(TestServer::start_with(Options::default()).await);
    assert_eq!(server.config.rate_limit.burst as usize, PER_ADDRESS);
    let unloaded = unloaded_latency(&server, 3).await;

    let mut flood = Vec::new();
    for a in 1..=FLOOD_ADDRESSES {
        for i in 0..PER_ADDRESS {
            let server = server.clone();
            flood.push(tokio::spawn(async move {
                let source = Ipv4Addr::new(127, 0, 1, a).into();
                sign_in(&server, source, &format!("nobody{a}-{i}@example.com")).await
            }));
        }
    }
    // Into the flood once it has reached the server.
    tokio::time::sleep(unloaded * 2).await;
    let start = Instant::now();
    let legit = sign_in(&server, Ipv4Addr::new(127, 0, 2, 1).into(), ALICE).await;
    let loaded = start.elapsed();

    let mut busy = 0;
    for task in flood {
        let reply = task.await.unwrap();
        match reply.status {
            500 if is_busy(&reply) => busy += 1,
            500 => assert_eq!(
                fault_subcode(&reply.body),
                Some("FailedAuthentication"),
                "{}",
                reply.body
            ),
            other => panic!("flood reply {other}: {}", reply.body),
        }
    }
    let ratio = loaded.as_secs_f64() / unloaded.as_secs_f64();
    eprintln!(
        "unloaded sign-in {unloaded:?}, during the flood {loaded:?} (x{ratio:.1}, {}), {busy} of {} flood requests refused as busy",
        legit.status,
        usize::from(FLOOD_ADDRESSES) * PER_ADDRESS
    );
    // alice signed in from 127.0.2.1 before the flood (the unloaded sign-ins), so hers is a
    // familiar location: the reserve of the queue lets her in while the flood is shed.
    assert_eq!(
        legit.status, 200,
        "a sign-in from a familiar location during the flood: {}",
        legit.body
    );
    assert!(
        ratio < LATENCY_RATIO_BOUND,
        "a sign-in during the flood took {loaded:?}, {ratio:.1} times an unloaded one ({unloaded:?})"
    );
    assert!(busy > 0, "the overflow must be refused as busy");
    // Once the flood is gone the queue is empty again.
    let after = sign_in(&server, Ipv4Addr::new(127, 0, 2, 1).into(), ALICE).await;
    assert_eq!(after.status, 200, "{}", after.body);
}
