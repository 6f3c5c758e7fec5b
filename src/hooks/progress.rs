//! How the hooks show progress: one line per update in a CI log, one line updated in
//! place on a terminal; sizes and rates for transfers worth timing.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

/// Transfers smaller than this are not worth a size and a rate.
pub const SHOW_TRANSFERS_FROM: u64 = 4 * 1024 * 1024;

/// A status line that is rewritten in place on a terminal and printed as a new line each
/// time anywhere else (CI logs are not terminals). Ends its line when dropped.
#[derive(Debug)]
pub struct StatusLine {
    in_place: bool,
    open: bool,
}

impl StatusLine {
    /// A line on stderr, in place when stderr is a terminal.
    #[must_use]
    pub fn stderr() -> Self {
        Self {
            in_place: std::io::stderr().is_terminal(),
            open: false,
        }
    }

    /// Shows `text` as the current state.
    pub fn update(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.in_place {
            // Carriage return, then clear the line.
            let _ = write!(err, "\r\x1b[2K{text}");
            let _ = err.flush();
            self.open = true;
        } else {
            let _ = writeln!(err, "{text}");
        }
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        if self.open {
            eprintln!();
        }
    }
}

/// `12.3 MB in 1.2 s (10.2 MB/s)`, or `None` for a transfer too small to matter.
#[must_use]
pub fn transfer_summary(bytes: u64, took: Duration) -> Option<String> {
    if bytes < SHOW_TRANSFERS_FROM {
        return None;
    }
    #[allow(clippy::cast_precision_loss)] // a display figure
    let megabytes = bytes as f64 / 1_000_000.0;
    let seconds = took.as_secs_f64().max(0.001);
    Some(format!(
        "{megabytes:.1} MB in {seconds:.1} s ({:.1} MB/s)",
        megabytes / seconds
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_large_transfers_get_a_rate() {
        assert_eq!(transfer_summary(1000, Duration::from_secs(1)), None);
        assert_eq!(
            transfer_summary(20_000_000, Duration::from_secs(2)).as_deref(),
            Some("20.0 MB in 2.0 s (10.0 MB/s)")
        );
        assert!(transfer_summary(50_000_000, Duration::ZERO).is_some());
    }
}
