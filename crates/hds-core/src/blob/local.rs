//! Blobs in a local folder. A put writes `{root}/.tmp/{uuid}`, syncs it, renames it over the
//! key's path and syncs the folder: a crash leaves the old object or the new one, never a
//! mixture. Leftover temporary files from a crash are removed at open.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{BlobError, BlobKey, BlobStore, ByteStream};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalBlobSettings {
    pub path: PathBuf,
}

pub struct LocalBlobStore {
    root: PathBuf,
    tmp: PathBuf,
}

const TMP: &str = ".tmp";

fn io(key: &str) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        key: key.to_owned(),
        source,
    }
}

impl LocalBlobStore {
    pub async fn open(root: &Path) -> Result<Self, BlobError> {
        let tmp = root.join(TMP);
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(io(&root.display().to_string()))?;
        Ok(Self {
            root: root.to_owned(),
            tmp,
        })
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        self.root.join(key.as_str())
    }
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn put(&self, key: &BlobKey, mut body: ByteStream) -> Result<u64, BlobError> {
        let k = key.as_str();
        let tmp = self.tmp.join(uuid::Uuid::new_v4().to_string());
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await.map_err(io(k))?;
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(io(k))?;
                size += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(io(k))?;
            }
            file.sync_all().await.map_err(io(k))?;
            drop(file);
            let dest = self.path(key);
            let parent = dest.parent().unwrap_or(&self.root).to_owned();
            tokio::fs::create_dir_all(&parent).await.map_err(io(k))?;
            tokio::fs::rename(&tmp, &dest).await.map_err(io(k))?;
            sync_dir(&parent).await.map_err(io(k))?;
            Ok(size)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn get(&self, key: &BlobKey) -> Result<ByteStream, BlobError> {
        match tokio::fs::File::open(self.path(key)).await {
            Ok(f) => Ok(tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024).boxed()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BlobError::NotFound(key.to_string()))
            }
            Err(e) => Err(io(key.as_str())(e)),
        }
    }

    async fn head(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.path(key)).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(key.as_str())(e)),
        }
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(key.as_str())(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, BlobError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(&prefix)(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(io(&prefix))?;
                    let path = entry.path();
                    let rel = path.strip_prefix(&root).unwrap_or(&path);
                    let rel = rel.to_string_lossy().replace('\\', "/");
                    if rel == TMP {
                        continue;
                    }
                    let ty = entry.file_type().map_err(io(&prefix))?;
                    if ty.is_dir() {
                        // Descend only where keys with the prefix can be.
                        let dir_prefix = format!("{rel}/");
                        if prefix.starts_with(&dir_prefix) || dir_prefix.starts_with(&prefix) {
                            stack.push(path);
                        }
                    } else if rel.starts_with(&prefix) {
                        if let Ok(k) = BlobKey::new(rel) {
                            keys.push(k);
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| BlobError::Unavailable(e.to_string()))?
    }

    async fn check(&self) -> Result<(), BlobError> {
        let m = tokio::fs::metadata(&self.tmp)
            .await
            .map_err(io(&self.tmp.display().to_string()))?;
        if m.is_dir() {
            Ok(())
        } else {
            Err(BlobError::Unavailable(format!(
                "{} is not a folder",
                self.tmp.display()
            )))
        }
    }
}
