//! Signed checkpoints: a chain's head (chain, last id, event hash, row count, time) signed with Ed25519 and
//! kept outside the database, PHR_API.md §5.
//!
//! A chain rewritten and re-hashed from some row on, or cut short at its end, is consistent in itself; the
//! database role that can do that cannot change a document it has no write access to. The document is the
//! [`Checkpoint`] as canonical JSON (its fields in lexicographic order, no whitespace, serde_json's escaping)
//! and a detached signature over exactly those bytes ([`Checkpoint::signed_bytes`]); ARCHITECTURE.md
//! ("Signed checkpoints") states the format. Keys are PKCS#8 (private) and SubjectPublicKeyInfo (public),
//! PEM or DER; a key is named by the SHA-256 of its SubjectPublicKeyInfo ([`PublicKey::fingerprint`]).

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use serde::{Deserialize, Serialize};

use crate::seal::sha256_hex;

/// The `format` of every checkpoint this version writes.
pub const FORMAT: &str = "phr-audit-checkpoint/1";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// What is signed. Fields are declared in lexicographic order, so serde_json writes canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The chain whose head this is.
    pub chain_id: String,
    /// The `event_hash` of the row `last_id`.
    pub event_hash: String,
    /// [`FORMAT`]: what the rest means.
    pub format: String,
    /// The signing key's [`PublicKey::fingerprint`], so a verifier can tell "another key" from "forged".
    pub key_id: String,
    /// The id of the chain's newest row when signed.
    pub last_id: i64,
    /// Rows of the chain with an id up to `last_id`: a deleted row changes it even if the rest is re-hashed.
    pub rows: u64,
    /// When it was signed, RFC 3339 UTC with milliseconds.
    pub signed_at: String,
}

impl Checkpoint {
    /// The bytes the signature covers: the checkpoint as canonical JSON.
    pub fn signed_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The document's file (or object) name: [`file_prefix`] of the chain, then the id zero-padded, so a
    /// chain's names sort by id.
    pub fn file_name(&self) -> String {
        format!("{}{:020}.json", file_prefix(&self.chain_id), self.last_id)
    }
}

/// `checkpoint-<chain>-`, the chain spelt so that every chain id has a name of its own and a safe one: ASCII
/// letters, digits and `-` as they are, every other byte as `_` and two lower-case hex digits (`F.1` is
/// `F_2e1`, `F_1` is `F_5f1`). A chain's documents are the names of this prefix followed by 20 digits.
pub fn file_prefix(chain_id: &str) -> String {
    let mut name = String::from("checkpoint-");
    for byte in chain_id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            name.push(char::from(byte));
        } else {
            name.push_str(&format!("_{byte:02x}"));
        }
    }
    name.push('-');
    name
}

/// Whether `name` is a document of `chain_id` ([`Checkpoint::file_name`]): its prefix, 20 digits, `.json`.
pub fn is_file_of(name: &str, chain_id: &str) -> bool {
    name.strip_prefix(&file_prefix(chain_id))
        .and_then(|rest| rest.strip_suffix(".json"))
        .is_some_and(|id| id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()))
}

/// A checkpoint and its detached signature, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// What was signed.
    pub checkpoint: Checkpoint,
    /// Ed25519 over [`Checkpoint::signed_bytes`], standard base64.
    pub signature: String,
}

impl SignedCheckpoint {
    /// Parses a stored document.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyError> {
        serde_json::from_slice(bytes).map_err(|e| KeyError(format!("not a checkpoint document: {e}")))
    }

    /// The document as stored: pretty JSON (the signature covers the canonical form of `checkpoint`).
    pub fn to_document(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// A key that cannot be read or used, or a document that cannot be parsed; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The Ed25519 private key checkpoints are signed with. Its `Debug` shows the public fingerprint only.
pub struct SigningKey {
    /// The key pair.
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Reads a PKCS#8 key, PEM (`PRIVATE KEY`) or DER.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
        let der = if bytes.starts_with(b"-----BEGIN") {
            PrivatePkcs8KeyDer::from_pem_slice(&bytes)
                .map_err(|e| KeyError(format!("{}: no PKCS#8 PRIVATE KEY block: {e}", path.display())))?
                .secret_pkcs8_der()
                .to_vec()
        } else {
            bytes
        };
        Self::from_pkcs8(&der).map_err(|KeyError(problem)| KeyError(format!("{}: {problem}", path.display())))
    }

    /// Parses a PKCS#8 (v1 or v2) Ed25519 key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        Ed25519KeyPair::from_pkcs8(der)
            .map(|pair| Self { pair })
            .map_err(|e| KeyError(format!("not an Ed25519 PKCS#8 key: {e}")))
    }

    /// A new key: its PKCS#8 document as PEM, and the key.
    pub fn generate() -> Result<(String, Self), KeyError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|e| KeyError(format!("key generation failed: {e}")))?;
        let key = Self::from_pkcs8(document.as_ref())?;
        Ok((pem("PRIVATE KEY", document.as_ref()), key))
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(bytes)
    }

    /// Signs `checkpoint` (whose `key_id` must already be this key's fingerprint).
    pub fn sign(&self, checkpoint: Checkpoint) -> SignedCheckpoint {
        let signature = BASE64.encode(self.pair.sign(&checkpoint.signed_bytes()).as_ref());
        SignedCheckpoint { checkpoint, signature }
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public_key().fingerprint())
    }
}

