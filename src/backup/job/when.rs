//! When a job runs by itself: its `schedule`, parsed.

use chrono::{DateTime, Local};
use std::str::FromStr;

/// A parsed `schedule`.
#[derive(Clone, Debug)]
pub struct When {
    pub text: String,
    cron: croner::Cron,
}

impl When {
    /// Parses a cron expression (5 fields: minute hour day-of-month month day-of-week).
    pub fn parse(s: &str) -> Result<When, String> {
        let cron = croner::Cron::from_str(s.trim()).map_err(|e| {
            format!("schedule = {s:?} is not a cron expression ({e}); write e.g. \"0 3 * * *\" (03:00 every day)")
        })?;
        Ok(When {
            text: s.to_string(),
            cron,
        })
    }

    /// The first time after `t` the job is due.
    pub fn next_after(&self, t: &DateTime<Local>) -> Option<DateTime<Local>> {
        self.cron.find_next_occurrence(t, false).ok()
    }

    /// The last time at or before `t` the job was due.
    pub fn last_before(&self, t: &DateTime<Local>) -> Option<DateTime<Local>> {
        self.cron.find_previous_occurrence(t, true).ok()
    }
}
