//! One suite for every storage backend kind reachable here: memory:// and file://.
//! (Cloud protocol servers join this suite with the emulator harness.)

use bytes::{Bytes, BytesMut};
use cloudraid::policy::class::{Provider, StorageClass};
use cloudraid::store::{open_backend, Backend, StoreError, ThawState, ThawTier};

/// `honours_create`: whether the server enforces conditional creates (moto behind
/// object_store's GCS client does not; real GCS does).
async fn suite(b: &dyn Backend, honours_create: bool) {
    assert_eq!(b.head("x/a").await.unwrap(), None);
    assert!(matches!(b.get("x/a").await, Err(StoreError::NotFound(_))));
    b.put("x/a", Bytes::from_static(b"hello world"))
        .await
        .unwrap();
    assert_eq!(b.head("x/a").await.unwrap(), Some(11));
    assert_eq!(&b.get("x/a").await.unwrap()[..], b"hello world");
    assert_eq!(&b.get_range("x/a", 6..11).await.unwrap()[..], b"world");
    // Overwrite replaces.
    b.put("x/a", Bytes::from_static(b"v2")).await.unwrap();
    assert_eq!(&b.get("x/a").await.unwrap()[..], b"v2");
    // Conditional create.
    assert!(b
        .put_if_absent("x/once", Bytes::from_static(b"1"))
        .await
        .unwrap());
    if honours_create {
        let second = b
            .put_if_absent("x/once", Bytes::from_static(b"2"))
            .await
            .unwrap();
        assert!(
            !second,
            "a conditional create over an existing object must not write"
        );
        assert_eq!(&b.get("x/once").await.unwrap()[..], b"1");
    }
    // Large objects.
    let big: Vec<u8> = (0..(9 << 20)).map(|i: u32| (i % 251) as u8).collect();
    b.put("y/big", Bytes::from(big.clone())).await.unwrap();
    assert_eq!(b.get("y/big").await.unwrap().len(), big.len());
    let mut head = [0u8; 80];
    let mut body = BytesMut::new();
    let size = b.get_into("y/big", &mut head, &mut body, big.len() - 80);
    assert_eq!(size.await.unwrap(), big.len() as u64);
    assert_eq!((&head[..], &body[..]), (&big[..80], &big[80..]));
    assert_eq!(
        &b.get_range("y/big", 5_000_000..5_000_010).await.unwrap()[..],
        &big[5_000_000..5_000_010]
    );
    // Read in two parts: the head into a slice, the rest appended to a buffer.
    b.put("w/split", Bytes::from_static(b"hello world"))
        .await
        .unwrap();
    let mut head = [0u8; 6];
    let mut body = BytesMut::with_capacity(16);
    body.extend_from_slice(b">");
    assert_eq!(
        b.get_into("w/split", &mut head, &mut body, 5)
            .await
            .unwrap(),
        11
    );
    assert_eq!((&head[..], &body[..]), (&b"hello "[..], &b">world"[..]));
    // An object of another size is not read, only its size is told.
    let mut head = [7u8; 4];
    let mut body = BytesMut::new();
    for body_len in [6, 8] {
        assert_eq!(
            b.get_into("w/split", &mut head, &mut body, body_len)
                .await
                .unwrap(),
            11
        );
        assert_eq!((head, body.len()), ([7u8; 4], 0));
    }
    assert!(matches!(
        b.get_into("w/none", &mut head, &mut body, 1).await,
        Err(StoreError::NotFound(_))
    ));
    b.delete("w/split").await.unwrap();
    // Stored without a flush each, readable at once, then flushed together.
    b.put_unsynced("z/s1", Bytes::from_static(b"shard one"))
        .await
        .unwrap();
    b.put_unsynced("z/s2", Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(&b.get("z/s1").await.unwrap()[..], b"shard one");
    b.sync().await.unwrap();
    assert_eq!(b.head("z/s2").await.unwrap(), Some(3));
    b.delete("z/s1").await.unwrap();
    b.delete("z/s2").await.unwrap();
    // Listing is by prefix, with sizes.
    let mut l = b.list("x").await.unwrap();
    l.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        l.iter()
            .map(|o| (o.key.as_str(), o.size))
            .collect::<Vec<_>>(),
        [("x/a", 2), ("x/once", 1)]
    );
    // Delete, also of a missing key.
    b.delete("x/a").await.unwrap();
    b.delete("x/a").await.unwrap();
    assert_eq!(b.head("x/a").await.unwrap(), None);
    classes(b).await;
}

