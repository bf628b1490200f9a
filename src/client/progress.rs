//! Progress for long runs: a bar on a terminal, a line now and then in a
//! log, nothing with `--quiet`; and the summary every command ends with.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{ClientError, exit};

/// How often a plain progress line is printed when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    last_line: Instant,
    started: Instant,
}

/// What the bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Events,
    Bytes,
}

impl Progress {
    /// `total` is known for files and `--count`, unknown for endless streams.
    pub fn new(total: Option<u64>, unit: Unit, quiet: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let template = match (total.is_some(), unit) {
                (true, Unit::Bytes) => {
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta} left) {msg}"
                }
                (true, Unit::Events) => "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events ({eta} left) {msg}",
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
        Self {
            bar,
            plain: !quiet && !terminal,
            last_line: Instant::now(),
            started: Instant::now(),
        }
    }

    /// Moves the bar to `position` and shows `message` (e.g. the rate).
    pub fn update(&mut self, position: u64, message: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
            bar.set_message(message());
        } else if self.plain && self.last_line.elapsed() >= LOG_EVERY {
            self.last_line = Instant::now();
            eprintln!(
                "[{:>6.1}s] {}",
                self.started.elapsed().as_secs_f64(),
                message()
            );
        }
    }

    /// Prints a line above the bar (or plainly), e.g. a rejected line.
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.bar {
            Some(bar) => bar.println(line.as_ref()),
            None => eprintln!("{}", line.as_ref()),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Ends a sending command: clears the bar, prints the summary (and the
    /// error that stopped it, if any) and returns the exit code.
    pub fn conclude(
        &self,
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
        } else if tally.rejected > 0 {
            exit::FAILED
        } else {
            exit::OK
        }
    }
}

/// Running totals of a sending command.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Events not known to be stored (the request failed).
    pub failed: u64,
}

impl Tally {
    pub fn rate(&self, elapsed: Duration) -> f64 {
        self.accepted as f64 / elapsed.as_secs_f64().max(1e-9)
    }

    pub fn line(&self, elapsed: Duration) -> String {
        let mut line = format!(
            "sent {} events in {:.1} s ({:.0} events/s): {} accepted, {} rejected",
            self.sent,
            elapsed.as_secs_f64(),
            self.rate(elapsed),
            self.accepted,
            self.rejected
        );
        if self.failed > 0 {
            line.push_str(&format!(", {} not sent (request failed)", self.failed));
        }
        line
    }
}
