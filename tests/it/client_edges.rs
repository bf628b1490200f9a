//! The edges of the client commands: https, output that cannot write to the
//! operator's terminal, summaries that add up, JSON for scripts, usage
//! errors, tables that fit a terminal, and progress off a terminal.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::cli::{fixture, rta, rta_with_stdin, text};
use crate::helpers::{BIN, TestServer};

/// A TLS front for a server, as a reverse proxy would be: a certificate for
/// `localhost` and 127.0.0.1 from a CA made for the test, whose PEM is
/// written to `ca_file`.
struct TlsFront {
    port: u16,
    ca_file: tempfile::NamedTempFile,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_front(backend: &str) -> TlsFront {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rta test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), ca.pem()).unwrap();

    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = backend.trim_start_matches("http://").to_string();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (acceptor, backend) = (acceptor.clone(), backend.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(&backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    TlsFront {
        port,
        ca_file,
        task,
    }
}

fn rta_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("RTA_TOKEN")
        .env_remove("RTA_URL")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

// Multi-threaded: the TLS front runs on the test's runtime while commands block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_speak_https_and_report_tls_failures_at_once() {
    let server = TestServer::start().await;
    let front = tls_front(&server.url).await;
    let ca = front.ca_file.path().to_str().unwrap().to_string();
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{}", front.port);
        let out = tokio::task::spawn_blocking({
            let (url, ca) = (url.clone(), ca.clone());
            move || {
                rta_env(
                    &[
                        "generate",
                        "--count",
                        "20",
                        "--batch",
                        "10",
                        "--interval",
                        "0",
                        "--url",
                        &url,
                    ],
                    &[("SSL_CERT_FILE", &ca)],
                )
            }
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{url}: {}", text(&out.stderr));
        let out = rta_env(
            &["query", "--format", "json", "--url", &url],
            &[("SSL_CERT_FILE", &ca)],
        );
        assert!(out.status.success(), "{url}: {}", text(&out.stderr));
    }
    assert_eq!(server.metrics("").await["totalEvents"], 40);

    // Not trusted: refused at once, with the reason, not retried for 10 s.
    let url = format!("https://localhost:{}", front.port);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || rta_env(&["query", "--url", &url], &[]))
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("certificate") && stderr.contains("SSL_CERT_FILE"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "not retried: {:?}",
        started.elapsed()
    );

    // https to a plain-http server, and http to a TLS one: told at once.
    for (url, expected) in [
        (
            server.url.replacen("http://", "https://", 1),
            "does not speak TLS",
        ),
        (format!("http://127.0.0.1:{}", front.port), "https://"),
    ] {
        let started = Instant::now();
        let out = tokio::task::spawn_blocking({
            let url = url.clone();
            move || rta_env(&["query", "--url", &url], &[])
        })
        .await
        .unwrap();
        let stderr = text(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{url}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{url}: {:?}",
            started.elapsed()
        );
    }
}

/// Events whose strings would act on a terminal.
async fn hostile_server() -> TestServer {
    let server = TestServer::start().await;
    let values = [
        "red\u{1b}[31mtext",
        "tab\there",
        "two\nlines",
        "csi\u{9b}2J",
        "back\\slash",
        "plain",
    ];
    let events: Vec<Value> = values
        .iter()
        .map(|v| json!({"type": "t", "values": {"region": v, "amount": 1}}))
        .collect();
    let (status, body) = server.ingest(&Value::Array(events)).await;
    assert!(status.is_success(), "{body}");
    server
}

/// Runs `rta` on a pseudo-terminal `columns` wide; returns what it printed.
fn on_terminal(server_url: &str, columns: u16, args: &str) -> String {
    let out = Command::new("script")
        .args([
            "-q",
            "-e",
            "-c",
            &format!("stty cols {columns} rows 40; {BIN} {args}"),
            "/dev/null",
        ])
        .env("RTA_URL", server_url)
        .env_remove("RTA_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    assert!(out.status.success(), "{args}: {}", text(&out.stderr));
    text(&out.stdout).replace("\r\n", "\n")
}

#[tokio::test]
async fn event_strings_never_reach_the_terminal_raw() {
    let server = hostile_server().await;
    let query = ["query", "--type", "t", "--by", "region"];
    let run = |format: &str| {
        let mut args = query.to_vec();
        args.extend(["--format", format]);
        rta(&server.url, &args)
    };
    // Into a pipe: tables show controls, CSV and JSON stay exact, TSV escapes.
    let table = text(&run("table").stdout);
    assert!(
        !table.contains('\u{1b}') && !table.contains('\u{9b}'),
        "{table:?}"
    );
    assert!(
        table.contains("red\\x1b[31mtext") && table.contains("two\\nlines"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 7, "one line per row: {table}");
    let csv = run("csv").stdout;
    let mut reader = csv::Reader::from_reader(&csv[..]);
    let values: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    assert!(
        values.contains(&"two\nlines".to_string())
            && values.contains(&"red\u{1b}[31mtext".to_string())
    );
    let json: Value = serde_json::from_slice(&run("json").stdout).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|row| row["region"] == "csi\u{9b}2J")
    );
    assert!(
        !text(&run("json").stdout).contains('\u{9b}'),
        "escaped as \\u009b"
    );
    let tsv = text(&run("tsv").stdout);
    assert_eq!(tsv.lines().count(), 7, "{tsv}");
    assert!(tsv.lines().all(|l| l.split('\t').count() == 4), "{tsv}");
    assert!(
        tsv.contains("tab\\there") && tsv.contains("back\\\\slash"),
        "{tsv}"
    );
    assert!(!tsv.contains('\u{1b}'));

    // On a terminal every format shows them.
    for format in ["table", "csv", "tsv", "json"] {
        let shown = on_terminal(
            &server.url,
            120,
            &format!("{} --format {format}", query.join(" ")),
        );
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{9b}'),
            "{format}: {shown:?}"
        );
    }

    // Replay's messages echo event text: shown, not obeyed.
    let out = rta_with_stdin(
        &server.url,
        &["replay", "-"],
        b"{\"type\": \"bad\\u001b]0;owned\\u0007\"}\n{\"type\": \"a\", \"values\": {\"x\\u009b\": [1]}}\n",
    );
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "{stderr:?}"
    );
    assert!(stderr.contains("\\x1b"), "{stderr}");
}

