//! [`Backend`] over `object_store`: local folders, memory, S3, GCS and Azure Blob.

use super::{Backend, BackendOptions, ClientSettings, ObjectInfo, StoreError, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct ObjectBackend {
    url: String,
    store: Arc<dyn ObjectStore>,
    /// Key prefix inside the store (the bucket path, or the folder for file://).
    prefix: String,
    /// For local folders: the folder, checked before every operation so that an
    /// unplugged drive is reported as unreachable instead of being recreated.
    local_root: Option<PathBuf>,
    /// For local folders that fsync: the same folder without a flush per object,
    /// for `put_unsynced`; `sync` then flushes the folder's filesystem at once.
    unsynced: Option<Arc<dyn ObjectStore>>,
}

/// Opens the backend named by `url`. Credentials and endpoints come from the
/// provider's usual environment variables, then from `options`; `client` bounds
/// how long a cloud request may take.
pub fn open_backend(
    url: &str,
    options: &BackendOptions,
    client: &ClientSettings,
) -> StoreResult<ObjectBackend> {
    let bad = |reason: &str| StoreError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let path_prefix = parsed.path().trim_matches('/').to_string();
    let mut unsynced: Option<Arc<dyn ObjectStore>> = None;
    let (store, prefix, local_root): (Arc<dyn ObjectStore>, String, Option<PathBuf>) =
        match parsed.scheme() {
            "file" => {
                if parsed.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(bad("use file:///absolute/path (three slashes)"));
                }
                let root = parsed
                    .to_file_path()
                    .ok()
                    .filter(|p| p.is_absolute() && p.parent().is_some())
                    .ok_or_else(|| bad("a file:// backend needs an absolute folder, e.g. file:///mnt/disk1/cloudraid"))?;
                let fsync = local_fsync_option(url, options)?;
                // `put` fsyncs the object and its folder before it returns, so what it
                // stored survives a power cut like an object acknowledged by a cloud.
                // Shards go through `put_unsynced` (no flush each) and are made
                // durable together by `sync` (syncfs) before a commit names them.
                let store =
                    object_store::local::LocalFileSystem::new().with_automatic_cleanup(true).with_fsync(fsync);
                if fsync {
                    unsynced = Some(Arc::new(
                        object_store::local::LocalFileSystem::new().with_automatic_cleanup(true).with_fsync(false),
                    ));
                }
                let prefix = root.to_string_lossy().trim_matches('/').to_string();
                (Arc::new(store), prefix, Some(root))
            }
            "memory" => {
                reject_options(url, options)?;
                (Arc::new(object_store::memory::InMemory::new()), String::new(), None)
            }
            "s3" | "gs" | "az" => {
                if parsed.host_str().unwrap_or("").is_empty() {
                    return Err(bad("the URL names no bucket or container"));
                }
                let root_url = format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap());
                (cloud_store(parsed.scheme(), &root_url, options, client).map_err(|e| bad(&e))?, path_prefix, None)
            }
            other => {
                return Err(bad(&format!(
                    "unknown scheme {other:?}; use file:///path, s3://bucket[/prefix], gs://bucket[/prefix], az://container[/prefix] or memory://"
                )))
            }
        };
    Ok(ObjectBackend {
        url: url.to_string(),
        store,
        prefix,
        local_root,
        unsynced,
    })
}

/// The one option of a file:// backend: `fsync = "false"` trades durability of
/// stored shards for speed (for scratch volumes and tests).
fn local_fsync_option(url: &str, options: &BackendOptions) -> StoreResult<bool> {
    let mut fsync = true;
    for (k, v) in options {
        match (k.as_str(), v.as_str()) {
            ("fsync", "true") => fsync = true,
            ("fsync", "false") => fsync = false,
            _ => {
                return Err(StoreError::BadUrl {
                    url: url.into(),
                    reason: format!("option {k:?} = {v:?} is not understood; a file:// backend takes only fsync = \"true\" or \"false\""),
                })
            }
        }
    }
    Ok(fsync)
}

fn reject_options(url: &str, options: &BackendOptions) -> StoreResult<()> {
    if let Some(k) = options.keys().next() {
        return Err(StoreError::BadUrl {
            url: url.into(),
            reason: format!("option {k:?} given, but this kind of backend takes no options"),
        });
    }
    Ok(())
}

fn retry(client: &ClientSettings) -> object_store::RetryConfig {
    let mut r = object_store::RetryConfig {
        max_retries: client.retries,
        retry_timeout: client.retry_timeout,
        ..Default::default()
    };
    r.backoff.init_backoff = Duration::from_millis(50);
    r.backoff.max_backoff = Duration::from_millis(500);
    r
}

