//! Sitemaps (the sitemaps.org protocol 0.9): the URLs a site lists for
//! crawlers, read with a streaming XML parser.
//!
//! A fetched body is a sitemap when its root element is `<urlset>` (page
//! URLs, each with an optional `<lastmod>`) or `<sitemapindex>` (more
//! sitemaps), whether it came plain or gzip-compressed (`.xml.gz`, found by
//! its magic bytes). The protocol's caps are enforced: at most
//! [`MAX_URLS`] entries and [`MAX_BYTES`] of uncompressed XML per file;
//! what comes past a cap is not read and the sitemap says so
//! ([`Sitemap::fault`]).

use std::io::{BufRead, BufReader, Read as _};

use quick_xml::events::Event;
use url::Url;

/// Entries one sitemap file may list (sitemaps.org).
pub const MAX_URLS: usize = 50_000;

/// Bytes of uncompressed XML one sitemap file may hold (sitemaps.org:
/// 50 MB, 52,428,800 bytes).
pub const MAX_BYTES: u64 = 50 * 1024 * 1024;

/// Sitemap indexes followed in a chain: an index named by an index named
/// by an index … past this many is not read. The protocol has one level
/// (an index lists sitemaps, not indexes); sites nest anyway, and a loop of
/// indexes must end.
pub const MAX_NESTING: u32 = 3;

/// What a sitemap lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<urlset>`: pages.
    UrlSet,
    /// `<sitemapindex>`: more sitemaps.
    Index,
}

/// One `<url>` or `<sitemap>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its `<loc>`, resolved against the sitemap's URL.
    pub url: Url,
    /// Its `<lastmod>` as written (W3C Datetime), if any.
    pub lastmod: Option<String>,
}

/// A sitemap as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sitemap {
    /// Pages or sitemaps.
    pub kind: Kind,
    /// Its entries with an http(s) `<loc>`, in document order.
    pub entries: Vec<Entry>,
    /// Why not all of it was read or kept: a cap reached, XML that is not
    /// well-formed, `<loc>` values that are not http(s) URLs. `None` when
    /// every entry was read.
    pub fault: Option<String>,
}

/// Reads `body`, fetched from `base`, as a sitemap; `None` when it is not
/// one (its root element is neither `<urlset>` nor `<sitemapindex>`, or it
/// is not XML at all).
pub fn read(base: &Url, body: &[u8]) -> Option<Sitemap> {
    if body.starts_with(&[0x1f, 0x8b]) {
        let xml = flate2::read::MultiGzDecoder::new(body).take(MAX_BYTES + 1);
        read_xml(base, BufReader::new(xml))
    } else {
        read_xml(base, body.take(MAX_BYTES + 1))
    }
}

/// The element whose text is being read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    None,
    Loc,
    Lastmod,
}

fn read_xml(base: &Url, source: impl BufRead) -> Option<Sitemap> {
    let mut reader = quick_xml::Reader::from_reader(source);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut kind = None;
    let mut entries = Vec::new();
    let (mut loc, mut lastmod) = (String::new(), String::new());
    let mut field = Field::None;
    let mut not_urls = 0u64;
    let mut fault = None;
    loop {
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(e) => {
                kind?;
                let at = reader.buffer_position();
                fault = Some(if at > MAX_BYTES {
                    format!(
                        "the sitemap is over the protocol's {MAX_BYTES} bytes uncompressed: read up to there"
                    )
                } else {
                    format!("the sitemap is not well-formed XML at byte {at}: {e}")
                });
                break;
            }
        };
        match event {
            Event::Start(e) => {
                let name = e.local_name();
                match (kind, name.as_ref()) {
                    (None, "urlset") => kind = Some(Kind::UrlSet),
                    (None, "sitemapindex") => kind = Some(Kind::Index),
                    (None, _) => return None,
                    (Some(_), "loc") => field = Field::Loc,
                    (Some(_), "lastmod") => field = Field::Lastmod,
                    (Some(_), "url" | "sitemap") => {
                        loc.clear();
                        lastmod.clear();
                    }
                    _ => field = Field::None,
                }
            }
            Event::Empty(e) if kind.is_none() => {
                return match e.local_name().as_ref() {
                    "urlset" => Some(empty(Kind::UrlSet)),
                    "sitemapindex" => Some(empty(Kind::Index)),
                    _ => None,
                };
            }
            Event::Text(t) => push_text(field, &t.xml10_content(), &mut loc, &mut lastmod),
            Event::CData(t) => push_text(field, &t.xml10_content(), &mut loc, &mut lastmod),
            Event::GeneralRef(r) => {
                let text = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                        .unwrap_or_default()
                        .to_owned(),
                };
                push_text(field, &text, &mut loc, &mut lastmod);
            }
            Event::End(e) => {
                field = Field::None;
                if matches!(e.local_name().as_ref(), "url" | "sitemap") {
                    if entries.len() == MAX_URLS {
                        fault = Some(format!(
                            "the sitemap lists more than the protocol's {MAX_URLS} URLs: the first {MAX_URLS} were kept"
                        ));
                        break;
                    }
                    match base.join(loc.trim()) {
                        Ok(url) if matches!(url.scheme(), "http" | "https") => {
                            let lastmod = lastmod.trim();
                            entries.push(Entry {
                                url,
                                lastmod: (!lastmod.is_empty()).then(|| lastmod.to_owned()),
                            });
                        }
                        _ => not_urls += 1,
                    }
                }
            }
            Event::Eof => {
                kind?;
                if reader.buffer_position() > MAX_BYTES {
                    fault = Some(format!(
                        "the sitemap is over the protocol's {MAX_BYTES} bytes uncompressed: read up to there"
                    ));
                }
                break;
            }
            _ => {}
        }
        buf.clear();
    }
    if not_urls > 0 {
        let note = format!("{not_urls} <loc> values were not http(s) URLs");
        fault = Some(match fault {
            Some(f) => format!("{f}; {note}"),
            None => note,
        });
    }
    Some(Sitemap {
        kind: kind?,
        entries,
        fault,
    })
}

