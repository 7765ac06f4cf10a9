//! When a job runs by itself: its `schedule`, parsed.
//!
//! A schedule is a cron expression (5 fields: minute hour day-of-month month
//! day-of-week, e.g. `0 3 * * *`) or a systemd calendar string (`daily`,
//! `Mon..Fri *-*-* 03:00`, `*-*-* 00/6:30`). Times are computed by the `croner`
//! crate in both cases: a calendar string is first written as the cron
//! expression it means. Calendar strings with seconds other than 0, a year, a
//! time zone or `~` (last days of a month) are refused with the reason: they
//! have no cron equivalent. `cloudraid backup install-timer` writes the opposite
//! translation (cron to `OnCalendar=`).

use chrono::{DateTime, Local};
use std::str::FromStr;

/// A parsed `schedule`.
#[derive(Clone, Debug)]
pub struct When {
    pub text: String,
    /// The cron expression the schedule means.
    pub cron_text: String,
    cron: croner::Cron,
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

impl When {
    /// Parses a cron expression or a systemd calendar string.
    pub fn parse(s: &str) -> Result<When, String> {
        let t = s.trim();
        let cron_text = if looks_like_cron(t) {
            t.to_string()
        } else {
            calendar_to_cron(t).map_err(|e| {
                format!("schedule = {s:?} is neither a cron expression nor a systemd calendar string we can run ({e}); write e.g. \"0 3 * * *\" or \"*-*-* 03:00\" (03:00 every day)")
            })?
        };
        let cron = croner::Cron::from_str(&cron_text).map_err(|e| {
            format!("schedule = {s:?} is not a cron expression ({e}); write e.g. \"0 3 * * *\" (03:00 every day)")
        })?;
        Ok(When {
            text: s.to_string(),
            cron_text,
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

    /// The schedule as a systemd `OnCalendar=` value.
    pub fn on_calendar(&self) -> Result<String, String> {
        let t = self.text.trim();
        if !looks_like_cron(t) {
            return Ok(t.to_string());
        }
        cron_to_calendar(t)
    }
}

/// Five fields of digits, names and `*,-/`: cron. (A calendar string has `:`.)
fn looks_like_cron(s: &str) -> bool {
    let f: Vec<&str> = s.split_whitespace().collect();
    f.len() == 5 && !s.contains(':') && !s.contains("..")
}

/// A cron field written as a systemd one: `a-b` → `a..b`, `*/n` → `0/n`
/// (`first` is the field's first value).
fn cron_field_to_calendar(f: &str, first: u32) -> Result<String, String> {
    let mut out = Vec::new();
    for part in f.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let range = if range == "*" && step.is_some() {
            first.to_string()
        } else {
            range.replace('-', "..")
        };
        if step.is_some() && range.contains("..") {
            return Err(format!(
                "{part:?}: a range with a step has no systemd form; list the values"
            ));
        }
        out.push(match step {
            Some(s) => format!("{range}/{s}"),
            None => range,
        });
    }
    Ok(out.join(","))
}

/// Cron day-of-week names and numbers (0 and 7: Sunday) as systemd's names.
fn cron_days_to_calendar(f: &str) -> Result<String, String> {
    let day = |d: &str| -> Result<&'static str, String> {
        if let Ok(n) = d.parse::<usize>() {
            return DAYS
                .get(n % 7)
                .copied()
                .filter(|_| n <= 7)
                .ok_or_else(|| format!("day of week {d:?}"));
        }
        DAYS.iter()
            .find(|x| x.eq_ignore_ascii_case(&d[..d.len().min(3)]))
            .copied()
            .ok_or_else(|| format!("day of week {d:?}"))
    };
    let mut out = Vec::new();
    for part in f.split(',') {
        if part.contains('/') {
            return Err(format!("day of week {part:?}: list the days instead"));
        }
        match part.split_once('-') {
            Some((a, b)) => out.push(format!("{}..{}", day(a)?, day(b)?)),
            None => out.push(day(part)?.to_string()),
        }
    }
    Ok(out.join(","))
}

/// `M H DOM MON DOW` as `DOW *-MON-DOM H:M:00`.
pub fn cron_to_calendar(s: &str) -> Result<String, String> {
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() != 5 {
        return Err(format!("{s:?}: a cron expression has 5 fields"));
    }
    let min = cron_field_to_calendar(f[0], 0)?;
    let hour = cron_field_to_calendar(f[1], 0)?;
    let dom = cron_field_to_calendar(f[2], 1)?;
    let mon = cron_field_to_calendar(f[3], 1)?;
    let mut out = String::new();
    if f[4] != "*" && f[4] != "?" {
        out.push_str(&cron_days_to_calendar(f[4])?);
        out.push(' ');
    }
    out.push_str(&format!("*-{mon}-{dom} {hour}:{min}:00"));
    Ok(out)
}

/// A systemd calendar field as a cron one: `a..b` → `a-b`; `*` stays.
fn calendar_field_to_cron(f: &str, what: &str, max: u32) -> Result<String, String> {
    if f.is_empty() {
        return Err(format!("an empty {what}"));
    }
    let mut out = Vec::new();
    for part in f.split(',') {
        if !part
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '*' | '.' | '/'))
        {
            return Err(format!("{what} {part:?}"));
        }
        let p = part.replace("..", "-");
        // Leading zeros (`03`) are fine for systemd, not for every cron parser.
        let p = p
            .split(['-', '/'])
            .map(|n| n.trim_start_matches('0'))
            .map(|n| if n.is_empty() { "0" } else { n })
            .collect::<Vec<_>>();
        let sep: Vec<char> = part
            .replace("..", "-")
            .chars()
            .filter(|c| matches!(c, '-' | '/'))
            .collect();
        let mut s = p[0].to_string();
        for (i, c) in sep.iter().enumerate() {
            // systemd's `A/S` (from A, every S) is cron's `A-MAX/S`.
            if *c == '/' && !sep.contains(&'-') && p[0] != "*" {
                s.push_str(&format!("-{max}"));
            }
            s.push(*c);
            s.push_str(p[i + 1]);
        }
        out.push(s);
    }
    Ok(out.join(","))
}

