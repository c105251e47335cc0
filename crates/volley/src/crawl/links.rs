//! The links of an HTML page, read by a streaming parser.
//!
//! [`LinkExtractor`] is fed a page's decoded body chunk by chunk, as it
//! arrives, and never holds the page: Cloudflare's `lol_html` tokenises the
//! stream and calls back for the elements that carry links, so memory is
//! the parser's bounded buffer plus the links found (at most
//! [`MAX_LINKS_PER_PAGE`]). A tree-building parser (`html5ever` through
//! `scraper`) would hold the whole document, and a crawl parses every page
//! it fetches.
//!
//! Links are taken from `a[href]`, `area[href]`, `iframe[src]`,
//! `frame[src]` and `link[href]` whose `rel` is one of [`PAGE_RELS`]
//! (stylesheets, icons and preloads are resources, not pages). They are
//! resolved against the document's base URL: the page's URL, or the first
//! `<base href>` wherever it stands (HTML's rule), and
//! normalised ([`super::normalize`]); only `http` and `https` links are
//! kept, each once. Character references in attribute values are decoded
//! ([`decode_char_refs`]: `?a=1&amp;b=2`), and the markup inside
//! `<noscript>` is read too, as a client without scripts renders it.
//! `<meta name="robots">` with `nofollow`, `noindex` or
//! `none` is reported, and `rel="nofollow"` links are counted apart, so
//! that `--respect-robots` can honour them.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use lol_html::html_content::Element;
use lol_html::{HtmlRewriter, MemorySettings, Settings, element};
use url::Url;

/// Most distinct links kept from one page; past it the rest are counted in
/// [`PageLinks::dropped`], never silently lost.
pub const MAX_LINKS_PER_PAGE: usize = 100_000;

/// Most memory the parser may hold for one page's unfinished markup (a tag
/// or attribute split across chunks), in bytes.
pub const MAX_PARSER_MEMORY: usize = 4 << 20;

/// The `rel` values of `<link>` elements whose targets are pages of the
/// site (RFC 8288 relation types): `alternate` (translations, feeds),
/// `canonical`, `next`, `prev`.
pub const PAGE_RELS: [&str; 4] = ["alternate", "canonical", "next", "prev"];

/// What a page links to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageLinks {
    /// Its followable links, absolute and normalised, each once, in the
    /// order they first appear.
    pub links: Vec<Url>,
    /// Links marked `rel="nofollow"` that are not among `links`.
    pub nofollow_links: Vec<Url>,
    /// `<meta name="robots">` says `nofollow` (or `none`).
    pub nofollow: bool,
    /// `<meta name="robots">` says `noindex` (or `none`).
    pub noindex: bool,
    /// Distinct links past [`MAX_LINKS_PER_PAGE`], not kept.
    pub dropped: u64,
}

/// Why a page's markup could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the page's HTML: {0}")]
pub struct LinkError(String);

/// What the element handlers collect while the page streams.
#[derive(Default)]
struct Found {
    /// The first `<base href>`, as written.
    base: Option<String>,
    /// Link targets as written, with whether they are `rel="nofollow"`.
    raw: Vec<(String, bool)>,
    /// Raw targets seen, to keep each once before resolving.
    seen: HashSet<String>,
    nofollow: bool,
    noindex: bool,
    dropped: u64,
    /// The markup inside `<noscript>`, which an HTML parser with scripting
    /// on (lol_html's) reads as text: read for links once the page ends
    /// (at most [`MAX_PARSER_MEMORY`] bytes of it).
    noscript: String,
}

