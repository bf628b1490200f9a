//! `rta query`: metrics as rows, for people and for scripts.
//!
//! Two sources, one output: the live metrics (`GET /api/metrics`, for the
//! classic layouts of a window up to 24h) in `metrics.rs`, and the query
//! model over everything stored (`POST /api/query`, for time ranges,
//! filters, breakdowns and statistics) in `answer.rs`.

mod answer;
mod events;
mod metrics;

use std::io::IsTerminal;
use std::time::Duration;

use crate::cli::QueryArgs;
use crate::client::output::{Rows, Target, renderer};
use crate::client::{Client, Purpose, exit};
use crate::event::{EventType, Limits, Timestamp};

pub async fn run(args: QueryArgs) -> anyhow::Result<u8> {
    check_args(&args)?;
    let client = Client::new(&args.client, Purpose::Read)?;
    let terminal = std::io::stdout().is_terminal();
    if args.events {
        events::print(&client, &args, terminal).await?;
        return Ok(exit::OK);
    }
    let Some(every) = args.watch else {
        let text = render(&client, &args, terminal).await?;
        super::write_stdout(text.as_bytes())?;
        return Ok(exit::OK);
    };
    let every = every.max(Duration::from_millis(200));
    let ctrl_c = super::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let text = render(&client, &args, terminal).await?;
        let screen = if terminal {
            // Clear and redraw in place.
            format!(
                "\x1b[2J\x1b[H{}  (every {:?}, Ctrl-C to stop)\n\n{text}",
                chrono::Local::now().format("%H:%M:%S"),
                every
            )
        } else {
            format!("{text}\n")
        };
        super::write_stdout(screen.as_bytes())?;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut ctrl_c => return Ok(exit::INTERRUPTED),
        }
    }
}

/// Percent-encodes a query string value or a path segment.
pub(super) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The columns of the one-row-per-type layout, whichever source answers.
const OVERVIEW_COLUMNS: [&str; 6] = [
    "type",
    "events",
    "rate_per_s",
    "first_seen",
    "last_seen",
    "measures",
];

/// Whether the question needs the query model: anything beyond a type, one
/// dimension of it and a window of up to 24h.
fn needs_query_model(args: &QueryArgs) -> bool {
    let long_window = args.window.as_deref().is_some_and(|w| {
        humantime::parse_duration(w.trim()).map_or(true, |d| d.as_secs() > 24 * 3600)
    });
    let plain_by = args.by.as_deref().is_none_or(|b| {
        args.kind.is_some() && !b.contains([',', ':']) && b != "type" && b != "source"
    });
    args.from.is_some()
        || args.to.is_some()
        || !args.filters.is_empty()
        || !args.stats.is_empty()
        || args.order.is_some()
        || long_window
        || !plain_by
}

/// Checks what can be checked before asking the server, so a typo is a
/// usage error (exit 2) that says what a valid value looks like.
fn check_args(args: &QueryArgs) -> anyhow::Result<()> {
    if let Some(kind) = &args.kind
        && let Err(reason) = EventType::parse(kind, &Limits::default())
    {
        crate::usage!("--type {reason}");
    }
    if args.by.as_deref().is_some_and(|b| b.trim().is_empty()) {
        crate::usage!("--by needs a dimension name, such as --by region");
    }
    if args.events {
        if let Some(order) = args.order.as_deref()
            && !matches!(order, "newest" | "oldest")
        {
            crate::usage!("with --events, --order is newest or oldest, got {order:?}");
        }
        let mut text = answer::text(args);
        (text.by, text.order) = (Vec::new(), None);
        if let Err(message) = text.to_query(Timestamp::now()) {
            crate::usage!("{}", flag_names(&message));
        }
        return Ok(());
    }
    if let Err(message) = answer::text(args).to_query(Timestamp::now()) {
        crate::usage!("{}", flag_names(&message));
    }
    Ok(())
}

/// The query model's messages name parts as the API does; say them as flags.
fn flag_names(message: &str) -> String {
    let message = message
        .replacen("filter ", "--where ", 1)
        .replacen("breakdown", "--by", 1)
        .replacen("statistic ", "--stat ", 1)
        .replacen("window ", "--window ", 1)
        .replacen("order ", "--order ", 1);
    message
        .replacen("from \"", "--from \"", 1)
        .replacen("to \"", "--to \"", 1)
}

/// Asks the server and renders the answer in the chosen format.
async fn render(client: &Client, args: &QueryArgs, terminal: bool) -> anyhow::Result<String> {
    let rows: Rows = if needs_query_model(args) {
        answer::rows(client, args).await?
    } else {
        metrics::rows(client, args).await?
    };
    let mut out = Vec::new();
    renderer(args.format).render(&rows, Target { terminal }, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
