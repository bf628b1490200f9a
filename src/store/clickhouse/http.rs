//! ClickHouse over its HTTP interface: statements in, text or rows out.
//!
//! Only the HTTP interface and SQL that Debian's 18.16 and current releases
//! both understand are used, so rta does not depend on the server's version.

use std::time::Duration;

use futures_util::StreamExt;

use crate::store::StoreError;

/// `clickhouse://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE[?timeout=DURATION]`,
/// as given to `--store`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClickHouseUrl {
    /// `http://HOST:PORT/`
    pub base: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// How long ClickHouse may stay silent while rta waits for its answer
    /// (between two reads, so a long stream of rows is not cut short).
    pub timeout: Duration,
}

impl std::fmt::Debug for ClickHouseUrl {
    // Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.redacted())
    }
}

impl ClickHouseUrl {
    const EXAMPLE: &str = "clickhouse://127.0.0.1:8123/rta";
    /// A server that accepted the connection and then says nothing (hung,
    /// or stopped by a debugger) is given up on after this long.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Parses the URL; a user and password missing from it come from
    /// `user_env` and `password_env` (`RTA_CLICKHOUSE_USER`, `..._PASSWORD`).
    pub fn parse(
        text: &str,
        user_env: Option<String>,
        password_env: Option<String>,
    ) -> Result<Self, String> {
        let example = Self::EXAMPLE;
        let url = reqwest::Url::parse(text).map_err(|e| {
            format!("--store `{text}` is not a URL ({e}); give one such as {example}")
        })?;
        if url.scheme() != "clickhouse" {
            return Err(format!(
                "--store `{text}`: give sqlite:DIR or clickhouse://HOST:PORT/DATABASE (such as {example})"
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("--store `{text}` names no host; such as {example}"))?;
        let database = url.path().trim_matches('/');
        let database = if database.is_empty() { "rta" } else { database };
        if !(database.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(format!(
                "--store `{text}`: the database name `{database}` must be letters, digits and `_` (such as {example})"
            ));
        }
        let mut timeout = Self::DEFAULT_TIMEOUT;
        for (key, value) in url.query_pairs() {
            match &*key {
                "timeout" => {
                    timeout = humantime::parse_duration(&value)
                        .ok()
                        .filter(|t| !t.is_zero())
                        .ok_or_else(|| {
                            format!(
                                "--store `{text}`: timeout `{value}` is not a duration such as 30s or 2m"
                            )
                        })?;
                }
                "user" | "password" => {
                    return Err(format!(
                        "--store `{text}`: give the user and password in the URL or in RTA_CLICKHOUSE_USER and RTA_CLICKHOUSE_PASSWORD, not as parameters"
                    ));
                }
                other => {
                    return Err(format!(
                        "--store `{text}`: unknown parameter `{other}`; the one ClickHouse URLs take is timeout (such as {example}?timeout=30s)"
                    ));
                }
            }
        }
        let decode = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| format!("--store `{text}`: the credentials are not valid UTF-8"))
        };
        let user = match url.username() {
            "" => user_env.filter(|u| !u.is_empty()),
            u => Some(decode(u)?),
        };
        let password = match url.password() {
            Some(p) => Some(decode(p)?),
            None => password_env,
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Ok(Self {
            base: format!("http://{host}:{}/", url.port().unwrap_or(8123)),
            database: database.to_string(),
            user,
            password,
            timeout,
        })
    }

    /// The address without credentials, for messages and logs.
    pub fn redacted(&self) -> String {
        let host = self
            .base
            .trim_start_matches("http://")
            .trim_end_matches('/');
        format!("clickhouse://{host}/{}", self.database)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes: Vec<u8> = form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())?;
    String::from_utf8(bytes).ok()
}

/// A string as a ClickHouse literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Talks to one ClickHouse server.
pub struct Http {
    client: reqwest::Client,
    pub url: ClickHouseUrl,
}

impl Http {
    pub fn new(url: ClickHouseUrl) -> Result<Self, StoreError> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(url.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| StoreError::Read(format!("cannot set up an HTTP client: {e}")))?;
        Ok(Self { client, url })
    }

