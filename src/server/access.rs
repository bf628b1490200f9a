//! Who may do what: the ingest token, the optional read token, which browser
//! origins may use the API, and which `Host` names the server answers to.
//! Tokens are compared in constant time and never logged.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use poem::Request;
use poem::http::header;
use subtle::ConstantTimeEq;

use super::ServeConfig;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token was presented.
    Missing,
    /// A token was presented, and it is not one of ours.
    Wrong,
}

impl Denied {
    pub fn message(self, what: &str) -> String {
        match self {
            Denied::Missing => {
                format!("{what} needs a token: send the header `Authorization: Bearer TOKEN`")
            }
            Denied::Wrong => format!("the token is not valid for {what}"),
        }
    }
}

/// Where a request may carry its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenIn {
    /// The `Authorization` header only.
    Header,
    /// The header, or `?access_token=` where a browser cannot send headers
    /// (the WebSocket handshake).
    HeaderOrQuery,
}

pub struct Access {
    ingest: Option<String>,
    read: Option<String>,
    origins: Origins,
    hosts: Vec<HostPattern>,
    refusals: RefusalLog,
}

impl Access {
    pub fn new(config: &ServeConfig) -> Self {
        Self {
            ingest: config.token.clone(),
            read: config.read_token.clone(),
            origins: Origins::new(&config.cors_origins),
            hosts: config
                .allowed_hosts
                .iter()
                .map(|h| HostPattern::new(h))
                .collect(),
            refusals: RefusalLog::default(),
        }
    }

    /// Ingest needs the ingest token when one is set.
    pub fn can_ingest(&self, req: &Request) -> Result<(), Denied> {
        let result = match &self.ingest {
            None => Ok(()),
            Some(token) => check(presented(req, TokenIn::Header), &[token]),
        };
        self.note(req, result)
    }

    /// Reading needs the read token (or the ingest token) when a read token is set.
    pub fn can_read(&self, req: &Request, from: TokenIn) -> Result<(), Denied> {
        let result = match (&self.read, &self.ingest) {
            (None, _) => Ok(()),
            (Some(read), None) => check(presented(req, from), &[read]),
            (Some(read), Some(ingest)) => check(presented(req, from), &[read, ingest]),
        };
        self.note(req, result)
    }

    fn note(&self, req: &Request, result: Result<(), Denied>) -> Result<(), Denied> {
        if let Err(denied) = result {
            self.refusals.record(req, denied);
        }
        result
    }

    /// A browser may open the WebSocket only from this server's own pages or
    /// an allowed origin; clients that send no Origin (not browsers) may.
    pub fn origin_allowed(&self, req: &Request) -> bool {
        let Some(origin) = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
        else {
            return true;
        };
        same_origin(req) || self.origins.allows(origin)
    }

    /// Whether the request's `Host` is one this server answers to: IP
    /// literals, `localhost` (and `*.localhost`), and the names allowed with
    /// `--allowed-host`. Any other name may be a DNS-rebinding page that
    /// resolved its own domain to this machine.
    pub fn host_allowed(&self, req: &Request) -> Result<(), String> {
        let Some(host) = req.headers().get(header::HOST) else {
            // Only HTTP/1.0 clients omit it; browsers always send it.
            return Ok(());
        };
        let Some(name) = host.to_str().ok().and_then(host_name) else {
            return Err("the Host header is not a valid host name".into());
        };
        if is_local_or_literal(&name) || self.hosts.iter().any(|p| p.matches(&name)) {
            Ok(())
        } else {
            Err(format!(
                "this server does not answer to the host name `{name}`; if it is meant to, start \
                 rta with --allowed-host {name} (or --allowed-host '*' behind a proxy that sets Host)"
            ))
        }
    }
}

/// Browser origins allowed by `--cors-origin`.
enum Origins {
    Any,
    Listed(Vec<String>),
}

impl Origins {
    fn new(configured: &[String]) -> Self {
        if configured.iter().any(|o| o == "*") {
            Origins::Any
        } else {
            Origins::Listed(
                configured
                    .iter()
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            )
        }
    }

    fn allows(&self, origin: &str) -> bool {
        match self {
            Origins::Any => true,
            Origins::Listed(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// Checks one `--cors-origin` value: `*`, or `scheme://host[:port]` with no
/// path, as browsers send it in `Origin`. The error says what to pass.
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let trimmed = origin.trim_end_matches('/');
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(format!(
            "--cors-origin {origin:?} has no scheme; browsers send origins like https://{trimmed}"
        ));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!(
            "--cors-origin {origin:?}: the scheme must be http or https"
        ));
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace)
    {
        return Err(format!(
            "--cors-origin {origin:?} is not an origin: give scheme://host[:port] with no path, \
             such as https://intranet.example.com"
        ));
    }
    Ok(())
}

/// Checks one `--allowed-host` value: `*`, `*.example.com` or a host name
/// (no port, no scheme). The error says what to pass.
pub fn check_allowed_host(pattern: &str) -> Result<(), String> {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    let valid = pattern == "*"
        || (!name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            && !name.starts_with('.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "--allowed-host {pattern:?} is not a host name; give a name without port or scheme, \
             such as rta.example.com, *.example.com or * (IP addresses and localhost always work)"
        ))
    }
}

/// A name given to `--allowed-host`: `*` (any), `*.example.com` (a domain
/// and its subdomains) or an exact name.
enum HostPattern {
    Any,
    Domain(String),
    Exact(String),
}

