//! The CDXJ index of a job's records, as pywb reads it: one line per
//! `response` or `revisit` record, `urlkey timestamp {json}`, sorted.
//!
//! The key is the URI's SURT form (Sort-friendly URI Reordering
//! Transform), as the `surt` package that pywb uses writes it with its
//! defaults: scheme dropped, host lower-cased with a leading `www.` (or
//! `www2.`, …) removed and its labels reversed and joined by commas (an
//! IPv4 address too), a non-default port kept, `)` then the path and query
//! lower-cased, the query's parameters sorted, a trailing `/` dropped
//! (except the root's) and the fragment dropped. Session-id stripping,
//! which `surt` also does, is not done: URLs carrying session ids get keys
//! pywb would not look up.

use serde_json::json;
use url::Url;

use super::RecordKind;

/// The SURT key of `uri` (see the module docs); the URI lower-cased when
/// it does not parse.
pub fn urlkey(uri: &str) -> String {
    let Ok(url) = Url::parse(uri) else {
        return uri.to_lowercase();
    };
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = strip_www(host);
    let mut key: String = host.split('.').rev().collect::<Vec<_>>().join(",");
    if let Some(port) = url.port() {
        key.push(':');
        key.push_str(&port.to_string());
    }
    key.push(')');
    let path = url.path().to_lowercase();
    let path = match path.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => path,
    };
    key.push_str(&path);
    if let Some(query) = url.query().filter(|q| !q.is_empty()) {
        let query = query.to_lowercase();
        let mut params: Vec<&str> = query.split('&').collect();
        params.sort_unstable();
        key.push('?');
        key.push_str(&params.join("&"));
    }
    key
}

/// `www.`, `www2.`, … stripped from the front of a host name (not of an
/// address).
fn strip_www(host: &str) -> &str {
    let Some(rest) = host.strip_prefix("www") else {
        return host;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    match rest[digits..].strip_prefix('.') {
        Some(name) if name.contains('.') => name,
        _ => host,
    }
}

/// One index line: `urlkey timestamp {"url", "mime", "status", "digest",
/// "length", "offset", "filename"}`, as pywb's own indexer (`cdx-indexer
/// -j`) writes it: a revisit's mime is `warc/revisit` and it has no status,
/// and a SHA-1 digest is written without its `sha1:` label.
#[allow(clippy::too_many_arguments)]
pub fn line(
    urlkey: &str,
    timestamp: &str,
    url: &str,
    kind: RecordKind,
    mime: Option<&str>,
    status: Option<u16>,
    digest: Option<&str>,
    (offset, length): (u64, u64),
    filename: &str,
) -> String {
    let mime = match kind {
        RecordKind::Revisit => "warc/revisit".to_owned(),
        RecordKind::Response => mime
            .and_then(|m| m.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .unwrap_or_else(|| "unk".to_owned()),
    };
    let mut fields = json!({"url": url, "mime": mime});
    if let Some(status) = status.filter(|_| kind == RecordKind::Response) {
        fields["status"] = json!(status.to_string());
    }
    if let Some(digest) = digest {
        fields["digest"] = json!(digest.strip_prefix("sha1:").unwrap_or(digest));
    }
    fields["length"] = json!(length.to_string());
    fields["offset"] = json!(offset.to_string());
    fields["filename"] = json!(filename);
    format!("{urlkey} {timestamp} {fields}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_surt_as_pywb_looks_them_up() {
        assert_eq!(
            urlkey("http://archive.org/goo/?a=2&b&a=1"),
            "org,archive)/goo?a=1&a=2&b"
        );
        assert_eq!(urlkey("https://www.Example.com/"), "com,example)/");
        assert_eq!(
            urlkey("http://www2.example.com/A/B.html#x"),
            "com,example)/a/b.html"
        );
        assert_eq!(
            urlkey("http://127.0.0.1:18765/std/"),
            "1,0,0,127:18765)/std"
        );
        assert_eq!(urlkey("http://www.com/"), "com,www)/");
    }
}
