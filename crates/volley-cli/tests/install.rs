//! What an installed `volley` gives a shell user besides the command:
//! `--version`, completions and manual pages, all generated from the one
//! command-line definition. Each flag of the engine's option table must
//! reach them (a flag added to the table reaches them with no other edit).

use std::process::{Command, Output};

use volley::options::table::{Kind, OPTIONS};

fn volley(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_volley"))
        .args(args)
        .output()
        .expect("run volley");
    assert!(
        out.status.success(),
        "volley {args:?} exited {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(volley(args).stdout).expect("UTF-8 output")
}

#[test]
fn version_names_the_commit_the_features_and_sqlite() {
    let long = stdout(&["--version"]);
    let first = long.lines().next().unwrap_or_default();
    assert_eq!(first, format!("volley {}", env!("CARGO_PKG_VERSION")));
    let commit = long
        .lines()
        .find_map(|l| l.strip_prefix("commit:"))
        .map(str::trim)
        .unwrap_or_default();
    assert!(
        commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()) && commit.len() >= 7,
        "a commit hash: {long}"
    );
    assert!(
        long.contains("features: postgresql, warc, parquet"),
        "{long}"
    );
    assert!(
        long.contains(&format!(
            "sqlite:   {}",
            volley::store::sqlite::sqlite_version()
        )),
        "{long}"
    );
    // -V stays one line, for scripts.
    assert_eq!(
        stdout(&["-V"]).trim(),
        format!("volley {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn every_shell_gets_every_option() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&["completions", shell]);
        for opt in OPTIONS.iter().filter(|opt| !opt.is(Kind::NoFlag)) {
            assert!(
                script.contains(&format!("--{}", opt.key))
                    || script.contains(&format!("-l {}", opt.key)),
                "{shell} completions lack --{}",
                opt.key
            );
        }
    }
}

/// bash's own completion machinery, run on the generated script: what a
/// user gets after `volley fetch --per-h<TAB>`.
#[test]
fn bash_completes_a_flag_and_a_verb() {
    let script = stdout(&["completions", "bash"]);
    let complete = |line: &[&str]| -> String {
        let words = line
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ");
        // As bash calls a completion function: the command, the word
        // being completed and the word before it.
        let (cur, prev) = (line[line.len() - 1], line[line.len() - 2]);
        let program = format!(
            "{script}\nCOMP_WORDS=({words}); COMP_CWORD={}; COMP_LINE=\"${{COMP_WORDS[*]}}\"; \
             COMP_POINT=${{#COMP_LINE}}; _volley volley '{cur}' '{prev}'; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            line.len() - 1
        );
        let out = Command::new("bash")
            .args(["--norc", "-c", &program])
            .output()
            .expect("run bash");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let flags = complete(&["volley", "fetch", "--per-h"]);
    assert_eq!(flags.lines().collect::<Vec<_>>(), ["--per-host"], "{flags}");
    let verbs = complete(&["volley", "se"]);
    assert_eq!(verbs.lines().collect::<Vec<_>>(), ["serve"], "{verbs}");
}

#[test]
fn man_pages_document_each_verb_and_option() {
    let page = stdout(&["man"]);
    assert!(page.contains(".TH volley 1"), "{page}");
    assert!(page.contains("volley\\-fetch(1)"), "the verbs are listed");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("man1");
    volley(&["man", "--dir", path.to_str().expect("a UTF-8 path")]);
    let fetch = std::fs::read_to_string(path.join("volley-fetch.1")).expect("volley-fetch.1");
    assert!(fetch.contains(".TH volley-fetch 1"), "{fetch}");
    for opt in OPTIONS.iter().filter(|opt| !opt.is(Kind::NoFlag)) {
        // roff escapes each '-' of a flag as "\-".
        let flag = format!("\\-\\-{}", opt.key.replace('-', "\\-"));
        assert!(fetch.contains(&flag), "volley-fetch.1 lacks --{}", opt.key);
    }
    for verb in [
        "status",
        "export",
        "delete",
        "work",
        "serve",
        "completions",
        "man",
    ] {
        assert!(
            path.join(format!("volley-{verb}.1")).exists(),
            "no page for volley {verb}"
        );
    }
}
