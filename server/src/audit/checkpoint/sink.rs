//! Where checkpoint documents are kept: a directory or an S3 prefix, through `object_store`, written with
//! create-only puts so a document is never overwritten, and listed back in name (= id) order for
//! `audit verify`.

use std::sync::Arc;

use auditchain::checkpoint::{KeyError, PublicKey, SignedCheckpoint};
use auditchain::watch::{CheckpointWatch, Expected};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

use crate::config::audit::CheckpointDest;
use crate::storage::{StorageError, s3_store};

/// Documents larger than this are not checkpoints; listing refuses them rather than reading them whole.
const MAX_DOCUMENT_BYTES: u64 = 64 * 1024;

/// The checkpoint store.
#[derive(Debug, Clone)]
pub struct CheckpointSink {
    /// The directory or bucket.
    store: Arc<dyn ObjectStore>,
    /// Key prefix inside it (empty for a directory).
    prefix: String,
    /// How the destination is shown in messages (`/dir` or `s3://bucket/prefix`).
    shown: String,
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The document was written.
    Written,
    /// A document of that name already exists (another instance checkpointed the same head); kept as is.
    AlreadyThere,
}

impl CheckpointSink {
    /// Opens the destination (creating a directory if missing; S3 is not contacted here).
    pub fn open(dest: &CheckpointDest) -> Result<Self, StorageError> {
        match dest {
            CheckpointDest::Dir(path) => {
                std::fs::create_dir_all(path)
                    .map_err(|source| StorageError::Folder { path: path.display().to_string(), source })?;
                let store = LocalFileSystem::new_with_prefix(path)?;
                Ok(Self { store: Arc::new(store), prefix: String::new(), shown: path.display().to_string() })
            }
            CheckpointDest::S3 { settings, prefix } => Ok(Self {
                store: s3_store(settings)?,
                prefix: prefix.clone(),
                shown: format!("s3://{}/{prefix}", settings.bucket),
            }),
        }
    }

    /// Writes `signed` under its file name unless one is there already.
    pub async fn put(&self, signed: &SignedCheckpoint) -> Result<Put, StorageError> {
        let key = ObjectPath::from(format!("{}{}", self.prefix, signed.checkpoint.file_name()));
        let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.store.put_opts(&key, PutPayload::from(signed.to_document()), options).await {
            Ok(_) => Ok(Put::Written),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Put::AlreadyThere),
            Err(error) => Err(error.into()),
        }
    }

    /// Every document, its signature checked with `key`: a watch holding the verified ones (and naming the
    /// others), and how many documents there were.
    pub async fn load_watch(&self, key: &PublicKey) -> Result<(CheckpointWatch, usize), StorageError> {
        let documents = self.list().await?;
        let count = documents.len();
        let mut verified = Vec::new();
        let mut refused = Vec::new();
        for (source, bytes) in documents {
            let checked = bytes
                .map_err(KeyError)
                .and_then(|bytes| SignedCheckpoint::parse(&bytes))
                .and_then(|signed| key.verify(&signed).map(|()| signed));
            match checked {
                Ok(signed) => verified.push(Expected { source, checkpoint: signed.checkpoint }),
                Err(KeyError(problem)) => refused.push((source, problem)),
            }
        }
        let mut watch = CheckpointWatch::new(verified);
        for (source, problem) in refused {
            watch.bad_signature(source, problem);
        }
        Ok((watch, count))
    }

    /// Every `checkpoint-*.json` document, by name, as `(shown name, bytes)`; an oversized one as an error text.
    pub async fn list(&self) -> Result<Vec<(String, Result<Vec<u8>, String>)>, StorageError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.trim_end_matches('/')));
        let mut metas: Vec<_> = self.store.list(prefix.as_ref()).try_collect().await?;
        metas.retain(|m| m.location.filename().is_some_and(|n| n.starts_with("checkpoint-") && n.ends_with(".json")));
        metas.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
        let mut documents = Vec::with_capacity(metas.len());
        for meta in metas {
            let name = format!("{}/{}", self.shown.trim_end_matches('/'), meta.location.filename().unwrap_or(""));
            if meta.size > MAX_DOCUMENT_BYTES {
                documents
                    .push((name, Err(format!("{} bytes, more than a checkpoint's {MAX_DOCUMENT_BYTES}", meta.size))));
                continue;
            }
            let bytes = self.store.get(&meta.location).await?.bytes().await?;
            documents.push((name, Ok(bytes.to_vec())));
        }
        Ok(documents)
    }
}
