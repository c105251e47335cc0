//! Web archives (`--warc`): every exchange as WARC/1.1 records, read back
//! here record by record (each its own gzip member) with their digests
//! checked; the files cut back after a crash; revisits. The third-party
//! readers (warcio, pywb) check the same files in `scripts/archive-test.sh`.

mod support;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use support::{Server, Volley, fetch_args, stderr};

/// One record of a file: where its member starts and ends, its fields and
/// its block.
#[derive(Debug)]
struct Record {
    offset: u64,
    end: u64,
    fields: BTreeMap<String, String>,
    block: Vec<u8>,
}

impl Record {
    fn field(&self, name: &str) -> &str {
        self.fields
            .get(&name.to_ascii_lowercase())
            .map_or("", String::as_str)
    }

    fn kind(&self) -> &str {
        self.field("WARC-Type")
    }

    /// The HTTP head and payload of a response or revisit block.
    fn http(&self) -> (String, &[u8]) {
        let at = self
            .block
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(self.block.len(), |p| p + 4);
        (
            String::from_utf8_lossy(&self.block[..at]).into_owned(),
            &self.block[at..],
        )
    }
}

fn sha1_base32(parts: &[&[u8]]) -> String {
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    for part in parts {
        h.update(part);
    }
    format!("sha1:{}", data_encoding::BASE32.encode(&h.finalize()))
}

/// Every record of `path`, member by member, each checked: one member per
/// record, `Content-Length` exact, the trailer there, the block digest
/// (and a response's payload digest) right.
fn records(path: &Path) -> Vec<Record> {
    let bytes = std::fs::read(path).expect("read the WARC file");
    let mut rest: &[u8] = &bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let offset = (bytes.len() - rest.len()) as u64;
        let mut member = Vec::new();
        let mut gz = flate2::bufread::GzDecoder::new(rest);
        gz.read_to_end(&mut member)
            .unwrap_or_else(|e| panic!("{}: member at {offset}: {e}", path.display()));
        rest = gz.into_inner();
        let end = (bytes.len() - rest.len()) as u64;
        let split = member
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a header ends");
        let head = String::from_utf8(member[..split].to_vec()).expect("a UTF-8 header");
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some("WARC/1.1"), "the version line");
        let fields: BTreeMap<String, String> = lines
            .map(|l| {
                let (k, v) = l.split_once(": ").expect("name: value");
                (k.to_ascii_lowercase(), v.to_owned())
            })
            .collect();
        let len: usize = fields["content-length"].parse().expect("a length");
        let block = member[split + 4..split + 4 + len].to_vec();
        assert_eq!(
            &member[split + 4 + len..],
            b"\r\n\r\n",
            "one record per member, ending in CRLF CRLF"
        );
        let record = Record {
            offset,
            end,
            fields,
            block,
        };
        if let Some(digest) = record.fields.get("warc-block-digest") {
            assert_eq!(digest, &sha1_base32(&[&record.block]), "block digest");
        }
        if record.kind() == "response" {
            let (_, payload) = record.http();
            assert_eq!(
                record.field("WARC-Payload-Digest"),
                sha1_base32(&[payload]),
                "payload digest"
            );
        }
        out.push(record);
    }
    out
}

/// The job's WARC files, in name order.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.to_string_lossy().ends_with(".warc.gz"));
    files.sort();
    files
}