/// A systemd calendar string (`man systemd.time`) as a cron expression.
pub fn calendar_to_cron(s: &str) -> Result<String, String> {
    let short = match s.to_ascii_lowercase().as_str() {
        "minutely" => Some("* * * * *"),
        "hourly" => Some("0 * * * *"),
        "daily" => Some("0 0 * * *"),
        "weekly" => Some("0 0 * * Mon"),
        "monthly" => Some("0 0 1 * *"),
        "yearly" | "annually" => Some("0 0 1 1 *"),
        "quarterly" => Some("0 0 1 1,4,7,10 *"),
        _ => None,
    };
    if let Some(c) = short {
        return Ok(c.to_string());
    }
    if s.contains('~') {
        return Err("`~` (last days of a month) has no cron form".into());
    }
    let mut parts: Vec<&str> = s.split_whitespace().collect();
    if parts.is_empty() {
        return Err("it is empty".into());
    }
    // An optional leading weekday list.
    let mut dow = "*".to_string();
    if parts[0]
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
    {
        let mut days = Vec::new();
        for p in parts[0].split(',') {
            let name = |d: &str| -> Result<usize, String> {
                DAYS.iter()
                    .position(|x| d.len() >= 3 && x.eq_ignore_ascii_case(&d[..3]))
                    .ok_or_else(|| format!("weekday {d:?}"))
            };
            match p.split_once("..") {
                Some((a, b)) => days.push(format!("{}-{}", name(a)?, name(b)?)),
                None => days.push(name(p)?.to_string()),
            }
        }
        dow = days.join(",");
        parts.remove(0);
    }
    let (date, time) = match parts.as_slice() {
        [d, t] => (*d, *t),
        [x] if x.contains(':') => ("*-*-*", *x),
        [x] => (*x, "00:00:00"),
        [] => ("*-*-*", "00:00:00"),
        _ => return Err("expected [WEEKDAYS] [DATE] [TIME]; time zones are not supported".into()),
    };
    let d: Vec<&str> = date.split('-').collect();
    let (mon, dom) = match d.as_slice() {
        [y, m, dd] => {
            if *y != "*" {
                return Err("a year has no cron form: use *-MM-DD".into());
            }
            (*m, *dd)
        }
        [m, dd] => (*m, *dd),
        _ => return Err(format!("date {date:?}: write *-MM-DD")),
    };
    let t: Vec<&str> = time.split(':').collect();
    let (hour, min) = match t.as_slice() {
        [h, m] => (*h, *m),
        [h, m, sec] => {
            if !sec.trim_start_matches('0').is_empty() && *sec != "00" {
                return Err("seconds other than 00 have no cron form".into());
            }
            (*h, *m)
        }
        _ => return Err(format!("time {time:?}: write HH:MM")),
    };
    Ok(format!(
        "{} {} {} {} {}",
        calendar_field_to_cron(min, "minute", 59)?,
        calendar_field_to_cron(hour, "hour", 23)?,
        calendar_field_to_cron(dom, "day", 31)?,
        calendar_field_to_cron(mon, "month", 12)?,
        dow
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn calendar_strings_run_at_the_times_systemd_gives() {
        let cases = [
            ("daily", "0 0 * * *"),
            ("*-*-* 03:00", "0 3 * * *"),
            ("Mon..Fri *-*-* 03:30:00", "30 3 * * 1-5"),
            ("Sat,Sun 12:00", "0 12 * * 6,0"),
            ("*-*-* 00/6:15", "15 0-23/6 * * *"),
            ("*-*-01 04:00", "0 4 1 * *"),
        ];
        for (cal, cron) in cases {
            assert_eq!(calendar_to_cron(cal).unwrap(), cron, "{cal}");
            When::parse(cal).unwrap();
        }
        let w = When::parse("Mon..Fri *-*-* 03:30").unwrap();
        // 2026-12-05 is a Saturday: the next run is Monday 03:30.
        assert_eq!(
            w.next_after(&at(2026, 12, 5, 10, 0)).unwrap(),
            at(2026, 12, 7, 3, 30)
        );
    }

    #[test]
    fn unsupported_calendar_strings_say_why() {
        for (s, why) in [
            ("2027-*-* 03:00", "year"),
            ("*-*-* 03:00:30", "seconds"),
            ("*-02~01 03:00", "last days"),
            ("Funday 03:00", "weekday"),
        ] {
            let e = When::parse(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn cron_becomes_on_calendar() {
        assert_eq!(cron_to_calendar("0 3 * * *").unwrap(), "*-*-* 3:0:00");
        assert_eq!(
            cron_to_calendar("*/15 9-17 * * 1-5").unwrap(),
            "Mon..Fri *-*-* 9..17:0/15:00"
        );
        assert_eq!(
            cron_to_calendar("0 4 1 1,7 0").unwrap(),
            "Sun *-1,7-1 4:0:00"
        );
        assert!(cron_to_calendar("0 1-10/2 * * *").is_err());
        let w = When::parse("0 3 * * *").unwrap();
        assert_eq!(w.on_calendar().unwrap(), "*-*-* 3:0:00");
        let w = When::parse("Mon *-*-* 04:00").unwrap();
        assert_eq!(w.on_calendar().unwrap(), "Mon *-*-* 04:00");
    }

    #[test]
    fn cron_times() {
        let w = When::parse("0 3 * * *").unwrap();
        assert_eq!(
            w.next_after(&at(2026, 12, 3, 4, 0)).unwrap(),
            at(2026, 12, 4, 3, 0)
        );
        assert_eq!(
            w.last_before(&at(2026, 12, 3, 4, 0)).unwrap(),
            at(2026, 12, 3, 3, 0)
        );
    }
}
