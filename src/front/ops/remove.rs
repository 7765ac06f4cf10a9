//! `rm`: removing files, symlinks and (recursively) directories.

use super::{children, display, fs_err, join, resolve_parent, RemoveReport};
use crate::format::Kind;
use crate::fs::{Caller, Fs};

/// `rm`: removes files and symlinks, and directories with `recursive`, as
/// `owner` (in sticky directories, only what `owner` may remove).
pub async fn remove(
    fs: &Fs,
    paths: &[String],
    recursive: bool,
    owner: Caller,
) -> Result<RemoveReport, String> {
    let mut report = RemoveReport::default();
    for p in paths {
        if let Err(e) = remove_one(fs, p, recursive, owner, &mut report).await {
            report.errors.push(e);
        }
    }
    Ok(report)
}

async fn remove_one(
    fs: &Fs,
    path: &str,
    recursive: bool,
    owner: Caller,
    report: &mut RemoveReport,
) -> Result<(), String> {
    let (parent, name) = resolve_parent(fs, path).await?;
    remove_at(
        fs,
        parent.ino,
        name.as_bytes(),
        path,
        recursive,
        owner,
        report,
    )
    .await
}

/// Removes entry `name` of directory `parent` (shown as `path` in messages),
/// with its contents when it is a directory and `recursive`.
pub(crate) async fn remove_at(
    fs: &Fs,
    parent: u64,
    name: &[u8],
    path: &str,
    recursive: bool,
    owner: Caller,
    report: &mut RemoveReport,
) -> Result<(), String> {
    let a = fs.lookup(parent, name).await.map_err(|e| fs_err(path, e))?;
    if a.kind != Kind::Dir {
        fs.unlink_as(parent, name, owner)
            .await
            .map_err(|e| fs_err(path, e))?;
        fs.forget_name(parent, name).await;
        report.files += 1;
        return Ok(());
    }
    if !recursive {
        return Err(format!(
            "{}: is a directory (use -r to remove it with its contents)",
            display(path)
        ));
    }
    // Post-order walk: (dir inode, its path, entries visited?).
    let mut stack = vec![(parent, name.to_vec(), a.ino, path.to_string(), false)];
    while let Some((pino, pname, ino, p, visited)) = stack.pop() {
        if visited {
            fs.rmdir_as(pino, &pname, owner)
                .await
                .map_err(|e| fs_err(&p, e))?;
            fs.forget_name(pino, &pname).await;
            report.dirs += 1;
            continue;
        }
        stack.push((pino, pname, ino, p.clone(), true));
        for (cname, cino, kind) in children(fs, ino).await.map_err(|e| fs_err(&p, e))? {
            if kind == Kind::Dir {
                stack.push((ino, cname.clone(), cino, join(&p, &cname), false));
            } else {
                fs.unlink_as(ino, &cname, owner)
                    .await
                    .map_err(|e| fs_err(&join(&p, &cname), e))?;
                fs.forget_name(ino, &cname).await;
                report.files += 1;
            }
        }
    }
    Ok(())
}
