//! Tree commands' reports: what `put` and `get` copied, and the errors of
//! `rm`, `mkdir`, `put` and `get`.

use super::{absolute, on_volume};
use cloudraid::config::human;
use cloudraid::front::{control, ops};
use std::path::{Path, PathBuf};

/// What could not be done: one error line, or one line each and a summary.
/// `done`: whether anything else was done (and reported on stdout).
pub fn print_errors(errors: &[String], what: &str, done: bool) -> Result<(), String> {
    match errors {
        [] => Ok(()),
        [one] => Err(one.clone()),
        many => {
            for e in many {
                eprintln!("cloudraid: {e}");
            }
            Err(format!(
                "{} {what} failed (listed above); {}",
                many.len(),
                if done {
                    "the rest was done"
                } else {
                    "nothing was done"
                }
            ))
        }
    }
}

pub fn run_put(config: &Path, sources: &[PathBuf], dest: String) -> Result<(), String> {
    let sources = sources
        .iter()
        .map(|s| absolute(s))
        .collect::<Result<Vec<_>, _>>()?;
    on_volume(
        config,
        control::Request::Put { sources, dest },
        false,
        Some("put"),
        |r: ops::TransferReport| {
            // A summary only of what was done: an error alone says nothing was.
            let stored = r.files + r.dirs + r.symlinks + r.specials > 0;
            if stored || (r.unchanged == 0 && r.errors.is_empty()) {
                println!(
                    "stored {}; {} chunk(s) uploaded, {} already stored",
                    entries(&r),
                    r.chunks_uploaded,
                    r.chunks_deduplicated
                );
            }
            if r.unchanged > 0 {
                println!(
                    "skipped {} file(s) ({}) already stored with the same content",
                    r.unchanged,
                    human(r.unchanged_bytes)
                );
            }
            print_errors(&r.errors, "copies", stored || r.unchanged > 0)
        },
    )
}

/// What a transfer copied: "N file(s) (SIZE), N directories, N symlink(s)",
/// and ", N special file(s)" when FIFOs, sockets or devices were copied, ", N
/// hard link(s)" when further links of a file were made.
pub fn entries(r: &ops::TransferReport) -> String {
    let mut specials = match r.specials {
        0 => String::new(),
        n => format!(", {n} special file(s)"),
    };
    if r.hard_links > 0 {
        specials.push_str(&format!(", {} hard link(s)", r.hard_links));
    }
    format!(
        "{} file(s) ({}), {} director{}, {} symlink(s){specials}",
        r.files,
        human(r.bytes),
        r.dirs,
        if r.dirs == 1 { "y" } else { "ies" },
        r.symlinks,
    )
}

pub fn run_get(config: &Path, paths: Vec<String>, dest: &Path) -> Result<(), String> {
    let dest = absolute(dest)?;
    on_volume(
        config,
        control::Request::Get {
            paths,
            dest: dest.clone(),
        },
        true,
        Some("get"),
        |r: ops::TransferReport| {
            let done = r.files + r.dirs + r.symlinks + r.specials + r.hard_links > 0;
            if done || r.errors.is_empty() {
                println!("wrote {} to {}", entries(&r), dest.display());
            }
            print_errors(&r.errors, "copies", done)
        },
    )
}
