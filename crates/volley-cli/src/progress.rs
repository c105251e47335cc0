//! What a person sees during a run: a progress bar on a terminal, plain
//! periodic lines otherwise, nothing with `--quiet`. Everything goes to
//! stderr; stdout stays for data.

use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;
use volley::Progress;
use volley::stats::ProgressSnapshot;

/// How often the bar is refreshed.
const BAR_TICK: Duration = Duration::from_millis(150);
/// How often a plain progress line is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Which display to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// An indicatif bar.
    Bar,
    /// A line every few seconds.
    Lines,
    /// Nothing.
    Quiet,
}

impl Display {
    /// The bar on a terminal, lines otherwise, nothing when `quiet`.
    pub fn choose(quiet: bool) -> Display {
        if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            Display::Bar
        } else {
            Display::Lines
        }
    }
}

/// Shows progress until `done` fires; returns when the display is cleared.
pub async fn show(display: Display, progress: Arc<Progress>, done: CancellationToken) {
    match display {
        Display::Quiet => done.cancelled().await,
        Display::Bar => bar(progress, done).await,
        Display::Lines => lines(progress, done).await,
    }
}

async fn bar(progress: Arc<Progress>, done: CancellationToken) {
    let style = ProgressStyle::with_template(
        "{spinner:.green} {elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} {rate} ETA {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0}/s", state.per_sec());
        },
    )
    .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
    let start = progress.snapshot();
    bar.set_position(start.finished);
    bar.reset_eta();
    // The rate and the ETA count this run only: when the run loads what
    // earlier runs recorded, the bar jumps there and starts measuring anew.
    let mut earlier = start.earlier;
    let mut tick = tokio::time::interval(BAR_TICK);
    loop {
        tokio::select! {
            () = done.cancelled() => break,
            _ = tick.tick() => {}
        }
        let s = progress.snapshot();
        if s.earlier != earlier {
            earlier = s.earlier;
            bar.set_position(s.finished.max(s.earlier));
            bar.reset_eta();
        }
        bar.set_length(s.total);
        bar.set_position(s.finished);
        bar.set_message(message(&s));
        bar.tick();
    }
    bar.finish_and_clear();
}

fn message(s: &ProgressSnapshot) -> String {
    let mut m = format!("{} failed, {} in flight", s.failed, s.in_flight);
    if s.retries > 0 {
        m.push_str(&format!(", {} retries", s.retries));
    }
    if !s.ingest_complete {
        m.push_str(", reading input");
    }
    m
}

async fn lines(progress: Arc<Progress>, done: CancellationToken) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(LINE_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            () = done.cancelled() => break,
            _ = tick.tick() => {}
        }
        let s = progress.snapshot();
        // This run's outcomes only, not those of the runs it resumes.
        let rate = s.this_run() as f64 / started.elapsed().as_secs_f64();
        let pct = if s.total > 0 {
            100.0 * s.finished as f64 / s.total as f64
        } else {
            0.0
        };
        let _ = writeln!(
            std::io::stderr().lock(),
            "volley: {}/{}{} done ({pct:.1}%), {:.1} requests/s, {}",
            s.finished,
            s.total,
            if s.ingest_complete { "" } else { "+" },
            rate,
            message(&s)
        );
    }
}