/// `value` with its character references decoded, as an HTML parser
/// reads an attribute value: `lol_html` hands attributes over as written,
/// so `?a=1&amp;b=2` would otherwise be a URL with `&amp;` in it. Numeric
/// references (`&#38;`, `&#x26;`) and the named ones a URL holds (`&amp;`,
/// `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&nbsp;`) are decoded; anything
/// else, a bare `&` included, stays as written, as browsers keep it.
pub fn decode_char_refs(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains('&') {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let reference = rest[1..]
            .find(';')
            .filter(|end| *end <= 32)
            .map(|end| &rest[1..=end]);
        let decoded = reference.and_then(|name| {
            let decoded = match name.strip_prefix('#') {
                Some(num) => {
                    let code = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => num.parse().ok(),
                    };
                    code.and_then(char::from_u32).map(String::from)
                }
                None if name == "nbsp" => Some("\u{a0}".to_owned()),
                None => quick_xml::escape::resolve_predefined_entity(name).map(str::to_owned),
            };
            decoded.map(|d| (d, name.len() + 2))
        });
        match decoded {
            Some((text, len)) => {
                out.push_str(&text);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

impl Found {
    /// Adds a target as the page wrote it.
    fn add(&mut self, target: Option<String>, nofollow: bool) {
        if let Some(target) = target {
            self.add_decoded(&decode_char_refs(&target), nofollow);
        }
    }

    /// Adds a target whose character references are decoded.
    fn add_decoded(&mut self, target: &str, nofollow: bool) {
        let target = target.trim();
        if target.is_empty() || self.seen.contains(target) {
            return;
        }
        if self.raw.len() >= MAX_LINKS_PER_PAGE {
            self.dropped += 1;
            return;
        }
        self.seen.insert(target.to_owned());
        self.raw.push((target.to_owned(), nofollow));
    }
}

/// Whether `rel` (a space-separated token list) holds `token`.
fn has_token(rel: Option<&str>, token: &str) -> bool {
    rel.is_some_and(|rel| {
        rel.split_ascii_whitespace()
            .any(|t| t.eq_ignore_ascii_case(token))
    })
}

/// Reads a page's links from its body as it streams; see the module docs.
pub struct LinkExtractor {
    rewriter: HtmlRewriter<'static, fn(&[u8])>,
    found: Rc<RefCell<Found>>,
    page: Url,
}

impl std::fmt::Debug for LinkExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkExtractor")
            .field("page", &self.page)
            .finish_non_exhaustive()
    }
}

/// The rewriter's output is not wanted: links are read, nothing written.
fn discard(_: &[u8]) {}

impl LinkExtractor {
    /// An extractor for the page at `page` (its final URL, after
    /// redirects: relative links resolve against it).
    pub fn new(page: Url) -> LinkExtractor {
        let found = Rc::new(RefCell::new(Found::default()));
        let link = |attr: &'static str| {
            let found = Rc::clone(&found);
            move |el: &mut Element<'_, '_>| {
                let nofollow = has_token(el.get_attribute("rel").as_deref(), "nofollow");
                found.borrow_mut().add(el.get_attribute(attr), nofollow);
                Ok(())
            }
        };
        let page_link = {
            let found = Rc::clone(&found);
            move |el: &mut Element<'_, '_>| {
                let rel = el.get_attribute("rel");
                if PAGE_RELS.iter().any(|r| has_token(rel.as_deref(), r)) {
                    let nofollow = has_token(rel.as_deref(), "nofollow");
                    found.borrow_mut().add(el.get_attribute("href"), nofollow);
                }
                Ok(())
            }
        };
        let base = {
            let found = Rc::clone(&found);
            move |el: &mut Element<'_, '_>| {
                let mut found = found.borrow_mut();
                if found.base.is_none() {
                    found.base = el.get_attribute("href");
                }
                Ok(())
            }
        };
        let meta = {
            let found = Rc::clone(&found);
            move |el: &mut Element<'_, '_>| {
                let is_robots = el
                    .get_attribute("name")
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case("robots"));
                if is_robots && let Some(content) = el.get_attribute("content") {
                    let mut found = found.borrow_mut();
                    for directive in content.split(',').map(str::trim) {
                        let none = directive.eq_ignore_ascii_case("none");
                        found.nofollow |= none || directive.eq_ignore_ascii_case("nofollow");
                        found.noindex |= none || directive.eq_ignore_ascii_case("noindex");
                    }
                }
                Ok(())
            }
        };
        let noscript = {
            let found = Rc::clone(&found);
            move |text: &mut lol_html::html_content::TextChunk<'_>| {
                let mut found = found.borrow_mut();
                if found.noscript.len() + text.as_str().len() <= MAX_PARSER_MEMORY {
                    found.noscript.push_str(text.as_str());
                }
                Ok(())
            }
        };
        let settings = Settings::new()
            .append_element_content_handler(element!("a[href]", link("href")))
            .append_element_content_handler(element!("area[href]", link("href")))
            .append_element_content_handler(element!("iframe[src]", link("src")))
            .append_element_content_handler(element!("frame[src]", link("src")))
            .append_element_content_handler(element!("link[href][rel]", page_link))
            .append_element_content_handler(element!("base[href]", base))
            .append_element_content_handler(element!("meta[name][content]", meta))
            .append_element_content_handler(lol_html::text!("noscript", noscript))
            .with_memory_settings(
                MemorySettings::new().with_max_allowed_memory_usage(MAX_PARSER_MEMORY),
            );
        LinkExtractor {
            rewriter: HtmlRewriter::new(settings, discard as fn(&[u8])),
            found,
            page,
        }
    }

    /// Parses the next chunk of the page.
    ///
    /// # Errors
    /// [`LinkError`] when the markup needs more parser memory than
    /// [`MAX_PARSER_MEMORY`] (a tag megabytes long).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), LinkError> {
        self.rewriter
            .write(chunk)
            .map_err(|e| LinkError(e.to_string()))
    }

    /// Ends the page: its links, resolved against the document's base URL.
    ///
    /// # Errors
    /// [`LinkError`] as for [`LinkExtractor::feed`].
    pub fn finish(self) -> Result<PageLinks, LinkError> {
        let LinkExtractor {
            rewriter,
            found,
            page,
        } = self;
        rewriter.end().map_err(|e| LinkError(e.to_string()))?;
        let mut found = std::mem::take(&mut *found.borrow_mut());
        if !found.noscript.is_empty() {
            // What a client without scripts renders (wget reads it too):
            // mdBook's table of contents is an <iframe> there.
            let mut inner = LinkExtractor::new(page.clone());
            inner.feed(found.noscript.as_bytes())?;
            let LinkExtractor {
                rewriter,
                found: inner_found,
                ..
            } = inner;
            rewriter.end().map_err(|e| LinkError(e.to_string()))?;
            let inner_found = std::mem::take(&mut *inner_found.borrow_mut());
            for (raw, nofollow) in inner_found.raw {
                found.add_decoded(&raw, nofollow);
            }
        }
        let base = found
            .base
            .as_deref()
            .and_then(|b| page.join(decode_char_refs(b).trim()).ok())
            .unwrap_or(page);
        let mut out = PageLinks {
            nofollow: found.nofollow,
            noindex: found.noindex,
            dropped: found.dropped,
            ..PageLinks::default()
        };
        let mut kept: HashSet<Url> = HashSet::new();
        for (raw, nofollow) in found.raw {
            let Ok(mut url) = base.join(&raw) else {
                continue;
            };
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                continue;
            }
            super::normalize(&mut url);
            if kept.insert(url.clone()) {
                if nofollow {
                    out.nofollow_links.push(url);
                } else {
                    out.links.push(url);
                }
            }
        }
        Ok(out)
    }
}

