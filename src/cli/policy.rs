//! `cloudraid policy`: the placement rules of a volume's config.

use super::args::PolicyCmd;
use cloudraid::config::Config;
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
    }
}
