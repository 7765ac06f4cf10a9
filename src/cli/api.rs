//! `cloudraid token create|list|revoke` and `cloudraid serve`.

use super::args::{RoleArg, TokenCmd};
use super::{keys, on_volume, print_report};
use cloudraid::config::Config;
use cloudraid::format::{EventRecord, Severity, TokenRole};
use cloudraid::front::api::tokens::{NewToken, TokenInfo};
use cloudraid::front::api::{self, role_name};
use cloudraid::front::control::Request;
use std::path::Path;

pub fn run_token(cmd: TokenCmd) -> Result<(), String> {
    match cmd {
        TokenCmd::Create { config, name, role } => {
            let role = match role {
                RoleArg::Read => TokenRole::Read,
                RoleArg::Write => TokenRole::Write,
                RoleArg::Admin => TokenRole::Admin,
            };
            api::tokens::check_name(&name)?;
            on_volume(
                &config,
                Request::TokenCreate { name, role },
                false,
                None,
                |t: NewToken| {
                    eprintln!(
                        "token {} ({}) created; it is shown once, here (send it as `Authorization: Bearer TOKEN`):",
                        t.token.name,
                        role_name(t.token.role)
                    );
                    println!("{}", t.secret);
                    Ok(())
                },
            )
        }
        TokenCmd::List { config, json } => on_volume(
            &config,
            Request::TokenList,
            true,
            None,
            |l: Vec<TokenInfo>| print_report(&l, json, render),
        ),
        TokenCmd::Revoke { config, name } => on_volume(
            &config,
            Request::TokenRevoke { name },
            false,
            None,
            |t: TokenInfo| {
                println!("token {} revoked", t.name);
                Ok(())
            },
        ),
    }
}

fn render(l: &Vec<TokenInfo>) -> String {
    if l.is_empty() {
        return "no tokens (`cloudraid token create` makes one)\n".into();
    }
    let mut out = format!("{:<24} {:<6} CREATED\n", "NAME", "ROLE");
    for t in l {
        let when = chrono::DateTime::from_timestamp_nanos(t.created)
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S");
        out += &format!("{:<24} {:<6} {when}\n", t.name, role_name(t.role));
    }
    out
}

/// `cloudraid serve`: the volume opened here, served until Ctrl-C.
pub fn serve(config_path: &Path) -> Result<(), String> {
    let config = Config::load(config_path)?;
    if config.api.address()?.is_none() {
        return Err(format!(
            "{}: no [api] listen: add\n\n[api]\nlisten = \"127.0.0.1:7878\"\n\nto serve the REST API",
            config_path.display()
        ));
    }
    // A bad certificate is said before the volume is opened.
    config.api.check_tls()?;
    cloudraid::front::daemon::serve_unmounted(config_path, &config, &keys(false))
}

/// `cloudraid events`.
pub fn events(config: &Path, since: Option<&str>, json: bool) -> Result<(), String> {
    let since = since
        .map(cloudraid::meta::events::parse_since)
        .transpose()?;
    on_volume(
        config,
        Request::Events { since },
        true,
        None,
        |l: Vec<EventRecord>| print_report(&l, json, render_events),
    )
}

fn render_events(l: &Vec<EventRecord>) -> String {
    if l.is_empty() {
        return "no events\n".into();
    }
    let mut out = String::new();
    for e in l {
        let when = chrono::DateTime::from_timestamp_nanos(e.at)
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S");
        let sev = match e.severity {
            Severity::Info => "info",
            Severity::Warning => "WARN",
            Severity::Error => "ERROR",
        };
        out += &format!("{when}  {sev:<5}  {:<17} {}\n", e.kind, e.message);
    }
    out
}
