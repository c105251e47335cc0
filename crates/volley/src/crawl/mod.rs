//! Crawling: the links of fetched pages, what a crawl may follow, and one
//! spelling per URL.
//!
//! A crawl is pagination generalised: the links a fetched page names
//! become tasks of its job in the same transaction as the page's outcome,
//! so a crawl killed at any moment resumes to the same set of pages. This
//! module holds what that needs and knows nothing of the pipeline:
//! [`links`] reads a page's links with a streaming HTML parser,
//! [`normalize`] gives each URL the one spelling the job's dedupe index
//! compares (RFC 3986 §6.2.2), and [`LinkRules`] decide which links a
//! crawl follows ([`Scope`], `--include`/`--exclude`), which it only
//! checks (`--check-external`) and which query parameters it drops, and
//! [`PageCaps`] how many pages it may add.

pub mod links;
pub mod scope;
pub mod sitemap;

pub use scope::{LinkRules, LinkRulesError, Reach, Scope};

use url::Url;

/// Gives `url` the one spelling a crawl compares: what the `url` crate
/// already does (scheme and host in lower case, IDNA, default port
/// dropped, dot segments removed), the fragment dropped (it names a place
/// in the page, not another page), and percent-escapes made canonical
/// (RFC 3986 §6.2.2.1–2: unreserved characters decoded, hex digits in
/// upper case), in the path and the query.
pub fn normalize(url: &mut Url) {
    url.set_fragment(None);
    if let Some(path) = canonical_escapes(url.path()) {
        url.set_path(&path);
    }
    if let Some(query) = url.query().and_then(canonical_escapes) {
        url.set_query(Some(&query));
    }
}

/// `text` with each `%XX` of an unreserved character decoded and every
/// other escape's hex digits in upper case; `None` when nothing changes.
fn canonical_escapes(text: &str) -> Option<String> {
    if !text.contains('%') {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes
            .get(at + 1..at + 3)
            .filter(|_| bytes[at] == b'%')
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok().map(|v| (h, v)));
        match hex {
            Some((_, value)) if value.is_ascii_alphanumeric() || b"-._~".contains(&value) => {
                out.push(char::from(value));
                changed = true;
                at += 3;
            }
            Some((digits, _)) => {
                let upper = digits.to_ascii_uppercase();
                changed |= upper != digits;
                out.push('%');
                out.push_str(&upper);
                at += 3;
            }
            None => {
                let end = text[at + 1..].find('%').map_or(text.len(), |i| at + 1 + i);
                out.push_str(&text[at..end]);
                at = end;
            }
        }
    }
    changed.then_some(out)
}

/// How many pages a crawl may add to its job: links past a cap are not
/// added, and the outcome of the page that named them says how many.
/// Seeds are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCaps {
    /// Most pages the crawl adds to the job (`--max-crawl-pages`).
    pub per_job: Option<u64>,
    /// Most pages the crawl adds on one host (`--max-host-pages`).
    pub per_host: Option<u64>,
}

impl PageCaps {
    /// Whether either cap is set.
    pub fn any(self) -> bool {
        self.per_job.is_some() || self.per_host.is_some()
    }

    /// Whether one more page may be added on `host`, given the pages the
    /// crawl has added so far (`counts`: per host, and `""` for the job);
    /// counts it when so.
    pub fn admit(self, counts: &mut std::collections::HashMap<String, u64>, host: &str) -> bool {
        let job = counts.get("").copied().unwrap_or(0);
        let on_host = counts.get(host).copied().unwrap_or(0);
        if self.per_job.is_some_and(|cap| job >= cap)
            || self.per_host.is_some_and(|cap| on_host >= cap)
        {
            return false;
        }
        *counts.entry(String::new()).or_default() += 1;
        *counts.entry(host.to_owned()).or_default() += 1;
        true
    }

    /// The note for an outcome whose `skipped` links were past the caps.
    pub fn note(self, skipped: u64) -> String {
        let caps: Vec<String> = [
            self.per_job.map(|n| format!("--max-crawl-pages {n}")),
            self.per_host.map(|n| format!("--max-host-pages {n}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        format!("{skipped} links not added: past {}", caps.join(" or "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(text: &str) -> String {
        let mut url = Url::parse(text).expect("a URL");
        normalize(&mut url);
        url.to_string()
    }

    #[test]
    fn one_url_has_one_spelling() {
        let same = [
            "HTTP://Example.COM:80/a/./b/../c%7e?q=%2fx#frag",
            "http://example.com/a/c~?q=%2Fx",
            "http://example.com:80/a/c%7E?q=%2F%78",
        ];
        for text in same {
            assert_eq!(normalized(text), "http://example.com/a/c~?q=%2Fx", "{text}");
        }
        // Reserved characters stay escaped: %2F is not a path separator.
        assert_eq!(normalized("https://a.test/x%2fy"), "https://a.test/x%2Fy");
        // A lone % or a bad escape is left as written.
        assert_eq!(
            normalized("https://a.test/100%25?p=%zz"),
            "https://a.test/100%25?p=%zz"
        );
    }
}