fn client_config(client: &ClientSettings) -> [(&'static str, String); 2] {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    [
        ("connect_timeout", ms(client.connect_timeout)),
        ("timeout", ms(client.request_timeout)),
    ]
}

/// Applies, in order: the client settings, the provider's environment variables,
/// then the config file's options (an unknown option is an error).
macro_rules! configure {
    ($builder:expr, $key:ty, $env_prefix:expr, $url:expr, $options:expr, $client:expr) => {{
        let mut b = $builder;
        for (k, v) in client_config($client) {
            if let Ok(key) = k.parse::<$key>() {
                b = b.with_config(key, v);
            }
        }
        for (k, v) in std::env::vars() {
            if k.starts_with($env_prefix) {
                if let Ok(key) = k.to_ascii_lowercase().parse::<$key>() {
                    b = b.with_config(key, v);
                }
            }
        }
        for (k, v) in $options {
            let key = k
                .parse::<$key>()
                .map_err(|_| format!("unknown option {k:?} for this provider"))?;
            b = b.with_config(key, v.clone());
        }
        b.with_url($url)
            .with_retry(retry($client))
            .build()
            .map_err(|e| e.to_string())?
    }};
}

fn cloud_store(
    scheme: &str,
    url: &str,
    options: &BackendOptions,
    client: &ClientSettings,
) -> Result<Arc<dyn ObjectStore>, String> {
    // TLS for the cloud clients: rustls on ring (see Cargo.toml), installed as
    // the process's provider once; reqwest has no built-in one.
    static TLS: std::sync::Once = std::sync::Once::new();
    TLS.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    Ok(match scheme {
        "s3" => Arc::new(configure!(
            object_store::aws::AmazonS3Builder::new(),
            object_store::aws::AmazonS3ConfigKey,
            "AWS_",
            url,
            options,
            client
        )),
        "gs" => Arc::new(configure!(
            object_store::gcp::GoogleCloudStorageBuilder::new(),
            object_store::gcp::GoogleConfigKey,
            "GOOGLE_",
            url,
            options,
            client
        )),
        _ => Arc::new(configure!(
            object_store::azure::MicrosoftAzureBuilder::new(),
            object_store::azure::AzureConfigKey,
            "AZURE_",
            url,
            options,
            client
        )),
    })
}

/// The entries of an environment file (`env_file` in the config) that configure
/// the provider of `url` (AWS_* for s3://, GOOGLE_* for gs://, AZURE_* for az://),
/// as backend options. Entries the provider does not know are left out, as they
/// are from the process environment, and so are those that set what one of the
/// backend's own `options` sets (in any of its spellings): those win.
pub fn env_options(
    url: &str,
    env: &[(String, String)],
    explicit: &BackendOptions,
) -> BackendOptions {
    /// Whether `a` is a key of this provider, and `b` (if given) the same key.
    fn key<K: std::str::FromStr + PartialEq>(a: &str, b: Option<&str>) -> bool {
        match (a.parse::<K>(), b) {
            (Ok(x), Some(b)) => b.parse::<K>().is_ok_and(|y| x == y),
            (Ok(_), None) => true,
            (Err(_), _) => false,
        }
    }
    let scheme = url.split("://").next().unwrap_or("");
    type KeyCheck = fn(&str, Option<&str>) -> bool;
    let (prefix, key): (&str, KeyCheck) = match scheme {
        "s3" => ("AWS_", key::<object_store::aws::AmazonS3ConfigKey>),
        "gs" => ("GOOGLE_", key::<object_store::gcp::GoogleConfigKey>),
        "az" => ("AZURE_", key::<object_store::azure::AzureConfigKey>),
        _ => return BackendOptions::new(),
    };
    env.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| key(k, None))
        .filter(|(k, _)| !explicit.keys().any(|e| key(k, Some(e))))
        .collect()
}

fn map_err(key: &str, e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound(key.to_string()),
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            StoreError::AlreadyExists(key.to_string())
        }
        other => {
            // The innermost source is usually the useful part ("connection refused").
            let mut msg = other.to_string();
            let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&other);
            while let Some(s) = src {
                msg = s.to_string();
                src = s.source();
            }
            StoreError::Other(format!("{key}: {msg}"))
        }
    }
}