fn empty(kind: Kind) -> Sitemap {
    Sitemap {
        kind,
        entries: Vec::new(),
        fault: None,
    }
}

fn push_text(field: Field, text: &str, loc: &mut String, lastmod: &mut String) {
    match field {
        Field::Loc => loc.push_str(text),
        Field::Lastmod => lastmod.push_str(text),
        Field::None => {}
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn base() -> Url {
        Url::parse("https://h.test/maps/sitemap.xml").expect("a URL")
    }

    #[test]
    fn a_urlset_gives_its_pages_with_lastmod_and_entities_resolved() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
              <url><loc>https://h.test/a?x=1&amp;y=2</loc><lastmod>2024-05-01</lastmod></url>
              <url><loc><![CDATA[https://h.test/b]]></loc><priority>0.5</priority></url>
              <url><loc>mailto:x@h.test</loc></url>
            </urlset>"#;
        let map = read(&base(), xml.as_bytes()).expect("a sitemap");
        assert_eq!(map.kind, Kind::UrlSet);
        let got: Vec<(String, Option<String>)> = map
            .entries
            .iter()
            .map(|e| (e.url.to_string(), e.lastmod.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("https://h.test/a?x=1&y=2".into(), Some("2024-05-01".into())),
                ("https://h.test/b".into(), None),
            ]
        );
        assert_eq!(
            map.fault.as_deref(),
            Some("1 <loc> values were not http(s) URLs")
        );
    }

    #[test]
    fn a_gzip_index_is_read_and_other_xml_is_not_a_sitemap() {
        let xml = r#"<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
            <sitemap><loc>https://h.test/maps/one.xml.gz</loc></sitemap></sitemapindex>"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(xml.as_bytes()).expect("gzip");
        let body = gz.finish().expect("gzip");
        let map = read(&base(), &body).expect("a sitemap");
        assert_eq!(map.kind, Kind::Index);
        assert_eq!(
            map.entries[0].url.as_str(),
            "https://h.test/maps/one.xml.gz"
        );
        assert!(read(&base(), b"<rss><channel/></rss>").is_none());
        assert!(read(&base(), b"<html><body>not xml</body>").is_none());
        assert!(read(&base(), b"\x00\x01 binary").is_none());
    }

    #[test]
    fn the_protocols_caps_keep_what_came_before_and_say_so() {
        let mut xml = String::from("<urlset>");
        for i in 0..=MAX_URLS {
            xml.push_str(&format!("<url><loc>/p/{i}</loc></url>"));
        }
        xml.push_str("</urlset>");
        let map = read(&base(), xml.as_bytes()).expect("a sitemap");
        assert_eq!(map.entries.len(), MAX_URLS);
        assert!(
            map.fault
                .expect("a fault")
                .contains("more than the protocol's 50000 URLs")
        );

        let broken = read(
            &base(),
            b"<urlset><url><loc>/a</loc></url><url><loc>/b</url>",
        )
        .expect("a sitemap");
        assert_eq!(broken.entries.len(), 1);
        assert!(
            broken
                .fault
                .expect("a fault")
                .contains("not well-formed XML")
        );
    }
}
