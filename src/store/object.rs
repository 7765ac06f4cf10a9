//! [`Backend`] over `object_store`: local folders, memory, S3, GCS and Azure Blob.

use super::archive::{parse_s3_restore, ThawState, ThawTier};
use super::{Backend, BackendOptions, ClientSettings, ObjectInfo, StoreError, StoreResult};
use crate::policy::class::{Provider, StorageClass};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use object_store::client::{HttpClient, HttpConnector, ReqwestConnector};
use object_store::path::Path as ObjPath;
use object_store::signer::{HeaderMap, Method, SignedUrlOptions, Signer};
use object_store::{
    Attribute, AttributeValue, Attributes, ClientOptions, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload,
};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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
    provider: Provider,
    /// For S3 and Azure: what object_store has no call for (restores, tier
    /// changes, archive headers) goes through here (see [`Direct`]).
    direct: Option<Direct>,
    /// For local folders: the store itself, whose files `get_into` reads directly.
    local: Option<Arc<object_store::local::LocalFileSystem>>,
}

/// Requests object_store makes no call for, sent with the store's own
/// credentials and HTTP client: the request is presigned by the store's
/// [`Signer`] (S3 SigV4 query signing, Azure service SAS) and sent through the
/// very HTTP client the store uses (same TLS, proxy and timeouts).
#[derive(Clone)]
struct Direct {
    signer: Arc<dyn Signer>,
    http: HttpClient,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Direct")
    }
}

/// How long a presigned request stays valid: it is sent at once.
const PRESIGN_FOR: Duration = Duration::from_secs(300);

/// An [`HttpConnector`] that keeps the last client it made. A builder
/// connects its credential providers' clients first and the store's own
/// client last (object_store 0.14 `build()`), so the client kept is the one
/// the store sends its requests with.
#[derive(Clone, Debug, Default)]
struct KeepClient(Arc<Mutex<Option<HttpClient>>>);

impl HttpConnector for KeepClient {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = ReqwestConnector::default().connect(options)?;
        *self.0.lock().unwrap() = Some(client.clone());
        Ok(client)
    }
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
    let mut direct = None;
    let mut local = None;
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
                let store = Arc::new(store);
                local = Some(store.clone());
                (store, prefix, Some(root))
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
                let (store, d) = cloud_store(parsed.scheme(), &root_url, options, client).map_err(|e| bad(&e))?;
                direct = d;
                (store, path_prefix, None)
            }
            other => {
                return Err(bad(&format!(
                    "unknown scheme {other:?}; use file:///path, s3://bucket[/prefix], gs://bucket[/prefix], az://container[/prefix] or memory://"
                )))
            }
        };
    let provider = Provider::of_url(url).ok_or_else(|| bad("unknown provider"))?;
    Ok(ObjectBackend {
        url: url.to_string(),
        store,
        prefix,
        local_root,
        unsynced,
        provider,
        direct,
        local,
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
        let keep = KeepClient::default();
        let store = b
            .with_url($url)
            .with_retry(retry($client))
            .with_http_connector(keep.clone())
            .build()
            .map_err(|e| e.to_string())?;
        let http = keep.0.lock().unwrap().take();
        (store, http)
    }};
}

