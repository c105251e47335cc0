//! Turning the command line's choice of inputs into an engine source.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use volley::input::{
    CsvSource, InputSource, Inputs, JsonlSource, LineSource, Template, TemplateSource,
};

use crate::args::{InputFormat, SourceChoice};

/// Whether the start of `path` holds NUL bytes, or more than 30 % of bytes
/// that are neither UTF-8 text nor whitespace. An unreadable file is left
/// for the real read to report.
fn looks_binary(path: &Path) -> bool {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(8192);
    let read = File::open(path).and_then(|f| f.take(8192).read_to_end(&mut head));
    if read.is_err() || head.is_empty() {
        return false;
    }
    if head.contains(&0) {
        return true;
    }
    let text = String::from_utf8_lossy(&head);
    let odd = text
        .chars()
        .filter(|c| *c == char::REPLACEMENT_CHARACTER || (c.is_control() && !c.is_whitespace()))
        .count();
    odd * 10 > text.chars().count() * 3
}

/// Bytes of input read ahead.
const INPUT_BUFFER_BYTES: usize = 64 * 1024;

/// The inputs of a run, checked but not yet opened.
#[derive(Clone)]
pub struct Resolved {
    /// What the job records as its input; a rerun must give the same.
    pub recorded: String,
    /// The job name when `--job` is not given.
    pub default_name: String,
    plan: Plan,
}

#[derive(Clone)]
enum Plan {
    /// Files in order; `None` is stdin.
    Files(Vec<Option<PathBuf>>, InputFormat),
    Template(Template),
}

/// Checks the inputs: files exist (made canonical), a template parses.
///
/// # Errors
/// A one-line message for the user (exit 2).
pub fn resolve(choice: SourceChoice) -> Result<Resolved, String> {
    let (paths, format) = match choice {
        SourceChoice::Template(pattern) => {
            let template = Template::parse(&pattern)?;
            return Ok(Resolved {
                recorded: format!("template: {pattern}"),
                default_name: "template".into(),
                plan: Plan::Template(template),
            });
        }
        SourceChoice::Files { paths, format } => (paths, format),
    };
    let mut files = Vec::new();
    let mut shown = Vec::new();
    for path in if paths.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        paths
    } {
        if path == Path::new("-") {
            files.push(None);
            shown.push("-".to_owned());
            continue;
        }
        let canonical = path
            .canonicalize()
            .map_err(|e| format!("cannot open input {}: {e}", path.display()))?;
        shown.push(canonical.display().to_string());
        files.push(Some(canonical));
    }
    let first = match files.first() {
        Some(Some(path)) => path
            .file_name()
            .map_or_else(|| "input".to_owned(), |n| n.to_string_lossy().into_owned()),
        _ => "stdin".to_owned(),
    };
    let default_name = match files.len() {
        0 | 1 => first,
        n => format!("{first}+{}", n - 1),
    };
    let joined = shown.join("\n");
    let recorded = match &format {
        InputFormat::Lines => joined,
        InputFormat::Csv { column, tsv } => {
            format!(
                "{} column={column}: {joined}",
                if *tsv { "tsv" } else { "csv" }
            )
        }
        InputFormat::Jsonl(pointer) => format!("jsonl field={pointer}: {joined}"),
    };
    Ok(Resolved {
        recorded,
        default_name,
        plan: Plan::Files(files, format),
    })
}

impl Resolved {
    /// The size and modification time of every input file, as the job
    /// records them to notice edits (see `Store::open_job`); `None` when an
    /// input is stdin or a template, which cannot be read twice.
    pub fn stamp(&self) -> Option<String> {
        let Plan::Files(files, _) = &self.plan else {
            return None;
        };
        let mut parts = Vec::new();
        for file in files {
            let meta = std::fs::metadata(file.as_ref()?).ok()?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            parts.push(format!("{}:{modified}", meta.len()));
        }
        Some(parts.join(","))
    }

    /// Warnings about input files that look wrong before anything is read:
    /// a file whose first 8 KiB are mostly not text (its lines would all be
    /// `invalid_input`).
    pub fn warnings(&self) -> Vec<String> {
        let Plan::Files(files, _) = &self.plan else {
            return Vec::new();
        };
        files
            .iter()
            .flatten()
            .filter(|path| looks_binary(path))
            .map(|path| {
                format!(
                    "{} does not look like text (binary data in its first 8 KiB); its lines will be recorded as invalid_input",
                    path.display()
                )
            })
            .collect()
    }

    /// Whether stdin is the only input.
    pub fn only_stdin(&self) -> bool {
        matches!(&self.plan, Plan::Files(files, _) if files.iter().all(Option::is_none))
    }

    /// Whether any input is stdin.
    pub fn reads_stdin(&self) -> bool {
        matches!(&self.plan, Plan::Files(files, _) if files.iter().any(Option::is_none))
    }

    /// Opens the inputs as one source.
    ///
    /// # Errors
    /// A one-line message: a file cannot be opened, or a CSV header lacks
    /// the URL column.
    pub fn open(self) -> Result<Box<dyn InputSource>, String> {
        let (files, format) = match self.plan {
            Plan::Template(template) => return Ok(Box::new(TemplateSource::new(template))),
            Plan::Files(files, format) => (files, format),
        };
        let mut sources: Vec<(String, Box<dyn InputSource>)> = Vec::new();
        for file in files {
            let (label, reader): (String, Box<dyn std::io::BufRead + Send>) = match &file {
                None => (
                    "stdin".into(),
                    Box::new(BufReader::with_capacity(
                        INPUT_BUFFER_BYTES,
                        std::io::stdin(),
                    )),
                ),
                Some(path) => {
                    let opened = File::open(path)
                        .map_err(|e| format!("cannot open input {}: {e}", path.display()))?;
                    (
                        path.file_name().map_or_else(
                            || path.display().to_string(),
                            |n| n.to_string_lossy().into_owned(),
                        ),
                        Box::new(BufReader::with_capacity(INPUT_BUFFER_BYTES, opened)),
                    )
                }
            };
            let source: Box<dyn InputSource> = match &format {
                InputFormat::Lines => Box::new(LineSource::new(reader)),
                InputFormat::Jsonl(pointer) => Box::new(JsonlSource::new(reader, pointer)),
                InputFormat::Csv { column, tsv } => {
                    let tab = *tsv
                        || file
                            .as_ref()
                            .is_some_and(|p| p.extension().is_some_and(|e| e == "tsv"));
                    let csv = CsvSource::new(reader, column, if tab { b'\t' } else { b',' });
                    if !csv.has_column() {
                        return Err(format!(
                            "{label} has no column '{column}' in its header row (columns: {})",
                            csv.headers().join(", ")
                        ));
                    }
                    Box::new(csv)
                }
            };
            sources.push((label, source));
        }
        Ok(Box::new(Inputs::new(sources)))
    }
}
