//! The BlobStore contract, run against S3 (a real s3s-fs server) and the local folder.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use hds_core::blob::local::LocalBlobStore;
use hds_core::blob::s3::S3BlobStore;
use hds_core::blob::{BlobError, BlobKey, BlobStore, ByteStream};
use hds_testkit::{unique, S3Server};

// Held to keep the server or folder alive for the test.
#[allow(dead_code)]
enum Backend {
    S3(S3Server),
    Local(tempfile::TempDir),
}

struct Env {
    store: Arc<dyn BlobStore>,
    _backend: Backend,
}

impl Env {
    async fn s3() -> Self {
        let server = S3Server::start().await;
        let bucket = unique("b").replace('_', "-");
        let store = Arc::new(S3BlobStore::new(&server.settings(&bucket)).await.unwrap());
        Env {
            store,
            _backend: Backend::S3(server),
        }
    }
    async fn local() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalBlobStore::open(dir.path()).await.unwrap());
        Env {
            store,
            _backend: Backend::Local(dir),
        }
    }
}

fn key(k: &str) -> BlobKey {
    BlobKey::new(k).unwrap()
}

/// A deterministic pseudo-random body of `len` bytes in `chunk`-sized pieces.
fn body(len: usize, chunk: usize) -> (Vec<u8>, ByteStream) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    (data, futures::stream::iter(chunks).boxed())
}

async fn put_get_head_list_delete(env: Env) {
    let s = &env.store;
    let k = key("inst-a/1.2.3/4.5.6.dcm");
    assert!(matches!(s.get(&k).await, Err(BlobError::NotFound(_))));
    assert_eq!(s.head(&k).await.unwrap(), None);

    assert_eq!(
        s.put_bytes(&k, Bytes::from_static(b"hello")).await.unwrap(),
        5
    );
    assert_eq!(s.get_bytes(&k).await.unwrap(), Bytes::from_static(b"hello"));
    assert_eq!(s.head(&k).await.unwrap(), Some(5));

    // Replacing is whole.
    s.put_bytes(&k, Bytes::from_static(b"replaced"))
        .await
        .unwrap();
    assert_eq!(
        s.get_bytes(&k).await.unwrap(),
        Bytes::from_static(b"replaced")
    );

    s.put_bytes(&key("inst-a/1.2.3/7.8.dcm"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    s.put_bytes(&key("inst-ab/9.dcm"), Bytes::from_static(b"y"))
        .await
        .unwrap();
    s.put_bytes(&key("inst-b/1.dcm"), Bytes::from_static(b"z"))
        .await
        .unwrap();
    let listed: Vec<String> = s
        .list("inst-a/")
        .await
        .unwrap()
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(
        listed,
        vec!["inst-a/1.2.3/4.5.6.dcm", "inst-a/1.2.3/7.8.dcm"]
    );
    assert_eq!(s.list("inst-a").await.unwrap().len(), 3);

    s.delete(&k).await.unwrap();
    s.delete(&k).await.unwrap();
    assert_eq!(s.head(&k).await.unwrap(), None);
    assert_eq!(s.delete_prefix("inst-a").await.unwrap(), 2);
    assert_eq!(
        s.list("")
            .await
            .unwrap()
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>(),
        vec!["inst-b/1.dcm"]
    );
    s.check().await.unwrap();
}

/// 12 MiB in 64 KiB chunks: S3 takes it as a multipart upload (5 MiB parts).
async fn large_objects_stream_through(env: Env) {
    let k = key("big/object.bin");
    let (data, stream) = body(12 * 1024 * 1024 + 123, 64 * 1024);
    assert_eq!(env.store.put(&k, stream).await.unwrap(), data.len() as u64);
    assert_eq!(env.store.head(&k).await.unwrap(), Some(data.len() as u64));
    let mut got = Vec::with_capacity(data.len());
    let mut chunks = 0;
    let mut stream = env.store.get(&k).await.unwrap();
    while let Some(c) = stream.next().await {
        got.extend_from_slice(&c.unwrap());
        chunks += 1;
    }
    assert!(chunks > 1, "the body was not streamed");
    assert!(got == data, "large object corrupted");
}

/// A body that fails half-way leaves the previous object untouched and nothing new.
async fn failed_upload_leaves_nothing(env: Env) {
    let k = key("torn/object.bin");
    env.store
        .put_bytes(&k, Bytes::from_static(b"old"))
        .await
        .unwrap();
    for size in [1024usize, 7 * 1024 * 1024] {
        let (_, good) = body(size, 64 * 1024);
        let failing = good
            .chain(futures::stream::once(async {
                Err(std::io::Error::other("client went away"))
            }))
            .boxed();
        assert!(env.store.put(&k, failing).await.is_err());
        assert_eq!(
            env.store.get_bytes(&k).await.unwrap(),
            Bytes::from_static(b"old")
        );
        let (_, good) = body(size, 64 * 1024);
        let failing = good
            .chain(futures::stream::once(async {
                Err(std::io::Error::other("client went away"))
            }))
            .boxed();
        let fresh = key("torn/fresh.bin");
        assert!(env.store.put(&fresh, failing).await.is_err());
        assert_eq!(env.store.head(&fresh).await.unwrap(), None);
    }
    assert_eq!(env.store.list("torn/").await.unwrap().len(), 1);
}

macro_rules! blob_contract {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test]
            async fn put_get_head_list_delete() {
                super::put_get_head_list_delete(super::Env::$backend().await).await
            }
            #[tokio::test]
            async fn large_objects_stream_through() {
                super::large_objects_stream_through(super::Env::$backend().await).await
            }
            #[tokio::test]
            async fn failed_upload_leaves_nothing() {
                super::failed_upload_leaves_nothing(super::Env::$backend().await).await
            }
        }
    };
}

blob_contract!(s3);
blob_contract!(local);
