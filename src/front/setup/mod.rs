//! Creating a volume (`init`) and opening one from its config, with the checks
//! that keep a config from being pointed at the wrong storage.
//!
//! `init.rs` creates a volume, `open.rs` opens one (credentials, key, waiting
//! for backends), `passwd.rs` changes its passphrase, `state.rs` handles the
//! local index in the state dir (and `recover`).

mod init;
mod open;
mod passwd;
mod state;

pub use init::{
    backend_fault_tolerance, default_state_dir, init, parse_backend_arg, InitReport, InitRequest,
    NewKey,
};
pub use open::{
    become_writer, fs_options, open_fs, open_volume, open_volume_waiting, read_passphrase_file,
    BackendCheck, KeySource, Probe, PASSPHRASE_ENV,
};
pub use passwd::passwd;
pub use state::{mounted_at, open_index, open_index_waiting, recover};

use crate::config::Config;
use crate::data::volume::Slot;
use crate::format::{VolumeMarker, MARKER_KEY};
use crate::store::{open_backend, DynBackend, StoreError};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

async fn read_marker(b: &DynBackend) -> Result<Option<VolumeMarker>, String> {
    match tokio::time::timeout(Duration::from_secs(30), b.get(MARKER_KEY)).await {
        Err(_) => Err("no answer within 30 s".into()),
        Ok(Err(StoreError::NotFound(_))) => Ok(None),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(bytes)) => VolumeMarker::from_bytes(&bytes).map(Some),
    }
}

pub fn set_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot set mode 0700 on {}: {e}", dir.display()))
}

fn connect(config: &Config) -> Result<Vec<Slot>, String> {
    let env = config.env_vars()?;
    config
        .backends
        .iter()
        .map(|b| {
            // The env file's credentials, overridden by the backend's own options.
            let mut options = crate::store::env_options(&b.url, &env, &b.options);
            options.extend(b.options.clone());
            let backend = open_backend(&b.url, &options, &b.client())
                .map_err(|e| format!("backend {}: {e}", b.name))?;
            Ok(Slot {
                name: b.name.clone(),
                backend: Arc::new(backend) as DynBackend,
            })
        })
        .collect()
}
