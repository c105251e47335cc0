//! End-to-end tests of `volley fetch`, `status` and `export`: the real
//! binary against a real HTTP server on 127.0.0.1, recording into a real
//! SQLite file.

mod support;

use std::time::Duration;

use support::{
    SESSION_COOKIE, Server, Volley, fetch_args, path_of, pattern_sha256, signal, stderr,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_one_ok_outcome_per_url_with_hash_and_timing() {
    let server = Server::start().await;
    let v = Volley::new();
    let urls: Vec<String> = (0..40).map(|i| server.url(&format!("/ok/{i}"))).collect();
    let out = v.fetch_ok(&urls, &[]).await;
    v.assert_one_outcome_per_task(40);
    let row = v.row(7);
    assert_eq!(
        (row.class.as_str(), row.status, row.attempts),
        ("ok", Some(200), 1)
    );
    assert_eq!(row.state, "done");
    assert_eq!(row.bytes, Some(4));
    assert_eq!(
        row.body_sha256.as_deref(),
        Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"ok 6")).as_str())
    );
    for url in &urls {
        assert_eq!(server.hits(&path_of(url)), 1, "{url} requested once");
    }
    let summary = stderr(&out);
    assert!(summary.contains("40 inputs"), "{summary}");
    assert!(summary.contains("p95"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_404_without_retrying_it() {
    let server = Server::start().await;
    let v = Volley::new();
    v.fetch_ok(&[server.url("/status/404")], &["--retries", "3"])
        .await;
    let row = v.row(1);
    assert_eq!(
        (row.class.as_str(), row.status, row.attempts),
        ("http_4xx", Some(404), 1)
    );
    assert_eq!(row.state, "failed");
    assert_eq!(server.hits("/status/404"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_503_until_it_recovers() {
    let server = Server::start().await;
    let v = Volley::new();
    v.fetch_ok(
        &[
            server.url("/flaky/a?fails=2&code=503"),
            server.url("/flaky/b?fails=5&code=502"),
        ],
        &["--retries", "3"],
    )
    .await;
    let recovered = v.row(1);
    assert_eq!(
        (
            recovered.class.as_str(),
            recovered.status,
            recovered.attempts
        ),
        ("ok", Some(200), 3)
    );
    assert_eq!(server.hits("/flaky/a"), 3);
    // Retries exhausted: the last cause is kept, with the attempt count.
    let gave_up = v.row(2);
    assert_eq!(
        (gave_up.class.as_str(), gave_up.status, gave_up.attempts),
        ("http_5xx", Some(502), 4)
    );
    assert!(
        gave_up
            .message
            .as_deref()
            .is_some_and(|m| m.contains("no retries left (--retries 3)")),
        "{gave_up:?}"
    );
    assert_eq!(server.hits("/flaky/b"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_retry_after_in_seconds_and_http_date_forms() {
    let server = Server::start().await;
    let v = Volley::new();
    let list = v.write_lines(
        "urls.txt",
        &[
            server.url("/retry-after/secs?secs=1&form=seconds"),
            server.url("/retry-after/date?secs=2&form=date&code=503"),
        ],
    );
    // The backoff alone would retry within 50 ms; only Retry-After explains a longer wait.
    let out = v
        .run(&fetch_args(list.to_str().expect("utf-8 path"), &[]))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    for (line, path, at_least) in [
        (1, "/retry-after/secs", Duration::from_secs(1)),
        // An HTTP-date has whole seconds: "now + 2 s" may be read as 1.x s.
        (2, "/retry-after/date", Duration::from_secs(1)),
    ] {
        let row = v.row(line);
        assert_eq!((row.class.as_str(), row.attempts), ("ok", 2), "{row:?}");
        let arrivals = server.arrivals(path);
        assert_eq!(arrivals.len(), 2, "{path}");
        let waited = arrivals[1] - arrivals[0];
        assert!(waited >= at_least, "{path}: retried after {waited:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn does_not_retry_when_retry_after_exceeds_the_cap() {
    let server = Server::start().await;
    let v = Volley::new();
    v.fetch_ok(
        &[server.url("/retry-after/long?secs=3600")],
        &["--max-retry-after", "60s"],
    )
    .await;
    let row = v.row(1);
    assert_eq!(
        (row.class.as_str(), row.status, row.attempts),
        ("http_4xx", Some(429), 1)
    );
    assert!(
        row.message
            .as_deref()
            .is_some_and(|m| m.contains("--max-retry-after")),
        "{row:?}"
    );
    assert_eq!(server.hits("/retry-after/long"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifies_timeouts_and_refused_connections() {
    let server = Server::start().await;
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let v = Volley::new();
    let args = [
        "--timeout",
        "1s",
        "--read-timeout",
        "300ms",
        "--retries",
        "1",
    ];
    v.fetch_ok(
        &[
            server.url("/slow?ms=5000"),
            server.url("/stall"),
            format!("http://127.0.0.1:{closed}/nothing-here"),
        ],
        &args,
    )
    .await;
    let slow = v.row(1);
    // Headers never came: the read timeout (300 ms) fires before the total (1 s).
    assert_eq!(
        (slow.class.as_str(), slow.attempts),
        ("read_timeout", 2),
        "{slow:?}"
    );
    let stalled = v.row(2);
    assert_eq!(
        (stalled.class.as_str(), stalled.status),
        ("read_timeout", Some(200)),
        "{stalled:?}"
    );
    let refused = v.row(3);
    assert_eq!(
        (refused.class.as_str(), refused.attempts),
        ("connect_refused", 2),
        "{refused:?}"
    );

    // With a generous read timeout, the whole-attempt timeout fires instead.
    let v = Volley::new();
    let args = [
        "--timeout",
        "500ms",
        "--read-timeout",
        "30s",
        "--retries",
        "0",
    ];
    v.fetch_ok(&[server.url("/slow?ms=5000")], &args).await;
    let row = v.row(1);
    assert_eq!(
        (row.class.as_str(), row.attempts),
        ("total_timeout", 1),
        "{row:?}"
    );
}

/// Words that an error message may also contain: none of them, in a URL,
/// may change how a failure is classified (or how often it is retried).
const TRICKY_WORDS: [&str; 12] = [
    "plain",
    "tls-guide.html",
    "dns",
    "timeout",
    "refused",
    "reset",
    "certificate",
    "handshake",
    "alert",
    "invalid%20http",
    "connection%20closed",
    "incomplete",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_class_of_a_failure_does_not_depend_on_words_in_the_url() {
    let server = Server::start().await;
    let hostile = support::hostile::Hostile::start().await;
    let mut urls = Vec::new();
    let mut expected = Vec::new();
    for word in TRICKY_WORDS {
        // TLS spoken to a plain-HTTP port: the handshake fails, not retried.
        urls.push(format!("https://{}/docs/{word}", server.addr));
        expected.push((format!("tls to a plain port /{word}"), "tls", 1));
        // Nothing listens: refused, retried. One port each, so that the
        // host pause after repeated connection failures does not kick in.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        urls.push(format!("http://127.0.0.1:{closed}/{word}"));
        expected.push((format!("refused /{word}"), "connect_refused", 2));
        urls.push(hostile.url(&format!("/reset/{word}")));
        expected.push((format!("reset /{word}"), "reset", 2));
        urls.push(hostile.url(&format!("/short/{word}")));
        expected.push((format!("short body /{word}"), "reset", 2));
        urls.push(hostile.url(&format!("/malformed/{word}")));
        expected.push((format!("malformed /{word}"), "protocol", 1));
        urls.push(server.url(&format!("/status/404?{word}")));
        expected.push((format!("404 ?{word}"), "http_4xx", 1));
    }
    let v = Volley::new();
    v.fetch_ok(&urls, &["--retries", "1"]).await;
    let rows = v.rows();
    assert_eq!(rows.len(), expected.len());
    let wrong: Vec<String> = rows
        .iter()
        .zip(&expected)
        .filter(|(row, (_, class, attempts))| {
            (row.class.as_str(), row.attempts) != (*class, *attempts)
        })
        .map(|(row, (what, class, attempts))| {
            format!(
                "{what}: got {} after {} attempts, expected {class} after {attempts} ({:?})",
                row.class, row.attempts, row.message
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_names_through_the_given_dns_server_and_classifies_failures_as_dns() {
    let dns = support::Dns::start().await;
    let server = Server::start().await;
    let port = server.addr.port();
    let mut urls = vec![format!("http://www.volley.test:{port}/ok/1")];
    // Names that do not exist, some with words of other failures in them.
    for word in ["plain", "tls", "refused", "timeout", "reset"] {
        urls.push(format!("http://{word}.gone.test:{port}/ok/{word}"));
    }
    let v = Volley::new();
    let server_arg = dns.addr.to_string();
    v.fetch_ok(&urls, &["--dns-server", &server_arg, "--retries", "2"])
        .await;
    let ok = v.row(1);
    assert_eq!((ok.class.as_str(), ok.status), ("ok", Some(200)), "{ok:?}");
    for line in 2..=6 {
        let row = v.row(line);
        assert_eq!(
            (row.class.as_str(), row.attempts),
            ("dns", 1),
            "a name that does not exist is dns, not retried: {row:?}"
        );
    }
    assert_eq!(server.total(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_redirects_up_to_the_cap_and_records_the_final_url() {
    let server = Server::start().await;
    let v = Volley::new();
    v.fetch_ok(
        &[
            server.url("/redirect/3"),
            server.url("/redirect/9"),
            server.url("/loop"),
        ],
        &["--max-redirects", "5"],
    )
    .await;
    let followed = v.row(1);
    assert_eq!(
        (followed.class.as_str(), followed.status),
        ("ok", Some(200))
    );
    assert_eq!(followed.final_url, Some(server.url("/redirect/0")));
    let capped = v.row(2);
    assert_eq!(capped.class, "too_many_redirects", "{capped:?}");
    assert_eq!(capped.attempts, 1, "a redirect cap is not retried");
    // The message says how many and where the chain was going.
    let message = capped.message.unwrap_or_default();
    assert!(
        message.contains("after 5 redirects") && message.contains(&server.url("/redirect/3")),
        "{message}"
    );
    let looped = v.row(3);
    assert_eq!(looped.class, "too_many_redirects", "{looped:?}");
    let message = looped.message.unwrap_or_default();
    assert!(
        message.contains("redirect loop") && message.contains(&server.url("/loop")),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decodes_gzip_and_hashes_the_decoded_body() {
    let server = Server::start().await;
    let v = Volley::new();
    v.fetch_ok(&[server.url("/gzip")], &[]).await;
    let row = v.row(1);
    let text = support::gzip_text();
    assert_eq!(row.class, "ok");
    assert_eq!(row.bytes, Some(text.len() as u64));
    assert_eq!(
        row.body_sha256,
        Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            text.as_bytes()
        )))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_a_large_body_to_disk_under_its_hash_and_stops_at_max_body() {
    let server = Server::start().await;
    let v = Volley::new();
    let size: u64 = 24 << 20;
    let list = v.write_lines(
        "urls.txt",
        &[
            server.url(&format!("/big/{size}")),
            server.url("/big/2000000"),
        ],
    );
    let bodies = v.path("bodies");
    let out = v
        .run(&fetch_args(
            list.to_str().expect("utf-8 path"),
            &[
                "--save-bodies",
                bodies.to_str().expect("utf-8 path"),
                "--max-body",
                "30M",
            ],
        ))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let row = v.row(1);
    let expected = pattern_sha256(size);
    assert_eq!((row.class.as_str(), row.bytes), ("ok", Some(size)));
    assert_eq!(row.body_sha256.as_deref(), Some(expected.as_str()));
    let saved = row.body_path.expect("body saved");
    assert!(
        saved.ends_with(&format!("{}/{}", &expected[..2], expected)),
        "{saved}"
    );
    let on_disk = std::fs::read(&saved).expect("read the saved body");
    assert_eq!(on_disk.len() as u64, size);
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&on_disk)),
        expected
    );
    let partial: Vec<_> = std::fs::read_dir(bodies.join(".partial"))
        .expect("partial directory exists")
        .collect();
    assert!(partial.is_empty(), "no partial files left: {partial:?}");

    // The same body over a 1 MiB cap stops early and is not saved.
    let v = Volley::new();
    v.fetch_ok(&[server.url("/big/2000000")], &["--max-body", "1M"])
        .await;
    let row = v.row(1);
    assert_eq!(
        (row.class.as_str(), row.attempts),
        ("body_too_large", 1),
        "{row:?}"
    );
    assert!(
        row.bytes.is_some_and(|b| b > 1 << 20 && b < 2_000_000),
        "{row:?}"
    );
    assert_eq!(row.body_path, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiates_http2_over_tls_through_alpn_with_an_extra_ca() {
    let (server, cert_pem) = Server::start_tls().await;
    let v = Volley::new();
    let ca = v.path("ca.pem");
    std::fs::write(&ca, cert_pem).expect("write the test CA");
    let args = ["--ca-cert", ca.to_str().expect("utf-8 path")];
    v.fetch_ok(
        &[server.https_url("/ok/1"), server.https_url("/gzip")],
        &args,
    )
    .await;
    for line in [1, 2] {
        let row = v.row(line);
        assert_eq!(
            (row.class.as_str(), row.status),
            ("ok", Some(200)),
            "{row:?}"
        );
        assert_eq!(row.http_version.as_deref(), Some("HTTP/2.0"), "{row:?}");
    }
    assert_eq!(v.row(2).bytes, Some(support::gzip_text().len() as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifies_an_untrusted_certificate_as_tls_without_retrying() {
    let (server, _) = Server::start_tls().await;
    let v = Volley::new();
    v.fetch_ok(&[server.https_url("/ok/1")], &["--retries", "3"])
        .await;
    let row = v.row(1);
    assert_eq!(
        (row.class.as_str(), row.attempts, row.status),
        ("tls", 1, None),
        "{row:?}"
    );
    assert!(
        row.message
            .as_deref()
            .is_some_and(|m| m.contains("certificate")),
        "{row:?}"
    );
    assert_eq!(server.total(), 0, "no request got through the handshake");

    let missing = v
        .run(&fetch_args(
            "urls.txt",
            &["--ca-cert", "nope.pem", "--job", "x"],
        ))
        .await;
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("nope.pem"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_invalid_lines_and_duplicates_and_goes_on() {
    let server = Server::start().await;
    let v = Volley::new();
    let lines = vec![
        server.url("/ok/1"),
        "# a comment".to_owned(),
        String::new(),
        "not a url".to_owned(),
        "ftp://example.test/file".to_owned(),
        server.url("/ok/1"),
        server.url("/ok/2"),
    ];
    v.fetch_ok(&lines, &[]).await;
    v.assert_one_outcome_per_task(5);
    let invalid = v.row(4);
    assert_eq!(invalid.class, "invalid_url");
    assert!(
        invalid
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("line 4:")),
        "{invalid:?}"
    );
    assert!(
        v.row(5)
            .message
            .as_deref()
            .is_some_and(|m| m.contains("scheme 'ftp'"))
    );
    let duplicate = v.row(6);
    assert_eq!(
        (duplicate.class.as_str(), duplicate.duplicate_of_line),
        ("duplicate", Some(1))
    );
    assert_eq!(v.row(7).class, "ok");
    assert_eq!(server.hits("/ok/1"), 1, "a duplicate URL is fetched once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_configured_headers_and_user_agent() {
    let server = Server::start().await;
    let v = Volley::new();
    let args = ["-H", "X-Volley-Test: yes", "--user-agent", "volley-test/1"];
    v.fetch_ok(&[server.url("/echo")], &args).await;
    let seen = server.headers_seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["x-volley-test"], "yes");
    assert_eq!(seen[0]["user-agent"], "volley-test/1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_export_show_what_was_recorded() {
    let server = Server::start().await;
    let v = Volley::new();
    v.fetch_ok(
        &[server.url("/ok/1"), "bad".into(), server.url("/status/500")],
        &["--retries", "0", "--job", "j1"],
    )
    .await;

    let status = v.run(&["status"]).await;
    assert!(status.status.success());
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains("j1"), "{table}");
    assert!(table.contains("http_5xx 1"), "{table}");

    let jsonl = v.run(&["export", "--job", "j1"]).await;
    assert!(jsonl.status.success(), "{}", stderr(&jsonl));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&jsonl.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let classes: Vec<&str> = rows.iter().filter_map(|r| r["class"].as_str()).collect();
    assert_eq!(classes, ["ok", "invalid_url", "http_5xx"]);
    assert_eq!(rows[2]["status"], 500);
    // Headers are a nested object that jq reads (jq comes from .ci/run).
    let mut jq = std::process::Command::new("jq")
        .args(["-r", r#".headers["content-type"]"#])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("jq runs (apt-get install jq)");
    {
        use std::io::Write as _;
        let mut stdin = jq.stdin.take().expect("jq's stdin");
        stdin.write_all(&jsonl.stdout).expect("feed jq");
    }
    let read = jq.wait_with_output().expect("jq finishes");
    assert!(read.status.success(), "{}", stderr(&read));
    let first = String::from_utf8_lossy(&read.stdout);
    assert_eq!(
        first.lines().next(),
        Some("text/plain; charset=utf-8"),
        "{first}"
    );

    let csv = v.run(&["export", "--job", "j1", "--format", "csv"]).await;
    let text = String::from_utf8_lossy(&csv.stdout);
    assert!(text.starts_with("line,page,url,class,status,"), "{text}");
    assert_eq!(text.lines().count(), 4, "a header and three rows");

    let missing = v.run(&["export", "--job", "nope"]).await;
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_and_inputs_exit_2_with_one_line() {
    let v = Volley::new();
    let cases: [&[&str]; 4] = [
        &["fetch", "no-such-file.txt"],
        &["fetch", "-", "--concurrency", "0"],
        &["fetch", "-", "--timeout", "soon"],
        &["fetch", "-", "-H", "no colon here"],
    ];
    for args in cases {
        let out = v.run(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("error"), "{args:?}: {err}");
    }
    // The same job name over another input is refused, not mixed.
    let a = v.write_lines("a.txt", &["http://127.0.0.1:9/".into()]);
    let b = v.write_lines("b.txt", &["http://127.0.0.1:9/".into()]);
    let first = v
        .run(&fetch_args(
            a.to_str().expect("utf-8 path"),
            &["--job", "same", "--retries", "0"],
        ))
        .await;
    assert!(first.status.success(), "{}", stderr(&first));
    let second = v
        .run(&fetch_args(
            b.to_str().expect("utf-8 path"),
            &["--job", "same"],
        ))
        .await;
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("--job NAME"),
        "{}",
        stderr(&second)
    );

    // An empty input is no error, but it is said.
    let empty = v.write_lines("empty.txt", &[]);
    std::fs::write(&empty, "").expect("truncate");
    let out = v
        .run(&fetch_args(empty.to_str().expect("utf-8 path"), &[]))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("0 URLs read from"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_errors_say_their_cause_once() {
    let v = Volley::new();
    let list = v.write_lines("urls.txt", &["http://127.0.0.1:9/".into()]);
    let missing_dir = v.path("no/such/dir/volley.db");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_volley"))
        .arg("--db")
        .arg(&missing_dir)
        .args(["fetch", "--quiet"])
        .arg(&list)
        .output()
        .await
        .expect("volley runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_fetches_appended_lines_and_refuses_an_edited_input() {
    let server = Server::start().await;
    let v = Volley::new();
    let urls: Vec<String> = (0..5).map(|i| server.url(&format!("/ok/{i}"))).collect();
    v.fetch_ok(&urls[..3], &[]).await;
    assert_eq!(server.total(), 3);

    // Lines appended to a finished job's file are read and fetched; the
    // lines fetched before are not fetched again.
    v.fetch_ok(&urls, &[]).await;
    v.assert_one_outcome_per_task(5);
    assert_eq!(server.total(), 5, "only the two new lines were fetched");
    for i in 0..5 {
        assert_eq!(server.hits(&format!("/ok/{i}")), 1);
    }
    // Unchanged: nothing to do, nothing fetched.
    v.fetch_ok(&urls, &[]).await;
    assert_eq!(server.total(), 5);

    let list = v.path("urls.txt");
    let list = list.to_str().expect("utf-8 path");
    let mut edited = urls.clone();
    edited[1] = server.url("/ok/changed");
    let mut inserted = vec!["# a comment shifts every line after it".to_owned()];
    inserted.extend(urls.iter().cloned());
    for (what, lines, says) in [
        ("an edited line", edited, "lines 1-5"),
        ("an inserted line", inserted, "lines 1-5"),
        ("a shorter file", urls[..4].to_vec(), "now ends at line 4"),
    ] {
        v.write_lines("urls.txt", &lines);
        let out = v.run(&fetch_args(list, &[])).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains("changed since it was read")
                && err.contains(says)
                && err.contains("--job")
                && err.lines().count() == 1,
            "{what}: {err}"
        );
        assert_eq!(server.total(), 5, "{what}: nothing fetched");
    }
    v.assert_one_outcome_per_task(5);
    // Under a new name, the edited file is a job of its own.
    let out = v.run(&fetch_args(list, &["--job", "edited"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    v.assert_one_outcome_per_task(9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_kill_9_without_duplicates_or_refetching_finished_urls() {
    let server = Server::start().await;
    let v = Volley::new();
    let n = 3000u64;
    let urls: Vec<String> = (0..n)
        .map(|i| server.url(&format!("/ok/{i}?ms=2")))
        .collect();
    let list = v.write_lines("urls.txt", &urls);
    let list = list.to_str().expect("utf-8 path");
    let args = fetch_args(list, &["--concurrency", "16", "--per-host", "16"]);

    let mut child = v.command(&args).spawn().expect("start volley");
    server.wait_for_requests(n / 3).await;
    child.start_kill().expect("SIGKILL volley");
    let status = child.wait().await.expect("reap volley");
    assert!(!status.success(), "volley was killed, not finished");

    // What was recorded before the kill must never be fetched again.
    let finished_before: Vec<String> = v.rows().into_iter().map(|r| r.url).collect();
    assert!(
        !finished_before.is_empty(),
        "some outcomes were committed before the kill"
    );
    assert!((finished_before.len() as u64) < n, "the kill came mid-run");
    v.assert_counts_hold().await;

    let out = v.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    v.assert_one_outcome_per_task(n);
    v.assert_counts_hold().await;
    for url in &finished_before {
        assert_eq!(
            server.hits(&path_of(url)),
            1,
            "{url} was fetched again after resume"
        );
    }
    assert!(v.rows().iter().all(|r| r.class == "ok"));
    assert_eq!(v.task_states().get("leased"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_drains_exits_130_and_the_rerun_completes() {
    let server = Server::start().await;
    let v = Volley::new();
    let n = 400u64;
    let urls: Vec<String> = (0..n)
        .map(|i| server.url(&format!("/ok/{i}?ms=50")))
        .collect();
    let list = v.write_lines("urls.txt", &urls);
    let list = list.to_str().expect("utf-8 path");
    let args = fetch_args(
        list,
        &["--concurrency", "8", "--per-host", "8", "--grace", "10s"],
    );

    let child = v.command(&args).spawn().expect("start volley");
    server.wait_for_requests(40).await;
    signal(child.id().expect("running"), libc::SIGINT);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("volley drained within 30 s")
        .expect("reap volley");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    // Drained cleanly: nothing left leased, every recorded task is final.
    let states = v.task_states();
    assert_eq!(states.get("leased"), None, "{states:?}");
    let recorded = v.rows().len() as u64;
    assert!(recorded > 0 && recorded < n, "recorded {recorded}");
    assert!(
        v.rows().iter().all(|r| r.class == "ok"),
        "requests in flight finished within the grace period"
    );

    let out = v.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    v.assert_one_outcome_per_task(n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_quits_at_once_and_leaves_a_resumable_job() {
    let server = Server::start().await;
    let v = Volley::new();
    let hanging: Vec<String> = (0..4)
        .map(|i| server.url(&format!("/slow?ms=600000&i={i}")))
        .collect();
    let list = v.write_lines("urls.txt", &hanging);
    let list = list.to_str().expect("utf-8 path");
    let args = fetch_args(
        list,
        &[
            "--grace",
            "600s",
            "--timeout",
            "900s",
            "--read-timeout",
            "900s",
        ],
    );

    let mut child = v.command(&args).spawn().expect("start volley");
    let pid = child.id().expect("running");
    server.wait_for_requests(4).await;
    signal(pid, libc::SIGINT);
    // The first Ctrl-C is acknowledged before the second is sent. The
    // reader stays alive so volley's later lines still have a pipe.
    let stderr_pipe = child.stderr.take().expect("stderr is piped");
    let _stderr_lines = wait_for_line(stderr_pipe, "stopping").await;
    signal(pid, libc::SIGINT);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("volley quit at once")
        .expect("reap volley");
    assert_eq!(out.status.code(), Some(130));
    // SQLite leases live in memory (the run lock makes them exclusive): the
    // tasks in flight are left without an outcome, pending for the next run.
    assert_eq!(
        v.task_states().get("pending"),
        Some(&4),
        "in-flight tasks stay pending, without an outcome"
    );
    assert!(v.rows().is_empty(), "nothing recorded for them");

    // The next run fetches them and gives each an outcome (here a timeout,
    // since the route still hangs).
    let args = fetch_args(list, &["--timeout", "2s", "--retries", "0"]);
    let out = v.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    v.assert_one_outcome_per_task(4);
    assert!(
        v.rows().iter().all(|r| r.class == "total_timeout"),
        "{:?}",
        v.rows()
    );
}

/// Reads `pipe` until a line containing `needle` arrives; returns the
/// reader, positioned after that line.
async fn wait_for_line(
    pipe: tokio::process::ChildStderr,
    needle: &str,
) -> tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>> {
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(pipe).lines();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "volley printed a line with {needle:?}");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_private_refuses_loopback_literals_names_and_redirects() {
    // Two loopback hosts: 127.0.0.2 is opened on purpose, 127.0.0.1 is not.
    let target = Server::start().await;
    let allowed = Server::start_on("127.0.0.2").await;
    let v = Volley::new();
    let port = target.addr.port();
    let hop = format!("http://127.0.0.1:{port}/ok/hop");
    let urls = [
        target.url("/ok/literal"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok/mapped"),
        format!("http://localhost:{port}/ok/name"),
        allowed.url(&format!("/to?url={hop}")),
        allowed.url("/ok/fine"),
    ];
    v.fetch_ok(
        &urls,
        &["--deny-private", "--allow-private", "127.0.0.2/32"],
    )
    .await;
    for line in 1..=4 {
        let row = v.row(line);
        assert_eq!(
            row.class, "forbidden_address",
            "line {line}: {:?}",
            row.message
        );
        assert!(
            row.message
                .as_deref()
                .unwrap_or_default()
                .contains("loopback"),
            "line {line}: {:?}",
            row.message
        );
    }
    assert_eq!(v.row(5).class, "ok");
    assert_eq!(target.total(), 0, "the refused host saw no request");
    assert_eq!(allowed.hits("/to"), 1);
    // Without the flag the CLI fetches loopback as before.
    let open = Volley::new();
    open.fetch_ok(&urls[..1], &[]).await;
    assert_eq!(open.row(1).class, "ok");
}

/// Everything a run leaves on record: the database files and the output
/// of `outs`, as text.
fn on_record(v: &Volley, outs: &[&std::process::Output]) -> String {
    let mut haystack: Vec<u8> = Vec::new();
    for out in outs {
        haystack.extend_from_slice(&out.stdout);
        haystack.extend_from_slice(&out.stderr);
    }
    for entry in std::fs::read_dir(v.dir.path()).expect("list the directory") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("volley.db") {
            haystack.extend(std::fs::read(&path).expect("read a database file"));
        }
    }
    String::from_utf8_lossy(&haystack).into_owned()
}

#[tokio::test]
async fn cookies_are_kept_for_the_run_loaded_and_saved_and_never_recorded() {
    let v = Volley::new();
    let (a, b) = (
        Server::start_on("127.0.0.1").await,
        Server::start_on("127.0.0.2").await,
    );
    let cookie = |server: &Server, i: usize| {
        server.headers_seen()[i]
            .get("cookie")
            .and_then(|c| c.to_str().ok())
            .map(str::to_owned)
    };
    // Without --cookies, a Set-Cookie is not sent back, even in its chain.
    v.fetch_ok(&[a.url("/login")], &["--job", "plain"]).await;
    assert_eq!(cookie(&a, 0), None);
    // With it, the login's cookie goes with the redirect it set it on.
    let out = v
        .fetch_ok(
            &[a.url("/login"), a.url("/login?stay=1")],
            &["--cookies", "--job", "kept"],
        )
        .await;
    assert_eq!(cookie(&a, 1).as_deref(), Some(SESSION_COOKIE));

    // A jar as curl writes it: B's cookie goes to B only; A's cookie,
    // set in this run, is saved to the file with B's.
    let jar = v.path("cookies.txt");
    std::fs::write(
        &jar,
        format!(
            "# Netscape HTTP Cookie File\n{}\tFALSE\t/\tFALSE\t0\tfrom_curl\tb-value\n",
            b.addr.ip()
        ),
    )
    .expect("write the cookie file");
    let jar_arg = jar.to_str().expect("utf-8 path");
    let out_jar = v
        .fetch_ok(
            &[a.url("/login"), b.url("/echo")],
            &[
                "--cookie-jar",
                jar_arg,
                "--job",
                "jar",
                "--concurrency",
                "1",
            ],
        )
        .await;
    assert_eq!(cookie(&a, 2).as_deref(), Some(SESSION_COOKIE));
    assert_eq!(cookie(&b, 0).as_deref(), Some("from_curl=b-value"));
    let saved = std::fs::read_to_string(&jar).expect("the jar was saved");
    let (name, value) = SESSION_COOKIE.split_once('=').expect("name=value");
    assert!(
        saved.contains(&format!(
            "#HttpOnly_{}\tFALSE\t/\tFALSE\t0\t{name}\t{value}\n",
            a.addr.ip()
        )),
        "{saved}"
    );
    assert!(saved.contains("from_curl\tb-value"), "{saved}");
    // Read back by a later run, the saved cookie goes to A.
    v.fetch_ok(
        &[a.url("/echo")],
        &["--cookie-jar", jar_arg, "--job", "again"],
    )
    .await;
    assert_eq!(cookie(&a, 3).as_deref(), Some(SESSION_COOKIE));

    // The values of cookies a run sends back are kept out of the recorded
    // headers; the names stay.
    let export = v.run(&["export", "--job", "kept"]).await;
    let text = on_record(&v, &[&out, &out_jar, &export]);
    assert!(text.contains("sid=(hidden); Path=/; HttpOnly"), "{text}");
    assert!(!text.contains(value), "the session cookie was recorded");
    assert!(!text.contains("b-value"));

    // A jar that is not one: exit 2 with the line at fault.
    std::fs::write(&jar, "127.0.0.1\tMAYBE\t/\tFALSE\t0\tn\tv\n").expect("write");
    let bad = v
        .run(&["fetch", "-", "--cookie-jar", jar_arg, "--job", "bad"])
        .await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let err = stderr(&bad);
    assert!(err.contains("line 1") && err.contains("MAYBE"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_marked_insecure_is_the_only_one_unverified() {
    // Two servers as `openssl req -x509` makes them (CA:TRUE), refused by
    // any verifying client; only the first is marked insecure.
    let ca_true = || {
        certificate(|p| {
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        })
    };
    let ((der_a, _, key_a), (der_b, _, key_b)) = (ca_true(), ca_true());
    let (a, b) = (
        tls_server(der_a, key_a).await,
        tls_server(der_b, key_b).await,
    );
    let plain = Server::start().await;
    let v = Volley::new();
    let config = v.path("volley.toml");
    std::fs::write(
        &config,
        format!("[hosts.\"{}\"]\ninsecure = true\n", a.addr),
    )
    .expect("write the config");
    let urls = [
        a.https_url("/ok/1"),
        b.https_url("/ok/2"),
        // From the insecure host to the other: verified again.
        a.https_url(&format!("/to?url={}", b.https_url("/ok/3"))),
        // From a plain host to the insecure one: unverified there.
        plain.url(&format!("/to?url={}", a.https_url("/ok/4"))),
    ];
    v.fetch_ok(&urls, &["--config", config.to_str().expect("utf-8 path")])
        .await;
    let classes: Vec<String> = (1..=4).map(|id| v.row(id).class).collect();
    assert_eq!(classes, ["ok", "tls", "tls", "ok"], "{:?}", v.rows());
    assert_eq!(
        v.row(4).final_url.as_deref(),
        Some(a.https_url("/ok/4").as_str())
    );
    assert_eq!(b.total(), 0, "no request reached the unmarked host");
}

/// A certificate for 127.0.0.1 made with `params` adjusted by `adjust`,
/// self-signed: (its DER, its PEM, its key as DER).
fn certificate(
    adjust: impl FnOnce(&mut rcgen::CertificateParams),
) -> (
    rustls::pki_types::CertificateDer<'static>,
    String,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("certificate params");
    adjust(&mut params);
    let key = rcgen::KeyPair::generate().expect("a key pair");
    let cert = params.self_signed(&key).expect("a self-signed certificate");
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    (cert.der().clone(), cert.pem(), private)
}

/// A TLS test server presenting `cert`.
async fn tls_server(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Server {
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("TLS server config");
    Server::start_tls_config(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_say_what_is_wrong_and_insecure_gets_through() {
    // As `openssl req -x509` makes it: a CA certificate used by the server.
    let ca_true = certificate(|p| {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    });
    // Trusted, but expired.
    let expired = certificate(|p| {
        p.not_before = rcgen::date_time_ymd(2019, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    });
    // Trusted, but for another name.
    let other_name = certificate(|p| {
        p.subject_alt_names = vec![rcgen::SanType::DnsName(
            "example.invalid".try_into().expect("a DNS name"),
        )];
    });
    for ((der, pem, key), said) in [
        (ca_true, "a CA certificate (CA:TRUE"),
        (expired, "has expired"),
        (other_name, "for another name"),
    ] {
        let server = tls_server(der, key).await;
        let v = Volley::new();
        let trust = v.path("trusted.pem");
        std::fs::write(&trust, &pem).expect("write the certificate");
        let trust = trust.display().to_string();
        v.fetch_ok(&[server.https_url("/ok/1")], &["--ca-cert", &trust])
            .await;
        let row = v.row(1);
        assert_eq!(row.class, "tls", "{said}: {row:?}");
        let message = row.message.unwrap_or_default();
        assert!(message.contains(said), "{said}: {message}");
        assert!(message.contains("--insecure"), "says what to do: {message}");
        assert_eq!(server.total(), 0, "{said}: no request got through");
    }

    // curl's -k: a CA:TRUE server answers, with a warning before the run
    // and in its summary.
    let (der, _, key) = certificate(|p| {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    });
    let server = tls_server(der, key).await;
    let v = Volley::new();
    let out = v
        .fetch_ok(&[server.https_url("/ok/1")], &["--insecure"])
        .await;
    let row = v.row(1);
    assert_eq!(
        (row.class.as_str(), row.status),
        ("ok", Some(200)),
        "{row:?}"
    );
    let err = stderr(&out);
    assert_eq!(err.matches("not verified").count(), 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_sends_the_client_certificate_the_server_requires() {
    // An authority for clients, and a client certificate it signed.
    let ca_key = rcgen::KeyPair::generate().expect("a key pair");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("the client CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let client_key = rcgen::KeyPair::generate().expect("a key pair");
    let client_cert = rcgen::CertificateParams::new(vec!["volley-client".to_owned()])
        .expect("params")
        .signed_by(&client_key, &issuer)
        .expect("the client certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca_cert.der().clone())
        .expect("trust the client CA");
    let verifier = rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
        .build()
        .expect("a client verifier");
    let (der, pem, key) = certificate(|_| {});
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![der], key)
        .expect("TLS server config");
    let server = Server::start_tls_config(config).await;
    let v = Volley::new();
    for (name, text) in [
        ("server.pem", pem),
        ("client.pem", client_cert.pem()),
        ("client.key", client_key.serialize_pem()),
    ] {
        std::fs::write(v.path(name), text).expect("write a PEM file");
    }
    let urls = [server.https_url("/ok/1"), server.https_url("/ok/2")];
    let list = v.write_lines("urls.txt", &urls);
    let list = list.to_str().expect("utf-8 path");
    let trust = ["--ca-cert", "server.pem"];

    // Without a client certificate: refused, saying what to give.
    let out = v
        .run(&fetch_args(
            list,
            &[&trust[..], &["--job", "without"]].concat(),
        ))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let row = v.row(1);
    assert_eq!(row.class, "tls", "{row:?}");
    let message = row.message.unwrap_or_default();
    assert!(message.contains("--client-cert"), "{message}");

    // Half an identity is a usage error.
    let out = v
        .run(&fetch_args(
            list,
            &["--client-cert", "client.pem", "--job", "half"],
        ))
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--client-key"), "{}", stderr(&out));

    // With it: through.
    let v = Volley::new();
    for name in ["server.pem", "client.pem", "client.key"] {
        std::fs::copy(
            std::path::Path::new(&list).with_file_name(name),
            v.path(name),
        )
        .expect("copy a PEM file");
    }
    let with = [
        "--ca-cert",
        "server.pem",
        "--client-cert",
        "client.pem",
        "--client-key",
        "client.key",
    ];
    v.fetch_ok(&urls, &with).await;
    assert_eq!(
        (v.row(1).class.as_str(), v.row(2).status),
        ("ok", Some(200))
    );
    assert_eq!(server.total(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_through_http_and_socks5_proxies_and_a_dead_one_is_a_proxy_outcome() {
    let server = Server::start().await;
    let v = Volley::new();
    let http = support::Proxy::tinyproxy(v.dir.path()).await;
    let socks = support::Proxy::microsocks().await;

    // Through tinyproxy: it logs the request, and the server sees its Via.
    let v1 = Volley::new();
    v1.fetch_ok(&[server.url("/echo")], &["--proxy", &http.url])
        .await;
    assert_eq!(v1.row(1).class, "ok", "{:?}", v1.row(1));
    let path = format!("GET {}", server.url("/echo"));
    assert!(http.log().contains(&path), "tinyproxy saw: {}", http.log());
    let via = server
        .headers_seen()
        .last()
        .and_then(|h| h.get("via").cloned());
    assert!(
        via.is_some_and(|v| v.to_str().unwrap_or_default().contains("tinyproxy")),
        "the server was reached through tinyproxy"
    );

    // Through microsocks: it logs the connection.
    let v2 = Volley::new();
    v2.fetch_ok(&[server.url("/ok/2")], &["--proxy", &socks.url])
        .await;
    assert_eq!(v2.row(1).class, "ok", "{:?}", v2.row(1));
    let target = format!("connected to {}", server.addr);
    assert!(
        socks.log().contains(&target),
        "microsocks saw: {}",
        socks.log()
    );

    // --no-proxy: straight to the server, the proxy sees nothing more.
    let before = socks.log().matches("connected to").count();
    let v3 = Volley::new();
    v3.fetch_ok(
        &[server.url("/ok/3")],
        &["--proxy", &socks.url, "--no-proxy", "localhost,127.0.0.0/8"],
    )
    .await;
    assert_eq!(v3.row(1).class, "ok");
    assert_eq!(socks.log().matches("connected to").count(), before);

    // A proxy that is not there: every URL gets `proxy`, retried, and the
    // target host (never reached) is not blamed.
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let v4 = Volley::new();
    v4.fetch_ok(
        &[server.url("/ok/4"), server.url("/ok/5")],
        &["--proxy", &dead, "--retries", "1"],
    )
    .await;
    for line in [1, 2] {
        let row = v4.row(line);
        assert_eq!((row.class.as_str(), row.attempts), ("proxy", 2), "{row:?}");
    }
    assert_eq!(server.hits("/ok/4") + server.hits("/ok/5"), 0);

    // A proxy URL volley cannot use, and a proxy with the address rules.
    for bad in [
        vec!["--proxy", "ftp://127.0.0.1:21"],
        vec!["--proxy", "http://127.0.0.1:3128", "--deny-private"],
    ] {
        let list = v.write_lines("urls.txt", &[server.url("/ok/6")]);
        let out = v
            .run(&fetch_args(list.to_str().expect("utf-8"), &bad))
            .await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("--proxy"), "{}", stderr(&out));
    }
}

/// The secrets of `credentials_go_only_where_they_belong…`, to grep for.
const TOKEN: &str = "s3cr3t-token-4b1d";
const API_KEY: &str = "k3y-only-for-a-77";

#[tokio::test]
async fn credentials_go_only_where_they_belong_and_are_never_recorded() {
    let v = Volley::new();
    let (a, b, c) = (
        Server::start_on("127.0.0.1").await,
        Server::start_on("127.0.0.2").await,
        Server::start_on("127.0.0.3").await,
    );
    std::fs::write(v.path("token"), format!("{TOKEN}\n")).expect("write the token file");
    let config = v.path("volley.toml");
    std::fs::write(
        &config,
        format!(
            "[hosts.\"{}\"]\nheaders = {{ X-Api-Key = \"{API_KEY}\", Authorization = \"Token {API_KEY}\" }}\n",
            a.addr
        ),
    )
    .expect("write the config");
    let urls = [
        a.url("/echo"),
        a.url(&format!("/to?url={}", c.url("/echo"))),
        b.url("/echo"),
    ];
    let token = v.path("token");
    let config = config.to_str().expect("utf-8 path");
    let out = v
        .fetch_ok(
            &urls,
            &[
                "--bearer-token-file",
                token.to_str().expect("utf-8 path"),
                "--config",
                config,
                "--job",
                "secret",
            ],
        )
        .await;
    let value = |headers: &axum::http::HeaderMap, name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // A: its own headers, which replace the run's Authorization for it.
    let seen_a = a.headers_seen();
    assert_eq!(seen_a.len(), 1);
    assert_eq!(value(&seen_a[0], "x-api-key").as_deref(), Some(API_KEY));
    assert_eq!(
        value(&seen_a[0], "authorization"),
        Some(format!("Token {API_KEY}"))
    );
    // B, asked directly: the run's bearer token, not A's headers.
    let seen_b = b.headers_seen();
    assert_eq!(
        value(&seen_b[0], "authorization"),
        Some(format!("Bearer {TOKEN}"))
    );
    assert_eq!(value(&seen_b[0], "x-api-key"), None);
    // C, reached by A's redirect: nothing of A's, and no token either.
    let seen_c = c.headers_seen();
    assert_eq!(seen_c.len(), 1, "the redirect was followed");
    assert_eq!(value(&seen_c[0], "x-api-key"), None);
    assert_eq!(value(&seen_c[0], "authorization"), None);
    assert_eq!(
        v.rows()
            .iter()
            .map(|r| r.class.as_str())
            .collect::<Vec<_>>(),
        ["ok", "ok", "ok"]
    );

    // --user, as curl's -u.
    let out_user = v
        .fetch_ok(&[b.url("/echo")], &["-u", "alice:pw", "--job", "basic"])
        .await;
    assert_eq!(
        value(&b.headers_seen()[1], "authorization").as_deref(),
        Some("Basic YWxpY2U6cHc=")
    );

    // Nowhere on record: the database files, the export, the output.
    let export = v.run(&["export", "--job", "secret"]).await;
    let text = on_record(&v, &[&out, &out_user, &export]);
    for secret in [TOKEN, API_KEY, "YWxpY2U6cHc=", "alice:pw"] {
        assert!(!text.contains(secret), "{secret} was recorded");
    }
    assert!(text.contains("\"class\":\"ok\""), "the export was read");
}

/// The `N.N requests/s` of each periodic progress line in `err`.
fn progress_rates(err: &str) -> Vec<f64> {
    err.lines()
        .filter(|l| l.contains(" done ("))
        .filter_map(|l| {
            let (before, _) = l.split_once(" requests/s")?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_after_a_resume_counts_this_runs_rate_only_and_has_no_colour() {
    let server = Server::start().await;
    let v = Volley::new();
    let mut urls: Vec<String> = (0..300).map(|i| server.url(&format!("/ok/{i}"))).collect();
    v.fetch_ok(&urls, &[]).await;
    // Lines appended to the list are read by the rerun, at 2 requests/s.
    urls.extend((300..314).map(|i| server.url(&format!("/ok/{i}"))));
    let list = v.write_lines("urls.txt", &urls);
    let mut cmd = v.command(&["fetch", list.to_str().expect("utf-8"), "--rate", "2/s"]);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        cmd.env("RUST_LOG", "debug").output(),
    )
    .await
    .expect("volley finished within 60 s")
    .expect("volley ran");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    v.assert_one_outcome_per_task(314);
    let rates = progress_rates(&err);
    assert!(!rates.is_empty(), "no progress line in: {err}");
    assert!(
        rates.iter().all(|r| *r <= 3.5),
        "rates {rates:?} count earlier runs' outcomes: {err}"
    );
    // stderr is a pipe: no ANSI escapes, in the progress or in the logs.
    assert!(!err.contains('\u{1b}'), "colour codes on a pipe: {err:?}");
}
