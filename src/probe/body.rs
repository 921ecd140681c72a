//! Streams a response body to `httpdump/<id>/response.body`, gzip'd to `response.body.gz` when large.
//!
//! A 1,000-probe run must keep memory flat, so the body is never held whole: the first
//! [`GZIP_THRESHOLD`] bytes wait in memory to decide the file name; beyond that the stream switches to gzip
//! and each chunk is compressed and written as it arrives. The SHA-256 and size describe the body as
//! received; textual bodies (JSON, text, XML, forms) pass through the [`StreamRedactor`] before they are
//! stored, so a token or JWT signature in a response does not end up in the evidence.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::io::AsyncWriteExt;

use crate::redact::{Redactor, StreamRedactor};

/// Bodies larger than this are stored gzip'd.
pub const GZIP_THRESHOLD: usize = 64 * 1024;

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBody {
    /// Bytes received (before redaction and gzip).
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the bytes received.
    pub sha256: String,
    /// The file written: `response.body` or `response.body.gz`.
    pub file: PathBuf,
}

/// Where the body is going so far.
enum Destination {
    /// Still small: kept in memory until it ends or crosses the threshold.
    Pending(Vec<u8>),
    /// Large: compressed into `response.body.gz` chunk by chunk.
    Gzip {
        /// `response.body.gz`.
        file: tokio::fs::File,
        /// Compresses into a small buffer that is drained to `file` after every chunk.
        encoder: Box<GzEncoder<Vec<u8>>>,
    },
}

/// Writes one response body as it streams in.
pub struct BodySink<'r> {
    /// `httpdump/<id>/`.
    dir: PathBuf,
    /// Masks secrets in textual bodies; `None` for binary bodies, stored byte for byte.
    redactor: Option<StreamRedactor<'r>>,
    /// Running SHA-256 of the received bytes.
    digest: aws_lc_rs::digest::Context,
    /// Received byte count.
    received: u64,
    /// Memory or gzip file.
    destination: Destination,
}

impl<'r> BodySink<'r> {
    /// A sink in `dir`; `content_type` decides whether the body is redacted as text.
    pub fn new(dir: &Path, content_type: Option<&str>, redactor: &'r Redactor) -> Self {
        Self {
            dir: dir.to_owned(),
            redactor: content_type.is_some_and(is_textual).then(|| StreamRedactor::new(redactor)),
            digest: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            received: 0,
            destination: Destination::Pending(Vec::new()),
        }
    }

    /// Takes the next chunk as received.
    pub async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.digest.update(chunk);
        self.received += chunk.len() as u64;
        let stored = match &mut self.redactor {
            Some(redactor) => redactor.push(chunk),
            None => chunk.to_vec(),
        };
        self.store(&stored).await
    }

    /// Flushes everything and names the file written.
    pub async fn finish(mut self) -> std::io::Result<StoredBody> {
        if let Some(redactor) = self.redactor.take() {
            let rest = redactor.finish();
            self.store(&rest).await?;
        }
        let file = match self.destination {
            Destination::Pending(bytes) => {
                let path = self.dir.join(crate::evidence::EvidenceLayout::RESPONSE_BODY);
                tokio::fs::write(&path, &bytes).await?;
                path
            }
            Destination::Gzip { mut file, encoder } => {
                let tail = encoder.finish()?;
                file.write_all(&tail).await?;
                file.flush().await?;
                self.dir.join("response.body.gz")
            }
        };
        Ok(StoredBody { bytes: self.received, sha256: hex::encode(self.digest.finish().as_ref()), file })
    }

    async fn store(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if let Destination::Pending(pending) = &mut self.destination {
            if pending.len() + bytes.len() <= GZIP_THRESHOLD {
                pending.extend_from_slice(bytes);
                return Ok(());
            }
            let mut encoder = Box::new(GzEncoder::new(Vec::new(), Compression::default()));
            encoder.write_all(pending)?;
            let file = tokio::fs::File::create(self.dir.join("response.body.gz")).await?;
            self.destination = Destination::Gzip { file, encoder };
        }
        if let Destination::Gzip { file, encoder } = &mut self.destination {
            encoder.write_all(bytes)?;
            let compressed = std::mem::take(encoder.get_mut());
            file.write_all(&compressed).await?;
        }
        Ok(())
    }
}

/// Content types whose bodies are text and may carry tokens.
fn is_textual(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/xml"
                | "application/x-www-form-urlencoded"
                | "application/javascript"
                | "application/jwt"
                | "application/problem"
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[tokio::test]
    async fn small_body_is_stored_plain_with_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let redactor = Redactor::new(Vec::new());
        let mut sink = BodySink::new(dir.path(), Some("image/png"), &redactor);

        sink.write(b"ab").await.unwrap();
        sink.write(b"c").await.unwrap();
        let stored = sink.finish().await.unwrap();

        assert_eq!(stored.file, dir.path().join("response.body"));
        assert_eq!(std::fs::read(&stored.file).unwrap(), b"abc");
        assert_eq!(stored.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(stored.bytes, 3);
    }

    #[tokio::test]
    async fn large_body_is_gzipped_while_streaming() {
        let dir = tempfile::tempdir().unwrap();
        let redactor = Redactor::new(Vec::new());
        let mut sink = BodySink::new(dir.path(), None, &redactor);
        let chunk = vec![7u8; 16 * 1024];

        for _ in 0..10 {
            sink.write(&chunk).await.unwrap();
        }
        let stored = sink.finish().await.unwrap();

        assert_eq!(stored.file, dir.path().join("response.body.gz"));
        assert!(!dir.path().join("response.body").exists());
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&stored.file).unwrap()).read_to_end(&mut plain).unwrap();
        assert_eq!(plain.len(), 160 * 1024);
        assert_eq!(stored.bytes, 160 * 1024);
    }

    #[tokio::test]
    async fn json_bodies_are_redacted_but_hashed_as_received() {
        let dir = tempfile::tempdir().unwrap();
        let redactor = Redactor::new(["s3cret-consent".to_owned()]);
        let mut sink = BodySink::new(dir.path(), Some("application/json; charset=utf-8"), &redactor);
        let body = br#"{"consent":"s3cret-consent","token":"eyJh.eyJp.c2ln"}"#;

        sink.write(body).await.unwrap();
        let stored = sink.finish().await.unwrap();

        let written = std::fs::read_to_string(&stored.file).unwrap();
        assert_eq!(written, r#"{"consent":"<MASKED>","token":"eyJh.eyJp.<MASKED>"}"#);
        assert_eq!(stored.sha256, hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body)));
    }
}