/// Uploads in each of the provider's instantly readable classes read back and
/// need no thaw; a class of another provider is refused by a cloud and
/// ignored by a single-class provider (a local folder, memory).
async fn classes(b: &dyn Backend) {
    let provider = Provider::of_url(&b.describe()).expect("a known scheme");
    for (i, class) in provider
        .classes()
        .iter()
        .filter(|c| c.instant())
        .enumerate()
    {
        let key = format!("w/class{i}");
        b.put_unsynced_in(&key, Bytes::from(format!("in {class:?}")), *class)
            .await
            .unwrap_or_else(|e| panic!("{class:?}: {e}"));
        b.sync().await.unwrap();
        assert_eq!(b.get(&key).await.unwrap(), format!("in {class:?}"));
        assert_eq!(b.thaw_state(&key).await.unwrap(), ThawState::NotArchived);
        assert_eq!(
            b.restore(&key, 1, ThawTier::Standard).await.unwrap(),
            ThawState::NotArchived,
            "restoring an object that is not archived asks for nothing"
        );
        b.delete(&key).await.unwrap();
    }
    let foreign = match provider {
        Provider::Aws => StorageClass::GcsNearline,
        _ => StorageClass::S3Glacier,
    };
    let r = b
        .put_unsynced_in("w/foreign", Bytes::from_static(b"f"), foreign)
        .await;
    if provider.classes().len() == 1 {
        r.unwrap();
        assert_eq!(&b.get("w/foreign").await.unwrap()[..], b"f");
        b.delete("w/foreign").await.unwrap();
    } else {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("is not one of"), "{e}");
        assert_eq!(b.head("w/foreign").await.unwrap(), None);
    }
    assert!(matches!(
        b.thaw_state("w/missing").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        b.restore("w/missing", 1, ThawTier::Bulk).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn memory_backend() {
    suite(
        &open_backend("memory://", &Default::default(), &Default::default()).unwrap(),
        true,
    )
    .await;
}

#[tokio::test]
async fn file_backend() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/store", dir.path().display());
    std::fs::create_dir(dir.path().join("store")).unwrap();
    let b = open_backend(&url, &Default::default(), &Default::default()).unwrap();
    suite(&b, true).await;
    assert!(b
        .capacity()
        .is_some_and(|(total, free)| total > 0 && free <= total));
}

#[tokio::test]
async fn missing_folder_is_unreachable_and_never_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("drive");
    let b = open_backend(
        &format!("file://{}", root.display()),
        &Default::default(),
        &Default::default(),
    )
    .unwrap();
    let err = b.put("k", Bytes::from_static(b"v")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("is the drive mounted"), "{err}");
    assert!(!root.exists(), "a write must not create the missing folder");
    assert!(matches!(b.get("k").await, Err(StoreError::Unavailable(_))));
    let (mut head, mut body) = ([0u8; 1], bytes::BytesMut::new());
    assert!(matches!(
        b.get_into("k", &mut head, &mut body, 0).await,
        Err(StoreError::Unavailable(_))
    ));
    let err = b
        .put_unsynced("k", Bytes::from_static(b"v"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(matches!(b.sync().await, Err(StoreError::Unavailable(_))));
    assert!(!root.exists());
}

#[test]
fn bad_urls_are_refused_with_the_reason() {
    let e = |u: &str| {
        open_backend(u, &Default::default(), &Default::default())
            .unwrap_err()
            .to_string()
    };
    assert!(e("ftp://host/x").contains("unknown scheme \"ftp\""));
    assert!(e("file://relative/path").contains("three slashes"));
    assert!(e("not a url").contains("invalid backend URL"));
    assert!(e("s3://").contains("no bucket"));
    let mut opts = std::collections::BTreeMap::new();
    opts.insert("no_such_option".to_string(), "1".to_string());
    let err = open_backend("s3://bucket", &opts, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown option \"no_such_option\""), "{err}");
    let err = open_backend("file:///tmp/x", &opts, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("takes only fsync"), "{err}");
    let mut opts = std::collections::BTreeMap::new();
    opts.insert("fsync".to_string(), "false".to_string());
    assert!(open_backend("file:///tmp/x", &opts, &Default::default()).is_ok());
}

/// The same suite against the S3, GCS and Azure protocol servers started by
/// `scripts/emulators.sh start` (with `eval "$(scripts/emulators.sh env)"`).
#[tokio::test]
async fn cloud_backends_on_emulators() {
    let Ok(pairs) = std::env::var("CLOUDRAID_EMULATOR_BACKENDS") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the cloud backend suite: start the emulators (scripts/emulators.sh)"
        );
        eprintln!("skipping: CLOUDRAID_EMULATOR_BACKENDS is not set (start the emulators with scripts/emulators.sh)");
        return;
    };
    for pair in pairs.split_whitespace() {
        let (name, url) = pair.split_once('=').expect("NAME=URL");
        // A fresh prefix per run: the emulators may keep objects between runs.
        let url = format!("{url}/conformance-{}", uuid::Uuid::new_v4().simple());
        let b = open_backend(&url, &Default::default(), &Default::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        suite(&b, name != "gcs").await;
        eprintln!("{name}: conformance suite passed");
    }
}

fn s3_at(endpoint: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("endpoint", endpoint),
        ("allow_http", "true"),
        ("region", "us-east-1"),
        ("access_key_id", "test"),
        ("secret_access_key", "test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A provider that refuses connections, or accepts them and never answers, fails
/// within the client settings instead of object_store's default minutes.
#[tokio::test]
async fn dead_and_frozen_providers_fail_fast() {
    use cloudraid::store::ClientSettings;
    use std::time::{Duration, Instant};
    let client = ClientSettings {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(1),
        retries: 1,
        retry_timeout: Duration::from_secs(2),
    };
    // Refused: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let b = open_backend(
        "s3://bucket",
        &s3_at(&format!("http://127.0.0.1:{port}")),
        &client,
    )
    .unwrap();
    let t = Instant::now();
    let err = b.get("k").await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "refused took {:?}: {err}",
        t.elapsed()
    );

    // Frozen: accepts connections, never answers.
    let frozen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = frozen.local_addr().unwrap().port();
    let b = open_backend(
        "s3://bucket",
        &s3_at(&format!("http://127.0.0.1:{port}")),
        &client,
    )
    .unwrap();
    let t = Instant::now();
    let err = b.get("k").await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "frozen took {:?}: {err}",
        t.elapsed()
    );
    drop(frozen);
}
