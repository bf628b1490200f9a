//! Progress for long runs: a bar on a terminal, a line every
//! [`LOG_EVERY`] in a log, nothing with `--quiet`; and the summary every
//! sending command ends with, which always adds up:
//! read = accepted + rejected + not sent.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use super::{ClientError, escape, exit};

/// How often a plain progress line is printed when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// How often the bar's text (rate, time left) is refreshed.
const BAR_EVERY: Duration = Duration::from_millis(250);

/// What the bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Events,
    Bytes,
}

/// When the run will end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eta {
    /// From the rate so far and the total.
    FromRate,
    /// At a known time (a paced run knows its schedule).
    At(Instant),
}

pub struct Progress {
    bar: Option<ProgressBar>,
    shown: Arc<Mutex<Shown>>,
    ticker: Option<JoinHandle<()>>,
}

/// What the progress shows, shared with the task that prints it on time.
struct Shown {
    position: u64,
    total: Option<u64>,
    unit: Unit,
    detail: String,
    detail_at: Option<Instant>,
    eta: Eta,
    started: Instant,
}

impl Shown {
    fn time_left(&self) -> Option<Duration> {
        let now = Instant::now();
        match self.eta {
            Eta::At(at) => Some(at.saturating_duration_since(now)),
            Eta::FromRate => {
                let total = self.total?;
                if self.position == 0 {
                    return None;
                }
                let elapsed = now.duration_since(self.started).as_secs_f64();
                let left = total.saturating_sub(self.position) as f64;
                Some(Duration::from_secs_f64(
                    elapsed * left / self.position as f64,
                ))
            }
        }
    }

    /// `20/100 events, 2 events/s, 0 rejected, 54s left`
    fn line(&self) -> String {
        let amount = |n: u64| match self.unit {
            Unit::Events => n.to_string(),
            Unit::Bytes => indicatif::HumanBytes(n).to_string(),
        };
        let mut line = match self.total {
            Some(total) => format!("{}/{}", amount(self.position), amount(total)),
            None => amount(self.position),
        };
        if self.unit == Unit::Events {
            line.push_str(" events");
        }
        if !self.detail.is_empty() {
            line.push_str(", ");
            line.push_str(&self.detail);
        }
        if let Some(left) = self.time_left() {
            line.push_str(&format!(", {} left", short_duration(left)));
        }
        line
    }
}

/// `54s`, `3m 20s`, `2h 5m`: what a person reads at a glance.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

