//! Archive storage classes at the store level, against the emulators
//! (scripts/emulators.sh): an object uploaded in S3 DEEP_ARCHIVE or Azure
//! Archive is listed in that class, refuses reads with `StoreError::Archived`,
//! is thawed on request, and reads once the thaw has completed. No mount.

use bytes::Bytes;
use cloudraid::policy::class::StorageClass;
use cloudraid::store::{open_backend, Backend, StoreError, ThawState, ThawTier};
use std::process::Command;
use std::time::{Duration, Instant};

/// The emulator URL named `name` in CLOUDRAID_EMULATOR_BACKENDS, under a fresh
/// prefix; `None` (skip) when the emulators are not set up, except in CI.
fn emulator(name: &str) -> Option<String> {
    let Ok(pairs) = std::env::var("CLOUDRAID_EMULATOR_BACKENDS") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the archive tests: start the emulators (scripts/emulators.sh)"
        );
        eprintln!("skipping: CLOUDRAID_EMULATOR_BACKENDS is not set (scripts/emulators.sh start; eval \"$(scripts/emulators.sh env)\")");
        return None;
    };
    let url = pairs
        .split_whitespace()
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, u)| u.to_string())
        .unwrap_or_else(|| panic!("no {name} in CLOUDRAID_EMULATOR_BACKENDS={pairs}"));
    Some(format!("{url}/archive-{}", uuid::Uuid::new_v4().simple()))
}

