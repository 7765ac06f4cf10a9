//! The failure-injecting backend does what each fault promises.

use bytes::Bytes;
use cloudraid::store::{open_backend, Backend, Fault, FaultyBackend, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn faulty() -> FaultyBackend {
    let inner: Arc<dyn Backend> =
        Arc::new(open_backend("memory://", &Default::default(), &Default::default()).unwrap());
    inner
        .put("k", Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    FaultyBackend::new(inner)
}

#[tokio::test]
async fn each_fault_behaves_as_named() {
    let f = faulty().await;
    assert_eq!(&f.get("k").await.unwrap()[..], b"0123456789");

    f.set(Fault::Down);
    assert!(matches!(f.get("k").await, Err(StoreError::Unavailable(_))));
    assert!(matches!(
        f.put("x", Bytes::new()).await,
        Err(StoreError::Unavailable(_))
    ));

    f.set(Fault::Hang);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), f.get("k"))
            .await
            .is_err(),
        "a hung backend never answers"
    );

    f.set(Fault::Slow(Duration::from_millis(150)));
    let t = Instant::now();
    assert_eq!(&f.get("k").await.unwrap()[..], b"0123456789");
    assert!(t.elapsed() >= Duration::from_millis(150));

    f.set(Fault::CorruptReads);
    let got = f.get("k").await.unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(
        got.iter()
            .zip(b"0123456789")
            .filter(|(a, b)| a != b)
            .count(),
        1
    );

    f.set(Fault::TruncateReads);
    assert_eq!(&f.get("k").await.unwrap()[..], b"01234");

    f.set(Fault::RejectWrites);
    assert!(matches!(
        f.put("x", Bytes::new()).await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(&f.get("k").await.unwrap()[..], b"0123456789");

    f.set(Fault::RejectSync);
    f.put_unsynced("y", Bytes::from_static(b"y")).await.unwrap();
    assert!(matches!(f.sync().await, Err(StoreError::Other(_))));
    assert_eq!(&f.get("y").await.unwrap()[..], b"y");

    f.set(Fault::FailAfter(2));
    assert!(f.head("k").await.is_ok());
    assert!(f.get("k").await.is_ok());
    assert!(matches!(f.get("k").await, Err(StoreError::Unavailable(_))));
    assert!(matches!(f.head("k").await, Err(StoreError::Unavailable(_))));

    f.set(Fault::None);
    let before = f.operations();
    f.get("k").await.unwrap();
    f.head("k").await.unwrap();
    assert_eq!(f.operations(), before + 2);
}
