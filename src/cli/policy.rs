//! `cloudraid policy`: the placement rules of a volume's config.

use super::args::PolicyCmd;
use super::{absolute, on_volume, print_report};
use cloudraid::config::Config;
use cloudraid::front::control::Request;
use cloudraid::fs::placement::{render_apply, ApplyReport};
use cloudraid::policy::{check, rules::PolicySet};

pub fn run_policy(cmd: PolicyCmd) -> Result<(), String> {
    match cmd {
        PolicyCmd::Check {
            config,
            paths,
            size,
            owner,
        } => {
            // Loading checks every rule (one line naming what cannot be met).
            let cfg = Config::load(&config)?;
            let set = PolicySet::compile(&cfg)?;
            let uid = owner.unwrap_or_else(|| unsafe { libc::geteuid() });
            print!("{}", check::report(&cfg, &set, &paths, size.0, uid));
            println!("{} rule(s) checked: every one can be met", set.rules.len());
            Ok(())
        }
        PolicyCmd::Apply {
            config,
            dry_run,
            json,
        } => {
            // The rules are checked here first: one line when one cannot be met.
            PolicySet::compile(&Config::load(&config)?)?;
            let req = Request::PolicyApply {
                config: absolute(&config)?,
                dry_run,
            };
            on_volume(
                &config,
                req,
                dry_run,
                Some("policy apply"),
                |r: ApplyReport| {
                    print_report(&r, json, render_apply)?;
                    if r.failed.is_empty() {
                        Ok(())
                    } else {
                        Err(r.error_line())
                    }
                },
            )
        }
    }
}
