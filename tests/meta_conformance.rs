//! One suite for every MetaStore implementation: in-memory and sled.

use cloudraid::meta::{Batch, MemMeta, MetaStore, SledMeta};

fn suite(s: &dyn MetaStore) {
    assert_eq!(s.get(b"a").unwrap(), None);
    let mut b = Batch::default();
    b.put(b"p/1".to_vec(), b"one".to_vec());
    b.put(b"p/2".to_vec(), b"two".to_vec());
    b.put(b"p/3".to_vec(), b"three".to_vec());
    b.put(b"q/1".to_vec(), b"other".to_vec());
    b.put(b"o".to_vec(), b"before".to_vec());
    s.apply(b).unwrap();
    assert_eq!(s.get(b"p/2").unwrap().as_deref(), Some(&b"two"[..]));

    // Prefix scans stay inside the prefix, in key order, honour `after` and `limit`.
    let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| {
        v.into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(s.scan(b"p/", None, 10).unwrap()),
        ["p/1", "p/2", "p/3"]
    );
    assert_eq!(
        keys(s.scan(b"p/", Some(b"p/1"), 10).unwrap()),
        ["p/2", "p/3"]
    );
    assert_eq!(keys(s.scan(b"p/", None, 2).unwrap()), ["p/1", "p/2"]);
    assert_eq!(
        keys(s.scan(b"p/", Some(b"p/3"), 10).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(keys(s.scan(b"z", None, 10).unwrap()), Vec::<String>::new());

    // A batch applies in order: a later op on the same key wins; deletes of missing keys are fine.
    let mut b = Batch::default();
    b.put(b"p/1".to_vec(), b"x".to_vec());
    b.delete(b"p/1".to_vec());
    b.delete(b"never".to_vec());
    b.put(b"p/2".to_vec(), b"first".to_vec());
    b.put(b"p/2".to_vec(), b"second".to_vec());
    s.apply(b).unwrap();
    assert_eq!(s.get(b"p/1").unwrap(), None);
    assert_eq!(s.get(b"p/2").unwrap().as_deref(), Some(&b"second"[..]));
    s.flush().unwrap();

    // Binary keys with 0xff bytes sort after everything else under their prefix.
    let mut b = Batch::default();
    b.put(vec![b'p', b'/', 0xff], b"hi".to_vec());
    s.apply(b).unwrap();
    assert_eq!(
        s.scan(b"p/", None, 10).unwrap().last().unwrap().0,
        vec![b'p', b'/', 0xff]
    );
}

#[test]
fn memory_store() {
    suite(&MemMeta::new());
}

#[test]
fn sled_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledMeta::open(&dir.path().join("db")).unwrap();
    suite(&s);
}

#[test]
fn sled_keeps_flushed_batches_across_reopen_and_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let s = SledMeta::open(&path).unwrap();
        let mut b = Batch::default();
        b.put(b"k".to_vec(), b"v".to_vec());
        s.apply(b).unwrap();
        s.flush().unwrap();
        let second = SledMeta::open(&path);
        assert!(
            second.is_err(),
            "a second open of the same index must be refused"
        );
    }
    let s = SledMeta::open(&path).unwrap();
    assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}
