//! `mkdir`: creating directories, with their parents on request.

use super::{components, fs_err, resolve};
use crate::format::Kind;
use crate::fs::{Caller, Errno, Fs};
use serde::{Deserialize, Serialize};

/// What `mkdir` did: directories created, and the paths it could not create.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MkdirReport {
    pub created: u64,
    pub errors: Vec<String>,
}

/// `mkdir`: creates directories; with `parents`, missing parents too, and an
/// existing directory is not an error. A path that fails does not stop the others.
pub async fn mkdir(
    fs: &Fs,
    paths: &[String],
    parents: bool,
    owner: Caller,
) -> Result<MkdirReport, String> {
    let mut report = MkdirReport::default();
    for p in paths {
        if let Err(e) = mkdir_one(fs, p, parents, owner, &mut report.created).await {
            report.errors.push(e);
        }
    }
    Ok(report)
}

async fn mkdir_one(
    fs: &Fs,
    p: &str,
    parents: bool,
    owner: Caller,
    made: &mut u64,
) -> Result<(), String> {
    let comps = components(p)?;
    if comps.is_empty() {
        return Err("/ exists: it is the volume's root".into());
    }
    let mut dir = resolve(fs, "/").await?;
    for (i, c) in comps.iter().enumerate() {
        let here = comps[..=i].join("/");
        let last = i + 1 == comps.len();
        match fs.lookup(dir.ino, c.as_bytes()).await {
            Ok(a) if a.kind == Kind::Dir && (parents || !last) => dir = a,
            Ok(_) if last => return Err(fs_err(&here, Errno::EEXIST)),
            Ok(_) => return Err(fs_err(&here, Errno::ENOTDIR)),
            Err(Errno::ENOENT) if parents || last => {
                let a = fs
                    .mkdir(dir.ino, c.as_bytes(), 0o755, owner)
                    .await
                    .map_err(|e| fs_err(&here, e))?;
                fs.forget_name(dir.ino, c.as_bytes()).await;
                *made += 1;
                dir = a;
            }
            Err(e) => {
                return Err(format!(
                    "{} (use -p to create missing parents)",
                    fs_err(&here, e)
                ))
            }
        }
    }
    Ok(())
}
