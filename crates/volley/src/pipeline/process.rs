//! Processing a fetched page: pagination, items and extraction.
//!
//! With any of `--paginate`, `--items` or `--extract` (or, for a crawl,
//! `--follow` and an HTML page: [`PageRules::keeps`]), a 2xx body is kept in
//! memory (up to `--max-body`, by default [`DEFAULT_MAX_PAGE_BYTES`]) and
//! handed to [`process`] on tokio's blocking pool, so JSON parsing never
//! stalls the async workers. What it finds rides with the page's outcome:
//! the next page becomes a pending task *in the same transaction*, so a
//! crash mid-chain resumes at the right page, never skipping or repeating
//! one.
//!
//! Pagination styles ([`Paginate`]):
//!
//! * `link`: the `Link` header's `rel="next"` target (RFC 8288), resolved
//!   against the page's URL;
//! * `json-next=/ptr`: the URL (absolute or relative) at a JSON pointer;
//! * `cursor=/ptr` with `--cursor-param NAME`: the cursor at a JSON pointer,
//!   put into the query parameter `NAME` of the page's URL;
//! * `page=NAME`: the query parameter `NAME` counts pages (missing means 1);
//! * `offset=NAME` with `--page-size N`: the parameter counts items.
//!
//! A chain stops when there is no next page (a missing, null or empty
//! value), when `--items` finds an empty array (or, for the counters, fewer
//! than `--page-size` items), at `--max-pages`, or when the next URL is
//! already in the job (a loop; the store checks this when it commits).

use url::Url;

use crate::crawl::PageCaps;
use crate::crawl::{LinkRules, Reach, Scope, sitemap};

/// Largest body kept for processing when `--max-body` is not set, in bytes.
pub const DEFAULT_MAX_PAGE_BYTES: u64 = 64 << 20;

/// How the next page of a chain is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paginate {
    /// `Link: <…>; rel="next"` (RFC 8288).
    Link,
    /// The next page's URL at a JSON pointer.
    JsonNext(String),
    /// A cursor at a JSON pointer, sent back in the query parameter `param`.
    Cursor {
        /// The JSON pointer to the cursor.
        pointer: String,
        /// The query parameter that carries it.
        param: String,
    },
    /// A page-number query parameter.
    Page(String),
    /// An item-offset query parameter, advanced by the page size.
    Offset(String),
}

impl Paginate {
    /// Parses `link`, `json-next=/ptr`, `cursor=/ptr`, `page=NAME` or
    /// `offset=NAME`; `cursor_param` is needed for `cursor`.
    ///
    /// # Errors
    /// A one-line message saying what to write instead.
    pub fn parse(text: &str, cursor_param: Option<&str>) -> Result<Paginate, String> {
        let (kind, arg) = match text.split_once('=') {
            Some((k, a)) => (k.trim(), Some(a.trim())),
            None => (text.trim(), None),
        };
        let pointer = |a: Option<&str>| match a {
            Some(p) if p.starts_with('/') => Ok(p.to_owned()),
            _ => Err(format!(
                "--paginate {kind}=POINTER needs a JSON pointer such as /next"
            )),
        };
        let name = |a: Option<&str>| match a {
            Some(n) if !n.is_empty() => Ok(n.to_owned()),
            _ => Err(format!(
                "--paginate {kind}=NAME needs a query parameter name"
            )),
        };
        match kind {
            "link" if arg.is_none() => Ok(Paginate::Link),
            "json-next" => Ok(Paginate::JsonNext(pointer(arg)?)),
            "cursor" => Ok(Paginate::Cursor {
                pointer: pointer(arg)?,
                param: cursor_param
                    .map(str::to_owned)
                    .ok_or("--paginate cursor=POINTER needs --cursor-param NAME")?,
            }),
            "page" => Ok(Paginate::Page(name(arg)?)),
            "offset" => Ok(Paginate::Offset(name(arg)?)),
            _ => Err(format!(
                "--paginate '{text}': use link, json-next=/ptr, cursor=/ptr, page=NAME or offset=NAME"
            )),
        }
    }

    fn needs_json(&self) -> bool {
        matches!(self, Paginate::JsonNext(_) | Paginate::Cursor { .. })
    }