/// Each outcome's WARC span, by URL: (file, offset, length).
fn spans(v: &Volley) -> BTreeMap<String, (String, u64, u64)> {
    let conn = rusqlite::Connection::open(v.db()).expect("open the database");
    let mut stmt = conn
        .prepare(
            "SELECT t.url, o.warc_file, o.warc_offset, o.warc_length FROM outcomes o \
             JOIN tasks t ON t.id = o.task_id WHERE o.warc_file IS NOT NULL",
        )
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test]
async fn every_exchange_is_archived_as_received_with_hops_and_revisits() {
    let server = Server::start().await;
    let v = Volley::new();
    let refused = format!("http://127.0.0.1:{}/nothing", support::free_port());
    let urls = vec![
        server.url("/gzip"),
        server.url("/redirect/2"),
        server.url("/ok/1"),
        server.url("/ok/1?again"),
        server.url("/status/404"),
        server.url("/big/300000"),
        refused.clone(),
    ];
    let prefix = v.path("warc/test");
    let prefix = prefix.to_str().expect("utf-8 path");
    let out = v
        .fetch_ok(&urls, &["--warc", prefix, "--retries", "0"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let files = files(&v.path("warc"));
    assert_eq!(files.len(), 1, "one file: {files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("test-") && name.ends_with("-00001.warc.gz"),
        "PREFIX-<timestamp>-<serial>.warc.gz: {name}"
    );
    let records = records(&files[0]);
    assert_eq!(records[0].kind(), "warcinfo", "warcinfo first");
    let info = String::from_utf8_lossy(&records[0].block).into_owned();
    assert!(info.contains("software: volley/"), "{info}");

    // Requests and responses in pairs, joined by WARC-Concurrent-To.
    let by_id: BTreeMap<&str, &Record> = records
        .iter()
        .map(|r| (r.field("WARC-Record-ID"), r))
        .collect();
    let requests: Vec<&Record> = records.iter().filter(|r| r.kind() == "request").collect();
    let answered: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r.kind(), "response" | "revisit"))
        .collect();
    assert_eq!(
        requests.len(),
        answered.len(),
        "a request for each response"
    );
    for request in &requests {
        let to = by_id[request.field("WARC-Concurrent-To")];
        assert_eq!(
            to.field("WARC-Target-URI"),
            request.field("WARC-Target-URI")
        );
        assert_eq!(to.field("WARC-IP-Address"), "127.0.0.1");
        let head = String::from_utf8_lossy(&request.block);
        assert!(head.starts_with("GET /"), "{head}");
        assert!(head.contains("\r\nuser-agent: volley/"), "{head}");
    }
    let targets: Vec<&str> = answered
        .iter()
        .map(|r| r.field("WARC-Target-URI"))
        .collect();
    assert!(
        !targets.iter().any(|t| t.contains("/nothing")),
        "nothing is archived for a failure before any response"
    );
    // Each redirect hop is its own pair.
    for hop in ["/redirect/2", "/redirect/1", "/redirect/0"] {
        assert!(
            targets.contains(&server.url(hop).as_str()),
            "{hop} archived: {targets:?}"
        );
    }
    // The gzip body as received: still gzip, with its Content-Encoding.
    let gzip = answered
        .iter()
        .find(|r| r.field("WARC-Target-URI") == server.url("/gzip"))
        .expect("the gzip response");
    let (head, payload) = gzip.http();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(payload)
        .read_to_string(&mut decoded)
        .expect("the payload is the gzip stream");
    assert_eq!(decoded, support::gzip_text());
    // A streamed (chunked) body is recorded de-chunked, whole.
    let big = answered
        .iter()
        .find(|r| r.field("WARC-Target-URI") == server.url("/big/300000"))
        .expect("the big response");
    assert_eq!(big.http().1.len(), 300_000);
    // The same payload twice: whichever was archived second is a revisit
    // of the other (both were fetched at once).
    let pair: Vec<&&Record> = answered
        .iter()
        .filter(|r| r.field("WARC-Target-URI").contains("/ok/1"))
        .collect();
    assert_eq!(pair.len(), 2);
    let (first, second) = (pair[0], pair[1]);
    assert_eq!((first.kind(), second.kind()), ("response", "revisit"));
    assert!(
        second
            .field("WARC-Profile")
            .ends_with("/identical-payload-digest")
    );
    assert_eq!(
        second.field("WARC-Refers-To-Target-URI"),
        first.field("WARC-Target-URI")
    );
    assert_eq!(
        second.field("WARC-Refers-To"),
        first.field("WARC-Record-ID")
    );

    // Each outcome's span holds exactly its records.
    let spans = spans(&v);
    assert_eq!(
        spans.len(),
        urls.len() - 1,
        "every outcome but the refused one"
    );
    for (url, (file, offset, length)) in &spans {
        assert_eq!(Path::new(file), files[0].as_path());
        let inside: Vec<&str> = records
            .iter()
            .filter(|r| r.offset >= *offset && r.end <= offset + length)
            .map(|r| r.field("WARC-Target-URI"))
            .collect();
        assert!(inside.contains(&url.as_str()), "{url}: {inside:?}");
        assert!(
            records.iter().any(|r| r.offset == *offset),
            "{url}: its span starts at a record"
        );
    }

    // The CDXJ index: one sorted line per response or revisit.
    let out = v.run(&["export", "--cdxj"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), answered.len());
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "sorted for binary search");
}

#[tokio::test]
async fn the_same_payloads_archived_again_are_only_revisits() {
    let server = Server::start().await;
    let v = Volley::new();
    let urls: Vec<String> = (0..20)
        .map(|i| server.url(&format!("/big/{}", 1000 + i)))
        .collect();
    let prefix = v.path("warc/w");
    let prefix = prefix.to_str().expect("utf-8 path");
    let list = v.write_lines("urls.txt", &urls);
    let list = list.to_str().expect("utf-8 path");
    let out = v
        .run(&fetch_args(list, &["--job", "first", "--warc", prefix]))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    // The server has no validators: the same payloads again are revisits.
    let out = v
        .run(&fetch_args(list, &["--job", "second", "--warc", prefix]))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let files = files(&v.path("warc"));
    assert_eq!(files.len(), 2, "a file per run: {files:?}");
    let kinds = |f: &Path| -> BTreeMap<String, usize> {
        let mut kinds = BTreeMap::new();
        for r in records(f) {
            *kinds.entry(r.kind().to_owned()).or_default() += 1;
        }
        kinds
    };
    assert_eq!(kinds(&files[0]).get("response"), Some(&20));
    let second = kinds(&files[1]);
    assert_eq!(second.get("response"), None, "{second:?}");
    assert_eq!(second.get("revisit"), Some(&20));
}