/// The links of a whole `body` (see [`LinkExtractor`]), for a page at `page`.
///
/// # Errors
/// [`LinkError`] as for [`LinkExtractor::feed`].
pub fn extract(page: Url, body: &[u8]) -> Result<PageLinks, LinkError> {
    let mut extractor = LinkExtractor::new(page);
    extractor.feed(body)?;
    extractor.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_inside_noscript_are_read_as_a_client_without_scripts_sees_them() {
        let page = Url::parse("https://h.test/book/index.html").expect("a URL");
        let html = r#"<noscript><iframe src="toc.html"></iframe><a href="x?a=1&amp;b=2">x</a></noscript>
            <script>var s = '<a href="not-a-link.html">';</script>"#;
        let found = extract(page, html.as_bytes()).expect("links");
        assert_eq!(
            texts(&found.links),
            [
                "https://h.test/book/toc.html",
                "https://h.test/book/x?a=1&b=2"
            ]
        );
    }

    #[test]
    fn character_references_in_attributes_are_decoded_as_a_browser_does() {
        let page = Url::parse("https://h.test/dir/page.html").expect("a URL");
        let html = r#"<a href="a?x=1&amp;y=2">1</a> <a href="b?x=1&#38;y=&#x32;">2</a>
            <a href="c?x=1&y=2&amp;z=3">3</a> <a href="d?q=&copy;">4</a>"#;
        let found = extract(page, html.as_bytes()).expect("links");
        assert_eq!(
            texts(&found.links),
            [
                "https://h.test/dir/a?x=1&y=2",
                "https://h.test/dir/b?x=1&y=2",
                "https://h.test/dir/c?x=1&y=2&z=3",
                "https://h.test/dir/d?q=&copy;",
            ]
        );
    }

    fn page() -> Url {
        Url::parse("https://example.com/docs/guide/index.html").expect("a URL")
    }

    fn texts(urls: &[Url]) -> Vec<&str> {
        urls.iter().map(Url::as_str).collect()
    }

    #[test]
    fn links_of_every_kind_resolve_against_the_page() -> Result<(), LinkError> {
        let html = br#"<html><head>
            <link rel="stylesheet" href="/style.css">
            <link rel="canonical" href="https://example.com/docs/guide/">
            <link rel="icon" href="/favicon.ico">
            </head><body>
            <a href="intro.html#top">Intro</a>
            <a href="../api/">API</a>
            <a href="intro.html">again</a>
            <a href="//other.example/x">Other</a>
            <area href="/map" shape="rect">
            <iframe src="frame.html"></iframe>
            <a href="mailto:a@example.com">mail</a>
            <a href="javascript:void(0)">js</a>
            <a href="">empty</a>
            <a name="anchor-only">no href</a>
            </body></html>"#;
        let found = extract(page(), html)?;
        assert_eq!(
            texts(&found.links),
            [
                "https://example.com/docs/guide/",
                "https://example.com/docs/guide/intro.html",
                "https://example.com/docs/api/",
                "https://other.example/x",
                "https://example.com/map",
                "https://example.com/docs/guide/frame.html",
            ]
        );
        assert!(!found.nofollow && !found.noindex);
        Ok(())
    }

    #[test]
    fn a_base_href_anywhere_is_the_base_of_every_link() -> Result<(), LinkError> {
        let html = br#"<a href="a.html">before</a><base href="https://cdn.example/v2/"><base href="/ignored/"><a href="b.html">after</a>"#;
        let found = extract(page(), html)?;
        assert_eq!(
            texts(&found.links),
            [
                "https://cdn.example/v2/a.html",
                "https://cdn.example/v2/b.html"
            ]
        );
        Ok(())
    }

    #[test]
    fn nofollow_links_and_robots_meta_are_reported() -> Result<(), LinkError> {
        let html = br#"<meta name="ROBOTS" content="noindex, nofollow">
            <a href="/kept">kept</a><a rel="external nofollow" href="/not">not</a>"#;
        let found = extract(page(), html)?;
        assert_eq!(texts(&found.links), ["https://example.com/kept"]);
        assert_eq!(texts(&found.nofollow_links), ["https://example.com/not"]);
        assert!(found.nofollow && found.noindex);
        let none = extract(page(), br#"<meta name="robots" content="none">"#)?;
        assert!(none.nofollow && none.noindex);
        Ok(())
    }

    #[test]
    fn a_page_fed_a_few_bytes_at_a_time_gives_the_same_links() -> Result<(), LinkError> {
        let html = br#"<html><body><a href="one.html">1</a><base href="/root/"><a
            href = "two.html" >2</a><link rel="next" href="?page=2"></body></html>"#;
        let whole = extract(page(), html)?;
        let mut extractor = LinkExtractor::new(page());
        for chunk in html.chunks(3) {
            extractor.feed(chunk)?;
        }
        assert_eq!(extractor.finish()?, whole);
        assert_eq!(
            texts(&whole.links),
            [
                "https://example.com/root/one.html",
                "https://example.com/root/two.html",
                "https://example.com/root/?page=2"
            ]
        );
        Ok(())
    }

    #[test]
    fn links_past_the_cap_are_counted_not_kept() -> Result<(), LinkError> {
        let mut html = String::new();
        for i in 0..MAX_LINKS_PER_PAGE + 5 {
            html.push_str(&format!("<a href=\"/p/{i}\">x</a>"));
        }
        let found = extract(page(), html.as_bytes())?;
        assert_eq!(found.links.len(), MAX_LINKS_PER_PAGE);
        assert_eq!(found.dropped, 5);
        Ok(())
    }
}
