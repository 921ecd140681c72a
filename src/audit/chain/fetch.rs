//! Reading the newest signed checkpoint: from the server's ops listener (`GET /audit/checkpoint`) or from the
//! directory the server writes them to. Trust comes from the signature, not from the transport.

use std::path::Path;
use std::time::Duration;

use auditchain::checkpoint::SignedCheckpoint;

/// Largest checkpoint document read (a checkpoint is a few hundred bytes).
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// Where the newest checkpoint is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointSource {
    /// `http(s)://…/audit/checkpoint` on the server's ops listener.
    Url(String),
    /// The directory the server writes `checkpoint-<chain>-<id>.json` to.
    Dir(std::path::PathBuf),
}

impl CheckpointSource {
    /// The newest checkpoint of `chain` and the URL or file it came from, or why it could not be read.
    pub async fn newest(&self, chain: &str) -> Result<(SignedCheckpoint, String, serde_json::Value), String> {
        let (bytes, source) = match self {
            Self::Url(url) => {
                let url = format!(
                    "{url}{}chain={}",
                    if url.contains('?') { '&' } else { '?' },
                    percent_encoding::utf8_percent_encode(chain, percent_encoding::NON_ALPHANUMERIC)
                );
                (fetch(&url).await?, url)
            }
            Self::Dir(dir) => newest_file(dir, chain)?,
        };
        let signed = SignedCheckpoint::parse(&bytes).map_err(|e| format!("{source}: {e}"))?;
        if signed.checkpoint.chain_id != chain {
            return Err(format!("{source}: a checkpoint of chain {:?}, not {chain:?}", signed.checkpoint.chain_id));
        }
        let document = serde_json::from_slice(&bytes).map_err(|e| format!("{source}: {e}"))?;
        Ok((signed, source, document))
    }
}

async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
    let response = client.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status().as_u16()));
    }
    let bytes = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("{url}: {} bytes, more than a checkpoint's {MAX_DOCUMENT_BYTES}", bytes.len()));
    }
    Ok(bytes.to_vec())
}

/// The chain's last document by name (`auditchain::checkpoint::file_prefix`, then the id in 20 digits: names
/// sort by id).
fn newest_file(dir: &Path, chain: &str) -> Result<(Vec<u8>, String), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let newest = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| auditchain::checkpoint::is_file_of(name, chain))
        .max()
        .ok_or_else(|| format!("{}: no {}<id>.json", dir.display(), auditchain::checkpoint::file_prefix(chain)))?;
    let path = dir.join(&newest);
    let size = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?.len();
    if size > MAX_DOCUMENT_BYTES as u64 {
        return Err(format!("{}: {size} bytes, more than a checkpoint's {MAX_DOCUMENT_BYTES}", path.display()));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((bytes, path.display().to_string()))
}