impl Progress {
    /// `total` is known for files and `--count`, unknown for endless streams.
    pub fn new(total: Option<u64>, unit: Unit, quiet: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let started = Instant::now();
        let shown = Arc::new(Mutex::new(Shown {
            position: 0,
            total,
            unit,
            detail: String::new(),
            detail_at: None,
            eta: Eta::FromRate,
            started,
        }));
        let bar = (!quiet && terminal).then(|| {
            let template = match (total.is_some(), unit) {
                (true, Unit::Bytes) => {
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}"
                }
                (true, Unit::Events) => {
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events {msg}"
                }
                (false, _) => "{spinner} [{elapsed_precise}] {pos} events {msg}",
            };
            let bar = match total {
                Some(n) => ProgressBar::new(n),
                None => ProgressBar::no_length(),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(8));
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let ticker = if quiet {
            None
        } else if let Some(bar) = &bar {
            Some(tokio::spawn(refresh_bar(bar.clone(), shown.clone())))
        } else {
            Some(tokio::spawn(print_lines(shown.clone(), started)))
        };
        Self { bar, shown, ticker }
    }

    /// Moves to `position`; `detail` (the rate, say) is made again at most
    /// a few times a second, so calling this per event stays cheap.
    pub fn update(&mut self, position: u64, detail: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
        }
        let Ok(mut shown) = self.shown.lock() else {
            return;
        };
        shown.position = position;
        if shown
            .detail_at
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(100))
        {
            shown.detail = escape::visible(&detail()).into_owned();
            shown.detail_at = Some(Instant::now());
        }
    }

    /// Says when the run will end, for the time left.
    pub fn set_eta(&self, eta: Eta) {
        if let Ok(mut shown) = self.shown.lock() {
            shown.eta = eta;
        }
    }

    /// Prints a line above the bar (or plainly), e.g. a rejected line. Any
    /// control character in it is shown, not obeyed.
    pub fn println(&self, line: impl AsRef<str>) {
        let line = escape::visible(line.as_ref());
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Ends a sending command: clears the bar, prints the summary (and the
    /// error that stopped it, if any) and returns the exit code.
    pub fn conclude(
        &mut self,
        tally: &Tally,
        elapsed: Duration,
        failure: Option<ClientError>,
        interrupted: bool,
    ) -> u8 {
        self.finish();
        eprintln!("{}", tally.line(elapsed));
        if let Some(e) = failure {
            eprintln!("error: {e}");
            return e.exit_code();
        }
        if interrupted {
            exit::INTERRUPTED
        } else if tally.rejected() > 0 {
            exit::FAILED
        } else {
            exit::OK
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Keeps the bar's text (rate, time left) current between updates.
async fn refresh_bar(bar: ProgressBar, shown: Arc<Mutex<Shown>>) {
    let mut tick = tokio::time::interval(BAR_EVERY);
    loop {
        tick.tick().await;
        let message = match shown.lock() {
            Ok(shown) => {
                let mut parts = Vec::new();
                if !shown.detail.is_empty() {
                    parts.push(shown.detail.clone());
                }
                if let Some(left) = shown.time_left() {
                    parts.push(format!("{} left", short_duration(left)));
                }
                parts.join(", ")
            }
            Err(_) => return,
        };
        bar.set_message(message);
    }
}

/// Off a terminal: a line at 10 s, 20 s, 30 s... whatever the sending does.
async fn print_lines(shown: Arc<Mutex<Shown>>, started: Instant) {
    let first = tokio::time::Instant::from_std(started) + LOG_EVERY;
    let mut tick = tokio::time::interval_at(first, LOG_EVERY);
    loop {
        tick.tick().await;
        let line = match shown.lock() {
            Ok(shown) => shown.line(),
            Err(_) => return,
        };
        eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
    }
}

/// Running totals of a sending command. Every event (or line) read ends in
/// exactly one of accepted, rejected (unreadable here, or refused by the
/// server) or not sent.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// What the totals count: "lines" (replay) or "events" (generate).
    pub noun: &'static str,
    /// How they came: "read" or "made".
    pub verb: &'static str,
    pub read: u64,
    pub accepted: u64,
    /// Lines that could not be read as an event here.
    pub unreadable: u64,
    /// Events the server rejected, each with its reason.
    pub refused: u64,
    /// Events not known to be stored: their request failed, or was never
    /// sent because the run stopped.
    pub not_sent: u64,
}

impl Tally {
    pub fn new(verb: &'static str, noun: &'static str) -> Self {
        Self {
            verb,
            noun,
            ..Self::default()
        }
    }

    pub fn rejected(&self) -> u64 {
        self.unreadable + self.refused
    }

    /// Events read but not yet settled (in flight).
    pub fn pending(&self) -> u64 {
        self.read
            .saturating_sub(self.accepted + self.rejected() + self.not_sent)
    }

    /// Settles one request of `sent` events from the server's report; what
    /// the report does not account for is counted as not sent.
    pub fn settle(&mut self, sent: u64, accepted: u64, refused: u64) {
        let accepted = accepted.min(sent);
        let refused = refused.min(sent - accepted);
        self.accepted += accepted;
        self.refused += refused;
        self.not_sent += sent - accepted - refused;
    }

    pub fn rate(&self, elapsed: Duration) -> f64 {
        self.accepted as f64 / elapsed.as_secs_f64().max(1e-9)
    }

    /// `read 6 lines in 0.1 s (20 events/s): 2 accepted, 4 rejected (2
    /// unreadable, 2 refused by the server), 0 not sent`
    pub fn line(&self, elapsed: Duration) -> String {
        let mut line = format!(
            "{} {} {} in {:.1} s ({:.0} events/s): {} accepted, {} rejected",
            self.verb,
            self.read,
            self.noun,
            elapsed.as_secs_f64(),
            self.rate(elapsed),
            self.accepted,
            self.rejected()
        );
        if self.rejected() > 0 {
            let mut parts = Vec::new();
            if self.unreadable > 0 {
                parts.push(format!("{} unreadable", self.unreadable));
            }
            if self.refused > 0 {
                parts.push(format!("{} refused by the server", self.refused));
            }
            line.push_str(&format!(" ({})", parts.join(", ")));
        }
        // Anything still unsettled (a request task that died) was not sent.
        let not_sent = self.not_sent + self.pending();
        line.push_str(&format!(", {not_sent} not sent"));
        if not_sent > 0 {
            line.push_str(" (their requests failed or the run stopped first)");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_adds_up() {
        let mut tally = Tally::new("read", "lines");
        tally.read = 6;
        tally.unreadable = 2;
        tally.settle(4, 2, 2);
        assert_eq!(tally.pending(), 0);
        let line = tally.line(Duration::from_secs(1));
        assert!(
            line.starts_with("read 6 lines")
                && line.contains(
                    "2 accepted, 4 rejected (2 unreadable, 2 refused by the server), 0 not sent"
                ),
            "{line}"
        );
        // A report that accounts for fewer events than were sent.
        tally.read += 5;
        tally.settle(5, 3, 0);
        assert_eq!(
            tally.accepted + tally.rejected() + tally.not_sent,
            tally.read
        );
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(short_duration(Duration::from_secs(54)), "54s");
        assert_eq!(short_duration(Duration::from_secs(200)), "3m 20s");
        assert_eq!(short_duration(Duration::from_secs(7500)), "2h 5m");
    }

    #[test]
    fn plain_lines_show_the_count_and_the_time_left() {
        let shown = Shown {
            position: 20,
            total: Some(100),
            unit: Unit::Events,
            detail: "2 events/s".into(),
            detail_at: None,
            eta: Eta::At(Instant::now() + Duration::from_secs(54)),
            started: Instant::now(),
        };
        let line = shown.line();
        assert!(line.starts_with("20/100 events, 2 events/s, "), "{line}");
        assert!(line.ends_with("s left"), "{line}");
    }
}