    /// The text [`Paginate::parse`] reads back (the cursor's parameter is a
    /// separate option).
    pub fn text(&self) -> String {
        match self {
            Paginate::Link => "link".into(),
            Paginate::JsonNext(pointer) => format!("json-next={pointer}"),
            Paginate::Cursor { pointer, .. } => format!("cursor={pointer}"),
            Paginate::Page(name) => format!("page={name}"),
            Paginate::Offset(name) => format!("offset={name}"),
        }
    }
}

/// The text form of [`PageRules`], as options write it: `paginate`,
/// `cursor-param`, `items`, `extract` (`NAME=/pointer` strings),
/// `page-size`, `max-pages`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "kebab-case")]
struct PageText {
    paginate: Option<String>,
    cursor_param: Option<String>,
    items: Option<String>,
    #[serde(with = "crate::options::text::strings")]
    extract: Vec<String>,
    #[serde(with = "crate::options::text::opt_count")]
    page_size: Option<u64>,
    #[serde(with = "crate::options::text::opt_count")]
    max_pages: Option<u32>,
    #[serde(with = "crate::options::text::flag")]
    follow: bool,
    #[serde(with = "crate::options::text::opt_count")]
    max_depth: Option<u32>,
    scope: Option<String>,
    #[serde(with = "crate::options::text::strings")]
    include: Vec<String>,
    #[serde(with = "crate::options::text::strings")]
    exclude: Vec<String>,
    #[serde(with = "crate::options::text::strings")]
    strip_query: Vec<String>,
    #[serde(with = "crate::options::text::flag")]
    check_external: bool,
    #[serde(with = "crate::options::text::flag")]
    sitemaps: bool,
    #[serde(with = "crate::options::text::opt_count")]
    max_crawl_pages: Option<u64>,
    #[serde(with = "crate::options::text::opt_count")]
    max_host_pages: Option<u64>,
}

impl TryFrom<PageText> for PageRules {
    type Error = String;

    fn try_from(t: PageText) -> Result<PageRules, String> {
        let paginate = t
            .paginate
            .map(|style| Paginate::parse(&style, t.cursor_param.as_deref()))
            .transpose()?;
        let extract = t
            .extract
            .iter()
            .map(|e| parse_extract(e))
            .collect::<Result<_, _>>()?;
        let scope = t
            .scope
            .as_deref()
            .map(str::parse)
            .transpose()?
            .unwrap_or_default();
        let links = LinkRules::new(
            scope,
            &t.include,
            &t.exclude,
            &t.strip_query,
            t.check_external,
        )
        .map_err(|e| e.to_string())?;
        Ok(PageRules {
            paginate,
            items: t.items,
            extract,
            page_size: t.page_size,
            max_pages: t.max_pages,
            follow: t.follow,
            max_depth: t.max_depth,
            links,
            sitemaps: t.sitemaps,
            caps: PageCaps {
                per_job: t.max_crawl_pages,
                per_host: t.max_host_pages,
            },
        })
    }
}

impl From<PageRules> for PageText {
    fn from(r: PageRules) -> PageText {
        let cursor_param = match &r.paginate {
            Some(Paginate::Cursor { param, .. }) => Some(param.clone()),
            _ => None,
        };
        PageText {
            paginate: r.paginate.as_ref().map(Paginate::text),
            cursor_param,
            items: r.items,
            extract: r.extract.iter().map(|(n, p)| format!("{n}={p}")).collect(),
            page_size: r.page_size,
            max_pages: r.max_pages,
            follow: r.follow,
            max_depth: r.max_depth,
            scope: (r.links.scope != Scope::default()).then(|| r.links.scope.to_string()),
            include: r.links.include(),
            exclude: r.links.exclude(),
            strip_query: r.links.strip_query(),
            check_external: r.links.check_external,
            sitemaps: r.sitemaps,
            max_crawl_pages: r.caps.per_job,
            max_host_pages: r.caps.per_host,
        }
    }
}

/// `NAME=/pointer`, as `--extract` takes it.
///
/// # Errors
/// A one-line message with an example.
pub fn parse_extract(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, pointer)) if !name.trim().is_empty() && pointer.trim().starts_with('/') => {
            Ok((name.trim().to_owned(), pointer.trim().to_owned()))
        }
        _ => Err(format!(
            "--extract '{text}': write NAME=/json/pointer, e.g. total=/meta/total"
        )),
    }
}

