//! Many hosts, end to end: state and sockets bounded by the window. Apart
//! from `politeness.rs` because its 5,000 connections load the machine, and
//! the timing tests there must not share the CPU with it (cargo runs test
//! binaries one after another).

mod support;

use std::time::Duration;

use support::{Server, Volley, fetch_args};

/// Sockets `pid` holds open now.
fn open_sockets(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.filter_map(Result::ok)
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_open_sockets_stay_bounded_over_thousands_of_hosts() {
    // 5,000 hosts, each named once: a link check's shape. Every host needs
    // a connection of its own; none should outlive its one request.
    let server = Server::start_on_all_loopback().await;
    let port = server.addr.port();
    let hosts = 5000u32;
    let urls: Vec<String> = (256..256 + hosts)
        .map(|i| format!("http://127.0.{}.{}:{port}/ok/{i}", i >> 8, i & 255))
        .collect();
    let v = Volley::new();
    let list = v.write_lines("urls.txt", &urls);
    let concurrency = 16;
    let mut child = v
        .command(&fetch_args(
            list.to_str().expect("utf-8 path"),
            &["--concurrency", "16"],
        ))
        .spawn()
        .expect("volley starts");
    let pid = child.id().expect("a running child");
    // Sample the child's sockets until it exits.
    let mut peak_sockets = 0;
    let status = loop {
        peak_sockets = peak_sockets.max(open_sockets(pid));
        tokio::select! {
            status = child.wait() => break status.expect("volley ran"),
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    };
    let mut err = String::new();
    if let Some(mut stderr_pipe) = child.stderr.take() {
        use tokio::io::AsyncReadExt as _;
        stderr_pipe
            .read_to_string(&mut err)
            .await
            .expect("read stderr");
    }
    assert!(status.success(), "{err}");
    v.assert_one_outcome_per_task(u64::from(hosts));
    assert_eq!(server.total(), u64::from(hosts));
    assert!(
        v.rows().iter().all(|r| r.class == "ok"),
        "every host answered"
    );
    // Sockets: the requests in flight, plus the database and a few more;
    // idle keep-alive connections to hosts never asked again would be
    // thousands.
    eprintln!("{hosts} hosts at concurrency {concurrency}: at most {peak_sockets} sockets open");
    assert!(
        peak_sockets <= 4 * concurrency,
        "{peak_sockets} sockets open at concurrency {concurrency}"
    );
    // Host state: the hosts of the window (1,024 tasks here), not all.
    let held: usize = err
        .split("state held for at most ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no host-state figure in the summary: {err}"));
    eprintln!("host state held for at most {held} hosts at once");
    assert!(held <= 1024 + 512, "state held for {held} of {hosts} hosts");
}