#[tokio::test]
async fn files_roll_over_at_the_size_cap_each_with_its_warcinfo() {
    let server = Server::start().await;
    let v = Volley::new();
    let urls: Vec<String> = (0..12)
        .map(|i| server.url(&format!("/big/{}", 20_000 + i)))
        .collect();
    let prefix = v.path("warc/r");
    let out = v
        .fetch_ok(
            &urls,
            &[
                "--warc",
                prefix.to_str().expect("utf-8"),
                "--warc-max-size",
                "1K",
                "--concurrency",
                "1",
            ],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let files = files(&v.path("warc"));
    assert!(files.len() >= 4, "{} files", files.len());
    let mut responses = 0;
    for f in &files {
        let records = records(f);
        assert_eq!(records[0].kind(), "warcinfo", "{}", f.display());
        responses += records.iter().filter(|r| r.kind() == "response").count();
    }
    assert_eq!(responses, urls.len());
}

#[tokio::test]
async fn a_torn_tail_is_cut_back_before_the_next_run_appends() {
    let server = Server::start().await;
    let v = Volley::new();
    let prefix = v.path("warc/t");
    let prefix = prefix.to_str().expect("utf-8 path");
    let mut urls: Vec<String> = (0..5).map(|i| server.url(&format!("/ok/{i}"))).collect();
    let list = v.write_lines("urls.txt", &urls);
    let args = fetch_args(list.to_str().expect("utf-8"), &["--warc", prefix]);
    let out = v.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let file = files(&v.path("warc")).remove(0);
    let whole = std::fs::metadata(&file).expect("the file").len();
    // What a kill -9 mid-record leaves: half a gzip member.
    let torn = std::fs::read(&file).expect("read")[..200].to_vec();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .expect("open");
    std::io::Write::write_all(&mut f, &torn).expect("tear the tail");
    drop(f);
    // The job goes on with more input: the torn tail is cut, the new
    // records follow the committed ones.
    urls.extend((5..8).map(|i| server.url(&format!("/ok/{i}"))));
    v.write_lines("urls.txt", &urls);
    let out = v.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        files(&v.path("warc")),
        vec![file.clone()],
        "appended, no new file"
    );
    let records = records(&file);
    let responses = records.iter().filter(|r| r.kind() == "response").count();
    assert_eq!(responses, 8);
    assert!(
        records.iter().any(|r| r.offset == whole),
        "appended at the cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_three_times_leaves_whole_records_one_per_outcome() {
    let server = Server::start().await;
    let v = Volley::new();
    let prefix = v.path("warc/k");
    let urls: Vec<String> = (0..3000)
        .map(|i| server.url(&format!("/big/{}", 2000 + i)))
        .collect();
    let list = v.write_lines("urls.txt", &urls);
    let args = fetch_args(
        list.to_str().expect("utf-8"),
        &[
            "--warc",
            prefix.to_str().expect("utf-8"),
            "--warc-max-size",
            "256K",
        ],
    );
    let mut seed = support::random_seed();
    eprintln!("warc kill seed {seed}");
    for round in 0..3 {
        let mut child = v.command(&args).spawn().expect("start volley");
        let target = server.total() + 300 + support::next_random(&mut seed) % 500;
        server.wait_for_requests(target).await;
        child.start_kill().expect("SIGKILL volley");
        let status = child.wait().await.expect("reap volley");
        assert!(!status.success(), "round {round}: finished before the kill");
    }
    let out = v.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    v.assert_one_outcome_per_task(3000);
    // Every file reads whole (no torn member), and holds exactly one
    // response or revisit per outcome: no orphans of uncommitted outcomes.
    let mut archived = 0;
    for f in files(&v.path("warc")) {
        archived += records(&f)
            .iter()
            .filter(|r| matches!(r.kind(), "response" | "revisit"))
            .count();
    }
    assert_eq!(archived, 3000, "one response or revisit per outcome");
    assert_eq!(spans(&v).len(), 3000);
}

#[tokio::test]
async fn archive_flags_without_warc_or_with_bad_values_exit_2() {
    let v = Volley::new();
    let list = v.write_lines("urls.txt", &["http://127.0.0.1:9/".to_owned()]);
    let list = list.to_str().expect("utf-8");
    for (args, says) in [
        (
            vec!["--warc-digest", "sha256"],
            "--warc-digest shapes an archive: give --warc PREFIX too",
        ),
        (vec!["--warc", "a", "--warc-digest", "md5"], "--warc-digest"),
        (
            vec!["--warc", "a", "--warc-max-size", "0"],
            "--warc-max-size",
        ),
    ] {
        let out = v.run(&fetch_args(list, &args)).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}