    /// The events table, qualified.
    pub fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.url.database)
    }

    fn request(&self, query: Option<&str>) -> reqwest::RequestBuilder {
        let mut req = self.client.post(&self.url.base);
        let mut params = vec![
            ("output_format_json_quote_64bit_integers", "0"),
            // A query over many summarised hours lists each one.
            ("max_query_size", "16777216"),
            // Reads in sequence order sort on disk beyond this, not in memory.
            ("max_bytes_before_external_sort", "536870912"),
        ];
        if let Some(query) = query {
            params.push(("query", query));
        }
        req = req.query(&params);
        if let Some(user) = &self.url.user {
            req = req.basic_auth(user, self.url.password.as_deref());
        }
        req
    }

    /// Sends a statement (`query` in the URL when `body` holds data) and
    /// returns the answer once ClickHouse accepted it.
    async fn send(
        &self,
        query: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Result<reqwest::Response, ClickHouseError> {
        let response = self
            .request(query)
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(ClickHouseError::Refused(first_line(&text)))
    }

    /// Runs a statement and returns its whole answer as text.
    pub async fn execute(&self, sql: &str) -> Result<String, ClickHouseError> {
        let response = self.send(None, sql.to_string()).await?;
        response.text().await.map_err(|e| self.unreachable(e))
    }

    /// Runs `INSERT INTO table FORMAT JSONEachRow` with `rows` as its data.
    pub async fn insert(&self, table: &str, rows: Vec<u8>) -> Result<(), ClickHouseError> {
        let query = format!("INSERT INTO {table} FORMAT JSONEachRow");
        self.send(Some(&query), rows).await.map(|_| ())
    }

    /// Runs a `SELECT ... FORMAT JSONEachRow` and calls `row` with each
    /// line as it arrives, until it answers false.
    pub async fn select_lines(
        &self,
        sql: &str,
        mut row: impl FnMut(&[u8]) -> Result<bool, ClickHouseError>,
    ) -> Result<(), ClickHouseError> {
        let response = self.send(None, sql.to_string()).await?;
        let mut body = response.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(bytes) = body.next().await {
            let bytes = bytes.map_err(|e| self.unreachable(e))?;
            pending.extend_from_slice(&bytes);
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
                let line = &pending[start..start + end];
                start += end + 1;
                if !line.is_empty() && !row(line)? {
                    return Ok(());
                }
            }
            pending.drain(..start);
        }
        if !pending.is_empty() {
            // ClickHouse ends every row with a newline; anything else is an
            // error it wrote after the rows began.
            return Err(ClickHouseError::Refused(first_line(
                &String::from_utf8_lossy(&pending),
            )));
        }
        Ok(())
    }

    /// A single number (`SELECT count() ...`).
    pub async fn number(&self, sql: &str) -> Result<u64, ClickHouseError> {
        let text = self.execute(sql).await?;
        text.trim().parse().map_err(|_| {
            ClickHouseError::Refused(format!("expected a number, got `{}`", text.trim()))
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> ClickHouseError {
        // The innermost cause says it best ("Connection refused").
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason = s.to_string();
            source = s.source();
        }
        if e.is_timeout() && e.is_connect() {
            reason = format!(
                "no connection within {}",
                humantime::format_duration(CONNECT_TIMEOUT)
            );
        } else if e.is_timeout() {
            reason = format!(
                "no answer within {} (the --store URL's ?timeout=)",
                humantime::format_duration(self.url.timeout)
            );
        }
        ClickHouseError::Unreachable(format!("{}: {reason}", self.url.redacted()))
    }
}

fn first_line(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or("no reason given");
    line.chars().take(500).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error("cannot reach ClickHouse at {0}")]
    Unreachable(String),
    #[error("ClickHouse refused: {0}")]
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_credentials_kept_out_of_messages() {
        let url =
            ClickHouseUrl::parse("clickhouse://127.0.0.1:9000/analytics", None, None).unwrap();
        assert_eq!(url.base, "http://127.0.0.1:9000/");
        assert_eq!(url.database, "analytics");
        assert_eq!(url.user, None);
        let url = ClickHouseUrl::parse("clickhouse://u:p%40ss@h/db", None, None).unwrap();
        assert_eq!(url.base, "http://h:8123/");
        assert_eq!(
            (url.user.as_deref(), url.password.as_deref()),
            (Some("u"), Some("p@ss"))
        );
        assert_eq!(format!("{url:?}"), "clickhouse://h:8123/db");
        let url = ClickHouseUrl::parse(
            "clickhouse://h:1",
            Some("reader".into()),
            Some("secret".into()),
        )
        .unwrap();
        assert_eq!(url.database, "rta");
        assert_eq!(
            (url.user.as_deref(), url.password.as_deref()),
            (Some("reader"), Some("secret"))
        );
        for bad in [
            "http://h:8123/db",
            "clickhouse:///db",
            "clickhouse://h/db-1",
            "clickhouse://h/db?user=x",
            "h:8123",
        ] {
            assert!(ClickHouseUrl::parse(bad, None, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_timeout_is_a_parameter_of_the_url() {
        let parse = |text: &str| ClickHouseUrl::parse(text, None, None);
        assert_eq!(
            parse("clickhouse://h/db").unwrap().timeout,
            ClickHouseUrl::DEFAULT_TIMEOUT
        );
        assert_eq!(
            parse("clickhouse://h/db?timeout=2m").unwrap().timeout,
            Duration::from_secs(120)
        );
        assert_eq!(
            parse("clickhouse://h/db?timeout=500ms").unwrap().timeout,
            Duration::from_millis(500)
        );
        for (bad, says) in [
            (
                "clickhouse://h/db?timeout=0s",
                "timeout `0s` is not a duration",
            ),
            (
                "clickhouse://h/db?timeout=soon",
                "timeout `soon` is not a duration",
            ),
            ("clickhouse://h/db?retries=3", "unknown parameter `retries`"),
            ("clickhouse://h/db?password=x", "not as parameters"),
        ] {
            let message = parse(bad).unwrap_err();
            assert!(message.contains(says), "{bad}: {message}");
        }
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(quote("it's"), r"'it\'s'");
        assert_eq!(quote(r"a\b"), r"'a\\b'");
    }
}
