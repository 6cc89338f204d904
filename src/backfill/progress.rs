//! Progress output: bars on a terminal (one overall, one per user being fetched, or one per
//! stage of a run), log lines otherwise.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::plan::{DataType, Window};

/// Whether to draw progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Bars when stderr is a terminal, log lines otherwise.
    Auto,
    /// Log lines only.
    Never,
}

impl Progress {
    /// True when bars are drawn.
    fn on_terminal(self) -> bool {
        self == Progress::Auto && std::io::stderr().is_terminal()
    }
}

/// Progress bars: one overall bar and one per user being fetched (hidden off a terminal).
pub(super) struct Bars {
    multi: Option<MultiProgress>,
    overall: ProgressBar,
    records: std::sync::atomic::AtomicU64,
}

/// A user's bar (a no-op when bars are hidden).
pub(super) struct UserBar(Option<ProgressBar>);

impl Bars {
    pub(super) fn new(mode: Progress, total_windows: u64) -> Self {
        if !mode.on_terminal() {
            return Self {
                multi: None,
                overall: ProgressBar::hidden(),
                records: Default::default(),
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(total_windows));
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} windows {msg}",
        ) {
            overall.set_style(style.progress_chars("=> "));
        }
        Self {
            multi: Some(multi),
            overall,
            records: Default::default(),
        }
    }

    pub(super) fn visible(&self) -> bool {
        self.multi.is_some()
    }

    pub(super) fn user(&self, user_id: &str, windows: u64) -> UserBar {
        let Some(multi) = &self.multi else {
            return UserBar(None);
        };
        let bar = multi.add(ProgressBar::new(windows));
        if let Ok(style) =
            ProgressStyle::with_template("  {prefix:.bold} [{bar:20}] {pos}/{len} {wide_msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(short(user_id).to_owned());
        UserBar(Some(bar))
    }

    pub(super) fn advance(&self, bar: &UserBar, records: u64) {
        if let Some(b) = &bar.0 {
            b.inc(1);
        }
        let total = self.records.fetch_add(records, Ordering::Relaxed) + records;
        self.overall.inc(1);
        self.overall.set_message(format!("{total} records"));
    }

    pub(super) fn finish(&self) {
        self.overall.finish();
    }
}

impl UserBar {
    pub(super) fn show(&self, data_type: DataType, window: Window, records: u64) {
        if let Some(b) = &self.0 {
            b.set_message(format!("{data_type} {window} ({records} records so far)"));
        }
    }

    pub(super) fn finish(&self, why: &str) {
        if let Some(b) = &self.0 {
            b.finish_with_message(why.to_owned());
        }
    }
}

/// The first 8 characters of a user id, enough to tell users apart on a progress line.
fn short(user_id: &str) -> &str {
    user_id
        .char_indices()
        .nth(8)
        .map_or(user_id, |(i, _)| &user_id[..i])
}

/// One stage of a run with a known number of steps (a bar on a terminal, else nothing: the
/// caller logs its own lines).
#[derive(Debug)]
pub(crate) struct Stage(Option<ProgressBar>);

impl Stage {
    /// A bar of `steps` steps labelled `what`, when bars are drawn.
    pub(crate) fn new(mode: Progress, steps: u64, what: &str) -> Self {
        if !mode.on_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{bar:30.cyan/blue}}] {{pos}}/{{len}} {what} {{wide_msg}}"
        )) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self(Some(bar))
    }

    /// True when a bar is drawn (log lines can then go to debug level).
    pub(crate) fn visible(&self) -> bool {
        self.0.is_some()
    }

    /// The total became known (or changed).
    pub(crate) fn set_steps(&self, steps: u64) {
        if let Some(b) = &self.0 {
            b.set_length(steps);
        }
    }

    /// One more step done, with a note.
    pub(crate) fn advance(&self, note: &str) {
        if let Some(b) = &self.0 {
            b.inc(1);
            b.set_message(note.to_owned());
        }
    }

    /// The stage is over.
    pub(crate) fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_user_ids() {
        assert_eq!(short("40f7b0e1-89e2-43ac"), "40f7b0e1");
        assert_eq!(short("u1"), "u1");
    }
}
