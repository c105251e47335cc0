//! Politeness and fault tolerance, end to end: hostile servers, a fleet of
//! hosts on distinct loopback addresses, robots.txt, deadlines, and a
//! kill -9 loop. The real binary, real servers, a real SQLite file.

mod support;

use std::time::{Duration, Instant};

use support::hostile::Hostile;
use support::{Server, Volley, fetch_args, max_per_second, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_servers_get_classified_outcomes_in_bounded_time() {
    let hostile = Hostile::start().await;
    let server = Server::start().await;
    let v = Volley::new();
    let cases = [
        (hostile.url("/reset"), "reset"),
        (hostile.url("/short"), "reset"),
        (hostile.url("/malformed"), "protocol"),
        (hostile.url("/huge-headers"), "protocol"),
        (hostile.url("/bad-status"), "protocol"),
        (hostile.url("/silent"), "read_timeout"),
        (hostile.url("/drip"), "too_slow"),
        (server.url("/loop"), "too_many_redirects"),
        (server.url("/bomb"), "decompression_bomb"),
    ];
    let urls: Vec<String> = cases.iter().map(|(u, _)| u.clone()).collect();
    let args = [
        "--retries",
        "0",
        "--read-timeout",
        "1s",
        "--timeout",
        "20s",
        "--min-speed",
        "100",
        "--speed-window",
        "1s",
        "--max-redirects",
        "5",
    ];
    // The bomb is made before the clock starts: making it must not count
    // against the 1 s read timeout.
    support::bomb_body();
    let started = Instant::now();
    v.fetch_ok(&urls, &args).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let got: Vec<(String, String)> = v
        .rows()
        .into_iter()
        .map(|r| (r.class, r.message.unwrap_or_default()))
        .collect();
    for (line, (url, class)) in cases.iter().enumerate() {
        assert_eq!(got[line].0, *class, "{url}: {:?}", got[line]);
    }
    let bomb = v.row(9);
    assert!(
        bomb.bytes
            .is_some_and(|b| b < (support::BOMB_BYTES as u64) / 4),
        "decoding stopped early: {bomb:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_only_server_is_fetched_over_h2() {
    let (server, cert) = Server::start_tls_with_alpn(&[b"h2"]).await;
    let v = Volley::new();
    let ca = v.path("ca.pem");
    std::fs::write(&ca, cert).expect("write the test CA");
    v.fetch_ok(
        &[server.https_url("/ok/1")],
        &["--ca-cert", ca.to_str().expect("utf-8")],
    )
    .await;
    let row = v.row(1);
    assert_eq!(
        (row.class.as_str(), row.http_version.as_deref()),
        ("ok", Some("HTTP/2.0"))
    );
}

/// Arrivals in `[from + after, from + before)`.
fn arrivals_between(
    arrivals: &[Instant],
    from: Instant,
    after: Duration,
    before: Duration,
) -> usize {
    arrivals
        .iter()
        .filter(|t| **t >= from + after && **t < from + before)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_with_retry_after_pauses_the_whole_host() {
    for form in ["seconds", "date"] {
        let server = Server::start().await;
        let v = Volley::new();
        let urls: Vec<String> = (0..20)
            .map(|i| server.url(&format!("/storm/{i}?secs=2&form={form}")))
            .collect();
        let list = v.write_lines("urls.txt", &urls);
        let out = v
            .run(&fetch_args(
                list.to_str().expect("utf-8 path"),
                &["--per-host", "4"],
            ))
            .await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            v.rows().iter().all(|r| r.class == "ok"),
            "{form}: {:?}",
            v.rows()
        );
        let arrivals = server.arrivals_under("/storm/");
        let first = arrivals[0];
        // Requests already on their way when the 429 came may still arrive;
        // after that, nothing until the pause ends (an HTTP-date has whole
        // seconds, so "now + 2 s" may mean just over 1 s).
        let quiet_until = if form == "date" {
            Duration::from_millis(950)
        } else {
            Duration::from_millis(1900)
        };
        let during = arrivals_between(&arrivals, first, Duration::from_millis(200), quiet_until);
        assert_eq!(
            during, 0,
            "{form}: requests reached a paused host: {arrivals:?}"
        );
        assert_eq!(
            arrivals.len(),
            21,
            "{form}: one retry, for the URL that got the 429"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_503_is_retried_to_success_and_logged_per_attempt() {
    let server = Server::start().await;
    let v = Volley::new();
    let urls: Vec<String> = (0..10).map(|i| server.url(&format!("/flap/{i}"))).collect();
    v.fetch_ok(&urls, &["--per-host", "1", "--retries", "5"])
        .await;
    assert!(v.rows().iter().all(|r| r.class == "ok"), "{:?}", v.rows());
    // The first request of all is a 503, so some task was retried; which
    // tasks meet which turn depends on timing.
    let retried_lines: Vec<u64> = (1..=10).filter(|l| v.row(*l).attempts >= 2).collect();
    assert!(!retried_lines.is_empty(), "the first 503 was retried");
    for line in retried_lines {
        let log = v.attempt_rows(line);
        assert_eq!(log.len() as u32, v.row(line).attempts, "{log:?}");
        let (last, retried) = log.split_last().expect("attempt rows");
        for row in retried {
            assert_eq!((row.1.as_str(), row.2), ("http_5xx", Some(503)), "{log:?}");
            assert!(
                row.3.is_some(),
                "the wait before each retry is recorded: {log:?}"
            );
        }
        assert_eq!((last.1.as_str(), last.2, last.3), ("ok", Some(200), None));
    }
    let once: Vec<u64> = (1..=10).filter(|l| v.row(*l).attempts == 1).collect();
    for line in once {
        assert!(
            v.attempt_rows(line).is_empty(),
            "a task fetched once has no attempt rows"
        );
    }
}

/// Distinct loopback addresses for the fleet tests.
fn fleet_ips(n: u8) -> Vec<String> {
    (2..2 + n).map(|i| format!("127.0.0.{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_concurrency_and_rate_hold_across_a_fleet_with_config_overrides() {
    // 127.0.0.2-4 match a glob rule (10/s), .5 an exact rule (1 in flight,
    // 5/s), .6 no rule: the defaults, 3 in flight and no rate.
    let ips = fleet_ips(5);
    let mut servers = Vec::new();
    for ip in &ips {
        servers.push(Server::start_on(ip).await);
    }
    let v = Volley::new();
    let per_host_urls = 24;
    let mut urls = Vec::new();
    for i in 0..per_host_urls {
        for s in &servers {
            urls.push(s.url(&format!("/ok/{i}?ms=150")));
        }
    }
    let list = v.write_lines("urls.txt", &urls);
    let config = v.path("volley.toml");
    std::fs::write(
        &config,
        "per-host = 3\nconcurrency = 64\n\n\
         [hosts.\"127.0.0.[234]\"]\nrate = \"10/s\"\n\n\
         [hosts.\"127.0.0.5\"]\nconcurrency = 1\nrate = \"5/s\"\n",
    )
    .expect("write the config file");
    let out = v
        .run(&fetch_args(
            list.to_str().expect("utf-8 path"),
            &["--config", config.to_str().expect("utf-8")],
        ))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    v.assert_one_outcome_per_task(urls.len() as u64);
    for (i, server) in servers.iter().enumerate() {
        let (concurrency, rate) = match i {
            0..=2 => (3, Some(10.0)),
            3 => (1, Some(5.0)),
            _ => (3, None),
        };
        let arrivals = server.arrivals_under("/ok/");
        assert_eq!(arrivals.len(), per_host_urls);
        let peak = max_per_second(&arrivals);
        let span = (arrivals[arrivals.len() - 1] - arrivals[0]).as_secs_f64();
        let achieved = (arrivals.len() - 1) as f64 / span;
        eprintln!(
            "host {}: allowed {rate:?}/s and {concurrency} in flight; achieved {achieved:.2}/s, busiest second {peak}, most in flight {}",
            ips[i],
            server.max_in_flight()
        );
        assert!(
            server.max_in_flight() <= concurrency,
            "host {i}: {} in flight",
            server.max_in_flight()
        );
        match rate {
            Some(rate) => {
                assert!(
                    peak <= rate as usize,
                    "host {i}: {peak} requests in one second, limit {rate}"
                );
                assert!(
                    achieved >= 0.9 * rate,
                    "host {i}: achieved only {achieved:.2}/s of {rate}/s"
                );
            }
            None => assert_eq!(
                server.max_in_flight(),
                concurrency,
                "host {i}: the default cap binds"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_rules_are_honoured_and_rules_that_cannot_match_are_refused() {
    // Two services on one address: the rule names one of them by port.
    let limited = Server::start_on("127.0.0.7").await;
    let free = Server::start_on("127.0.0.7").await;
    let globbed = Server::start_on("127.0.0.8").await;
    let v = Volley::new();
    let mut urls = Vec::new();
    for i in 0..8 {
        urls.push(limited.url(&format!("/ok/{i}")));
        urls.push(free.url(&format!("/ok/{i}")));
        urls.push(globbed.url(&format!("/ok/{i}")));
    }
    let list = v.write_lines("urls.txt", &urls);
    let config = v.path("volley.toml");
    std::fs::write(
        &config,
        format!(
            "[hosts.\"127.0.0.7:{}\"]\nrate = \"5/s\"\n\n\
             [hosts.\"127.0.0.*:{}\"]\nrate = \"4/s\"\n",
            limited.addr.port(),
            globbed.addr.port()
        ),
    )
    .expect("write the config file");
    let config = config.to_str().expect("utf-8");
    let out = v
        .run(&fetch_args(
            list.to_str().expect("utf-8 path"),
            &["--config", config],
        ))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    v.assert_one_outcome_per_task(urls.len() as u64);
    // 8 requests at R/s take at least 7/R seconds when the rule applies;
    // the service on the other port, with no rule, gets them at once.
    for (server, rate) in [(&limited, 5.0), (&globbed, 4.0)] {
        let arrivals = server.arrivals_under("/ok/");
        assert_eq!(arrivals.len(), 8);
        let span = (arrivals[7] - arrivals[0]).as_secs_f64();
        assert!(
            span >= 0.95 * 7.0 / rate,
            "{}: 8 requests in {span:.3}s under a {rate}/s rule",
            server.addr
        );
    }
    let unlimited = free.arrivals_under("/ok/");
    let span = (unlimited[7] - unlimited[0]).as_secs_f64();
    assert!(
        span < 0.5,
        "the other port has no rule, yet took {span:.3}s"
    );

    // A rule that can never match is refused before anything is fetched.
    for bad in ["http://127.0.0.7/", "127.0.0.7:port", "127.0.0.7/ok"] {
        let v = Volley::new();
        let list = v.write_lines("urls.txt", &urls[..1]);
        std::fs::write(
            v.path("volley.toml"),
            format!("[hosts.\"{bad}\"]\nrate = \"1/s\"\n"),
        )
        .expect("write the config file");
        let out = v
            .run(&fetch_args(
                list.to_str().expect("utf-8 path"),
                &["--config", "volley.toml"],
            ))
            .await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains(bad) && err.contains("can never match") && err.lines().count() == 1,
            "{bad}: {err}"
        );
    }
    assert_eq!(limited.total(), 8, "nothing fetched under a refused rule");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_on_one_host_does_not_slow_the_others() {
    let ips = fleet_ips(2);
    let paused = Server::start_on(&ips[0]).await;
    let busy = Server::start_on(&ips[1]).await;
    let v = Volley::new();
    let mut urls: Vec<String> = (0..6)
        .map(|i| paused.url(&format!("/storm/{i}?secs=3")))
        .collect();
    urls.extend((0..60).map(|i| busy.url(&format!("/ok/{i}?ms=20"))));
    v.fetch_ok(&urls, &["--per-host", "2"]).await;
    let storm = paused.arrivals_under("/storm/");
    let others = busy.arrivals_under("/ok/");
    let t0 = storm[0];
    assert_eq!(
        arrivals_between(
            &storm,
            t0,
            Duration::from_millis(200),
            Duration::from_millis(2900)
        ),
        0,
        "the paused host got requests: {storm:?}"
    );
    let last_other = others[others.len() - 1];
    assert!(
        last_other < t0 + Duration::from_secs(3),
        "the other host waited for the pause: last request {:?} after the 429",
        last_other - t0
    );
    assert!(v.rows().iter().all(|r| r.class == "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_txt_is_fetched_once_and_obeyed_with_its_crawl_delay() {
    let server = Server::start().await;
    server.set_robots(200, "User-agent: *\nDisallow: /private\nCrawl-delay: 0.2\n");
    let v = Volley::new();
    let mut urls: Vec<String> = (0..6).map(|i| server.url(&format!("/ok/{i}"))).collect();
    urls.extend((0..3).map(|i| server.url(&format!("/private/{i}"))));
    v.fetch_ok(&urls, &["--respect-robots", "--per-host", "4"])
        .await;
    assert_eq!(server.hits("/robots.txt"), 1);
    assert_eq!(
        server.arrivals_under("/private/").len(),
        0,
        "disallowed URLs are not fetched"
    );
    for line in 7..=9 {
        let row = v.row(line);
        assert_eq!(
            (row.class.as_str(), row.attempts),
            ("robots_denied", 0),
            "{row:?}"
        );
    }
    let ok = server.arrivals_under("/ok/");
    assert_eq!(ok.len(), 6);
    for pair in ok.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(195),
            "Crawl-delay 0.2 s not kept: {:?}",
            pair[1] - pair[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_robots_txt_means_disallow_after_retries_and_404_means_allow() {
    let failing = Server::start().await;
    failing.set_robots(503, "down");
    let missing = Server::start().await;
    let v = Volley::new();
    let urls = [
        failing.url("/ok/1"),
        failing.url("/ok/2"),
        missing.url("/ok/3"),
    ];
    v.fetch_ok(&urls, &["--respect-robots"]).await;
    assert_eq!(
        failing.hits("/robots.txt"),
        3,
        "robots.txt tried three times"
    );
    assert_eq!(failing.arrivals_under("/ok/").len(), 0);
    for line in [1, 2] {
        let row = v.row(line);
        assert_eq!(row.class, "robots_denied");
        assert!(
            row.message.as_deref().is_some_and(|m| m.contains("503")),
            "{row:?}"
        );
    }
    assert_eq!(
        v.row(3).class,
        "ok",
        "no robots.txt (404) allows everything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_gives_every_unfinished_task_an_outcome() {
    let server = Server::start().await;
    let v = Volley::new();
    let urls: Vec<String> = (0..6)
        .map(|i| server.url(&format!("/slow?ms=30000&i={i}")))
        .collect();
    let list = v.write_lines("urls.txt", &urls);
    let started = Instant::now();
    let args = [
        "--deadline",
        "1s",
        "--per-host",
        "2",
        "--read-timeout",
        "60s",
        "--timeout",
        "60s",
    ];
    let out = v
        .run(&fetch_args(list.to_str().expect("utf-8 path"), &args))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    v.assert_one_outcome_per_task(6);
    let attempts: Vec<u32> = v.rows().iter().map(|r| r.attempts).collect();
    assert!(
        v.rows().iter().all(|r| r.class == "deadline"),
        "{:?}",
        v.rows()
    );
    assert_eq!(
        attempts.iter().filter(|a| **a == 1).count(),
        2,
        "two were in flight: {attempts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_kill_9_loop_with_exactly_one_outcome_per_input() {
    let server = Server::start().await;
    let v = Volley::new();
    let n = 20_000u64;
    let urls: Vec<String> = (0..n).map(|i| server.url(&format!("/ok/{i}"))).collect();
    let list = v.write_lines("urls.txt", &urls);
    let list = list.to_str().expect("utf-8 path");
    let args = fetch_args(list, &["--concurrency", "32", "--per-host", "32"]);
    let mut seed = support::random_seed();
    eprintln!("kill loop seed {seed}");
    // For each URL with an outcome at some kill: its requests at that moment.
    let mut finished: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for round in 0..4 {
        let mut child = v.command(&args).spawn().expect("start volley");
        let target = server.total() + 1500 + support::next_random(&mut seed) % 2500;
        server.wait_for_requests(target).await;
        child.start_kill().expect("SIGKILL volley");
        let status = child.wait().await.expect("reap volley");
        assert!(
            !status.success(),
            "round {round}: volley finished before it was killed"
        );
        for row in v.rows() {
            let hits = server.hits(&support::path_of(&row.url));
            finished.entry(row.url).or_insert(hits);
        }
    }
    let out = v.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    v.assert_one_outcome_per_task(n);
    assert_eq!(v.task_states().get("leased"), None);
    for (url, hits) in &finished {
        assert_eq!(
            server.hits(&support::path_of(url)),
            *hits,
            "{url} was fetched again after it had an outcome"
        );
    }
    eprintln!(
        "kill loop: 4 kills, {} outcomes committed before the last kill, {} requests for {n} inputs",
        finished.len(),
        server.total()
    );
}
