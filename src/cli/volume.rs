//! Volume commands: `init` (and the key it protects the volume with), `status`,
//! `cost`, `scrub` and `repair`.

use super::{absolute, ask_daemon, keys, keys_if_given, print_report, runtime, Progress};
use cloudraid::config::{Config, Size};
use cloudraid::front::{control, setup, status};
use cloudraid::fs::scrub;
use std::path::Path;

/// Argon2id cost from the command line.
pub fn kdf_cost(memory: Size, passes: u32) -> Result<cloudraid::data::keys::KdfCost, String> {
    let cost = cloudraid::data::keys::KdfCost {
        m_cost_kib: u32::try_from(memory.0 / 1024).unwrap_or(u32::MAX),
        t_cost: passes,
        p_cost: 1,
    };
    cost.check()
        .map_err(|e| format!("--kdf-memory {memory} / --kdf-passes {passes}: {e}"))?;
    Ok(cost)
}

/// A new passphrase: from a file, from the environment variable `env`, or typed twice.
pub fn new_passphrase(
    file: Option<&Path>,
    env: &str,
) -> Result<cloudraid::data::keys::Credential, String> {
    use cloudraid::data::keys::Credential;
    use zeroize::Zeroizing;
    if let Some(f) = file {
        return setup::read_passphrase_file(f);
    }
    if let Ok(p) = std::env::var(env) {
        if p.is_empty() {
            return Err(format!("{env} is empty"));
        }
        return Ok(Credential::Passphrase(Zeroizing::new(p)));
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(format!(
            "no new passphrase: set {env}, give a passphrase file, or run on a terminal to type it"
        ));
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(|e| format!("cannot read the passphrase: {e}"))
    };
    let first = ask("New passphrase: ")?;
    if first.is_empty() {
        return Err("the passphrase is empty".into());
    }
    if *ask("Repeat it: ")? != *first {
        return Err("the two passphrases differ; nothing was changed".into());
    }
    Ok(Credential::Passphrase(first))
}

/// How `init` protects the new volume's key.
pub fn new_key(
    no_encryption: bool,
    key_file: Option<&Path>,
    passphrase_file: Option<&Path>,
) -> Result<setup::NewKey, String> {
    match (no_encryption, key_file) {
        (true, None) if passphrase_file.is_none() => Ok(setup::NewKey::None),
        (true, _) => Err("--no-encryption takes no key file or passphrase".into()),
        (false, Some(f)) => Ok(setup::NewKey::KeyFile(absolute(f)?)),
        (false, None) => {
            new_passphrase(passphrase_file, setup::PASSPHRASE_ENV).map(setup::NewKey::Passphrase)
        }
    }
}

/// Creates a volume and reports it; `hint`: say how to mount it.
pub fn init_volume(req: setup::InitRequest, hint: bool) -> Result<(), String> {
    let path = req.config_path.clone();
    let report = runtime()?.block_on(setup::init(req))?;
    let v = &report.config.volume;
    println!(
        "created volume {} ({}): {}+{} shards over {} backends, chunk {}, cache {}",
        v.name,
        v.id,
        v.data_shards,
        v.parity_shards,
        report.config.backends.len(),
        v.chunk_size,
        v.cache_size
    );
    println!("config: {}", path.display());
    println!("state:  {}", v.state_dir.display());
    match (&v.key_file, v.encrypted()) {
        (Some(k), _) => println!(
            "encrypted; key file: {} (back it up elsewhere: without it the volume cannot be opened)",
            k.display()
        ),
        (None, true) => println!("encrypted with your passphrase (without it the volume cannot be opened)"),
        (None, false) => println!("not encrypted"),
    }
    for w in report.warnings {
        println!("warning: {w}");
    }
    if hint {
        println!(
            "mount it with: cloudraid mount --config {} MOUNTPOINT",
            path.display()
        );
    }
    Ok(())
}

pub fn show_status(config_path: &Path, json: bool) -> Result<(), String> {
    let config = Config::load(config_path)?;
    let report = runtime()?.block_on(async {
        match ask_daemon(&config, control::Request::Status, |r| r.status).await? {
            Some(r) => Ok(r),
            None => {
                let (vol, _) = setup::open_volume(&config, &keys(true)).await?;
                let idx = setup::open_index(&config)?;
                status::gather(&vol, &idx).await
            }
        }
    })?;
    print_report(&report, json, status::render)
}

/// `cloudraid cost`: the usage comes from the mount daemon when mounted (with
/// the requests it counted), else from the local index alone (no backend is
/// asked, no key needed); it is priced here with the config as it is now.
pub fn show_cost(config_path: &Path, mbps: f64, json: bool) -> Result<(), String> {
    use cloudraid::policy::{cost, price::PriceTable};
    let config = Config::load(config_path)?;
    let backends = cost::BackendInfo::of_config(&config)?;
    let prices = PriceTable::list_prices().with_overrides(&config.prices, &config.backends)?;
    let found = runtime()?.block_on(async {
        match ask_daemon(&config, control::Request::Cost, |r| r.data).await? {
            Some(v) => serde_json::from_value::<cost::UsageReport>(v)
                .map_err(|e| format!("unreadable answer from the mount daemon: {e}")),
            None => {
                let idx = setup::open_index(&config)?;
                Ok(cost::UsageReport {
                    usage: cost::usage_of(&idx, config.backends.len())?,
                    requests: None,
                })
            }
        }
    })?;
    let report = cost::report(
        &config.volume.name,
        &found.usage,
        &backends,
        &prices,
        found.requests.as_deref(),
        mbps,
    )?;
    print_report(&report, json, cost::render)
}

pub fn run_scrub(config_path: &Path, sample: f64, json: bool) -> Result<(), String> {
    if !(sample > 0.0 && sample <= 100.0) {
        return Err(format!(
            "--sample {sample} must be a percentage above 0 and at most 100"
        ));
    }
    let config = Config::load(config_path)?;
    let report = runtime()?.block_on(async {
        match ask_daemon(&config, control::Request::Scrub { sample }, |r| r.scrub).await? {
            Some(r) => Ok::<_, String>(r),
            None => {
                // Shards are checked as stored: no key needed (with it, a shard
                // altered along with its checksum is named even when m = 1).
                let (vol, _) = setup::open_volume(&config, &keys_if_given()).await?;
                let idx = setup::open_index(&config)?;
                let p = Progress::new("scrub");
                let r = scrub::scrub(&vol, &idx, sample, &|d, t| p.update(d, t)).await?;
                scrub::record_scrub(&idx, &r);
                Ok(r)
            }
        }
    })?;
    print_report(&report, json, scrub::render)?;
    if report.clean() {
        Ok(())
    } else {
        Err(report.error_line(config.volume.data_shards as usize))
    }
}

pub fn run_repair(config_path: &Path, json: bool) -> Result<(), String> {
    let config = Config::load(config_path)?;
    let report = runtime()?.block_on(async {
        match ask_daemon(&config, control::Request::Repair, |r| r.repair).await? {
            Some(r) => Ok::<_, String>(r),
            None => {
                let (vol, _) = setup::open_volume(&config, &keys(false)).await?;
                let idx = setup::open_index(&config)?;
                let p = Progress::new("repair");
                let r = scrub::repair(&vol, &idx, &|d, t| p.update(d, t)).await?;
                scrub::record_repair(&idx, &r);
                Ok(r)
            }
        }
    })?;
    print_report(&report, json, scrub::render_repair)?;
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(report.error_line())
    }
}
