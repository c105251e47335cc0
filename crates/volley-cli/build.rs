//! Puts the git commit the binary is built from into `VOLLEY_COMMIT`, for
//! `volley --version`: `VOLLEY_COMMIT` from the environment if set (a
//! build from a source archive), else `git rev-parse`, else "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=VOLLEY_COMMIT");
    let commit = std::env::var("VOLLEY_COMMIT").ok().or_else(|| {
        // Built again when HEAD moves: the file HEAD, the branch's ref
        // and the packed refs.
        // (Only files that exist: cargo runs the script again on every
        // build for one that does not.)
        if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
            let head = git(&["symbolic-ref", "-q", "HEAD"]);
            let files = ["HEAD", "packed-refs"].into_iter().chain(head.as_deref());
            for file in files.map(|f| format!("{dir}/{f}")) {
                if std::path::Path::new(&file).exists() {
                    println!("cargo:rerun-if-changed={file}");
                }
            }
        }
        git(&["rev-parse", "--short=10", "HEAD"])
    });
    println!(
        "cargo:rustc-env=VOLLEY_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
}