/// The store for a cloud URL, and for S3 and Azure the [`Direct`] requests'
/// signer and client.
fn cloud_store(
    scheme: &str,
    url: &str,
    options: &BackendOptions,
    client: &ClientSettings,
) -> Result<(Arc<dyn ObjectStore>, Option<Direct>), String> {
    // TLS for the cloud clients: rustls on ring (see Cargo.toml), installed as
    // the process's provider once; reqwest has no built-in one.
    static TLS: std::sync::Once = std::sync::Once::new();
    TLS.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    fn with_direct<S: ObjectStore + Signer>(
        (store, http): (S, Option<HttpClient>),
    ) -> (Arc<dyn ObjectStore>, Option<Direct>) {
        let store = Arc::new(store);
        let direct = http.map(|http| Direct {
            signer: store.clone() as Arc<dyn Signer>,
            http,
        });
        (store, direct)
    }
    Ok(match scheme {
        "s3" => with_direct(configure!(
            object_store::aws::AmazonS3Builder::new(),
            object_store::aws::AmazonS3ConfigKey,
            "AWS_",
            url,
            options,
            client
        )),
        "gs" => {
            // GCS has no class that needs a thaw: no direct requests.
            let (store, _) = configure!(
                object_store::gcp::GoogleCloudStorageBuilder::new(),
                object_store::gcp::GoogleConfigKey,
                "GOOGLE_",
                url,
                options,
                client
            );
            (Arc::new(store), None)
        }
        _ => with_direct(configure!(
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

/// The error codes a provider answers a read of a not yet thawed archived
/// object with: S3 403 `InvalidObjectState`, Azure 409 `BlobArchived`.
const ARCHIVED_CODES: [&str; 2] = ["InvalidObjectState", "BlobArchived"];

/// Whether a failed read was refused because the object is archived: the
/// provider's error code is in the response body, somewhere in the chain.
fn is_archived(e: &object_store::Error) -> bool {
    if !matches!(
        e,
        object_store::Error::PermissionDenied { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Generic { .. }
    ) {
        return false;
    }
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        let text = s.to_string();
        if ARCHIVED_CODES.iter().any(|c| text.contains(c)) {
            return true;
        }
        src = s.source();
    }
    false
}

fn map_err(key: &str, e: object_store::Error) -> StoreError {
    if is_archived(&e) {
        return StoreError::Archived(key.to_string());
    }
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

    /// Sends one presigned request of [`Direct`]; returns the status, the
    /// headers and the body (for error messages).
    async fn direct_send(
        &self,
        key: &str,
        method: Method,
        sign_as: Method,
        query: &[(&str, &str)],
        headers: &[(&'static str, &str)],
        body: Bytes,
    ) -> StoreResult<(u16, HeaderMap, String)> {
        let fail = |what: String| StoreError::Other(format!("{key}: {what}"));
        let direct = self
            .direct
            .as_ref()
            .ok_or_else(|| fail(format!("{} takes no such request", self.url)))?;
        let path = self.path(key);
        let mut url = match self.provider {
            // SigV4 signs the query: the operation's parameters go into the signature.
            Provider::Aws => {
                let opts = SignedUrlOptions::default().with_query(query.iter().copied());
                direct
                    .signer
                    .signed_url_opts(sign_as, &path, PRESIGN_FOR, &opts)
                    .await
            }
            // A SAS authorises by permission and resource; the operation's
            // parameters are appended unsigned.
            _ => direct.signer.signed_url(sign_as, &path, PRESIGN_FOR).await,
        }
        .map_err(|e| map_err(key, e))?;
        if self.provider != Provider::Aws {
            url.query_pairs_mut().extend_pairs(query.iter().copied());
        }
        let mut req = object_store::client::HttpRequest::new(body.into());
        *req.method_mut() = method;
        *req.uri_mut() = url
            .as_str()
            .parse()
            .map_err(|e| fail(format!("bad request URL: {e}")))?;
        for (name, value) in headers {
            let value = value
                .parse()
                .map_err(|e| fail(format!("bad header {name}: {e}")))?;
            req.headers_mut().insert(*name, value);
        }
        let resp = direct.http.execute(req).await.map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = s.to_string();
                src = s.source();
            }
            fail(msg)
        })?;
        let (parts, body) = resp.into_parts();
        let body = body.bytes().await.unwrap_or_default();
        Ok((
            parts.status.as_u16(),
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }

    /// The headers of `key` (S3 HeadObject, Azure Get Blob Properties),
    /// which object_store does not pass on.
    async fn direct_head(&self, key: &str) -> StoreResult<HeaderMap> {
        let (status, headers, _) = self
            .direct_send(
                key,
                Method::HEAD,
                // An Azure SAS for GET grants read, which covers properties.
                if self.provider == Provider::Aws {
                    Method::HEAD
                } else {
                    Method::GET
                },
                &[],
                &[],
                Bytes::new(),
            )
            .await?;
        match status {
            200..=299 => Ok(headers),
            404 => Err(StoreError::NotFound(key.to_string())),
            s => Err(StoreError::Other(format!(
                "{key}: reading its properties failed with HTTP status {s}"
            ))),
        }
    }

    /// S3 RestoreObject: POST ?restore with the days and the retrieval tier.
    async fn s3_restore(
        &self,
        key: &str,
        class: StorageClass,
        days: u32,
        tier: ThawTier,
    ) -> StoreResult<ThawState> {
        let tier = tier.for_s3(class);
        let body = format!(
            "<RestoreRequest xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Days>{}</Days><GlacierJobParameters><Tier>{}</Tier></GlacierJobParameters></RestoreRequest>",
            days.max(1),
            tier.s3_value()
        );
        let (status, _, text) = self
            .direct_send(
                key,
                Method::POST,
                Method::POST,
                &[("restore", "")],
                &[("content-type", "application/xml")],
                Bytes::from(body),
            )
            .await?;
        match status {
            // Accepted: the thaw starts now.
            202 => Ok(ThawState::InProgress {
                class,
                tier: Some(tier),
            }),
            // Already thawed (the copy's expiry is now extended).
            200 => self.thaw_state(key).await,
            409 if text.contains("RestoreAlreadyInProgress") => {
                Ok(ThawState::InProgress { class, tier: None })
            }
            404 => Err(StoreError::NotFound(key.to_string())),
            s => Err(StoreError::Other(format!(
                "{key}: the S3 restore request failed with HTTP status {s}: {}",
                s3_error_message(&text)
            ))),
        }
    }

    /// Azure Set Blob Tier: PUT ?comp=tier to Hot, with the rehydrate priority.
    async fn azure_rehydrate(&self, key: &str, tier: ThawTier) -> StoreResult<ThawState> {
        let (status, _, text) = self
            .direct_send(
                key,
                Method::PUT,
                Method::PUT,
                &[("comp", "tier")],
                &[
                    ("x-ms-access-tier", "Hot"),
                    ("x-ms-rehydrate-priority", tier.azure_priority()),
                    ("x-ms-version", "2023-11-03"),
                ],
                Bytes::new(),
            )
            .await?;
        match status {
            // Accepted: the rehydration runs (Azurite completes it at once:
            // the state then reads NotArchived).
            202 => match self.thaw_state(key).await? {
                ThawState::Archived { class } => Ok(ThawState::InProgress {
                    class,
                    tier: Some(tier),
                }),
                other => Ok(other),
            },
            200 => self.thaw_state(key).await,
            404 => Err(StoreError::NotFound(key.to_string())),
            s => Err(StoreError::Other(format!(
                "{key}: the Azure Set Blob Tier request failed with HTTP status {s}: {}",
                s3_error_message(&text)
            ))),
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

    async fn put_unsynced_in(
        &self,
        key: &str,
        data: Bytes,
        class: StorageClass,
    ) -> StoreResult<()> {
        if matches!(self.provider, Provider::Local | Provider::Memory) {
            return self.put_unsynced(key, data).await;
        }
        if !self.provider.classes().contains(&class) {
            return Err(StoreError::Other(format!(
                "{key}: storage class {} is not one of {}'s ({}); fix the class named for backend {}",
                class.name(self.provider),
                self.provider,
                self.provider
                    .classes()
                    .iter()
                    .map(|c| c.name(self.provider))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.url
            )));
        }
        let Some(value) = class.upload_value(self.provider) else {
            return self.put_unsynced(key, data).await;
        };
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::StorageClass, AttributeValue::from(value));
        let opts = PutOptions {
            attributes,
            ..Default::default()
        };
        self.store
            .put_opts(&self.path(key), PutPayload::from_bytes(data), opts)
            .await
            .map_err(|e| map_err(key, e))?;
        Ok(())
    }

    async fn restore(&self, key: &str, days: u32, tier: ThawTier) -> StoreResult<ThawState> {
        if self.direct.is_none() {
            return self.thaw_state(key).await;
        }
        let class = match self.thaw_state(key).await? {
            ThawState::Archived { class } => class,
            other => return Ok(other),
        };
        match self.provider {
            Provider::Aws => self.s3_restore(key, class, days, tier).await,
            _ => self.azure_rehydrate(key, tier).await,
        }
    }

    async fn thaw_state(&self, key: &str) -> StoreResult<ThawState> {
        if self.direct.is_none() {
            return match self.head(key).await? {
                Some(_) => Ok(ThawState::NotArchived),
                None => Err(StoreError::NotFound(key.to_string())),
            };
        }
        let headers = self.direct_head(key).await?;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Ok(match self.provider {
            Provider::Aws => {
                // x-amz-storage-class is absent for STANDARD.
                let class = header("x-amz-storage-class")
                    .and_then(|c| Provider::Aws.class(c).ok())
                    .unwrap_or_default();
                if class.instant() {
                    ThawState::NotArchived
                } else {
                    header("x-amz-restore")
                        .and_then(|r| parse_s3_restore(r, class))
                        .unwrap_or(ThawState::Archived { class })
                }
            }
            _ => {
                let class = header("x-ms-access-tier")
                    .and_then(|c| Provider::Azure.class(c).ok())
                    .unwrap_or_default();
                if class.instant() {
                    ThawState::NotArchived
                } else if header("x-ms-archive-status")
                    .is_some_and(|s| s.starts_with("rehydrate-pending"))
                {
                    let tier = match header("x-ms-rehydrate-priority") {
                        Some(p) if p.eq_ignore_ascii_case("High") => Some(ThawTier::Expedited),
                        Some(_) => Some(ThawTier::Standard),
                        None => None,
                    };
                    ThawState::InProgress { class, tier }
                } else {
                    ThawState::Archived { class }
                }
            }
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

    /// For a local folder: the object's file is read with positional reads straight
    /// into `head` and `body` (no intermediate buffer, no zeroing of the room in
    /// `body`), on one blocking-pool thread.
    async fn get_into(
        &self,
        key: &str,
        head: &mut [u8],
        body: &mut BytesMut,
        body_len: usize,
    ) -> StoreResult<u64> {
        let Some(local) = &self.local else {
            return super::get_into_by_get(self, key, head, body, body_len).await;
        };
        self.check_root()?;
        let path = local
            .path_to_filesystem(&self.path(key))
            .map_err(|e| map_err(key, e))?;
        let mut buf = std::mem::take(body);
        let mut h = vec![0u8; head.len()];
        let (h, buf, r) = tokio::task::spawn_blocking(move || {
            let r = read_split(&path, &mut h, &mut buf, body_len);
            (h, buf, r)
        })
        .await
        .map_err(|e| StoreError::Other(format!("{key}: {e}")))?;
        *body = buf;
        match r {
            Ok(size) => {
                if size == (head.len() + body_len) as u64 {
                    head.copy_from_slice(&h);
                }
                Ok(size)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(key.to_string()))
            }
            Err(e) => Err(StoreError::Other(format!("{key}: {e}"))),
        }
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

/// The `<Code>` and `<Message>` of an S3 or Azure XML error body, or its
/// start.
fn s3_error_message(body: &str) -> String {
    let tag = |t: &str| {
        let start = body.find(&format!("<{t}>"))? + t.len() + 2;
        let len = body[start..].find('<')?;
        Some(body[start..start + len].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => body.chars().take(200).collect(),
    }
}

/// Reads the file at `path` when it is `head.len() + body_len` bytes long: the
/// first bytes into `head`, the rest appended to `body` (whose room is written by
/// the kernel without being zeroed first). Returns the file's size either way.
fn read_split(
    path: &std::path::Path,
    head: &mut [u8],
    body: &mut BytesMut,
    body_len: usize,
) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    if size != (head.len() + body_len) as u64 {
        return Ok(size);
    }
    f.read_exact_at(head, 0)?;
    body.reserve(body_len);
    let room = &mut body.spare_capacity_mut()[..body_len];
    let mut done = 0;
    while done < body_len {
        // SAFETY: the destination is `body_len - done` bytes of `room`, which
        // `body` owns; pread(2) only writes into it, and the bytes count as
        // initialised (set_len below) only once all of them were written.
        let n = unsafe {
            libc::pread(
                f.as_raw_fd(),
                room[done..].as_mut_ptr().cast(),
                body_len - done,
                (head.len() + done) as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file became shorter while it was read",
            ));
        }
        done += n as usize;
    }
    // SAFETY: the `body_len` bytes after the old length were all written above.
    unsafe { body.set_len(body.len() + body_len) };
    Ok(size)
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