#[tokio::test]
async fn replay_summaries_add_up_and_rejections_come_in_line_order() {
    let server = TestServer::start().await;
    let file = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .unwrap();
    std::fs::write(
        file.path(),
        "{\"type\":\"a\",\"values\":{\"x\":1}}\n\
         not json\n\
         {\"type\":\"a\",\"values\":{\"x\":[1]}}\n\
         {\"type\":\"b bad\"}\n\
         {\"type\":\"a\",\"values\":{\"x\":2}}\n\
         {oops\n",
    )
    .unwrap();
    let path = file.path().to_str().unwrap();
    let out = rta(&server.url, &["replay", path, "--batch", "2"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("read 6 lines")
            && stderr.contains(
                "2 accepted, 4 rejected (2 unreadable, 2 refused by the server), 0 not sent"
            ),
        "{stderr}"
    );
    let lines: Vec<usize> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("line "))
        .map(|l| l.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(lines, [2, 3, 4, 6], "in line order: {stderr}");

    // A server that refuses every request: nothing accepted, all accounted for.
    let guarded = TestServer::start_with(&["--token", "secret"]).await;
    let out = rta(
        &guarded.url,
        &["replay", &fixture("events.jsonl"), "--batch", "1000"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let summary = stderr.lines().find(|l| l.starts_with("read ")).unwrap();
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    // read N lines in T.T s (R events/s): A accepted, J rejected, S not sent
    let (read, accepted, rejected, not_sent) = (numbers[0], numbers[4], numbers[5], numbers[6]);
    assert_eq!(read, accepted + rejected + not_sent, "{summary}");
    assert_eq!(accepted, 0, "{summary}");
    assert!(
        stderr.contains("pass --token TOKEN or set RTA_TOKEN"),
        "{stderr}"
    );
}

#[tokio::test]
async fn json_output_is_structured_and_keeps_the_others_row() {
    let server = TestServer::start().await;
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"type": "sales", "values": {"amount": i, "units": 1, "region": format!("r{}", i % 6)}}))
        .collect();
    server.ingest(&Value::Array(events)).await;
    let out = rta(&server.url, &["query", "--format", "json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows[0];
    let printed = text(&out.stdout);
    let at = |key: &str| printed.find(&format!("\"{key}\":")).unwrap();
    let order = [
        "type",
        "events",
        "rate_per_s",
        "first_seen",
        "last_seen",
        "measures",
    ];
    assert!(
        order.windows(2).all(|w| at(w[0]) < at(w[1])),
        "the CSV's column order: {printed}"
    );
    assert_eq!(row["events"], 30);
    assert_eq!(row["measures"]["amount"], 14.5, "{row}");
    assert_eq!(row["measures"]["units"], 1.0);

    let out = rta(
        &server.url,
        &[
            "query", "--type", "sales", "--by", "region", "--top", "4", "--format", "json",
        ],
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5, "four regions and the others: {rows:?}");
    assert_eq!(rows[4]["region"], "(others)");
    let total: u64 = rows.iter().map(|r| r["events"].as_u64().unwrap()).sum();
    assert_eq!(total, 30, "the rows add up to every event");
    let csv = text(
        &rta(
            &server.url,
            &[
                "query", "--type", "sales", "--by", "region", "--top", "4", "--format", "csv",
            ],
        )
        .stdout,
    );
    assert!(
        csv.lines().last().unwrap().starts_with("(others),10,"),
        "{csv}"
    );
}

#[tokio::test]
async fn usage_errors_exit_2_before_anything_is_sent_and_say_what_is_valid() {
    let server = TestServer::start().await;
    for (args, expected) in [
        (&["query", "--window", "3x"][..], "use e.g. 10s, 5m, 24h"),
        (&["query", "--window", "5s"][..], "shorter than 10s"),
        (
            &["query", "--where", "amount>ten"][..],
            "--where \"amount>ten\"",
        ),
        (&["query", "--by", "time:week"][..], "time:hour"),
        (&["query", "--stat", "p97:latency_ms"][..], "p95"),
        (
            &["query", "--from", "yesterday"][..],
            "2023-04-01T09:00:00Z",
        ),
        (&["query", "--type", "bad type"][..], "--type"),
        (
            &["query", "--url", "http://127.0.0.1:9/api"][..],
            "try http://127.0.0.1:9",
        ),
        (
            &["query", "--url", "ftp://127.0.0.1:9"][..],
            "http:// or https://",
        ),
        (
            &["generate", "--start", "yesterday"][..],
            "2023-04-01T08:00:00Z",
        ),
        (&["replay", "/nonexistent/events.jsonl"][..], "no such file"),
    ] {
        let out = rta(&server.url, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert_eq!(server.metrics("").await["totalEvents"], 0);

    let guarded = TestServer::start_with(&["--read-token", "r"]).await;
    let out = rta(&guarded.url, &["query"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("read token") && stderr.contains("--token TOKEN or set RTA_TOKEN"),
        "{stderr}"
    );
    assert!(!stderr.contains("Authorization"), "{stderr}");
}

#[tokio::test]
async fn query_watch_stopped_by_ctrl_c_exits_130_like_the_others() {
    let server = TestServer::start().await;
    let mut child = Command::new(BIN)
        .args(["query", "--watch", "0.2"])
        .env("RTA_URL", &server.url)
        .env_remove("RTA_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once it has drawn, it is waiting for the next round: interrupt it.
    let mut stdout = child.stdout.take().expect("piped");
    let mut first = [0u8; 4];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(130), "as generate and replay do");
}

#[tokio::test]
async fn tables_fit_the_terminal_without_breaking_values() {
    let server = TestServer::start().await;
    let out = rta(
        &server.url,
        &[
            "generate",
            "--count",
            "300",
            "--batch",
            "100",
            "--interval",
            "0",
            "--seed",
            "3",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let time = |s: &str| {
        s.split(|c: char| c.is_whitespace() || c == '│')
            // RFC 3339, with milliseconds unless they are 0.
            .filter(|w| {
                (w.len() == 24 || w.len() == 20) && w.ends_with('Z') && w.as_bytes()[10] == b'T'
            })
            .count()
    };
    for columns in [200, 140, 120] {
        let wide = on_terminal(&server.url, columns, "query");
        assert_eq!(
            time(&wide),
            6,
            "two times a type at {columns} columns: {wide}"
        );
        assert!(wide.contains('│'), "a table at {columns} columns: {wide}");
    }
    let narrow = on_terminal(&server.url, 80, "query");
    assert_eq!(
        time(&narrow),
        6,
        "times are never broken at 80 columns:\n{narrow}"
    );
    assert!(
        narrow.contains("pageview") && narrow.contains("latency_ms="),
        "{narrow}"
    );
    assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
    // A table that fits once text wraps between words: numbers stay whole.
    let by = on_terminal(&server.url, 50, "query --type sales --by region");
    assert!(by.lines().all(|l| l.chars().count() <= 50), "{by}");
    for header in ["events", "amount_sum", "amount_mean"] {
        assert!(by.contains(header), "{header} unbroken:\n{by}");
    }
    // A pty that reports no width gets the table at its natural width.
    let zero = on_terminal(&server.url, 0, "query");
    assert_eq!(time(&zero), 6, "{zero}");
    assert!(zero.contains("pageview"), "{zero}");
}

#[tokio::test]
async fn progress_off_a_terminal_comes_every_10_s_with_the_count_and_time_left() {
    let server = TestServer::start().await;
    // 7 batches, one every 3 s: sent at 0, 3, ... 18 s.
    let out = tokio::task::spawn_blocking({
        let url = server.url.clone();
        move || {
            rta(
                &url,
                &[
                    "generate",
                    "--count",
                    "7",
                    "--batch",
                    "1",
                    "--interval",
                    "3",
                ],
            )
        }
    })
    .await
    .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(lines.len(), 1, "one line, at 10 s: {stderr}");
    let line = lines[0];
    let at: f64 = line[1..line.find('s').unwrap()].trim().parse().unwrap();
    assert!((10.0..10.5).contains(&at), "at 10 s: {line}");
    assert!(line.contains("4/7 events"), "{line}");
    // At 10 s three batches remain, the last at 18 s.
    let left: u64 = line
        .rsplit(", ")
        .next()
        .and_then(|l| l.strip_suffix("s left"))
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("time left in {line}"));
    assert!((6..=10).contains(&left), "about 8 s left: {line}");
    assert!(
        stderr.contains("made 7 events") && stderr.contains("7 accepted, 0 rejected, 0 not sent"),
        "{stderr}"
    );
}
