//! Cookies: a store for the run (`--cookies`), loaded from and saved to a
//! cookie file in the Netscape format (`--cookie-jar FILE`) that curl
//! (`-b`/`-c`) and wget (`--load-cookies`/`--save-cookies`) read and write.
//!
//! Matching a cookie to a request (domain, path, `Secure`, expiry: RFC 6265
//! §5) is `cookie_store`'s; [`Jar`] only shares one store between the
//! client's connections and reads and writes the file.
//!
//! The Netscape format is one cookie per line, seven fields separated by
//! tabs: domain, whether subdomains match (`TRUE`/`FALSE`), path, secure
//! only (`TRUE`/`FALSE`), expiry (Unix seconds, `0` for a session cookie),
//! name, value. Lines starting with `#` are comments, except that curl
//! writes `HttpOnly` cookies with the prefix `#HttpOnly_` on the domain.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cookie_store::{CookieDomain, CookieExpiration, CookieStore, RawCookie};
use reqwest::header::HeaderValue;
use url::Url;

/// The first line of a saved file, which curl also writes.
const HEADER: &str = "# Netscape HTTP Cookie File\n# Written by volley: one cookie a line, tab-separated: domain, subdomains, path, secure, expires (Unix s), name, value.\n\n";

/// Why a cookie file could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum CookieError {
    /// The file exists but could not be read.
    #[error("cannot read --cookie-jar {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A line is not a Netscape-format cookie.
    #[error(
        "--cookie-jar {path} line {line}: {why}; a line is 7 tab-separated fields: domain, subdomains (TRUE/FALSE), path, secure (TRUE/FALSE), expires (Unix seconds, 0 for the session), name, value"
    )]
    Line {
        /// The file.
        path: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// The file could not be written.
    #[error("cannot save cookies to --cookie-jar {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// The cookie store of one run, shared by every request of its client.
#[derive(Debug, Default)]
pub struct Jar {
    store: Mutex<CookieStore>,
    /// Where it is loaded from and saved to, if anywhere.
    file: Option<PathBuf>,
}

impl Jar {
    /// The run's store, if it keeps cookies: loaded from `file` when given
    /// (a file that does not exist yet is an empty store, as with curl's
    /// `-c`).
    ///
    /// # Errors
    /// [`CookieError::Read`] when the file exists but cannot be read;
    /// [`CookieError::Line`] for the first line that is not a cookie.
    pub fn open(keep: bool, file: Option<&Path>) -> Result<Option<Jar>, CookieError> {
        let Some(path) = file else {
            return Ok(keep.then(Jar::default));
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(CookieError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let store = parse(&text, SystemTime::now()).map_err(|(line, why)| CookieError::Line {
            path: path.display().to_string(),
            line,
            why,
        })?;
        Ok(Some(Jar {
            store: Mutex::new(store),
            file: Some(path.to_owned()),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, CookieStore> {
        // A panic while holding the lock leaves a store that is still whole.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cookies held, in the Netscape format.
    pub fn to_netscape(&self) -> String {
        format(&self.lock())
    }

    /// Writes the store back to its file, if it has one: to a temporary
    /// file beside it, mode 0600 (cookies are credentials), then renamed
    /// over it, so a crash never leaves half a file.
    ///
    /// # Errors
    /// [`CookieError::Write`].
    pub fn save(&self) -> Result<(), CookieError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let fail = |source| CookieError::Write {
            path: path.display().to_string(),
            source,
        };
        let text = self.to_netscape();
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&partial).map_err(fail)?;
        file.write_all(text.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&partial, path).map_err(fail)
    }
}

impl reqwest::cookie::CookieStore for Jar {
    fn set_cookies(&self, headers: &mut dyn Iterator<Item = &HeaderValue>, url: &Url) {
        let cookies = headers.filter_map(|value| {
            let text = std::str::from_utf8(value.as_bytes()).ok()?;
            RawCookie::parse(text.to_owned()).ok()
        });
        self.lock().store_response_cookies(cookies, url);
    }

    fn cookies(&self, url: &Url) -> Option<HeaderValue> {
        let store = self.lock();
        let mut line = String::new();
        for (name, value) in store.get_request_values(url) {
            if !line.is_empty() {
                line.push_str("; ");
            }
            line.push_str(name);
            line.push('=');
            line.push_str(value);
        }
        if line.is_empty() {
            return None;
        }
        let mut value = HeaderValue::from_maybe_shared(Bytes::from(line)).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// Reads Netscape-format `text` into a store, dropping cookies expired at
/// `now`; the error is the first bad line's number and what is wrong.
fn parse(text: &str, now: SystemTime) -> Result<CookieStore, (usize, String)> {
    let mut store = CookieStore::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let (line, http_only) = match line.strip_prefix("#HttpOnly_") {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |why: String| (i + 1, why);
        let fields: Vec<&str> = line.split('\t').collect();
        // curl writes an empty value as a trailing tab, which some editors
        // strip: six fields mean an empty value.
        let [domain, subdomains, path, secure, expires, name, value] = match fields[..] {
            [d, s, p, sec, e, n, v] => [d, s, p, sec, e, n, v],
            [d, s, p, sec, e, n] => [d, s, p, sec, e, n, ""],
            _ => return Err(fail(format!("{} fields", fields.len()))),
        };
        let flag = |text: &str, what: &str| match text {
            "TRUE" => Ok(true),
            "FALSE" => Ok(false),
            other => Err(fail(format!("{what} is '{other}', not TRUE or FALSE"))),
        };
        let (subdomains, secure) = (flag(subdomains, "subdomains")?, flag(secure, "secure")?);
        let expires: u64 = expires
            .parse()
            .map_err(|_| fail(format!("expires '{expires}' is not Unix seconds")))?;
        let host = domain.trim_start_matches('.');
        if host.is_empty() || name.is_empty() || !path.starts_with('/') {
            return Err(fail(
                "the domain and name must not be empty, and the path starts with /".into(),
            ));
        }
        if expires != 0 && UNIX_EPOCH + Duration::from_secs(expires) <= now {
            continue;
        }
        let mut cookie = RawCookie::new(name.to_owned(), value.to_owned());
        cookie.set_path(path.to_owned());
        cookie.set_secure(secure);
        cookie.set_http_only(http_only);
        if subdomains {
            cookie.set_domain(host.to_owned());
        }
        if expires != 0 {
            let at = i64::try_from(expires)
                .ok()
                .and_then(unix_time)
                .ok_or_else(|| fail(format!("expires '{expires}' is out of range")))?;
            cookie.set_expires(at);
        }
        let scheme = if secure { "https" } else { "http" };
        let url = Url::parse(&format!("{scheme}://{host}{path}"))
            .map_err(|e| fail(format!("'{host}' is not a host name ({e})")))?;
        store
            .insert_raw(&cookie, &url)
            .map_err(|e| fail(format!("the cookie does not fit its domain ({e})")))?;
    }
    Ok(store)
}

/// Unix seconds as the time type the `cookie` crate takes.
fn unix_time(seconds: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(seconds).ok()
}

/// The unexpired cookies of `store` in the Netscape format, session cookies
/// with expiry 0 (as curl writes them).
fn format(store: &CookieStore) -> String {
    let mut out = String::from(HEADER);
    for cookie in store.iter_unexpired() {
        let (domain, subdomains) = match &cookie.domain {
            CookieDomain::HostOnly(host) => (host.clone(), "FALSE"),
            CookieDomain::Suffix(suffix) => (format!(".{suffix}"), "TRUE"),
            CookieDomain::NotPresent | CookieDomain::Empty => continue,
        };
        let expires = match &cookie.expires {
            CookieExpiration::AtUtc(at) => at.unix_timestamp().max(0),
            CookieExpiration::SessionEnd => 0,
        };
        let prefix = if cookie.http_only() == Some(true) {
            "#HttpOnly_"
        } else {
            ""
        };
        let secure = if cookie.secure() == Some(true) {
            "TRUE"
        } else {
            "FALSE"
        };
        out.push_str(&format!(
            "{prefix}{domain}\t{subdomains}\t{path}\t{secure}\t{expires}\t{name}\t{value}\n",
            path = String::from(&cookie.path),
            name = cookie.name(),
            value = cookie.value(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use reqwest::cookie::CookieStore as _;

    use super::*;

    const CURL: &str = "# Netscape HTTP Cookie File\n\
        # https://curl.se/docs/http-cookies.html\n\
        \n\
        127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tabc\n\
        #HttpOnly_.example.com\tTRUE\t/api\tTRUE\t4102444800\ttoken\txyz\n\
        old.example\tFALSE\t/\tFALSE\t1000\tgone\tx\n\
        127.0.0.1\tFALSE\t/\tFALSE\t0\tempty\n";

    fn jar(text: &str) -> Jar {
        Jar {
            store: Mutex::new(parse(text, SystemTime::now()).unwrap()),
            file: None,
        }
    }

    fn cookie_for(jar: &Jar, url: &str) -> String {
        jar.cookies(&Url::parse(url).unwrap())
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn a_curl_file_is_read_with_its_domains_paths_and_flags() {
        let jar = jar(CURL);
        let local = cookie_for(&jar, "http://127.0.0.1:8080/x");
        assert!(
            local.contains("session=abc") && local.contains("empty="),
            "{local}"
        );
        // Subdomains, path and Secure all apply.
        assert_eq!(
            cookie_for(&jar, "https://a.example.com/api/v1"),
            "token=xyz"
        );
        assert_eq!(cookie_for(&jar, "http://a.example.com/api/v1"), "");
        assert_eq!(cookie_for(&jar, "https://a.example.com/other"), "");
        // Expired in 1970: dropped.
        assert_eq!(cookie_for(&jar, "http://old.example/"), "");
    }

    #[test]
    fn saving_then_loading_gives_the_same_cookies() {
        let first = jar(CURL);
        let text = first.to_netscape();
        assert!(text.starts_with("# Netscape HTTP Cookie File"));
        assert!(
            text.contains("#HttpOnly_.example.com\tTRUE\t/api\tTRUE\t4102444800\ttoken\txyz\n"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tabc\n"));
        assert!(!text.contains("gone"));
        let again = jar(&text);
        assert_eq!(again.to_netscape().lines().count(), text.lines().count());
        assert_eq!(cookie_for(&again, "https://b.example.com/api"), "token=xyz");
    }

    #[test]
    fn cookies_set_by_a_response_go_back_to_that_host_only() {
        let jar = Jar::default();
        let url = Url::parse("http://127.0.0.1:9/login").unwrap();
        let set = [
            HeaderValue::from_static("sid=s3cret; Path=/; HttpOnly"),
            HeaderValue::from_static("pref=dark; Max-Age=0"),
        ];
        jar.set_cookies(&mut set.iter(), &url);
        assert_eq!(cookie_for(&jar, "http://127.0.0.1:9/data"), "sid=s3cret");
        assert_eq!(cookie_for(&jar, "http://127.0.0.2:9/data"), "");
        assert!(
            jar.to_netscape()
                .contains("#HttpOnly_127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\ts3cret")
        );
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        let cases = [
            ("a\tTRUE\t/\n", 1, "3 fields"),
            (
                "# c\nx.test\tYES\t/\tFALSE\t0\tn\tv\n",
                2,
                "subdomains is 'YES'",
            ),
            (
                "x.test\tFALSE\t/\tFALSE\tsoon\tn\tv\n",
                1,
                "not Unix seconds",
            ),
            (
                "x.test\tFALSE\tnoslash\tFALSE\t0\tn\tv\n",
                1,
                "path starts with /",
            ),
        ];
        for (text, line, why) in cases {
            let (n, message) = parse(text, SystemTime::now()).unwrap_err();
            assert_eq!(n, line, "{text:?}");
            assert!(message.contains(why), "{message}");
        }
    }

    #[test]
    fn a_missing_file_is_an_empty_store_and_save_writes_it_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jar.txt");
        let jar = Jar::open(false, Some(&path)).unwrap().unwrap();
        jar.set_cookies(
            &mut [HeaderValue::from_static("k=v")].iter(),
            &Url::parse("http://127.0.0.1/").unwrap(),
        );
        jar.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("127.0.0.1\tFALSE\t/\tFALSE\t0\tk\tv\n"),
            "{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(Jar::open(false, None).unwrap().is_none());
        assert!(Jar::open(true, None).unwrap().is_some());
    }
}
