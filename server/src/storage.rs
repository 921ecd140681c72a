//! Blob storage for images (PHR-07) and export artifacts (Phase F), over `object_store`.
//!
//! Images and ZIPs are too large to keep in database rows or in memory, so the database stores keys and this
//! module stores bytes: on the local filesystem by default, or in an S3-compatible bucket. Reads come back as
//! a stream of chunks with the object's size known up front, so a handler can set `Content-Length`, enforce
//! the size cap before sending a byte, and forward the chunks without ever holding the whole object.
//! Local files are read [`LOCAL_CHUNK_BYTES`] at a time: `object_store`'s own local stream reads 8 KiB per
//! blocking-pool hop, so a 5 MiB image cost 640 hops, 640 body frames and as many `writev`s, and
//! `scripts/bench-stream.sh` measured PHR-07 and the export download at 0.4-0.55x nginx's throughput.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::config::export::{S3Settings, is_loopback_host};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt as _, PutPayload};

/// Bytes read from a local file per blocking-pool hop (and per body frame): large enough that the hop and the
/// frame cost nothing next to the copy, small enough that a download holds only a chunk or two in memory.
pub const LOCAL_CHUNK_BYTES: u64 = 64 * 1024;

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob {0:?} not found")]
    NotFound(String),
    #[error("invalid blob key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("storage error: {0}")]
    Backend(#[from] object_store::Error),
    #[error("storage folder {path}: {source}")]
    Folder { path: String, source: std::io::Error },
}

/// An S3 (or S3-compatible) store from validated settings: credentials from the AWS environment unless given,
/// path-style requests, plain http only to a loopback endpoint, SSE-KMS when a key is set. S3 is not
/// contacted here.
pub fn s3_store(s3: &S3Settings) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&s3.bucket)
        .with_region(&s3.region)
        .with_virtual_hosted_style_request(false);
    if let Some(endpoint) = &s3.endpoint {
        let loopback_http = endpoint
            .parse::<http::Uri>()
            .ok()
            .is_some_and(|u| u.scheme_str() == Some("http") && u.host().is_some_and(is_loopback_host));
        builder = builder.with_endpoint(endpoint).with_allow_http(loopback_http);
    }
    if let Some(kms_key) = &s3.kms_key {
        builder = builder.with_sse_kms_encryption(kms_key);
    }
    if let Some(credentials) = &s3.static_credentials {
        builder = builder
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(&credentials.secret_access_key);
    }
    Ok(Arc::new(builder.build()?))
}

/// An object being read: its size, then its bytes in chunks.
pub struct Blob {
    pub size: u64,
    pub chunks: BoxStream<'static, Result<Bytes, StorageError>>,
}

/// A store of named blobs.
#[derive(Clone, Debug)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
}

impl BlobStore {
    /// Blobs under a local folder, created if missing.
    pub fn local(root: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(root)
            .map_err(|source| StorageError::Folder { path: root.display().to_string(), source })?;
        let store = LocalFileSystem::new_with_prefix(root)?;
        Ok(Self { inner: Arc::new(store) })
    }

    /// Wraps any `object_store` backend (S3 in Phase F, in-memory in unit tests).
    pub fn from_store(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }

    /// The underlying store, for backends that need their own API (multipart uploads).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Parses a key, refusing anything that could escape the store's root (`..`, empty segments).
    pub fn key(key: &str) -> Result<ObjectPath, StorageError> {
        let invalid = |reason: &str| StorageError::InvalidKey { key: key.to_owned(), reason: reason.to_owned() };
        if key.is_empty() || key.starts_with('/') {
            return Err(invalid("must be a relative, non-empty path"));
        }
        if key.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
            return Err(invalid("must not contain empty, '.' or '..' segments"));
        }
        ObjectPath::parse(key).map_err(|e| invalid(&e.to_string()))
    }

    /// Stores `data` under `key` (used by `seed`; large artifacts use multipart uploads instead).
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.inner.put(&Self::key(key)?, PutPayload::from_bytes(data)).await?;
        Ok(())
    }

    /// Opens `key` for streaming.
    pub async fn open(&self, key: &str) -> Result<Blob, StorageError> {
        let path = Self::key(key)?;
        let result = self.inner.get(&path).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound(key.to_owned()),
            other => StorageError::Backend(other),
        })?;
        let size = result.meta.size;
        let chunks = match result.payload {
            GetResultPayload::File(file, path) => local_chunks(file, path, result.range),
            GetResultPayload::Stream(stream) => stream.map_err(StorageError::from).boxed(),
        };
        Ok(Blob { size, chunks })
    }

    /// Removes `key`; a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.inner.delete(&Self::key(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }
}

/// `range` of a local file in chunks of [`LOCAL_CHUNK_BYTES`], each read on the blocking pool. A file that is
/// shorter than `range` ends the stream early (the response's watcher reports the short body).
fn local_chunks(
    file: std::fs::File,
    path: PathBuf,
    range: Range<u64>,
) -> BoxStream<'static, Result<Bytes, StorageError>> {
    let path = Arc::new(path);
    futures::stream::try_unfold(Some((file, range.start)), move |state| {
        let path = Arc::clone(&path);
        let end = range.end;
        async move {
            let Some((mut file, offset)) = state.filter(|(_, offset)| *offset < end) else {
                return Ok(None);
            };
            let failed = |error: std::io::Error| {
                StorageError::Backend(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!("reading {}: {error}", path.display()).into(),
                })
            };
            let (file, chunk) = tokio::task::spawn_blocking(move || {
                let want = (end - offset).min(LOCAL_CHUNK_BYTES);
                let mut chunk = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
                file.seek(SeekFrom::Start(offset))?;
                (&mut file).take(want).read_to_end(&mut chunk)?;
                Ok::<_, std::io::Error>((file, chunk))
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|read| read)
            .map_err(failed)?;
            if chunk.is_empty() {
                return Ok(None);
            }
            let next = offset + chunk.len() as u64;
            Ok(Some((Bytes::from(chunk), Some((file, next)))))
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        for bad in ["", "/etc/passwd", "a/../b", "../x", "a//b", "./a"] {
            assert!(BlobStore::key(bad).is_err(), "{bad:?}");
        }
        assert!(BlobStore::key("images/F001/P0001/1.jpg").is_ok());
    }

    #[tokio::test]
    async fn local_round_trip_streams_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let data = Bytes::from(vec![7u8; 300_000]);
        store.put("images/a.jpg", data.clone()).await.unwrap();
        let blob = store.open("images/a.jpg").await.unwrap();
        assert_eq!(blob.size, 300_000);
        let read: Vec<Bytes> = blob.chunks.try_collect().await.unwrap();
        assert_eq!(read.concat(), data.to_vec());
        assert!(matches!(store.open("images/missing.jpg").await, Err(StorageError::NotFound(_))));
    }
}