/// What to do with each fetched page.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "PageText", into = "PageText")]
pub struct PageRules {
    /// How to find the next page, if paginating.
    pub paginate: Option<Paginate>,
    /// JSON pointer to the array whose elements become `items` rows.
    pub items: Option<String>,
    /// Fields to keep: (name, JSON pointer).
    pub extract: Vec<(String, String)>,
    /// Items per page, for `offset` (required) and `page` (optional: a
    /// shorter page ends the chain).
    pub page_size: Option<u64>,
    /// Most pages in one chain.
    pub max_pages: Option<u32>,
    /// Crawl: the links of each fetched HTML page that are in scope become
    /// tasks of the job ([`crate::crawl`]).
    pub follow: bool,
    /// With `follow`: most links followed from a seed (a seed is depth 0,
    /// a page it links to depth 1); `None` for no limit.
    pub max_depth: Option<u32>,
    /// With `follow`: which links are followed, which only checked, and
    /// the query parameters dropped (`--scope`, `--include`, `--exclude`,
    /// `--check-external`, `--strip-query`).
    pub links: LinkRules,
    /// With `follow`: the `Sitemap:` lines of each seed's robots.txt are
    /// links of the seed (`--sitemaps`; also under `--respect-robots`).
    pub sitemaps: bool,
    /// With `follow`: most pages the crawl adds to the job and to one host
    /// (`--max-crawl-pages`, `--max-host-pages`; seeds not counted).
    pub caps: PageCaps,
}

/// What processing a page found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processed {
    /// The next page's URL.
    pub next: Option<Url>,
    /// The `--items` elements, as JSON text.
    pub items: Vec<String>,
    /// The `--extract` fields, as a JSON object.
    pub extracted: Option<String>,
    /// Why the chain stopped, when it stopped for a reason worth saying.
    pub note: Option<String>,
    /// With `follow`: the page's links a crawl follows or checks (in
    /// scope, within the depth), absolute and normalised, each once; a
    /// sitemap's entries with their `<lastmod>`.
    pub links: Vec<Link>,
    /// With `follow`: why a sitemap was not read whole (a protocol cap,
    /// XML that is not well-formed, nesting); the outcome is then
    /// `invalid_sitemap`, and the entries before the fault are kept.
    pub sitemap_fault: Option<String>,
}

/// A link a crawl follows or checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Absolute, normalised.
    pub url: Url,
    /// For a sitemap's entry: its `<lastmod>` (W3C Datetime, as written).
    pub lastmod: Option<String>,
}

impl PageRules {
    /// Whether pagination, items or extraction read the body (as JSON,
    /// or for its `Link` header): every 2xx body is kept.
    fn reads_json(&self) -> bool {
        self.paginate.is_some() || self.items.is_some() || !self.extract.is_empty()
    }

    /// Whether some 2xx bodies are kept in memory for [`process`]
    /// (pagination, items, extraction, a crawl).
    pub fn keeps_bodies(&self) -> bool {
        self.reads_json() || self.follow
    }

    /// Whether a 2xx body of `content_type` is kept for [`process`]: for
    /// pagination, items and extraction, every one; for a crawl, HTML and
    /// what may be a sitemap (XML, gzip).
    pub fn keeps(&self, content_type: Option<&str>) -> bool {
        self.reads_json()
            || (self.follow && (is_html(content_type) || may_be_sitemap(content_type)))
    }

    /// Checks the rules fit together.
    ///
    /// # Errors
    /// A one-line message: `offset` without `--page-size`, counters without
    /// `--items`, a pointer that does not start with `/`.
    pub fn validate(&self) -> Result<(), String> {
        match &self.paginate {
            Some(Paginate::Offset(_)) if self.page_size.is_none() => {
                return Err("--paginate offset=NAME needs --page-size N".into());
            }
            Some(Paginate::Page(_) | Paginate::Offset(_)) if self.items.is_none() => {
                return Err(
                    "--paginate page=/offset= needs --items /POINTER to know when pages run out"
                        .into(),
                );
            }
            _ => {}
        }
        if self.page_size == Some(0) {
            return Err("--page-size must be at least 1".into());
        }
        if self.max_pages == Some(0) {
            return Err("--max-pages must be at least 1".into());
        }
        if !self.follow {
            let l = &self.links;
            let crawl_only = [
                ("--max-depth", self.max_depth.is_some()),
                ("--scope", l.scope != Scope::default()),
                ("--include", !l.include().is_empty()),
                ("--exclude", !l.exclude().is_empty()),
                ("--strip-query", !l.strip_query().is_empty()),
                ("--check-external", l.check_external),
                ("--sitemaps", self.sitemaps),
                ("--max-crawl-pages", self.caps.per_job.is_some()),
                ("--max-host-pages", self.caps.per_host.is_some()),
            ];
            if let Some((flag, _)) = crawl_only.iter().find(|(_, given)| *given) {
                return Err(format!("{flag} shapes a crawl: give --follow too"));
            }
        }
        for p in self.items.iter().chain(self.extract.iter().map(|(_, p)| p)) {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(format!(
                    "'{p}' is not a JSON pointer; write it like /data/items"
                ));
            }
        }
        Ok(())
    }
}

