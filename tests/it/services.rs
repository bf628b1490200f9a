//! The real ClickHouse, NATS and Prometheus servers tests run against:
//! Debian's packages (`.ci/run` installs them), each started on its own free
//! ports in a temporary directory and stopped by PID, never as a system
//! service.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct Service {
    child: Child,
    program: &'static str,
    args: Vec<String>,
    pub port: u16,
    pub dir: TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` free ports, never one given before in this process, each held until
/// all are chosen (so no two are the same, and two services started at once
/// cannot be given the same). They are taken outside the range the kernel
/// hands out for port 0 and for outgoing connections: a service killed and
/// started again on its ports ([`Service::start_again`]) finds them still
/// free, since no other test's server or connection is given them meanwhile.
pub fn free_ports(n: usize) -> Vec<u16> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    // Outside Linux's ip_local_port_range, above the privileged ports: below
    // the range where there is room, else above it.
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| {
            let mut ends = range.split_whitespace().map(|end| end.parse::<u16>().ok());
            Some((ends.next()??, ends.next()??))
        })
        .unwrap_or((32768, 60999));
    let (lowest, end) = if low.saturating_sub(1025) >= 1000 {
        (low.saturating_sub(12_000).max(1025), low)
    } else {
        (high.saturating_add(1), u16::MAX)
    };
    let span = end.saturating_sub(lowest);
    assert!(
        span > 0,
        "no ports outside the ephemeral range {low}-{high}"
    );
    // Another test process may pick ports at the same time: start apart.
    let mut next = lowest + rand::random_range(0..span);
    let mut held = Vec::new();
    for _ in 0..span {
        if held.len() == n {
            break;
        }
        next = if next + 1 >= end { lowest } else { next + 1 };
        if given.contains(&next) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", next)) {
            given.insert(next);
            held.push((listener, next));
        }
    }
    assert_eq!(held.len(), n, "{n} free ports in {lowest}..{end}");
    held.into_iter().map(|(_, port)| port).collect()
}

fn spawn(program: &'static str, args: &[String], dir: &TempDir) -> Child {
    // Appended to: a restart keeps what the first run printed.
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join(format!("{program}.out")))
        .expect("the output file is made");
    let errors = output.try_clone().expect("the output file is shared");
    Command::new(program)
        .args(args)
        .current_dir(dir.path())
        .stdout(output)
        .stderr(errors)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); .ci/run installs it from Debian's packages")
        })
}

/// Starts `program` with the arguments `args_for` makes for `ports` free
/// ports (the first is the one it is asked on) and waits until it is ready.
/// A port can still be taken between choosing it and the server binding it
/// (by another process on the machine): a server that exits before it is
/// ready is started again on other ports, up to three times.
fn start(
    program: &'static str,
    ports: usize,
    mut args_for: impl FnMut(&TempDir, &[u16]) -> Vec<String>,
) -> Service {
    let mut tries = 0;
    loop {
        tries += 1;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let chosen = free_ports(ports);
        let args = args_for(&dir, &chosen);
        let mut service = Service {
            child: spawn(program, &args, &dir),
            program,
            args,
            port: chosen[0],
            dir,
        };
        match service.wait_ready() {
            Ok(()) => return service,
            Err(Exited(why)) if tries < 3 => eprintln!("{why}; starting it again"),
            Err(Exited(why)) => panic!("{why}"),
        }
    }
}

/// `nats-server` with JetStream, storing in a temporary directory.
pub fn nats() -> Service {
    start("nats-server", 2, |dir, ports| {
        [
            "-p",
            &ports[0].to_string(),
            "-m",
            &ports[1].to_string(),
            "-js",
            "-a",
            "127.0.0.1",
            "-sd",
            &dir.path().join("jetstream").to_string_lossy(),
        ]
        .map(String::from)
        .to_vec()
    })
}

impl Service {
    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The first and last message sequence of a JetStream stream, from
    /// nats-server's monitoring port.
    pub async fn stream_span(&self, stream: &str) -> (u64, u64) {
        let monitor = self.args[3].clone();
        let jsz: serde_json::Value =
            reqwest::get(format!("http://127.0.0.1:{monitor}/jsz?streams=true"))
                .await
                .expect("the monitoring port answers")
                .json()
                .await
                .expect("JSON");
        let state = jsz["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
            .find(|s| s["name"] == stream)
            .map(|s| s["state"].clone())
            .unwrap_or_else(|| panic!("stream {stream} in {jsz}"));
        (
            state["first_seq"].as_u64().expect("first_seq"),
            state["last_seq"].as_u64().expect("last_seq"),
        )
    }

    pub fn clickhouse_url(&self, database: &str) -> String {
        format!("clickhouse://127.0.0.1:{}/{database}", self.port)
    }

    /// Runs a statement on ClickHouse and returns its answer, trimmed.
    pub async fn sql(&self, statement: &str) -> String {
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/", self.port))
            .body(statement.to_string())
            .send()
            .await
            .expect("ClickHouse answers");
        let ok = response.status().is_success();
        let text = response.text().await.expect("a body");
        assert!(ok, "{statement}: {text}");
        text.trim().to_string()
    }

    /// Kills the server (SIGKILL); [`Service::start_again`] brings it back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same ports, its data wiped.
    pub fn start_afresh(&mut self) {
        self.kill();
        for entry in std::fs::read_dir(self.dir.path()).expect("the data directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("removed");
            }
        }
        self.start_again();
    }

    /// Starts the server again on the same ports and data.
    pub fn start_again(&mut self) {
        self.kill();
        self.child = spawn(self.program, &self.args, &self.dir);
        if let Err(Exited(why)) = self.wait_ready() {
            panic!("{why}");
        }
    }

    /// Waits until the server answers; at most 60 s. A server that exits
    /// first is an error saying what it printed; one that neither answers
    /// nor exits fails the test, also saying what it printed.
    fn wait_ready(&mut self) -> Result<(), Exited> {
        let port = self.port;
        let (what, ready): (&str, fn(u16) -> bool) = match self.program {
            "prometheus" => ("answers /-/ready", |port| {
                http_get(port, "/-/ready").is_some_and(|a| a.starts_with("HTTP/1.0 200"))
            }),
            "nats-server" => ("greets a client", |port| {
                greeting(port).is_some_and(|line| line.starts_with("INFO {"))
            }),
            _ => ("answers /ping", |port| {
                http_get(port, "/ping").is_some_and(|a| a.ends_with("Ok.\n"))
            }),
        };
        let started = Instant::now();
        while !ready(port) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Exited(format!(
                    "{} exited ({status}) before it {what}; it printed:\n{}",
                    self.program,
                    self.printed()
                )));
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} {what} within 60 s; it printed:\n{}",
                self.program,
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The end of what the server wrote to its output and, for ClickHouse,
    /// to its error log.
    fn printed(&self) -> String {
        let tail = |name: &str| {
            let bytes = std::fs::read(self.dir.path().join(name)).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let start = text.len().saturating_sub(3000);
            let start = (start..text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            format!("--- {name}\n{}", &text[start..])
        };
        let mut out = tail(&format!("{}.out", self.program));
        if self.program == "clickhouse-server" {
            out += &tail("log/error.log");
        }
        out
    }

    /// Asks Prometheus's HTTP API for an instant query; the first series'
    /// value, if any.
    pub async fn instant(&self, query: &str) -> Option<f64> {
        let answer: serde_json::Value = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }
}

/// A connection to the loopback `port` that gives up after a second on
/// each step (a listener that accepts and never answers cannot hold a test).
fn connect(port: u16) -> Option<std::net::TcpStream> {
    let wait = Duration::from_secs(1);
    let stream = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), wait).ok()?;
    stream.set_read_timeout(Some(wait)).ok()?;
    stream.set_write_timeout(Some(wait)).ok()?;
    Some(stream)
}

/// A bare HTTP/1.0 GET on the loopback: the whole answer, if any.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = connect(port)?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// The first line a server sends on a new connection (NATS: `INFO {...}`).
fn greeting(port: u16) -> Option<String> {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(connect(port)?)
        .read_line(&mut line)
        .ok()?;
    Some(line)
}

/// `prometheus` scraping `target` (host:port) every second, with `token`
/// as its bearer credentials when given.
pub fn prometheus(target: &str, token: Option<&str>) -> Service {
    let authorization = token
        .map(|t| format!("    authorization:\n      credentials: {t}\n"))
        .unwrap_or_default();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: rta\n{authorization}    static_configs:\n      - targets: ['{target}']\n"
    );
    start("prometheus", 1, |dir, ports| {
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, &config).expect("the config is written");
        vec![
            format!("--config.file={}", file.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{}", ports[0]),
        ]
    })
}

/// `clickhouse-server` with its own configuration, data and ports.
pub fn clickhouse() -> Service {
    start("clickhouse-server", 3, |dir, ports| {
        let root = dir.path().to_string_lossy().into_owned();
        let (http, tcp, interserver) = (ports[0], ports[1], ports[2]);
        for sub in ["data", "tmp", "user_files", "format_schemas", "log"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("a directory");
        }
        let config = format!(
            r#"<yandex>
      <logger><level>warning</level><log>{root}/log/server.log</log><errorlog>{root}/log/error.log</errorlog><console>0</console></logger>
      <listen_host>127.0.0.1</listen_host>
      <http_port>{http}</http_port>
      <tcp_port>{tcp}</tcp_port>
      <interserver_http_port>{interserver}</interserver_http_port>
      <path>{root}/data/</path>
      <tmp_path>{root}/tmp/</tmp_path>
      <user_files_path>{root}/user_files/</user_files_path>
      <format_schema_path>{root}/format_schemas/</format_schema_path>
      <users_config>{root}/users.xml</users_config>
      <default_profile>default</default_profile>
      <default_database>default</default_database>
      <mark_cache_size>268435456</mark_cache_size>
    </yandex>"#
        );
        let users = r#"<yandex>
      <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
      <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
      <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
    </yandex>"#;
        std::fs::write(dir.path().join("config.xml"), config).expect("the config is written");
        std::fs::write(dir.path().join("users.xml"), users).expect("the users are written");
        vec![format!("--config-file={root}/config.xml")]
    })
}

/// A server that exited before it was ready: what it printed.
struct Exited(String);
