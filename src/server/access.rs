//! Who may do what: the ingest token, the optional read token, and which
//! browser origins may use the API. Tokens are compared in constant time
//! and never logged.

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
            Denied::Missing => format!(
                "{what} needs a token: send `Authorization: Bearer TOKEN` (or `?access_token=TOKEN`)"
            ),
            Denied::Wrong => format!("the token is not valid for {what}"),
        }
    }
}

pub struct Access {
    ingest: Option<String>,
    read: Option<String>,
    origins: Vec<String>,
}

impl Access {
    pub fn new(config: &ServeConfig) -> Self {
        Self {
            ingest: config.token.clone(),
            read: config.read_token.clone(),
            origins: config
                .cors_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_string())
                .collect(),
        }
    }

    /// Ingest needs the ingest token when one is set.
    pub fn can_ingest(&self, req: &Request) -> Result<(), Denied> {
        match &self.ingest {
            None => Ok(()),
            Some(token) => check(presented(req), &[token]),
        }
    }

    /// Reading needs the read token (or the ingest token) when a read token is set.
    pub fn can_read(&self, req: &Request) -> Result<(), Denied> {
        match (&self.read, &self.ingest) {
            (None, _) => Ok(()),
            (Some(read), None) => check(presented(req), &[read]),
            (Some(read), Some(ingest)) => check(presented(req), &[read, ingest]),
        }
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
        same_origin(req) || self.origins.iter().any(|o| o == origin)
    }
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
        (Some(origin), Some(host)) => {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host)
        }
        _ => false,
    }
}

/// The token a request presents: a Bearer header, or `access_token` in the
/// query string (browsers cannot set headers on a WebSocket).
fn presented(req: &Request) -> Option<String> {
    if let Some(bearer) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_string());
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
}
