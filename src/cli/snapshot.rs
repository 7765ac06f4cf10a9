//! Snapshot commands: `snapshot create|list|diff|delete|protect|unprotect`,
//! `restore` and `forget`, through the mount daemon or on the volume opened here.

use super::args::SnapshotCmd;
use super::tree::{entries, print_errors};
use super::{absolute, given_proof, on_volume, on_volume_proved, print_report};
use cloudraid::backup::diff::{self, DiffReport};
use cloudraid::backup::forget::{self, ForgetReport, ForgetRequest};
use cloudraid::backup::retention::KeepPolicy;
use cloudraid::config::human;
use cloudraid::front::control::{
    DeleteReport, ProtectReport, Request, RestoreOutcome, SnapshotListing,
};
use cloudraid::fs::snapshot::SnapshotInfo;
use std::path::{Path, PathBuf};

pub fn run_snapshot(cmd: SnapshotCmd) -> Result<(), String> {
    match cmd {
        SnapshotCmd::Create {
            config,
            tags,
            paths,
        } => on_volume(
            &config,
            Request::SnapshotCreate { tags, paths },
            false,
            None,
            |s: SnapshotInfo| {
                println!(
                    "snapshot {}: {} file(s), {} director{}, {} other(s), {}; {} new directory tree(s) ({}), added {}",
                    s.id,
                    s.files,
                    s.dirs,
                    if s.dirs == 1 { "y" } else { "ies" },
                    s.others,
                    human(s.bytes),
                    s.new_trees,
                    human(s.new_tree_bytes),
                    human(s.added_bytes),
                );
                println!("created snapshot {}", s.id);
                Ok(())
            },
        ),
        SnapshotCmd::List { config, json } => on_volume(
            &config,
            Request::SnapshotList,
            true,
            None,
            |l: SnapshotListing| {
                if json {
                    let rows: Vec<serde_json::Value> = l.snapshots.iter().map(list_json).collect();
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?
                    );
                } else {
                    print!("{}", render_list(&l, &config));
                }
                Ok(())
            },
        ),
        SnapshotCmd::Diff { config, a, b, json } => on_volume(
            &config,
            Request::SnapshotDiff { a, b },
            true,
            None,
            |r: DiffReport| print_report(&r, json, diff::render),
        ),
        SnapshotCmd::Delete { config, ids } => {
            let again = |proof| Request::SnapshotDelete {
                ids: ids.clone(),
                proof: Some(proof),
            };
            on_volume_proved(
                &config,
                Request::SnapshotDelete {
                    ids: ids.clone(),
                    proof: given_proof()?,
                },
                Some(&again),
                false,
                None,
                |r: DeleteReport| {
                    println!(
                        "deleted {} snapshot(s): {}; freed {} ({} stored with parity) that no other snapshot or file holds",
                        r.deleted.len(),
                        r.deleted.join(", "),
                        human(r.freed.bytes),
                        human(r.freed.stored_bytes)
                    );
                    Ok(())
                },
            )
        }
        SnapshotCmd::Protect { config } => on_volume(
            &config,
            Request::SnapshotProtect {
                on: true,
                proof: None,
            },
            false,
            None,
            |r: ProtectReport| {
                println!(
                    "snapshots {}protected: deleting one (snapshot delete, forget) or unprotect now needs the passphrase typed again, or --key-file FILE on the command line",
                    if r.changed { "are now " } else { "were already " }
                );
                Ok(())
            },
        ),
        SnapshotCmd::Unprotect { config } => {
            let again = |proof| Request::SnapshotProtect {
                on: false,
                proof: Some(proof),
            };
            on_volume_proved(
                &config,
                Request::SnapshotProtect {
                    on: false,
                    proof: given_proof()?,
                },
                Some(&again),
                false,
                None,
                |r: ProtectReport| {
                    println!(
                        "{}",
                        if r.changed {
                            "snapshot protection is off: snapshots can be deleted without the passphrase"
                        } else {
                            "snapshots were not protected: nothing changed"
                        }
                    );
                    Ok(())
                },
            )
        }
    }
}