impl ObjectBackend {
    fn path(&self, key: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{}", self.prefix, key))
        }
    }

    fn check_root(&self) -> StoreResult<()> {
        if let Some(root) = &self.local_root {
            match std::fs::metadata(root) {
                Ok(m) if m.is_dir() => {}
                _ => {
                    return Err(StoreError::Unavailable(format!(
                        "folder {} is missing or not a folder (is the drive mounted?)",
                        root.display()
                    )))
                }
            }
        }
        Ok(())
    }

    fn strip<'a>(&self, full: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(&self.prefix)
                .map(|s| s.trim_start_matches('/'))
                .unwrap_or(full)
        }
    }
}

#[async_trait]
impl Backend for ObjectBackend {
    fn describe(&self) -> String {
        self.url.clone()
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.check_root()?;
        self.store
            .put(&self.path(key), PutPayload::from_bytes(data))
            .await
            .map_err(|e| map_err(key, e))?;
        Ok(())
    }

    async fn put_unsynced(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let Some(store) = &self.unsynced else {
            return self.put(key, data).await;
        };
        self.check_root()?;
        store
            .put(&self.path(key), PutPayload::from_bytes(data))
            .await
            .map_err(|e| map_err(key, e))?;
        Ok(())
    }

    async fn sync(&self) -> StoreResult<()> {
        let (Some(root), Some(_)) = (&self.local_root, &self.unsynced) else {
            return Ok(());
        };
        self.check_root()?;
        let dir = root.clone();
        tokio::task::spawn_blocking(move || syncfs(&dir))
            .await
            .map_err(|e| StoreError::Other(e.to_string()))?
            .map_err(|e| {
                StoreError::Other(format!("flushing {} to disk failed: {e}", root.display()))
            })
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<bool> {
        self.check_root()?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.path(key), PutPayload::from_bytes(data.clone()), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => {
                if self.head(key).await?.is_some() {
                    return Ok(false);
                }
                self.put(key, data).await?;
                Ok(true)
            }
            Err(e) => Err(map_err(key, e)),
        }
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.check_root()?;
        let r = self
            .store
            .get(&self.path(key))
            .await
            .map_err(|e| map_err(key, e))?;
        r.bytes().await.map_err(|e| map_err(key, e))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.check_root()?;
        self.store
            .get_range(&self.path(key), range)
            .await
            .map_err(|e| map_err(key, e))
    }

    async fn head(&self, key: &str) -> StoreResult<Option<u64>> {
        self.check_root()?;
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_err(key, e)),
        }
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.check_root()?;
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        self.check_root()?;
        let p = self.path(prefix.trim_end_matches('/'));
        let metas: Vec<_> = self
            .store
            .list(Some(&p))
            .try_collect()
            .await
            .map_err(|e| map_err(prefix, e))?;
        Ok(metas
            .into_iter()
            .map(|m| ObjectInfo {
                key: self.strip(m.location.as_ref()).to_string(),
                size: m.size,
                modified: Some(std::time::SystemTime::from(m.last_modified)),
            })
            .collect())
    }

    fn capacity(&self) -> Option<(u64, u64)> {
        let root = self.local_root.as_ref()?;
        let c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).ok()?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: c is a valid NUL-terminated path and st a properly sized out-parameter.
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return None;
        }
        let f = st.f_frsize as u64;
        Some((st.f_blocks as u64 * f, st.f_bavail as u64 * f))
    }
}

/// Flushes the filesystem holding `dir` (every file written there, and the
/// folder entries naming them) to its disk: syncfs(2).
fn syncfs(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir)?;
    // SAFETY: a valid descriptor we own for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_file_entries_apply_to_their_provider_and_yield_to_backend_options() {
        let vars = env(&[
            ("AWS_ACCESS_KEY_ID", "from-env"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_NOT_A_KEY", "x"),
            ("GOOGLE_SERVICE_ACCOUNT", "/etc/sa.json"),
        ]);
        let none = BackendOptions::new();
        let s3 = env_options("s3://bucket", &vars, &none);
        assert_eq!(
            s3.into_iter().collect::<Vec<_>>(),
            [
                ("aws_access_key_id".to_string(), "from-env".to_string()),
                ("aws_region".to_string(), "eu-west-1".to_string())
            ]
        );
        assert_eq!(env_options("gs://bucket", &vars, &none).len(), 1);
        assert!(env_options("file:///data", &vars, &none).is_empty());
        // The backend's own option wins, whichever spelling it uses.
        let mut own = BackendOptions::new();
        own.insert("access_key_id".into(), "from-config".into());
        let s3 = env_options("s3://bucket", &vars, &own);
        assert_eq!(s3.keys().collect::<Vec<_>>(), ["aws_region"]);
    }
}