/// Whether `content_type`'s media type, its parameters aside (RFC 9110
/// §8.3.1, compared without case), is one of `types`.
fn is_media_type(content_type: Option<&str>, types: &[&str]) -> bool {
    content_type.is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        types.iter().any(|t| essence.eq_ignore_ascii_case(t))
    })
}

/// Whether `content_type` is HTML (`text/html`, `application/xhtml+xml`).
pub fn is_html(content_type: Option<&str>) -> bool {
    is_media_type(content_type, &["text/html", "application/xhtml+xml"])
}

/// What following a page has to say on its outcome.
enum Remark {
    /// Why a sitemap was not read whole.
    SitemapFault(String),
    /// The page asks not to be indexed, under `--respect-robots`.
    NoIndex,
}

/// The note on the outcome of a page whose `<meta name="robots">` says
/// `noindex` (or `none`), under `--respect-robots`: its outcome is recorded
/// like any other (one per task), and says so for whoever indexes it.
pub const NOINDEX: &str = "noindex: the page asks not to be indexed (<meta name=\"robots\">)";

/// Whether `content_type` may hold a sitemap: XML (`application/xml`,
/// `text/xml`) or gzip (`application/gzip`, `application/x-gzip`).
pub fn may_be_sitemap(content_type: Option<&str>) -> bool {
    is_media_type(
        content_type,
        &[
            "application/xml",
            "text/xml",
            "application/gzip",
            "application/x-gzip",
        ],
    )
}

/// What [`process`] needs to follow a page's links.
#[derive(Debug, Clone, Copy)]
pub struct Crawl<'a> {
    /// The URL the page's task asked for (before redirects).
    pub asked: &'a Url,
    /// The URL of the seed the page descends from (its own for a seed):
    /// the scope is decided against it.
    pub seed: &'a Url,
    /// The page's `Content-Type`: only HTML is read for links.
    pub content_type: Option<&'a str>,
    /// Honour `rel="nofollow"` and `<meta name="robots" content="nofollow">`
    /// (`--respect-robots`).
    pub respect_robots: bool,
}

/// The links of an HTML page, or the entries of a sitemap, that a crawl
/// follows or checks, normalised, each once (see [`PageRules::follow`]);
/// and what its outcome must say. A page that is itself only
/// checked (out of scope, `--check-external`) gives none.
fn follow(
    rules: &PageRules,
    url: &Url,
    page: u32,
    crawl: Crawl<'_>,
    body: &[u8],
) -> Result<(Vec<Link>, Option<Remark>), String> {
    let depth = page.saturating_sub(1);
    if rules.max_depth.is_some_and(|max| depth >= max)
        || (crawl.asked != crawl.seed
            && rules.links.reach(crawl.seed, crawl.asked) != Reach::Follow)
    {
        return Ok((Vec::new(), None));
    }
    let (mut links, fault) = if is_html(crawl.content_type) {
        let found = crate::crawl::links::extract(url.clone(), body).map_err(|e| e.to_string())?;
        let noindex = (crawl.respect_robots && found.noindex).then_some(Remark::NoIndex);
        if crawl.respect_robots && found.nofollow {
            return Ok((Vec::new(), noindex));
        }
        let mut links = found.links;
        if !crawl.respect_robots {
            links.extend(found.nofollow_links);
        }
        let links = links
            .into_iter()
            .map(|url| Link { url, lastmod: None })
            .collect();
        (links, noindex)
    } else if may_be_sitemap(crawl.content_type) {
        match sitemap::read(url, body) {
            None => return Ok((Vec::new(), None)),
            Some(map) if map.kind == sitemap::Kind::Index && depth >= sitemap::MAX_NESTING => {
                let fault = format!(
                    "a sitemap index {depth} levels below its seed: past {} its sitemaps are not read",
                    sitemap::MAX_NESTING
                );
                return Ok((Vec::new(), Some(Remark::SitemapFault(fault))));
            }
            Some(map) => {
                let mut links: Vec<Link> = map
                    .entries
                    .into_iter()
                    .map(|e| {
                        let mut link = Link {
                            url: e.url,
                            lastmod: e.lastmod,
                        };
                        crate::crawl::normalize(&mut link.url);
                        link
                    })
                    .collect();
                let mut once = std::collections::HashSet::with_capacity(links.len());
                links.retain(|l| once.insert(l.url.as_str().to_owned()));
                (links, map.fault.map(Remark::SitemapFault))
            }
        }
    } else {
        return Ok((Vec::new(), None));
    };
    if rules.links.strips_query() {
        // Dropping parameters can give two links one spelling.
        let mut once = std::collections::HashSet::with_capacity(links.len());
        links.retain_mut(|link| {
            rules.links.normalize(&mut link.url);
            once.insert(link.url.as_str().to_owned())
        });
    }
    links.retain(|link| rules.links.reach(crawl.seed, &link.url) != Reach::Skip);
    Ok((links, fault))
}

