//! The Prometheus scrape against a real server on loopback ports: counters move by exactly the
//! sign-ins made (WS-Trust and passive, issued and refused), the text parses and names no user,
//! the allow-list refuses other clients on the metrics listener and on the HTTPS path (a
//! forged `X-Forwarded-For` does not help; a trusted proxy's does), a flood of distinct user
//! names and paths leaves the set of series unchanged, and the signing-certificate gauge follows
//! the app's `Published` snapshot when it is swapped; a killed Redis shows as a state store down.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use common::passive::{Browser, sign_in_query};
use common::server::{ALICE, Options, PASSWORD, TestServer};
use common::wstrust::{path_of, rst};
use http_body_util::{BodyExt, Full};

/// One sample line: series (name and labels, as written) and value.
type Samples = BTreeMap<String, f64>;

/// Parses the Prometheus text format: every line is a comment (`# HELP`, `# TYPE`) or
/// `series value`; every series' family has a `# TYPE` line before it.
fn parse(text: &str) -> Samples {
    let mut typed = BTreeSet::new();
    let mut samples = Samples::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "no # TYPE for {line}");
        let value: f64 = value.parse().expect(line);
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate series {series}"
        );
    }
    samples
}

/// The value of `series` (0 when absent: a counter not yet moved).
fn value(samples: &Samples, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

/// The labels of a series line, as pairs.
fn labels(series: &str) -> Vec<(String, String)> {
    let Some((_, inner)) = series.split_once('{') else {
        return Vec::new();
    };
    inner
        .trim_end_matches('}')
        .split("\",")
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect()
}

/// `GET path` over plain HTTP to `addr` from the local address `source`.
async fn plain_get(
    source: IpAddr,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::builder()
        .method("GET")
        .uri(path)
        .header("host", "metrics");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A scrape of the metrics listener from 127.0.0.1.
async fn scrape(server: &TestServer) -> (String, Samples) {
    let (status, content_type, body) =
        plain_get(LOOPBACK, server.metrics_addr.unwrap(), "/metrics", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let samples = parse(&body);
    (body, samples)
}

/// A server with the metrics listener on an ephemeral loopback port and the path `/metrics` on
/// the HTTPS listener, the allow-list as given, rate limits as `rate_limit` says.
async fn start(allow: &[&str], trusted_proxies: &[&str], rate_limit: bool) -> TestServer {
    let allow: Vec<String> = allow.iter().map(|s| (*s).to_owned()).collect();
    let proxies: Vec<String> = trusted_proxies.iter().map(|s| (*s).to_owned()).collect();
    TestServer::start_with(Options {
        configure: Box::new(move |config, _| {
            config.metrics.listen = Some("127.0.0.1:0".into());
            config.metrics.path = Some("/metrics".into());
            config.metrics.allow = allow;
            config.server.trusted_proxies = proxies;
            config.rate_limit.enabled = rate_limit;
            assert!(config.problems().is_empty(), "{:?}", config.problems());
        }),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn counters_move_by_exactly_the_sign_ins_made() {
    let server = start(&["127.0.0.0/8", "::1"], &[], false).await;
    let app = &server.app_id;
    let (_, before) = scrape(&server).await;

    let v13 = server.app_url("trust/13/usernamemixed");
    let v2005 = server.app_url("trust/2005/usernamemixed");
    for _ in 0..2 {
        let ok = server
            .post_soap(&path_of(&v13), rst("13", &v13, Some((ALICE, PASSWORD))))
            .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
    }
    let wrong = server
        .post_soap(&path_of(&v13), rst("13", &v13, Some((ALICE, "Wr0ng"))))
        .await;
    let unknown_name = "nobody-7f3a@example.com";
    let unknown = server
        .post_soap(
            &path_of(&v2005),
            rst("2005", &v2005, Some((unknown_name, PASSWORD))),
        )
        .await;
    assert_eq!((wrong.status, unknown.status), (500, 500));
    let mut browser = Browser::new(&server);
    let form = browser.get(&sign_in_query(&[])).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let refused = browser.sign_in(&form, ALICE, "Wr0ng").await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    let issued = browser.sign_in(&refused, ALICE, PASSWORD).await;
    assert_eq!(issued.status, 200, "{}", issued.body);

    let (text, after) = scrape(&server).await;
    let moved = |series: &str| value(&after, series) - value(&before, series);
    let tokens = |kind: &str, endpoint: &str, reason: &str| {
        moved(&format!(
            "fedsts_tokens_{kind}_total{{app=\"{app}\",endpoint=\"{endpoint}\",reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(
        tokens("issued", "trust/13/usernamemixed", "ok"),
        2.0,
        "{text}"
    );
    assert_eq!(
        tokens("refused", "trust/13/usernamemixed", "wrong_password"),
        1.0
    );
    assert_eq!(
        tokens("refused", "trust/2005/usernamemixed", "unknown_user"),
        1.0
    );
    assert_eq!(tokens("refused", "wsfed/signin", "wrong_password"), 1.0);
    assert_eq!(tokens("issued", "wsfed/signin", "password"), 1.0);
    let all_decisions: f64 = after
        .iter()
        .filter(|(s, _)| s.starts_with("fedsts_tokens_"))
        .map(|(s, v)| v - value(&before, s))
        .sum();
    assert_eq!(all_decisions, 6.0, "no other decision was counted: {text}");

    let count = |endpoint: &str| {
        moved(&format!(
            "fedsts_request_duration_seconds_count{{endpoint=\"{endpoint}\"}}"
        ))
    };
    assert_eq!(count("trust/13/usernamemixed"), 3.0, "{text}");
    assert_eq!(count("trust/2005/usernamemixed"), 1.0);
    assert_eq!(count("wsfed/passive"), 3.0);
    let checks = |result: &str| {
        moved(&format!(
            "fedsts_password_check_duration_seconds_count{{directory=\"demo\",result=\"{result}\"}}"
        ))
    };
    assert_eq!(
        (checks("accepted"), checks("rejected")),
        (3.0, 3.0),
        "{text}"
    );
    assert_eq!(
        moved("fedsts_password_queue_wait_seconds_count{directory=\"demo\"}"),
        6.0,
        "every argon2 check of the test users goes through the hash queue: {text}"
    );
    assert_eq!(
        value(&after, "fedsts_password_queue_depth{directory=\"demo\"}"),
        0.0
    );
    let failures = ["familiar", "unfamiliar"].map(|location| {
        moved(&format!(
            "fedsts_lockout_events_total{{event=\"failure_counted\",location=\"{location}\"}}"
        ))
    });
    assert_eq!(
        failures.iter().sum::<f64>(),
        2.0,
        "the two wrong passwords (not the unknown user): {text}"
    );
    assert_eq!(value(&after, "fedsts_state_store_up"), 1.0);
    assert_eq!(
        moved("fedsts_state_store_duration_seconds_count{operation=\"take_token\",result=\"ok\"}"),
        0.0,
        "rate limits are off in this test: no bucket was taken"
    );
    let store_calls: f64 = after
        .iter()
        .filter(|(s, _)| s.starts_with("fedsts_state_store_duration_seconds_count"))
        .map(|(s, v)| v - value(&before, s))
        .sum();
    assert!(
        store_calls >= 6.0,
        "replay marks and lockout records of six sign-ins: {text}"
    );
    assert_eq!(
        value(&after, "fedsts_directory_up{directory=\"demo\"}"),
        1.0
    );
    assert!(value(&after, "fedsts_open_connections") >= 0.0);
    assert!(after.contains_key("fedsts_open_connections"), "{text}");

    // Bounded labels: every value is the app, the directory, or a fixed word; no user name.
    assert!(
        !text.contains(unknown_name) && !text.contains(ALICE),
        "{text}"
    );
    for series in after.keys() {
        for (key, label) in labels(series) {
            let fixed_word = label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_/.+".contains(c));
            assert!(
                fixed_word || key == "le" || (key == "app" && label == *app),
                "{key}={label} in {series}"
            );
        }
    }

    // The same text on the HTTPS path.
    let https = server.request("GET", "/metrics", &[], Vec::new()).await;
    assert_eq!(https.status, 200, "{}", https.body);
    assert!(parse(&https.body).contains_key("fedsts_open_connections"));
    assert!(
        value(&parse(&https.body), "fedsts_open_connections") >= 1.0,
        "the scrape's own HTTPS connection is open: {}",
        https.body
    );
    server.stop().await;
}

#[tokio::test]
async fn rate_limit_refusals_are_counted_by_class() {
    let server = TestServer::start_with(Options {
        configure: Box::new(|config, _| {
            config.metrics.listen = Some("127.0.0.1:0".into());
            config.rate_limit.requests_per_minute = 1;
            config.rate_limit.burst = 1;
        }),
        ..Options::default()
    })
    .await;
    let (_, before) = scrape(&server).await;
    let url = server.app_url("trust/13/usernamemixed");
    let first = server
        .post_soap(&path_of(&url), rst("13", &url, Some((ALICE, PASSWORD))))
        .await;
    let second = server
        .post_soap(&path_of(&url), rst("13", &url, Some((ALICE, PASSWORD))))
        .await;
    assert_eq!((first.status, second.status), (200, 429));
    let (text, after) = scrape(&server).await;
    let moved = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        moved("fedsts_rate_limited_total{class=\"other\"}"),
        1.0,
        "{text}"
    );
    let refused = format!(
        "fedsts_tokens_refused_total{{app=\"{}\",endpoint=\"trust/13/usernamemixed\",reason=\"rate_limited\"}}",
        server.app_id
    );
    assert_eq!(moved(&refused), 1.0, "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_outside_the_allow_list_is_refused() {
    // Only 127.0.0.1 may scrape; 127.0.0.2 is another client on the same machine.
    let server = start(&["127.0.0.1"], &[], true).await;
    let addr = server.metrics_addr.unwrap();
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let (status, _, body) = plain_get(other, addr, "/metrics", &[]).await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("fedsts_"), "{body}");
    let forged = [("x-forwarded-for", "127.0.0.1")];
    let (status, _, _) = plain_get(other, addr, "/metrics", &forged).await;
    assert_eq!(
        status, 403,
        "a client's own X-Forwarded-For is not believed"
    );
    let (status, _, _) = plain_get(LOOPBACK, addr, "/metrics", &[]).await;
    assert_eq!(status, 200);
    let (status, _, _) = plain_get(LOOPBACK, addr, "/other", &[]).await;
    assert_eq!(status, 404);
    server.stop().await;

    // On the HTTPS path the allow-list holds too: loopback is not in it here.
    let server = start(&["192.0.2.0/24"], &[], true).await;
    let refused = server.request("GET", "/metrics", &[], Vec::new()).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let forged = server
        .request(
            "GET",
            "/metrics",
            &[("x-forwarded-for", "192.0.2.7")],
            Vec::new(),
        )
        .await;
    assert_eq!(
        forged.status, 403,
        "not from a trusted proxy: {}",
        forged.body
    );
    server.stop().await;

    // Behind a trusted proxy (loopback here) the forwarded client is what is judged.
    let server = start(&["192.0.2.0/24"], &["127.0.0.0/8"], true).await;
    let vouched = server
        .request(
            "GET",
            "/metrics",
            &[("x-forwarded-for", "192.0.2.7")],
            Vec::new(),
        )
        .await;
    assert_eq!(vouched.status, 200, "{}", vouched.body);
    let outside = server
        .request(
            "GET",
            "/metrics",
            &[("x-forwarded-for", "198.51.100.1")],
            Vec::new(),
        )
        .await;
    assert_eq!(outside.status, 403, "{}", outside.body);
    server.stop().await;
}

#[tokio::test]
async fn a_flood_of_distinct_names_and_paths_adds_no_series() {
    let server = start(&["127.0.0.0/8"], &[], false).await;
    let url = server.app_url("trust/13/usernamemixed");
    let path = path_of(&url);
    let send = |name: String| {
        let body = rst("13", &url, Some((&name, "guess")));
        let server = &server;
        let path = path.clone();
        async move { server.post_soap(&path, body).await.status }
    };
    // One of each kind first, so every series the flood can touch exists before it.
    assert_eq!(send("warmup@example.com".into()).await, 500);
    let missing = server.request("GET", "/nowhere-0", &[], Vec::new()).await;
    let no_app = server
        .post_soap("/wsfed/noapp0/trust/13/usernamemixed", Vec::new())
        .await;
    assert_eq!((missing.status, no_app.status), (404, 404));
    let (first_text, first) = scrape(&server).await;

    const FLOOD: usize = 60;
    for i in 0..FLOOD {
        assert_eq!(
            send(format!("flood-{i}-{}@example.com", "x".repeat(i))).await,
            500
        );
        let path = format!("/nowhere-{i}/{}", "y".repeat(i));
        assert_eq!(
            server.request("GET", &path, &[], Vec::new()).await.status,
            404
        );
        let app_path = format!("/wsfed/noapp{i}/trust/13/usernamemixed");
        assert_eq!(server.post_soap(&app_path, Vec::new()).await.status, 404);
    }
    let (text, after) = scrape(&server).await;
    let first_series: BTreeSet<&String> = first.keys().collect();
    let after_series: BTreeSet<&String> = after.keys().collect();
    assert_eq!(
        first_series, after_series,
        "the flood added or removed series"
    );
    assert!(
        text.len() < first_text.len() + 1024,
        "the text grew by {} bytes",
        text.len() - first_text.len()
    );
    assert!(!text.contains("flood-") && !text.contains("nowhere") && !text.contains("noapp"));
    let unknown = format!(
        "fedsts_tokens_refused_total{{app=\"{}\",endpoint=\"trust/13/usernamemixed\",reason=\"unknown_user\"}}",
        server.app_id
    );
    assert_eq!(
        value(&after, &unknown) - value(&first, &unknown),
        FLOOD as f64
    );
    let not_found = "fedsts_request_duration_seconds_count{endpoint=\"not_found\"}";
    assert_eq!(
        value(&after, not_found) - value(&first, not_found),
        FLOOD as f64
    );
    server.stop().await;
}

#[tokio::test]
async fn certificate_expiry_follows_the_published_snapshot() {
    // Automatic rollover off: its first tick would put the files' pair back while this test
    // swaps the snapshot itself.
    let server = TestServer::start_with(Options {
        configure: Box::new(|config, _| {
            config.metrics.listen = Some("127.0.0.1:0".into());
            config.apps[0].rollover.auto = Some(false);
        }),
        ..Options::default()
    })
    .await;
    let series = format!(
        "fedsts_signing_certificate_expiry_seconds{{app=\"{}\",certificate=\"current\"}}",
        server.app_id
    );
    let next = format!(
        "fedsts_signing_certificate_expiry_seconds{{app=\"{}\",certificate=\"next\"}}",
        server.app_id
    );
    let app = server.sts.app(&server.app_id).unwrap();
    let served = app.published().signing.current.certificate.not_after();
    let (_, first) = scrape(&server).await;
    let expected = (served - time::OffsetDateTime::now_utc()).whole_seconds() as f64;
    assert!(
        (value(&first, &series) - expected).abs() <= 5.0,
        "{first:?}"
    );
    assert!(!first.contains_key(&next));

    // What autoroll does: swap the app's snapshot. The gauge shows the new pair at once.
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let pair = |name: &str, days: u32| {
        let generated =
            fedsts::crypto::generate_self_signed_at("metrics test", &[], now, days).unwrap();
        let (cert, key) = (
            dir.path().join(format!("{name}.pem")),
            dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&cert, generated.certificate_pem).unwrap();
        std::fs::write(&key, generated.private_key_pem).unwrap();
        fedsts::crypto::SigningIdentity::from_pem_files(&cert, &key).unwrap()
    };
    app.replace_signing(fedsts::autoroll::SigningSet {
        current: pair("current", 10),
        next: Some(pair("next", 400)),
        previous: None,
    })
    .unwrap();
    let (text, second) = scrape(&server).await;
    let days = |n: f64| n * 86_400.0;
    assert!(
        (value(&second, &series) - days(10.0)).abs() <= 5.0,
        "{text}"
    );
    assert!((value(&second, &next) - days(400.0)).abs() <= 5.0, "{text}");
    server.stop().await;
}

/// The README's `[metrics]` example.
fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Monitoring")
        .nth(1)
        .expect("README has a Monitoring section");
    section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the Monitoring section has a TOML example")
        .to_owned()
}

/// The README's `[metrics]` example parses into the configuration and passes its checks.
#[test]
fn the_readme_example_is_a_valid_configuration() {
    let example = readme_example();
    let example = example.as_str();
    let table: toml::Table = toml::from_str(example).unwrap();
    let metrics: fedsts::config::MetricsConfig = table["metrics"].clone().try_into().unwrap();
    assert!(metrics.problems().is_empty(), "{:?}", metrics.problems());
    assert_eq!(metrics.listen.as_deref(), Some("127.0.0.1:9464"));
    assert!(metrics.path.is_some() && !metrics.allow.is_empty());
}

/// The state-store gauges against a real Redis: up while it answers, down (and the scrape still
/// answered within the probe timeout) once it is killed, and its calls timed with their result.
#[tokio::test]
async fn redis_down_shows_as_state_store_down_and_failed_calls() {
    let Some(mut redis) = common::redis::RedisServer::start() else {
        return;
    };
    let store = fedsts::state::build(&fedsts::config::StateConfig {
        redis_url: Some(redis.url()),
        key_prefix: None,
        max_memory_entries: None,
    })
    .unwrap();
    let server = TestServer::start_with(Options {
        store: Some(store),
        configure: Box::new(|config, _| {
            config.metrics.listen = Some("127.0.0.1:0".into());
        }),
        ..Options::default()
    })
    .await;
    let url = server.app_url("trust/13/usernamemixed");
    let ok = server
        .post_soap(&path_of(&url), rst("13", &url, Some((ALICE, PASSWORD))))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let (text, up) = scrape(&server).await;
    assert_eq!(value(&up, "fedsts_state_store_up"), 1.0, "{text}");
    let took = "fedsts_state_store_duration_seconds_count{operation=\"take_token\",result=\"ok\"}";
    assert_eq!(value(&up, took), 1.0, "one rate-limit bucket taken: {text}");

    redis.stop();
    let refused = server
        .post_soap(&path_of(&url), rst("13", &url, Some((ALICE, PASSWORD))))
        .await;
    assert_eq!(refused.status, 500, "fail closed: {}", refused.body);
    let started = std::time::Instant::now();
    let (text, down) = scrape(&server).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(value(&down, "fedsts_state_store_up"), 0.0, "{text}");
    let failed =
        "fedsts_state_store_duration_seconds_count{operation=\"take_token\",result=\"error\"}";
    assert_eq!(value(&down, failed), 1.0, "{text}");
    let unavailable = format!(
        "fedsts_tokens_refused_total{{app=\"{}\",endpoint=\"trust/13/usernamemixed\",reason=\"state_unavailable\"}}",
        server.app_id
    );
    assert_eq!(value(&down, &unavailable), 1.0, "{text}");
    server.stop().await;
}

/// `fedsts serve` (the real binary) with the README's `[metrics]` example (on a free port):
/// the metrics listener answers loopback, and the process stops on SIGTERM.
#[tokio::test]
async fn fedsts_serve_with_the_readme_example_serves_the_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (common::free_port(), common::free_port());
    let embedded = fedsts::first_run::prepare(dir.path(), &format!("127.0.0.1:{port}")).unwrap();
    let app = &embedded.config.apps[0];
    let users = dir.path().join("users.toml");
    std::fs::write(&users, common::server::users_file()).unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{port}\"\ntls_cert = {:?}\ntls_key = {:?}\n\n[[apps]]\nid = \"demo\"\ndomain = \"example.com\"\nissuer_uri = \"example.com\"\nsigning_cert = {:?}\nsigning_key = {:?}\ndirectory = \"local\"\n\n[directories.local]\nkind = \"file\"\npath = {:?}\n\n{}",
        embedded.config.server.tls_cert,
        embedded.config.server.tls_key,
        app.signing_cert,
        app.signing_key.as_ref().unwrap(),
        users,
        readme_example().replace("127.0.0.1:9464", &format!("127.0.0.1:{metrics_port}")),
    );
    let path = dir.path().join("fedsts.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fedsts"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics_addr: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::net::TcpStream::connect(metrics_addr).await.is_err() {
        if child.try_wait().unwrap().is_some() {
            let mut log = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
            panic!("fedsts serve exited: {log}");
        }
        assert!(std::time::Instant::now() < deadline, "no metrics listener");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, content_type, body) = plain_get(LOOPBACK, metrics_addr, "/metrics", &[]).await;
    let status_sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status_sent.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "serve ignored SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let samples = parse(&body);
    assert_eq!(
        value(&samples, "fedsts_directory_up{directory=\"local\"}"),
        1.0,
        "{body}"
    );
    let expiry = "fedsts_signing_certificate_expiry_seconds{app=\"demo\",certificate=\"current\"}";
    assert!(value(&samples, expiry) > 0.0, "{body}");
}