fn curl(args: &[&str]) -> String {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        o.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// moto completes a restore at once unless told otherwise. For the length of
/// a test this makes each restore pass through "in progress": moto's state
/// manager moves an object's restore state one step (none, in progress,
/// restored) at the first look `seconds` after the previous step (the first
/// step counting from the upload). Dropping it puts moto back.
struct SlowRestores {
    endpoint: String,
}

impl SlowRestores {
    fn new(endpoint: &str, seconds: u64) -> SlowRestores {
        let body = format!(
            r#"{{"model_name":"s3::keyrestore","transition":{{"progression":"time","seconds":{seconds}}}}}"#
        );
        curl(&[
            "-X",
            "POST",
            "--data",
            &body,
            &format!("{endpoint}/moto-api/state-manager/set-transition"),
        ]);
        SlowRestores {
            endpoint: endpoint.to_string(),
        }
    }
}

impl Drop for SlowRestores {
    fn drop(&mut self) {
        let _ = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-X", "POST", "--data"])
            .arg(r#"{"model_name":"s3::keyrestore"}"#)
            .arg(format!(
                "{}/moto-api/state-manager/unset-transition",
                self.endpoint
            ))
            .output();
    }
}

/// The `<StorageClass>` that S3's ListObjectsV2 gives `key` in `bucket`.
fn listed_class(endpoint: &str, bucket: &str, key: &str) -> Option<String> {
    let xml = curl(&[&format!(
        "{endpoint}/{bucket}?list-type=2&prefix={}",
        key.replace('/', "%2F")
    )]);
    let entry = xml
        .split("<Contents>")
        .skip(1)
        .find(|c| c.contains(&format!("<Key>{key}</Key>")))?;
    let start = entry.find("<StorageClass>")? + "<StorageClass>".len();
    let len = entry[start..].find('<')?;
    Some(entry[start..start + len].to_string())
}

fn archived<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    match r {
        Err(StoreError::Archived(msg)) => {
            assert!(!msg.is_empty());
            true
        }
        other => panic!("expected StoreError::Archived, got {other:?}"),
    }
}

#[tokio::test]
async fn s3_deep_archive_is_thawed_on_request() {
    let Some(url) = emulator("s3") else { return };
    let endpoint = std::env::var("AWS_ENDPOINT").expect("AWS_ENDPOINT (scripts/emulators.sh env)");
    const STEP: Duration = Duration::from_secs(3);
    let _slow = SlowRestores::new(&endpoint, STEP.as_secs());
    let b = open_backend(&url, &Default::default(), &Default::default()).unwrap();
    let data = Bytes::from((0..70_000u32).map(|i| (i % 241) as u8).collect::<Vec<u8>>());
    let uploaded = Instant::now();
    b.put_unsynced_in(
        "chunks/ab/shard.0",
        data.clone(),
        StorageClass::S3DeepArchive,
    )
    .await
    .unwrap();
    b.put_unsynced_in(
        "chunks/ab/shard.1",
        data.clone(),
        StorageClass::S3StandardIa,
    )
    .await
    .unwrap();
    b.sync().await.unwrap();

    // The provider's listing shows the classes asked for.
    let u = url::Url::parse(&url).unwrap();
    let bucket = u.host_str().unwrap();
    let prefix = u.path().trim_matches('/');
    assert_eq!(
        listed_class(&endpoint, bucket, &format!("{prefix}/chunks/ab/shard.0")).as_deref(),
        Some("DEEP_ARCHIVE")
    );
    assert_eq!(
        listed_class(&endpoint, bucket, &format!("{prefix}/chunks/ab/shard.1")).as_deref(),
        Some("STANDARD_IA")
    );

    // Not readable, whole or in part; the other class reads at once.
    assert!(archived(b.get("chunks/ab/shard.0").await));
    assert!(archived(b.get_range("chunks/ab/shard.0", 10..20).await));
    let e = b.get("chunks/ab/shard.0").await.unwrap_err().to_string();
    assert!(e.contains("thawed"), "{e}");
    assert_eq!(b.get("chunks/ab/shard.1").await.unwrap(), data);
    assert_eq!(
        b.thaw_state("chunks/ab/shard.1").await.unwrap(),
        ThawState::NotArchived
    );
    let class = StorageClass::S3DeepArchive;
    assert_eq!(
        b.thaw_state("chunks/ab/shard.0").await.unwrap(),
        ThawState::Archived { class }
    );

    // moto's restore state starts moving STEP after the upload.
    tokio::time::sleep(
        (uploaded + STEP + Duration::from_millis(300)).saturating_duration_since(Instant::now()),
    )
    .await;
    let st = b
        .restore("chunks/ab/shard.0", 2, ThawTier::Expedited)
        .await
        .unwrap();
    // S3 has no Expedited retrieval from DEEP_ARCHIVE: Standard was asked.
    assert_eq!(
        st,
        ThawState::InProgress {
            class,
            tier: Some(ThawTier::Standard)
        }
    );
    assert!(st.to_string().contains("up to 12 hours"), "{st}");
    let requested = Instant::now();
    let seen = b.thaw_state("chunks/ab/shard.0").await.unwrap();
    assert_eq!(seen, ThawState::InProgress { class, tier: None });
    assert!(archived(b.get("chunks/ab/shard.0").await));
    // Asking again while it runs asks nothing new.
    assert!(matches!(
        b.restore("chunks/ab/shard.0", 2, ThawTier::Standard)
            .await
            .unwrap(),
        ThawState::InProgress { .. }
    ));

    // Done: readable until the thawed copy expires, days from now.
    tokio::time::sleep(
        (requested + STEP + Duration::from_millis(300)).saturating_duration_since(Instant::now()),
    )
    .await;
    let ready = b.thaw_state("chunks/ab/shard.0").await.unwrap();
    let ThawState::Ready {
        until: Some(until), ..
    } = ready
    else {
        panic!("expected a completed thaw, got {ready:?}")
    };
    let left = until
        .duration_since(std::time::SystemTime::now())
        .expect("expiry in the future");
    assert!(
        left > Duration::from_secs(24 * 3600) && left <= Duration::from_secs(2 * 24 * 3600 + 60),
        "{left:?}"
    );
    assert_eq!(b.get("chunks/ab/shard.0").await.unwrap(), data);
    assert_eq!(
        b.get_range("chunks/ab/shard.0", 10..20).await.unwrap(),
        data.slice(10..20)
    );
    // A restore of a thawed object asks nothing and says so.
    assert!(b
        .restore("chunks/ab/shard.0", 2, ThawTier::Bulk)
        .await
        .unwrap()
        .readable());
    for k in ["chunks/ab/shard.0", "chunks/ab/shard.1"] {
        b.delete(k).await.unwrap();
    }
}

/// Azurite keeps a blob's tier and refuses reads of an Archive blob, and
/// completes a rehydration (Set Blob Tier) at once: the thaw is never seen in
/// progress here.
#[tokio::test]
async fn azure_archive_is_rehydrated_on_request() {
    let Some(url) = emulator("azure") else { return };
    let b = open_backend(&url, &Default::default(), &Default::default()).unwrap();
    let data = Bytes::from_static(b"an archived shard of some chunk");
    b.put_unsynced_in(
        "chunks/cd/shard.2",
        data.clone(),
        StorageClass::AzureArchive,
    )
    .await
    .unwrap();
    b.put_unsynced_in("chunks/cd/shard.3", data.clone(), StorageClass::AzureCold)
        .await
        .unwrap();
    b.sync().await.unwrap();
    // The tier the provider reports is the one asked for.
    let class = StorageClass::AzureArchive;
    assert_eq!(
        b.thaw_state("chunks/cd/shard.2").await.unwrap(),
        ThawState::Archived { class }
    );
    assert!(archived(b.get("chunks/cd/shard.2").await));
    assert!(archived(b.get_range("chunks/cd/shard.2", 0..4).await));
    assert_eq!(b.get("chunks/cd/shard.3").await.unwrap(), data);

    let st = b
        .restore("chunks/cd/shard.2", 1, ThawTier::Expedited)
        .await
        .unwrap();
    assert!(
        matches!(
            st,
            ThawState::NotArchived
                | ThawState::InProgress {
                    class: StorageClass::AzureArchive,
                    ..
                }
        ),
        "{st:?}"
    );
    // Azurite moves the blob to Hot at once; real Azure takes hours
    // (ThawState::InProgress meanwhile).
    assert_eq!(
        b.thaw_state("chunks/cd/shard.2").await.unwrap(),
        ThawState::NotArchived
    );
    assert_eq!(b.get("chunks/cd/shard.2").await.unwrap(), data);
    for k in ["chunks/cd/shard.2", "chunks/cd/shard.3"] {
        b.delete(k).await.unwrap();
    }
}