/// Processes page number `page` fetched from `url`, with the `Link` header's
/// `rel="next"` target (if any) and the body; with [`PageRules::follow`],
/// the page's links (`crawl`).
///
/// # Errors
/// A one-line reason when the body is not JSON, or not of the shape the
/// rules need (the outcome is then `invalid_json`).
pub fn process(
    rules: &PageRules,
    url: &Url,
    page: u32,
    link_next: Option<&str>,
    crawl: Crawl<'_>,
    body: &[u8],
) -> Result<Processed, String> {
    let (links, said) = if rules.follow {
        follow(rules, url, page, crawl, body)?
    } else {
        (Vec::new(), None)
    };
    let mut out = process_json(rules, url, page, link_next, body)?;
    out.links = links;
    match said {
        Some(Remark::SitemapFault(fault)) => out.sitemap_fault = Some(fault),
        Some(Remark::NoIndex) => out.note = out.note.or_else(|| Some(NOINDEX.to_owned())),
        None => {}
    }
    Ok(out)
}

/// Pagination, items and extraction of [`process`].
fn process_json(
    rules: &PageRules,
    url: &Url,
    page: u32,
    link_next: Option<&str>,
    body: &[u8],
) -> Result<Processed, String> {
    // The parsed page, for extraction and JSON pagination; items are read
    // from the page's own text, and parse it only to say what is wrong.
    let needs_value =
        !rules.extract.is_empty() || rules.paginate.as_ref().is_some_and(Paginate::needs_json);
    let parse = || -> Result<serde_json::Value, String> {
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))
    };
    let mut json: Option<serde_json::Value> = needs_value.then(parse).transpose()?;
    let mut out = Processed::default();
    if let Some(pointer) = &rules.items {
        // Each element as the API wrote it (minified), so numbers keep
        // every digit.
        match raw_array(body, pointer) {
            Some(items) => out.items = items,
            None => {
                let json = match &mut json {
                    Some(json) => &*json,
                    None => json.insert(parse()?),
                };
                match json.pointer(pointer) {
                    // Not reached while `raw_array` follows pointers as
                    // RFC 6901 (and serde_json) do; the parsed form then.
                    Some(serde_json::Value::Array(items)) => {
                        out.items = items.iter().map(serde_json::Value::to_string).collect();
                    }
                    Some(serde_json::Value::Null) => {}
                    None => return Err(missing_items(pointer, json)),
                    Some(other) => {
                        return Err(format!(
                            "the value at {pointer} is {}, not an array",
                            kind(other)
                        ));
                    }
                }
            }
        }
    }
    if let Some(json) = &json
        && !rules.extract.is_empty()
    {
        let fields: serde_json::Map<String, serde_json::Value> = rules
            .extract
            .iter()
            .map(|(name, p)| (name.clone(), json.pointer(p).cloned().unwrap_or_default()))
            .collect();
        out.extracted = Some(serde_json::Value::Object(fields).to_string());
    }
    let Some(paginate) = &rules.paginate else {
        return Ok(out);
    };
    if rules.items.is_some() && out.items.is_empty() {
        out.note = Some("pagination ended: an empty page".into());
        return Ok(out);
    }
    if let Some(max) = rules.max_pages
        && page >= max
    {
        out.note = Some(format!("pagination stopped at --max-pages {max}"));
        return Ok(out);
    }
    let short = rules
        .page_size
        .is_some_and(|size| (out.items.len() as u64) < size);
    let next = match paginate {
        Paginate::Link => link_next.map(|t| resolve(url, t)).transpose()?,
        Paginate::JsonNext(pointer) => match json.as_ref().and_then(|j| j.pointer(pointer)) {
            Some(serde_json::Value::String(t)) if !t.trim().is_empty() => {
                Some(resolve(url, t.trim())?)
            }
            Some(serde_json::Value::Null) | None => None,
            Some(serde_json::Value::String(_)) => None,
            Some(other) => {
                return Err(format!(
                    "the next-page value at {pointer} is {}, not a URL string",
                    kind(other)
                ));
            }
        },
        Paginate::Cursor { pointer, param } => {
            let cursor = match json.as_ref().and_then(|j| j.pointer(pointer)) {
                Some(serde_json::Value::String(t)) if !t.is_empty() => Some(t.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                Some(serde_json::Value::Null | serde_json::Value::String(_)) | None => None,
                Some(other) => {
                    return Err(format!(
                        "the cursor at {pointer} is {}, not a string or number",
                        kind(other)
                    ));
                }
            };
            cursor.map(|c| with_param(url, param, &c))
        }
        Paginate::Page(param) if !short => {
            let current: u64 = query_number(url, param).unwrap_or(1);
            Some(with_param(url, param, &(current + 1).to_string()))
        }
        Paginate::Offset(param) if !short => {
            let current: u64 = query_number(url, param).unwrap_or(0);
            let size = rules.page_size.unwrap_or(out.items.len() as u64);
            Some(with_param(url, param, &(current + size).to_string()))
        }
        Paginate::Page(_) | Paginate::Offset(_) => {
            out.note = Some("pagination ended: a page shorter than --page-size".into());
            None
        }
    };
    if next.is_none() && out.note.is_none() {
        out.note = Some(match paginate {
            Paginate::Link => "pagination ended: no Link rel=\"next\" on this page".into(),
            Paginate::JsonNext(pointer) => {
                format!("pagination ended: no next-page URL at {pointer}")
            }
            Paginate::Cursor { pointer, .. } => format!("pagination ended: no cursor at {pointer}"),
            Paginate::Page(_) | Paginate::Offset(_) => "pagination ended".into(),
        });
    }
    out.next = next;
    Ok(out)
}