/// `restore --config FILE SNAPSHOT PATH... DEST` or `... PATH... --in-place`.
pub fn run_restore(
    config: &Path,
    snapshot: String,
    mut paths: Vec<String>,
    in_place: bool,
    overwrite: bool,
) -> Result<(), String> {
    let dest = if in_place {
        None
    } else {
        if paths.len() < 2 {
            return Err(
                "restore needs the paths to restore and then a local DEST (or --in-place to restore into the volume)".into(),
            );
        }
        let d = PathBuf::from(paths.pop().expect("two or more"));
        Some(absolute(&d)?)
    };
    on_volume(
        config,
        Request::Restore {
            snapshot,
            paths,
            dest: dest.clone(),
            in_place,
            overwrite,
        },
        !in_place,
        Some("restore"),
        |o: RestoreOutcome| {
            if in_place {
                let r = o.in_place.unwrap_or_default();
                let done = r.files + r.dirs + r.others > 0;
                if done || r.errors.is_empty() {
                    println!(
                        "restored {} file(s) ({}), {} director{}, {} other(s) from snapshot {} into the volume (nothing uploaded)",
                        r.files,
                        human(r.bytes),
                        r.dirs,
                        if r.dirs == 1 { "y" } else { "ies" },
                        r.others,
                        o.snapshot,
                    );
                }
                return print_errors(&r.errors, "restores", done);
            }
            let c = o.copied.unwrap_or_default();
            let done = c.files + c.dirs + c.symlinks + c.specials + c.hard_links > 0;
            if done || c.errors.is_empty() {
                println!(
                    "wrote {} from snapshot {} to {}",
                    entries(&c),
                    o.snapshot,
                    dest.as_deref().unwrap_or(Path::new("?")).display()
                );
            }
            print_errors(&c.errors, "copies", done)
        },
    )
}

/// What `forget` was asked.
pub struct ForgetArgs {
    pub policy: KeepPolicy,
    pub tags: Vec<String>,
    pub dry_run: bool,
    pub prune: bool,
    pub json: bool,
}

pub fn run_forget(config: &Path, a: ForgetArgs) -> Result<(), String> {
    let request = ForgetRequest {
        policy: a.policy,
        only_tags: a.tags,
        dry_run: a.dry_run,
        prune: a.prune,
    };
    let again = |proof| Request::Forget {
        request: request.clone(),
        proof: Some(proof),
    };
    let proof = if request.dry_run {
        None
    } else {
        given_proof()?
    };
    let json = a.json;
    on_volume_proved(
        config,
        Request::Forget {
            request: request.clone(),
            proof,
        },
        Some(&again),
        request.dry_run,
        None,
        |r: ForgetReport| print_report(&r, json, forget::render),
    )
}

/// One snapshot as `list --json` gives it: its time local (with the offset) and in UTC.
fn list_json(s: &SnapshotInfo) -> serde_json::Value {
    let t = chrono::DateTime::from_timestamp_nanos(s.time_ns);
    serde_json::json!({
        "id": s.id,
        "time": t.with_timezone(&chrono::Local).to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
        "time_utc": t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "tags": s.tags,
        "paths": s.paths,
        "files": s.files,
        "dirs": s.dirs,
        "others": s.others,
        "bytes": s.bytes,
        "added_bytes": s.added_bytes,
        "new_trees": s.new_trees,
        "new_tree_bytes": s.new_tree_bytes,
        "origin": s.origin,
    })
}

fn render_list(l: &SnapshotListing, config: &Path) -> String {
    if l.snapshots.is_empty() {
        return format!(
            "no snapshot yet: cloudraid snapshot create --config {} takes one\n",
            config.display()
        );
    }
    let header = ["ID", "TIME", "TAGS", "FILES", "SIZE", "ADDED", "PATHS"];
    let rows: Vec<[String; 7]> = l
        .snapshots
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                chrono::DateTime::from_timestamp_nanos(s.time_ns)
                    .with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string(),
                if s.tags.is_empty() {
                    "-".into()
                } else {
                    s.tags.join(",")
                },
                s.files.to_string(),
                human(s.bytes),
                human(s.added_bytes),
                if s.paths.is_empty() {
                    "/".into()
                } else {
                    s.paths.join(",")
                },
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            let pad = w.saturating_sub(c.chars().count());
            match i {
                // Numbers to the right.
                3..=5 => out.push_str(&format!("{}{c}", " ".repeat(pad))),
                6 => out.push_str(c),
                _ => out.push_str(&format!("{c}{}", " ".repeat(pad))),
            }
            if i < 6 {
                out.push_str("  ");
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header);
    for r in &rows {
        out.push_str(&line(r.each_ref().map(String::as_str)));
    }
    out.push_str(&format!(
        "{} snapshot(s){}\n",
        rows.len(),
        if l.protected {
            "; protected: deleting one needs the passphrase typed again (or --key-file FILE)"
        } else {
            ""
        }
    ));
    out
}