impl HostPattern {
    fn new(pattern: &str) -> Self {
        let pattern = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
        if pattern == "*" {
            HostPattern::Any
        } else if let Some(domain) = pattern.strip_prefix("*.") {
            HostPattern::Domain(domain.to_string())
        } else {
            HostPattern::Exact(host_name(&pattern).unwrap_or(pattern))
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(exact) => exact == name,
            HostPattern::Domain(domain) => {
                name == domain
                    || name
                        .strip_suffix(domain.as_str())
                        .is_some_and(|sub| sub.ends_with('.'))
            }
        }
    }
}

/// The host name of a `Host` value, lowercased, without port or final dot;
/// IPv6 literals keep their brackets off (`[::1]:80` is `::1`).
fn host_name(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inside
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    let name = name.trim_end_matches('.');
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// IP literals cannot be rebound, and browsers resolve `localhost` and its
/// subdomains to this machine without asking DNS.
fn is_local_or_literal(name: &str) -> bool {
    name.parse::<IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost")
}

/// Whether the request's Origin is this server itself (the Host it was sent to).
pub fn same_origin(req: &Request) -> bool {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

/// The token a request presents: a Bearer header (the scheme's case does not
/// matter), or `access_token` in the query string where allowed.
fn presented(req: &Request, from: TokenIn) -> Option<String> {
    if let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    if from == TokenIn::Header {
        return None;
    }
    req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "access_token")
            .map(|(_, v)| percent_decode(v))
    })
}

fn check(given: Option<String>, accepted: &[&String]) -> Result<(), Denied> {
    let given = given.ok_or(Denied::Missing)?;
    // Compare with every token, always, so timing tells nothing.
    let matches = accepted.iter().fold(0u8, |any, token| {
        any | given.as_bytes().ct_eq(token.as_bytes()).unwrap_u8()
    });
    if matches == 1 {
        Ok(())
    } else {
        Err(Denied::Wrong)
    }
}

/// How often refused authentications are logged at most.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

/// Logs refused authentications where an operator sees them, at most one
/// line per [`REFUSALS_LOGGED_EVERY`] with a count of the others, so a flood
/// of bad requests cannot flood the log. The token is never logged.
#[derive(Default)]
struct RefusalLog {
    state: Mutex<RefusalState>,
}

#[derive(Default)]
struct RefusalState {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    fn record(&self, req: &Request, denied: Denied) {
        let unlogged = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let now = Instant::now();
            if state
                .last_logged
                .is_some_and(|at| now.duration_since(at) < REFUSALS_LOGGED_EVERY)
            {
                state.unlogged += 1;
                return;
            }
            state.last_logged = Some(now);
            std::mem::take(&mut state.unlogged)
        };
        let reason = match denied {
            Denied::Missing => "no token",
            Denied::Wrong => "a wrong token",
        };
        let remote = req.remote_addr().to_string();
        tracing::warn!(
            method = %req.method(),
            path = %req.uri().path(),
            %remote,
            "refused a request with {reason} ({unlogged} more refused since the last such message)"
        );
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_tokens() {
        assert_eq!(percent_decode("a%2Fb%3D"), "a/b=");
        assert_eq!(percent_decode("x%2"), "x%2");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn checks_tokens() {
        let (a, b) = ("alpha".to_string(), "beta".to_string());
        assert_eq!(check(None, &[&a]), Err(Denied::Missing));
        assert_eq!(check(Some("beta".into()), &[&a]), Err(Denied::Wrong));
        assert_eq!(check(Some("beta".into()), &[&a, &b]), Ok(()));
        assert_eq!(check(Some("alph".into()), &[&a]), Err(Denied::Wrong));
    }

    #[test]
    fn host_names() {
        assert_eq!(
            host_name("Example.COM:8080").as_deref(),
            Some("example.com")
        );
        assert_eq!(host_name("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(host_name("[::1]").as_deref(), Some("::1"));
        assert_eq!(host_name("localhost.").as_deref(), Some("localhost"));
        assert_eq!(host_name("a:b:c"), None);
        assert_eq!(host_name("[::1]x"), None);
        assert_eq!(host_name(""), None);
        for local in ["127.0.0.1", "::1", "10.1.2.3", "localhost", "app.localhost"] {
            assert!(is_local_or_literal(local), "{local}");
        }
        for remote in ["evil.example", "localhost.evil.example", "127.0.0.1.nip.io"] {
            assert!(!is_local_or_literal(remote), "{remote}");
        }
    }

    #[test]
    fn host_patterns() {
        assert!(HostPattern::new("*").matches("anything.example"));
        let domain = HostPattern::new("*.example.com");
        assert!(domain.matches("example.com") && domain.matches("a.b.example.com"));
        assert!(!domain.matches("badexample.com"));
        let exact = HostPattern::new("Rta.Example.com.");
        assert!(exact.matches("rta.example.com") && !exact.matches("x.rta.example.com"));
        assert!(HostPattern::new("rta.example.com:8080").matches("rta.example.com"));
    }

    #[test]
    fn origins() {
        assert!(check_allowed_host("rta.example.com").is_ok());
        assert!(check_allowed_host("*.example.com").is_ok());
        assert!(check_allowed_host("*").is_ok());
        assert!(check_allowed_host("*.example.com:8080").is_err());
        assert!(check_allowed_host("https://rta.example.com").is_err());
        assert!(check_allowed_host("").is_err());
        assert!(check_origin("*").is_ok());
        assert!(check_origin("https://intranet.example.com").is_ok());
        assert!(check_origin("http://localhost:3000/").is_ok());
        assert!(check_origin("intranet.example.com").is_err());
        assert!(check_origin("https://example.com/app").is_err());
        assert!(check_origin("ftp://example.com").is_err());
        assert!(Origins::new(&["*".into()]).allows("https://x.example"));
        let listed = Origins::new(&["https://A.example/".into()]);
        assert!(listed.allows("https://a.example") && !listed.allows("https://b.example"));
    }
}
