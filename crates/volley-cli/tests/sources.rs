//! Sources and pagination, end to end: several files, CSV, JSON Lines and
//! templates in; paginated JSON APIs walked to the end, resumably, with
//! their items recorded.

mod support;

use std::collections::HashSet;

use support::{Server, Volley, fetch_args, stderr};

/// The `id` of every recorded item, checked unique.
fn unique_ids(v: &Volley) -> HashSet<u64> {
    let items = v.items();
    let ids: HashSet<u64> = items.iter().filter_map(|i| i["id"].as_u64()).collect();
    assert_eq!(ids.len(), items.len(), "an item was recorded twice");
    ids
}

/// The `classes` line of a run's summary, as a map.
fn summary_classes(err: &str) -> std::collections::BTreeMap<String, u64> {
    let line = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("classes"))
        .unwrap_or_else(|| panic!("no classes line in the summary: {err}"));
    line.split(',')
        .map(|part| {
            let (class, n) = part.trim().rsplit_once(' ').expect("'class n'");
            (class.to_owned(), n.parse().expect("a count"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_counts_the_classes_the_database_stores() {
    let server = Server::start().await;
    let v = Volley::new();
    // Mostly binary: rows that are not text are invalid_input, a line of
    // text that is not a URL is invalid_url.
    let mut input = Vec::new();
    for i in 0u8..18 {
        input.extend_from_slice(&[0xff, 0xfe, 0x80 + i, b'\n']);
    }
    input.extend_from_slice(b"not a url\n");
    input.extend_from_slice(
        format!("{}\n{}\n", server.url("/ok/1"), server.url("/ok/1")).as_bytes(),
    );
    let list = v.path("blob.bin");
    std::fs::write(&list, input).expect("write the input");
    let out = v
        .run(&fetch_args(list.to_str().expect("utf-8 path"), &[]))
        .await;
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let stored = v.class_counts();
    assert_eq!(stored.get("invalid_input"), Some(&18), "{stored:?}");
    assert_eq!(stored.get("invalid_url"), Some(&1), "{stored:?}");
    assert_eq!(summary_classes(&err), stored, "{err}");
    assert!(err.contains("does not look like text"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_several_files_numbering_lines_across_them() {
    let server = Server::start().await;
    let v = Volley::new();
    let a = v.write_lines("a.txt", &[server.url("/ok/1"), "# comment".into()]);
    let b = v.write_lines("b.txt", &["bad url".into(), server.url("/ok/2")]);
    let args = fetch_args(a.to_str().expect("utf-8"), &[b.to_str().expect("utf-8")]);
    let out = v.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    v.assert_one_outcome_per_task(3);
    let bad = v.row(3);
    assert_eq!(bad.class, "invalid_url");
    assert!(
        bad.message
            .as_deref()
            .is_some_and(|m| m.starts_with("b.txt line 1:")),
        "{bad:?}"
    );
    assert_eq!(v.row(4).class, "ok");
    let status = v.run(&["status"]).await;
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("a.txt+1"),
        "the default job name says there are two files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_csv_column_and_keeps_the_other_columns_as_metadata() {
    let server = Server::start().await;
    let v = Volley::new();
    let csv = format!(
        "id,link,title\n1,{},\"First, quoted\"\n2\n3,{},third\n",
        server.url("/ok/1"),
        server.url("/ok/3")
    );
    let path = v.path("pages.csv");
    std::fs::write(&path, csv).expect("write the CSV");
    let out = v
        .run(&fetch_args(
            path.to_str().expect("utf-8"),
            &["--column", "link"],
        ))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = v.export_rows().await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["class"], "ok");
    assert_eq!(
        rows[0]["meta"],
        serde_json::json!({"id": "1", "title": "First, quoted"}),
        "metadata is nested as an object"
    );
    assert_eq!(rows[1]["class"], "invalid_input");
    assert!(
        rows[1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no column 'link'")),
        "{}",
        rows[1]
    );
    assert_eq!(rows[2]["class"], "ok");

    let missing = v
        .run(&fetch_args(
            path.to_str().expect("utf-8"),
            &["--column", "url", "--job", "other"],
        ))
        .await;
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("columns: id, link, title"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_json_lines_at_a_pointer_and_classifies_bad_lines() {
    let server = Server::start().await;
    let v = Volley::new();
    let lines = vec![
        format!(
            "{{\"links\":{{\"self\":\"{}\"}},\"rank\":1}}",
            server.url("/ok/1")
        ),
        "not json at all".to_owned(),
        "{\"links\":{}}".to_owned(),
    ];
    let path = v.write_lines("in.jsonl", &lines);
    let out = v
        .run(&fetch_args(
            path.to_str().expect("utf-8"),
            &["--field", "/links/self"],
        ))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = v.export_rows().await;
    let classes: Vec<&str> = rows.iter().filter_map(|r| r["class"].as_str()).collect();
    assert_eq!(classes, ["ok", "invalid_input", "invalid_input"]);
    assert_eq!(rows[0]["meta"]["rank"], 1, "{}", rows[0]);
    assert!(
        rows[1]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("line 2: not JSON"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expands_a_template_lazily_and_rejects_a_reversed_range() {
    let server = Server::start().await;
    let v = Volley::new();
    let template = server.url("/ok/{1..30}");
    let out = v.run(&["fetch", "--template", &template, "--quiet"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    v.assert_one_outcome_per_task(30);
    assert_eq!(server.hits("/ok/30"), 1);
    let reversed = server.url("/ok/{30..1}");
    let out = v
        .run(&["fetch", "--template", &reversed, "--job", "r"])
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("reversed"), "{}", stderr(&out));
}

/// Walks `start` with `flags`; checks `pages` pages, `items` unique items,
/// that the server saw each page exactly as often as volley recorded
/// attempts for it, and that `volley export --items` agrees.
async fn walk(start: &str, flags: &[&str], pages: u64, items: u64) -> (Server, Volley) {
    let server = Server::start().await;
    let v = Volley::new();
    v.fetch_ok(&[server.url(start)], flags).await;
    v.assert_one_outcome_per_task(pages);
    assert!(
        v.rows().iter().all(|r| r.class == "ok"),
        "{start}: {:?}",
        v.rows()
    );
    assert_eq!(unique_ids(&v).len() as u64, items, "{start}");
    let hits = server.uri_hits_under("/api/");
    assert_eq!(
        hits.len() as u64,
        pages,
        "{start}: pages requested: {hits:?}"
    );
    for row in v.rows() {
        let path = &row.url[row.url.find("/api").unwrap_or(0)..];
        assert_eq!(
            hits.get(path).copied(),
            Some(u64::from(row.attempts)),
            "{path}"
        );
    }
    let exported = v.run(&["export", "--items"]).await;
    assert_eq!(
        String::from_utf8_lossy(&exported.stdout).lines().count() as u64,
        items
    );
    // Every chain's last page says why the chain stopped.
    let rows = v.rows();
    let last = rows.last().expect("pages");
    assert!(
        last.message
            .as_deref()
            .is_some_and(|m| m.starts_with("pagination ")),
        "{start}: the last page has no stop reason: {last:?}"
    );
    (server, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_every_pagination_style_to_the_end() {
    walk(
        "/api/link?page=1&pages=8&size=5",
        &["--paginate", "link", "--items", "/items"],
        8,
        40,
    )
    .await;
    walk(
        "/api/next?page=1&pages=6",
        &["--paginate", "json-next=/next", "--items", "/data"],
        6,
        30,
    )
    .await;
    walk(
        "/api/cursor?pages=7",
        &[
            "--paginate",
            "cursor=/meta/cursor",
            "--cursor-param",
            "after",
            "--items",
            "/items",
        ],
        7,
        35,
    )
    .await;
    // Four full pages, then the empty fifth ends the chain.
    walk(
        "/api/paged?p=1&pages=4",
        &["--paginate", "page=p", "--items", "/items"],
        5,
        20,
    )
    .await;
    // 23 items, 5 a page: the fifth page has 3, shorter than the page size.
    let (_, v) = walk(
        "/api/offset?total=23",
        &[
            "--paginate",
            "offset=start",
            "--page-size",
            "5",
            "--items",
            "/items",
            "--extract",
            "total=/total",
        ],
        5,
        23,
    )
    .await;
    let rows = v.export_rows().await;
    assert_eq!(rows[0]["extracted"], serde_json::json!({"total": 23}));
    let pages: Vec<u64> = rows.iter().filter_map(|r| r["page"].as_u64()).collect();
    assert_eq!(pages, [1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_at_loops_max_pages_and_bodies_that_are_not_json() {
    let server = Server::start().await;
    let v = Volley::new();
    v.fetch_ok(&[server.url("/api/loop?page=1")], &["--paginate", "link"])
        .await;
    v.assert_one_outcome_per_task(1);
    let row = v.row(1);
    assert!(
        row.message.as_deref().is_some_and(|m| m.contains("a loop")),
        "{row:?}"
    );

    let v = Volley::new();
    v.fetch_ok(
        &[server.url("/api/link?page=1&pages=10")],
        &["--paginate", "link", "--max-pages", "3"],
    )
    .await;
    v.assert_one_outcome_per_task(3);
    let last = v.rows().pop().expect("three rows");
    assert!(
        last.message
            .as_deref()
            .is_some_and(|m| m.contains("--max-pages 3")),
        "{last:?}"
    );

    let v = Volley::new();
    v.fetch_ok(&[server.url("/ok/1")], &["--paginate", "json-next=/next"])
        .await;
    let row = v.row(1);
    assert_eq!(
        (row.class.as_str(), row.status),
        ("invalid_json", Some(200)),
        "{row:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_a_503_mid_chain_and_carries_on() {
    let (server, v) = walk(
        "/api/flaky?page=1&pages=5",
        &["--paginate", "link", "--items", "/items"],
        5,
        25,
    )
    .await;
    let _ = server;
    let attempts: Vec<u32> = v.rows().iter().map(|r| r.attempts).collect();
    assert_eq!(attempts, [1, 1, 2, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_killed_mid_way_resumes_at_the_right_page() {
    let server = Server::start().await;
    let v = Volley::new();
    let list = v.write_lines(
        "urls.txt",
        &[server.url("/api/link?page=1&pages=60&size=3&ms=20")],
    );
    let args = fetch_args(
        list.to_str().expect("utf-8"),
        &["--paginate", "link", "--items", "/items"],
    );
    let mut child = v.command(&args).spawn().expect("start volley");
    server.wait_for_requests(20).await;
    child.start_kill().expect("SIGKILL volley");
    let status = child.wait().await.expect("reap volley");
    assert!(!status.success(), "volley was killed mid-chain");
    let before: Vec<String> = v.rows().into_iter().map(|r| r.url).collect();
    assert!(
        before.len() >= 10 && before.len() < 60,
        "{} pages before the kill",
        before.len()
    );
    let hits_before: Vec<u64> = before
        .iter()
        .map(|u| server.uri_hits(&u[u.find("/api").unwrap_or(0)..]))
        .collect();

    let out = v.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    v.assert_one_outcome_per_task(60);
    assert_eq!(unique_ids(&v).len(), 180, "every item recorded once");
    for (url, hits) in before.iter().zip(hits_before) {
        let path = &url[url.find("/api").unwrap_or(0)..];
        assert_eq!(
            server.uri_hits(path),
            hits,
            "{path} was fetched again after its outcome"
        );
    }
    for (uri, hits) in server.uri_hits_under("/api/") {
        assert!(hits <= 2, "{uri} fetched {hits} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_flags_that_cannot_work_exit_2() {
    let v = Volley::new();
    let cases: [&[&str]; 4] = [
        &[
            "fetch",
            "-",
            "--paginate",
            "offset=start",
            "--items",
            "/items",
        ],
        &["fetch", "-", "--paginate", "cursor=/next"],
        &["fetch", "-", "--paginate", "page=p"],
        &["fetch", "-", "--paginate", "sideways"],
    ];
    for args in cases {
        let out = v.run(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_items_pointer_that_finds_nothing_is_a_failure_and_a_root_array_is_the_empty_pointer() {
    let server = Server::start().await;
    let v = Volley::new();
    let start = server.url("/api/root?page=1&pages=3&size=4");
    // The README's pointer on a json-server page (a root array).
    v.fetch_ok(
        std::slice::from_ref(&start),
        &["--paginate", "link", "--items", "/items", "--job", "wrong"],
    )
    .await;
    let rows = v.rows();
    assert_eq!(rows.len(), 1, "the chain stops at the first page: {rows:?}");
    assert_eq!(rows[0].class, "invalid_json", "{rows:?}");
    let message = rows[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("/items") && message.contains("''"),
        "{message}"
    );
    // The whole document: every page and item.
    let list = v.write_lines("root.txt", &[start]);
    let out = v
        .run(&fetch_args(
            list.to_str().expect("utf-8"),
            &["--paginate", "link", "--items", "", "--job", "right"],
        ))
        .await;
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(v.items().len(), 12);
    assert!(err.contains("items     12 recorded"), "{err}");
    assert!(
        err.contains("1 inputs and 2 pages found from them (pagination, links)"),
        "inputs and pages apart: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_of_items_keeps_the_keys_the_first_item_lacks() {
    let server = Server::start().await;
    let v = Volley::new();
    v.fetch_ok(&[server.url("/api/mixed")], &["--items", "/items"])
        .await;
    let out = v.run(&["export", "--items", "--format", "csv"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a,c,b,nested\n1,,,\n2,x,,\n,,3,\"{\"\"k\"\":[1,2]}\"\n"
    );
    // A job without items says so rather than printing nothing.
    let none = v.write_lines("plain.txt", &[server.url("/ok/1")]);
    v.run(&fetch_args(
        none.to_str().expect("utf-8"),
        &["--job", "plain"],
    ))
    .await;
    let out = v.run(&["export", "--items", "--job", "plain"]).await;
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("has no items"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_given_again_appends_to_its_job_and_an_empty_stdin_creates_no_job() {
    let server = Server::start().await;
    let v = Volley::new();
    // Nothing piped: no job.
    let out = v.run(&["fetch", "--quiet"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("stdin is empty"), "{}", stderr(&out));
    let status = v.run(&["status"]).await;
    assert_eq!(String::from_utf8_lossy(&status.stdout), "no jobs yet\n");

    let first: String = (1..=3)
        .map(|i| server.url(&format!("/ok/{i}")) + "\n")
        .collect();
    let more: String = (4..=6)
        .map(|i| server.url(&format!("/ok/{i}")) + "\n")
        .collect();
    let args = ["fetch", "-", "--job", "nightly", "--quiet"];
    let out = v.run_with_stdin(&args, &first).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // The same lines and three more: the three are appended.
    let out = v.run_with_stdin(&args, &(first.clone() + &more)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    v.assert_one_outcome_per_task(6);
    for i in 1..=6 {
        assert_eq!(server.hits(&format!("/ok/{i}")), 1, "/ok/{i}");
    }
    // Other lines where the job's lines were: refused, nothing swallowed.
    let out = v.run_with_stdin(&args, &more).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("changed since it was read"),
        "{}",
        stderr(&out)
    );
    // An empty stdin resumes the job without reading.
    let out = v.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_error_leaves_no_job_and_delete_removes_one() {
    let server = Server::start().await;
    let v = Volley::new();
    let path = v.path("pages.csv");
    std::fs::write(&path, format!("id,link\n1,{}\n", server.url("/ok/1"))).expect("write");
    let csv = path.to_str().expect("utf-8");
    let out = v.run(&fetch_args(csv, &["--column", "url"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let status = v.run(&["status"]).await;
    assert_eq!(String::from_utf8_lossy(&status.stdout), "no jobs yet\n");
    // The corrected command is not refused.
    let out = v.run(&fetch_args(csv, &["--column", "link"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    v.assert_one_outcome_per_task(1);

    let out = v.run(&["delete", "--job", "pages.csv"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deleted job 'pages.csv': 1 tasks, 1 outcomes, 0 items"),
        "{}",
        stderr(&out)
    );
    v.assert_one_outcome_per_task(0);
    let out = v.run(&["delete", "--job", "pages.csv"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no job named"), "{}", stderr(&out));
}

/// A finished crawl of the test site seeded at `seed` with `flags`
/// (without retries: two of its links are refused).
async fn crawl(server: &Server, seed: &str, flags: &[&str]) -> Volley {
    let v = Volley::new();
    let mut args = vec!["--follow", "--retries", "0"];
    args.extend_from_slice(flags);
    v.fetch_ok(&[server.url(seed)], &args).await;
    v
}

/// The pages a crawl recorded, as paths under the server, sorted, with
/// their classes.
fn crawled(v: &Volley, server: &Server) -> Vec<(String, String)> {
    let base = server.url("");
    let mut pages: Vec<(String, String)> = v
        .rows()
        .into_iter()
        .map(|r| (r.url.trim_start_matches(&base).to_owned(), r.class))
        .collect();
    pages.sort();
    pages
}

#[tokio::test]
async fn a_crawl_finds_each_page_of_the_site_once() {
    let server = Server::start().await;
    let v = crawl(&server, "/site/index.html", &[]).await;
    let expected: Vec<(String, String)> = [
        ("/site/a.html", "ok"),
        ("/site/a.html?x=1", "ok"),
        ("/site/b.html", "ok"),
        ("/site/c.html", "ok"),
        ("/site/deep/d.html", "ok"),
        ("/site/deep/e.html", "ok"),
        ("/site/index.html", "ok"),
        ("/site/missing.html", "http_4xx"),
        ("http://127.0.0.1:9/gone", "connect_refused"),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_owned(), c.to_owned()))
    .collect();
    assert_eq!(crawled(&v, &server), expected);
    // Each page fetched once, whatever the number of pages naming it; the
    // stylesheet, the mail link and the other host never.
    for (page, _) in expected.iter().filter(|(p, _)| p.starts_with('/')) {
        assert_eq!(server.uri_hits(page), 1, "{page}");
    }
    assert_eq!(server.hits("/site/style.css"), 0);

    // The same crawl again is a finished job: nothing more is fetched.
    let before = server.total();
    v.fetch_ok(
        &[server.url("/site/index.html")],
        &["--follow", "--retries", "0"],
    )
    .await;
    assert_eq!(server.total(), before);
}

#[tokio::test]
async fn a_crawl_stops_at_its_depth_and_honours_nofollow_under_robots() {
    let server = Server::start().await;
    let v = Volley::new();
    v.fetch_ok(
        &[server.url("/site/index.html")],
        &["--follow", "--max-depth", "1"],
    )
    .await;
    let pages: Vec<String> = crawled(&v, &server).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        pages,
        [
            "/site/a.html",
            "/site/b.html",
            "/site/c.html",
            "/site/index.html"
        ],
        "the seed and the pages it links to"
    );

    let v = Volley::new();
    v.fetch_ok(
        &[server.url("/site/index.html")],
        &["--follow", "--respect-robots", "--retries", "0"],
    )
    .await;
    let pages: Vec<String> = crawled(&v, &server).into_iter().map(|(p, _)| p).collect();
    assert!(
        !pages.contains(&"/site/c.html".to_owned()),
        "c.html is named only by a nofollow link: {pages:?}"
    );
    assert!(pages.contains(&"/site/deep/e.html".to_owned()), "{pages:?}");
    let e = v
        .rows()
        .into_iter()
        .find(|r| r.url.ends_with("/site/deep/e.html"))
        .expect("e.html has an outcome");
    assert!(
        e.message
            .as_deref()
            .is_some_and(|m| m.starts_with("noindex")),
        "noindex is said on the page's outcome: {e:?}"
    );
}

#[tokio::test]
async fn a_refreshed_crawl_follows_the_remembered_links_of_pages_it_does_not_read_again() {
    let server = Server::start().await;
    let v = Volley::new();
    let seed = [server.url("/site/index.html")];
    let crawl = ["--follow", "--retries", "0"];
    v.fetch_ok(&seed, &[&crawl[..], &["--job", "first"]].concat())
        .await;
    let before = server.total();
    let out = v
        .fetch_ok(
            &seed,
            &[&crawl[..], &["--job", "again", "--max-age", "1h"]].concat(),
        )
        .await;
    let conn = rusqlite::Connection::open(v.db()).expect("open the database");
    let of = |job: &str| -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare(
                "SELECT t.url, o.class FROM outcomes o JOIN tasks t ON t.id = o.task_id \
                 JOIN jobs j ON j.id = t.job_id WHERE j.name = ?1 ORDER BY t.url",
            )
            .expect("a query");
        stmt.query_map([job], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let (first, again) = (of("first"), of("again"));
    let urls = |rows: &[(String, String)]| rows.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>();
    assert_eq!(
        urls(&again),
        urls(&first),
        "the same pages: {}",
        stderr(&out)
    );
    assert_eq!(
        again.iter().filter(|(_, c)| c == "fresh").count(),
        7,
        "the pages read before were not read again: {again:?}"
    );
    assert_eq!(
        server.total() - before,
        1,
        "only the 404 was asked again (the refused port counts no request here)"
    );
}

#[tokio::test]
async fn a_link_check_lists_each_broken_url_with_every_page_linking_to_it() {
    let server = Server::start().await;
    let v = crawl(&server, "/site/index.html", &[]).await;
    let out = v.run(&["export", "--broken"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let base = server.url("");
    let mut broken: Vec<(String, String, Vec<String>)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let mut from: Vec<String> = row["linked_from"]
                .as_array()
                .expect("linked_from is an array")
                .iter()
                .map(|p| {
                    p.as_str()
                        .expect("a URL")
                        .trim_start_matches(&base)
                        .to_owned()
                })
                .collect();
            from.sort();
            let url = row["url"].as_str().expect("url").trim_start_matches(&base);
            (
                url.to_owned(),
                row["class"].as_str().expect("class").to_owned(),
                from,
            )
        })
        .collect();
    broken.sort();
    assert_eq!(
        broken,
        [
            (
                "/site/missing.html".to_owned(),
                "http_4xx".to_owned(),
                vec!["/site/b.html".to_owned(), "/site/deep/e.html".to_owned()]
            ),
            (
                "http://127.0.0.1:9/gone".to_owned(),
                "connect_refused".to_owned(),
                // a.html?x=1 is a page of its own, with a.html's body.
                vec![
                    "/site/a.html".to_owned(),
                    "/site/a.html?x=1".to_owned(),
                    "/site/deep/d.html".to_owned()
                ]
            ),
        ]
    );
    let csv = v.run(&["export", "--broken", "--format", "csv"]).await;
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(
        csv.starts_with("url,class,status,message,linked_from\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

#[tokio::test]
async fn a_sitemap_index_its_gzip_child_and_a_child_over_the_caps_are_read() {
    let server = Server::start().await;
    let v = crawl(&server, "/maps/index.xml", &["--max-depth", "2"]).await;
    assert_eq!(
        crawled(&v, &server),
        [
            ("/maps/big.xml", "invalid_sitemap"),
            ("/maps/index.xml", "ok"),
            ("/maps/pages.xml.gz", "ok"),
            ("/site/c.html", "ok"),
            ("/site/deep/e.html", "ok"),
            ("/site/index.html", "ok"),
        ]
        .map(|(p, c)| (p.to_owned(), c.to_owned()))
    );
    let big = v
        .rows()
        .into_iter()
        .find(|r| r.url.ends_with("/maps/big.xml"))
        .expect("big.xml has an outcome");
    assert!(
        big.message
            .as_deref()
            .is_some_and(|m| m.contains("more than the protocol's 50000 URLs")),
        "{big:?}"
    );
    // <lastmod> is kept with the page's task.
    let conn = rusqlite::Connection::open(v.db()).expect("open the database");
    let meta: String = conn
        .query_row(
            "SELECT meta FROM tasks WHERE url LIKE '%/site/c.html'",
            [],
            |r| r.get(0),
        )
        .expect("c.html's task");
    assert_eq!(meta, r#"{"lastmod":"2026-11-30"}"#);
}

#[tokio::test]
async fn the_sitemaps_of_a_seeds_robots_txt_are_followed_with_sitemaps() {
    let server = Server::start().await;
    server.set_robots(
        200,
        "User-agent: *\nAllow: /\nSitemap: /maps/pages.xml.gz\n",
    );
    let with = crawl(&server, "/ok/1", &["--sitemaps", "--max-depth", "2"]).await;
    assert_eq!(
        crawled(&with, &server)
            .into_iter()
            .map(|(p, _)| p)
            .collect::<Vec<_>>(),
        [
            "/maps/pages.xml.gz",
            "/ok/1",
            "/site/c.html",
            "/site/deep/e.html"
        ]
    );
    let without = crawl(&server, "/ok/1", &[]).await;
    assert_eq!(crawled(&without, &server).len(), 1, "the seed alone");
}

#[tokio::test]
async fn a_crawls_page_caps_hold_per_job_and_per_host_and_say_what_they_left() {
    let server = Server::start().await;
    let v = crawl(&server, "/graph/0", &["--max-crawl-pages", "50"]).await;
    let rows = v.rows();
    assert_eq!(rows.len(), 51, "the seed and 50 pages found from it");
    let noted: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.message.as_deref())
        .filter(|m| m.contains("links not added: past --max-crawl-pages 50"))
        .collect();
    assert!(
        !noted.is_empty(),
        "the pages whose links were past the cap say so"
    );

    let v = crawl(&server, "/site/index.html", &["--max-host-pages", "3"]).await;
    let pages = crawled(&v, &server);
    assert_eq!(
        pages.len(),
        4,
        "the seed and 3 pages of its host: {pages:?}"
    );
    assert!(
        pages.iter().any(|(p, _)| p == "/site/index.html"),
        "{pages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_scope_spans_the_hosts_of_one_registrable_domain_only() {
    let dns = support::Dns::start().await;
    let server = Server::start().await;
    let port = server.addr.port();
    let dns_arg = dns.addr.to_string();
    let seed = format!("http://a.example.co.uk:{port}/domains/a");
    let crawl = |scope: &'static str| {
        let (seed, dns_arg) = (seed.clone(), dns_arg.clone());
        async move {
            let v = Volley::new();
            let args = ["--follow", "--scope", scope, "--dns-server", &dns_arg];
            v.fetch_ok(&[seed], &args).await;
            let mut urls: Vec<String> = v.rows().into_iter().map(|r| r.url).collect();
            urls.sort();
            urls
        }
    };
    assert_eq!(
        crawl("domain").await,
        [
            format!("http://a.example.co.uk:{port}/domains/a"),
            format!("http://b.example.co.uk:{port}/domains/b"),
        ],
        "b.example.co.uk shares example.co.uk; other.co.uk is another domain under co.uk"
    );
    assert_eq!(
        crawl("host").await,
        [format!("http://a.example.co.uk:{port}/domains/a")]
    );
}

/// The pages of a crawl of the test site seeded at `seed` with `flags`.
async fn crawl_of(server: &Server, seed: &str, flags: &[&str]) -> Vec<String> {
    let v = crawl(server, seed, flags).await;
    crawled(&v, server).into_iter().map(|(p, _)| p).collect()
}

#[tokio::test]
async fn a_crawls_scope_prefix_include_exclude_and_strip_query_decide_its_pages() {
    let server = Server::start().await;
    assert_eq!(
        crawl_of(&server, "/site/deep/d.html", &["--scope", "prefix"]).await,
        ["/site/deep/d.html", "/site/deep/e.html"],
        "under the seed's directory, on its port"
    );
    assert_eq!(
        crawl_of(
            &server,
            "/site/index.html",
            &["--exclude", "deep/", "--exclude", ":9/"]
        )
        .await,
        [
            "/site/a.html",
            "/site/a.html?x=1",
            "/site/b.html",
            "/site/c.html",
            "/site/index.html",
            "/site/missing.html"
        ]
    );
    assert_eq!(
        crawl_of(
            &server,
            "/site/index.html",
            &["--include", r"/site/(a|b)\.html"]
        )
        .await,
        [
            "/site/a.html",
            "/site/a.html?x=1",
            "/site/b.html",
            "/site/index.html"
        ],
        "the seed, and the links the pattern matches anywhere in the URL"
    );
    let stripped = crawl_of(&server, "/site/index.html", &["--strip-query", "?"]).await;
    assert!(
        !stripped.contains(&"/site/a.html?x=1".to_owned())
            && stripped.contains(&"/site/a.html".to_owned()),
        "a.html?x=1 is a.html once x is dropped: {stripped:?}"
    );

    // A link check: out-of-scope links are fetched once, never followed,
    // with HEAD first, and GET when the HEAD is answered 4xx.
    let hits_before = server.uri_hits("/site/a.html?x=1");
    let (b_before, missing_before) = (
        server.hits("/site/b.html"),
        server.hits("/site/missing.html"),
    );
    assert_eq!(
        crawl_of(
            &server,
            "/site/deep/d.html",
            &["--scope", "prefix", "--check-external"]
        )
        .await,
        [
            "/site/b.html",
            "/site/deep/d.html",
            "/site/deep/e.html",
            "/site/missing.html",
            "http://127.0.0.1:9/gone"
        ]
    );
    assert_eq!(
        server.uri_hits("/site/a.html?x=1"),
        hits_before,
        "b.html was checked, and its links not followed"
    );
    assert_eq!(
        (
            server.hits("/site/b.html") - b_before,
            server.hits("/site/missing.html") - missing_before
        ),
        (1, 2),
        "a HEAD for b.html; a HEAD then a GET for the 404"
    );

    let v = Volley::new();
    let out = v.run(&fetch_args("urls.txt", &["--scope", "domain"])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--scope shapes a crawl: give --follow too"),
        "{}",
        stderr(&out)
    );
    let out = v
        .run(&fetch_args(
            "urls.txt",
            &["--follow", "--include", "(unclosed"],
        ))
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--include '(unclosed' is not a regular expression"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_killed_three_times_finds_the_same_pages_and_fetches_none_twice() {
    let server = Server::start().await;
    let pages = support::GRAPH_PAGES;
    let args = ["--follow", "--concurrency", "16", "--per-host", "16"];

    // The crawl uninterrupted, on its own server.
    let whole = Server::start().await;
    let v = Volley::new();
    v.fetch_ok(&[whole.url("/graph/0")], &args).await;
    let base = whole.url("");
    let mut expected: Vec<String> = v
        .rows()
        .into_iter()
        .map(|r| r.url.trim_start_matches(&base).to_owned())
        .collect();
    expected.sort();
    assert_eq!(expected.len() as u64, pages, "every page of the site");

    // The same crawl, killed three times at random moments.
    let v = Volley::new();
    let list = v.write_lines("urls.txt", &[server.url("/graph/0")]);
    let run_args = fetch_args(list.to_str().expect("utf-8 path"), &args);
    let mut seed = support::random_seed();
    eprintln!("crawl kill seed {seed}");
    let mut finished: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for round in 0..3 {
        let mut child = v.command(&run_args).spawn().expect("start volley");
        let target = server.total() + 200 + support::next_random(&mut seed) % 600;
        server.wait_for_requests(target).await;
        child.start_kill().expect("SIGKILL volley");
        let status = child.wait().await.expect("reap volley");
        assert!(
            !status.success(),
            "round {round}: the crawl finished before it was killed"
        );
        for row in v.rows() {
            let hits = server.hits(&support::path_of(&row.url));
            finished.entry(row.url).or_insert(hits);
        }
    }
    let out = v.run(&run_args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let base = server.url("");
    let mut found: Vec<String> = v
        .rows()
        .into_iter()
        .map(|r| r.url.trim_start_matches(&base).to_owned())
        .collect();
    found.sort();
    assert_eq!(
        found, expected,
        "the same pages as the crawl that was not killed"
    );
    assert_eq!(v.task_states().get("pending"), None);
    for (url, hits) in &finished {
        assert_eq!(
            server.hits(&support::path_of(url)),
            *hits,
            "{url} was fetched again after its outcome was committed"
        );
    }
    eprintln!(
        "crawl kill loop: 3 kills, {} pages committed before the last, {} requests for {pages} pages",
        finished.len(),
        server.total()
    );
}