/// The `rel="next"` target of a `Link` header value (RFC 8288), as written.
pub fn link_next(header: &str) -> Option<String> {
    let links = parse_link_header::parse_with_rel(header).ok()?;
    links.get("next").map(|l| l.raw_uri.clone())
}

fn resolve(base: &Url, target: &str) -> Result<Url, String> {
    let url = base
        .join(target)
        .map_err(|e| format!("the next-page link '{target}' is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the next-page link '{target}' is not http or https"
        ));
    }
    Ok(url)
}

fn query_number(url: &Url, param: &str) -> Option<u64> {
    url.query_pairs()
        .find(|(k, _)| k == param)
        .and_then(|(_, v)| v.parse().ok())
}

/// `url` with the query parameter `param` set to `value` (replaced if there).
fn with_param(url: &Url, param: &str, value: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != param)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut next = url.clone();
    {
        let mut query = next.query_pairs_mut();
        query.clear();
        for (k, v) in &pairs {
            query.append_pair(k, v);
        }
        query.append_pair(param, value);
    }
    next
}

/// The elements of the array at `pointer` (RFC 6901) in the JSON `body`,
/// each as its own text, minified: an integer past 64 bits or a decimal
/// with more digits than a double holds stays as the API wrote it, where
/// a parsed value would round it. `None` when the pointer does not lead to
/// an array.
fn raw_array(body: &[u8], pointer: &str) -> Option<Vec<String>> {
    use serde_json::value::RawValue;
    let mut at: &RawValue = serde_json::from_slice(body).ok()?;
    if !pointer.is_empty() {
        for token in pointer.strip_prefix('/')?.split('/') {
            let token = token.replace("~1", "/").replace("~0", "~");
            let text = at.get().trim_start();
            at = if text.starts_with('{') {
                let map: std::collections::HashMap<String, &RawValue> =
                    serde_json::from_str(text).ok()?;
                *map.get(&token)?
            } else if text.starts_with('[') {
                // An index is digits without a leading zero (RFC 6901 §4).
                let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
                if !digits || (token.len() > 1 && token.starts_with('0')) {
                    return None;
                }
                let list: Vec<&RawValue> = serde_json::from_str(text).ok()?;
                *list.get(token.parse::<usize>().ok()?)?
            } else {
                return None;
            };
        }
    }
    let list: Vec<&RawValue> = serde_json::from_str(at.get()).ok()?;
    Some(list.into_iter().map(|v| minify(v.get())).collect())
}

