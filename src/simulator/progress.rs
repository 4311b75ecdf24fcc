//! Progress bars for long runs: on stderr, hidden when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    started: std::time::Instant,
}

impl Progress {
    pub fn new(days: u32, visible: bool) -> Progress {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(u64::from(days)), target);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} simulated days {pos}/{len} [{bar:30}] {elapsed_precise} (eta {eta}) {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress {
            bar,
            started: std::time::Instant::now(),
        }
    }

    /// Day `day` is done; `values` telemetry values are stored or sent so far.
    pub fn day(&self, day: u32, values: u64) {
        self.bar
            .set_position((u64::from(day) + 1).min(self.bar.length().unwrap_or(0)));
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar
            .set_message(format!("{values} values, {:.0}/s", values as f64 / secs));
    }

    /// Counts vehicles instead of days (bulk history written vehicle range by range).
    pub fn count_vehicles(&self, vehicles: u64) {
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} vehicles {pos}/{len} [{bar:30}] {elapsed_precise} (eta {eta}) {msg}",
        ) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_length(vehicles);
    }

    /// `vehicles` are done; `values` telemetry values are stored so far.
    pub fn vehicles_done(&self, vehicles: u64, values: u64) {
        self.bar.set_position(vehicles);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar
            .set_message(format!("{values} values, {:.0}/s", values as f64 / secs));
    }

    pub fn finish(&self, message: &str) {
        self.bar.finish_with_message(message.to_owned());
    }
}
