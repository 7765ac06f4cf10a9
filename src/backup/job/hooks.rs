//! A job's `before` / `after` / `on_error` commands: run with `sh -c`, with a
//! timeout, and told about the run through the environment.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// What a hook is told: `CLOUDRAID_JOB`, `CLOUDRAID_HOOK` (before, after,
/// on_error), and after a run `CLOUDRAID_RESULT` and `CLOUDRAID_ERROR` (its
/// first error line).
pub struct HookEnv<'a> {
    pub job: &'a str,
    pub hook: &'a str,
    pub result: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// Runs `command` with `sh -c`; `Err` is one line: how it failed (exit status,
/// or the timeout) and the last line it wrote to stderr. A hook that outlives
/// `timeout` is killed with its process group.
pub async fn run(command: &str, timeout: Duration, env: &HookEnv<'_>) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("CLOUDRAID_JOB", env.job)
        .env("CLOUDRAID_HOOK", env.hook)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(r) = env.result {
        cmd.env("CLOUDRAID_RESULT", r);
    }
    if let Some(e) = env.error {
        cmd.env("CLOUDRAID_ERROR", e);
    }
    let what = format!("{} hook `{command}`", env.hook);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what} could not start: {e}"))?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let pid = child.id();
    let waited = tokio::time::timeout(timeout, async {
        // Only the tail of what it says is kept.
        let mut tail = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stderr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 8192 {
                        tail.drain(..tail.len() - 4096);
                    }
                }
            }
        }
        (child.wait().await, tail)
    })
    .await;
    match waited {
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: signals the process group the hook leads.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            Err(format!(
                "{what} did not finish within {}s and was killed; make it faster or raise hook_timeout",
                timeout.as_secs()
            ))
        }
        Ok((Err(e), _)) => Err(format!("{what} failed: {e}")),
        Ok((Ok(status), tail)) if !status.success() => {
            let text = String::from_utf8_lossy(&tail);
            let last = text.lines().rev().find(|l| !l.trim().is_empty());
            Err(match last {
                Some(l) => format!("{what} failed ({status}): {}", l.trim()),
                None => format!("{what} failed ({status})"),
            })
        }
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HookEnv<'static> {
        HookEnv {
            job: "nightly",
            hook: "before",
            result: None,
            error: None,
        }
    }

    #[tokio::test]
    async fn hooks_report_failures_timeouts_and_see_the_job() {
        run(
            "test \"$CLOUDRAID_JOB\" = nightly",
            Duration::from_secs(5),
            &env(),
        )
        .await
        .unwrap();
        let e = run(
            "echo first >&2; echo 'disk not mounted' >&2; exit 3",
            Duration::from_secs(5),
            &env(),
        )
        .await
        .unwrap_err();
        assert!(
            e.contains("exit status: 3") && e.ends_with("disk not mounted"),
            "{e}"
        );
        let t = std::time::Instant::now();
        // A hook that hangs (and a child it started) is killed at the timeout.
        let e = run("sleep 30 & sleep 30", Duration::from_millis(300), &env())
            .await
            .unwrap_err();
        assert!(e.contains("did not finish within"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