/// `json` without the whitespace between its tokens (RFC 8259 §2: space,
/// tab, line feed, carriage return), strings left as they are.
fn minify(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// Why the items `pointer` found nothing in `json`: it names the pointer
/// and what the page holds instead, so the user can correct it. A missing
/// array is never taken for an empty page: that would end a chain early
/// and record no items without a word.
fn missing_items(pointer: &str, json: &serde_json::Value) -> String {
    let holds = match json {
        serde_json::Value::Object(map) if map.is_empty() => "an empty object".to_owned(),
        serde_json::Value::Object(map) => {
            const SHOWN: usize = 10;
            let mut keys: Vec<String> = map.keys().take(SHOWN).map(|k| format!("/{k}")).collect();
            if map.len() > SHOWN {
                keys.push(format!("… {} more", map.len() - SHOWN));
            }
            format!("an object with the top-level keys {}", keys.join(", "))
        }
        serde_json::Value::Array(_) => {
            "an array: for items that are the whole page, the pointer is '' (RFC 6901's whole document)".to_owned()
        }
        other => kind(other).to_owned(),
    };
    format!("the items pointer {pointer} finds nothing in this page, which is {holds}")
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("test URL")
    }

    fn rules(paginate: &str, items: Option<&str>, page_size: Option<u64>) -> PageRules {
        PageRules {
            paginate: Some(Paginate::parse(paginate, Some("after")).expect("valid")),
            items: items.map(str::to_owned),
            page_size,
            ..PageRules::default()
        }
    }

    #[test]
    fn items_keep_every_digit_the_api_wrote_minified() {
        let body = br#"{"data": {"a/b": [ {"big": 1180591620717411303424, "s": "x y\" z"},
            0.1000000000000000055511151231257827 ]}}"#;
        let items = raw_array(body, "/data/a~1b").expect("the array");
        assert_eq!(
            items,
            [
                r#"{"big":1180591620717411303424,"s":"x y\" z"}"#,
                "0.1000000000000000055511151231257827"
            ]
        );
        assert_eq!(raw_array(b"[1, 2]", ""), Some(vec!["1".into(), "2".into()]));
        assert_eq!(raw_array(b"{\"a\": 1}", "/a"), None);
        let nested = b"{\"p\": [[1], [2]]}";
        assert_eq!(raw_array(nested, "/p/1"), Some(vec!["2".into()]));
        for index in ["01", "+1", "-1", ""] {
            assert_eq!(raw_array(nested, &format!("/p/{index}")), None, "{index}");
        }
    }

    #[test]
    fn link_header_next_is_resolved_against_the_page() {
        let next = link_next(r#"</items?page=1>; rel="prev", </items?page=3>; rel="next""#);
        assert_eq!(next.as_deref(), Some("/items?page=3"));
        let p = process_json(
            &rules("link", None, None),
            &url("http://h.test/items?page=2"),
            2,
            next.as_deref(),
            b"",
        )
        .expect("processes");
        assert_eq!(
            p.next.map(|u| u.to_string()).as_deref(),
            Some("http://h.test/items?page=3")
        );
    }

    #[test]
    fn json_next_and_cursor_read_the_body() {
        let body = br#"{"data":[1,2],"next":"/api?p=2","meta":{"cursor":"abc"}}"#;
        let r = rules("json-next=/next", Some("/data"), None);
        let p = process_json(&r, &url("http://h.test/api"), 1, None, body).expect("processes");
        assert_eq!(p.items, ["1", "2"]);
        assert_eq!(
            p.next.map(|u| u.to_string()).as_deref(),
            Some("http://h.test/api?p=2")
        );
        let r = rules("cursor=/meta/cursor", Some("/data"), None);
        let p = process_json(&r, &url("http://h.test/api?after=old&x=1"), 1, None, body)
            .expect("processes");
        assert_eq!(
            p.next.map(|u| u.to_string()).as_deref(),
            Some("http://h.test/api?x=1&after=abc")
        );
        let end = process_json(
            &r,
            &url("http://h.test/api"),
            1,
            None,
            br#"{"data":[1],"meta":{"cursor":null}}"#,
        )
        .expect("processes");
        assert_eq!(end.next, None);
    }

    #[test]
    fn counters_advance_and_stop_on_short_or_empty_pages() {
        let r = rules("page=p", Some("/items"), Some(2));
        let p = process_json(
            &r,
            &url("http://h.test/l?p=4"),
            4,
            None,
            br#"{"items":[1,2]}"#,
        )
        .expect("processes");
        assert_eq!(
            p.next.map(|u| u.to_string()).as_deref(),
            Some("http://h.test/l?p=5")
        );
        let short = process_json(
            &r,
            &url("http://h.test/l?p=5"),
            5,
            None,
            br#"{"items":[1]}"#,
        )
        .expect("processes");
        assert_eq!(short.next, None);
        let r = rules("offset=start", Some("/items"), Some(2));
        let p = process_json(&r, &url("http://h.test/l"), 1, None, br#"{"items":[1,2]}"#)
            .expect("processes");
        assert_eq!(
            p.next.map(|u| u.to_string()).as_deref(),
            Some("http://h.test/l?start=2")
        );
        let empty = process_json(
            &r,
            &url("http://h.test/l?start=2"),
            2,
            None,
            br#"{"items":[]}"#,
        )
        .expect("processes");
        assert_eq!(
            (empty.next, empty.note.as_deref()),
            (None, Some("pagination ended: an empty page"))
        );
    }

    #[test]
    fn max_pages_and_bad_bodies() {
        let mut r = rules("json-next=/next", None, None);
        r.max_pages = Some(3);
        let p = process_json(&r, &url("http://h.test/"), 3, None, br#"{"next":"/4"}"#)
            .expect("processes");
        assert_eq!(p.next, None);
        assert!(
            process_json(&r, &url("http://h.test/"), 1, None, b"<html>")
                .expect_err("not JSON")
                .contains("not JSON")
        );
        let items = rules("page=p", Some("/items"), None);
        let err = process_json(
            &items,
            &url("http://h.test/"),
            1,
            None,
            br#"{"items":{"a":1}}"#,
        )
        .expect_err("not an array");
        assert!(err.contains("an object, not an array"), "{err}");
        let extract = PageRules {
            extract: vec![
                ("total".into(), "/meta/total".into()),
                ("missing".into(), "/nope".into()),
            ],
            ..PageRules::default()
        };
        let p = process_json(
            &extract,
            &url("http://h.test/"),
            1,
            None,
            br#"{"meta":{"total":41}}"#,
        )
        .expect("processes");
        // In the order the --extract flags gave them.
        assert_eq!(
            p.extracted.as_deref(),
            Some(r#"{"total":41,"missing":null}"#)
        );
    }

    #[test]
    fn an_items_pointer_that_finds_nothing_is_an_error_not_an_empty_page() {
        let r = rules("link", Some("/items"), None);
        let root = process_json(&r, &url("http://h.test/"), 1, None, br#"[{"id":1}]"#)
            .expect_err("a root array has no /items");
        assert!(root.contains("/items") && root.contains("''"), "{root}");
        let keys = process_json(
            &r,
            &url("http://h.test/"),
            1,
            None,
            br#"{"data":[],"meta":{}}"#,
        )
        .expect_err("no /items key");
        assert!(keys.contains("/data, /meta"), "{keys}");
        // The whole document, and an explicit null (no items left), still work.
        let whole = rules("link", Some(""), None);
        let p = process_json(
            &whole,
            &url("http://h.test/"),
            1,
            None,
            br#"[{"id":1},{"id":2}]"#,
        )
        .expect("a root array");
        assert_eq!(p.items, [r#"{"id":1}"#, r#"{"id":2}"#]);
        let null = process_json(&r, &url("http://h.test/"), 1, None, br#"{"items":null}"#)
            .expect("null is an empty page");
        assert_eq!(
            null.note.as_deref(),
            Some("pagination ended: an empty page")
        );
    }

    #[test]
    fn rules_and_styles_are_checked() {
        assert!(Paginate::parse("cursor=/c", None).is_err());
        assert!(Paginate::parse("page", None).is_err());
        assert!(Paginate::parse("sideways", None).is_err());
        let r = PageRules {
            paginate: Some(Paginate::Offset("o".into())),
            items: Some("/x".into()),
            ..PageRules::default()
        };
        assert!(
            r.validate()
                .expect_err("needs a page size")
                .contains("--page-size")
        );
    }
}