/// The Ed25519 public key checkpoints are verified with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Reads a SubjectPublicKeyInfo, PEM (`PUBLIC KEY`) or DER.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
        let der = if bytes.starts_with(b"-----BEGIN") {
            SubjectPublicKeyInfoDer::from_pem_slice(&bytes)
                .map_err(|e| KeyError(format!("{}: no PUBLIC KEY block: {e}", path.display())))?
                .to_vec()
        } else {
            bytes
        };
        match der.strip_prefix(&SPKI_PREFIX[..]).and_then(|key| <[u8; 32]>::try_from(key).ok()) {
            Some(key) => Ok(Self(key)),
            None => Err(KeyError(format!("{}: not an Ed25519 public key (SubjectPublicKeyInfo)", path.display()))),
        }
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> Vec<u8> {
        [&SPKI_PREFIX[..], &self.0[..]].concat()
    }

    /// The SubjectPublicKeyInfo as PEM, for the public-key file.
    pub fn to_pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki_der())
    }

    /// `sha256:<hex of the SubjectPublicKeyInfo DER>`: how `check-secrets` and every checkpoint name the key.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.spki_der()))
    }

    /// Whether `signed` was signed by this key, or in words why not.
    pub fn verify(&self, signed: &SignedCheckpoint) -> Result<(), KeyError> {
        let ours = self.fingerprint();
        if signed.checkpoint.key_id != ours {
            return Err(KeyError(format!(
                "signed with key {}, not with the configured public key {ours}",
                signed.checkpoint.key_id
            )));
        }
        let signature =
            BASE64.decode(&signed.signature).map_err(|e| KeyError(format!("the signature is not base64: {e}")))?;
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(&signed.checkpoint.signed_bytes(), &signature)
            .map_err(|_| KeyError("the signature does not verify: the checkpoint was forged or altered".into()))
    }
}

/// PEM with 64-character lines.
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &SigningKey) -> Checkpoint {
        Checkpoint {
            chain_id: "main".into(),
            event_hash: "ab".repeat(32),
            format: FORMAT.into(),
            key_id: key.public_key().fingerprint(),
            last_id: 42,
            rows: 41,
            signed_at: "2026-12-03T13:00:00.123Z".into(),
        }
    }

    #[test]
    fn signed_bytes_are_canonical_json_with_sorted_keys() {
        let (_, key) = SigningKey::generate().unwrap();
        let bytes = String::from_utf8(sample(&key).signed_bytes()).unwrap();
        let expected = format!(
            r#"{{"chain_id":"main","event_hash":"{}","format":"phr-audit-checkpoint/1","key_id":"{}","last_id":42,"rows":41,"signed_at":"2026-12-03T13:00:00.123Z"}}"#,
            "ab".repeat(32),
            key.public_key().fingerprint()
        );
        assert_eq!(bytes, expected);
        assert_eq!(sample(&key).file_name(), "checkpoint-main-00000000000000000042.json");
    }

    #[test]
    fn every_chain_has_file_names_of_its_own_and_only_its_documents_match() {
        let name = |chain: &str| Checkpoint { chain_id: chain.into(), last_id: 7, ..sample_unsigned() }.file_name();
        assert_eq!(name("F001"), "checkpoint-F001-00000000000000000007.json");
        assert_eq!(name("F.1"), "checkpoint-F_2e1-00000000000000000007.json");
        assert_eq!(name("F_1"), "checkpoint-F_5f1-00000000000000000007.json");
        assert_eq!(name("../x"), "checkpoint-_2e_2e_2fx-00000000000000000007.json");
        assert!(is_file_of(&name("F0"), "F0"));
        // A chain whose id extends another's is not the other's document.
        assert!(!is_file_of(&name("F0-1"), "F0"));
        assert!(!is_file_of("checkpoint-F0-1.json", "F0"));
        assert!(!is_file_of(&name("F0").replace(".json", ".tmp"), "F0"));
    }

    /// A checkpoint with fixed values and no key.
    fn sample_unsigned() -> Checkpoint {
        Checkpoint {
            chain_id: "main".into(),
            event_hash: "ab".repeat(32),
            format: FORMAT.into(),
            key_id: String::new(),
            last_id: 42,
            rows: 41,
            signed_at: "2026-12-03T13:00:00.123Z".into(),
        }
    }

    #[test]
    fn a_signature_verifies_with_its_key_only_and_breaks_with_any_change() {
        let dir = tempfile::tempdir().unwrap();
        let (private_pem, key) = SigningKey::generate().unwrap();
        std::fs::write(dir.path().join("k.pem"), &private_pem).unwrap();
        std::fs::write(dir.path().join("k.pub"), key.public_key().to_pem()).unwrap();
        let reread = SigningKey::from_file(&dir.path().join("k.pem")).unwrap();
        let public = PublicKey::from_file(&dir.path().join("k.pub")).unwrap();
        assert_eq!(public, key.public_key());

        let signed = reread.sign(sample(&reread));
        let stored = SignedCheckpoint::parse(&signed.to_document()).unwrap();
        assert_eq!(public.verify(&stored), Ok(()));

        let mut altered = stored.clone();
        altered.checkpoint.rows += 1;
        assert!(public.verify(&altered).unwrap_err().0.contains("does not verify"));
        let (_, other) = SigningKey::generate().unwrap();
        let forged = other.sign(Checkpoint { key_id: public.fingerprint(), ..sample(&other) });
        assert!(public.verify(&forged).unwrap_err().0.contains("forged"));
        let foreign = other.sign(sample(&other));
        assert!(public.verify(&foreign).unwrap_err().0.contains("not with the configured public key"));
    }
}
