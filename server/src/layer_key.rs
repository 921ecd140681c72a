//! The Layer ID signing key (PHR-06): loading it fail-fast at start-up, and issuing identity tokens with it.
//!
//! A patient app trades a nonce for a short-lived RS256 token that the Layer identity provider trusts, so a
//! server that cannot sign must say so before it takes traffic, not on the first PHR-06 call. [`LayerKey`]
//! finds and checks the key (PKCS#8 DER from `PHR_LAYER_PRIVATE_KEY_BASE64`, else a DER or PEM file from
//! `PHR_LAYER_PRIVATE_KEY_PATH`; RSA of 2048 bits or more); [`LayerSigner`] adds the key and provider ids
//! and signs. `check-secrets` reuses the same checks, so the command and the server never disagree.
//! Key material never reaches a log or an error message: only the variable names and the public key's
//! SHA-256 fingerprint do.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};

use crate::config::LayerKeyArgs;

/// Variable holding the key as base64 PKCS#8 DER.
pub const BASE64_VARIABLE: &str = "PHR_LAYER_PRIVATE_KEY_BASE64";
/// Variable naming the key file.
pub const PATH_VARIABLE: &str = "PHR_LAYER_PRIVATE_KEY_PATH";
/// Variable holding the `kid` header.
pub const KEY_ID_VARIABLE: &str = "PHR_LAYER_KEY_ID";
/// Variable holding the `iss` claim.
pub const PROVIDER_ID_VARIABLE: &str = "PHR_LAYER_PROVIDER_ID";

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Lifetime of an issued token: `exp = iat + 120`.
pub const TOKEN_LIFETIME_SECONDS: i64 = 120;
/// The `cty` header of every token.
pub const TOKEN_CONTENT_TYPE: &str = "layer-eit;v=1";

/// Why the Layer ID key cannot be used. Messages name variables and files, never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum LayerKeyError {
    #[error(
        "no Layer ID key configured (looked at {BASE64_VARIABLE} and {PATH_VARIABLE}); \
         set one, or set PHR_LAYER_KEY_OPTIONAL=true to start without PHR-06"
    )]
    Missing,
    /// Deliberately without the decoder's detail, which quotes the offending byte of the secret.
    #[error("{BASE64_VARIABLE}: not valid base64 (whitespace is ignored)")]
    Base64,
    #[error("{PATH_VARIABLE}: cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{variable}: {problem}")]
    Unusable { variable: String, problem: String },
    #[error("{0} is required when a Layer ID key is configured")]
    MissingId(&'static str),
    #[error("signing the Layer ID token failed: {0}")]
    Sign(String),
}

/// Where a key came from, for messages and `check-secrets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Base64,
    File(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Base64 => f.write_str(BASE64_VARIABLE),
            Self::File(path) => write!(f, "{PATH_VARIABLE} ({})", path.display()),
        }
    }
}

/// A decoded RSA private key that passed every check, before ids are attached.
pub struct LayerKey {
    /// The PKCS#8 DER, kept to build the signing key; never printed.
    pkcs8: Vec<u8>,
    /// Where it came from, so errors and `check-secrets` can say which variable was used.
    source: KeySource,
    modulus_bits: usize,
    /// Lower-case hex SHA-256 of the SubjectPublicKeyInfo DER.
    fingerprint: String,
}

impl fmt::Debug for LayerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerKey")
            .field("source", &self.source)
            .field("modulus_bits", &self.modulus_bits)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl LayerKey {
    /// Finds and checks the configured key; `Ok(None)` when neither variable is set.
    /// The base64 variable wins over the path, and a set-but-broken source is an error, never skipped.
    pub fn from_args(args: &LayerKeyArgs) -> Result<Option<Self>, LayerKeyError> {
        if let Some(encoded) = args.layer_private_key_base64.as_deref().filter(|v| !v.trim().is_empty()) {
            let compact: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|_| LayerKeyError::Base64)?;
            return Self::from_pkcs8(der, KeySource::Base64).map(Some);
        }
        if let Some(path) = args.layer_private_key_path.as_deref().filter(|p| !p.as_os_str().is_empty()) {
            let der = read_key_file(path)?;
            return Self::from_pkcs8(der, KeySource::File(path.to_owned())).map(Some);
        }
        Ok(None)
    }

    /// Checks that `pkcs8` is an RSA key of at least [`MIN_RSA_BITS`] bits.
    fn from_pkcs8(pkcs8: Vec<u8>, source: KeySource) -> Result<Self, LayerKeyError> {
        let unusable = |problem: String| LayerKeyError::Unusable { variable: source.to_string(), problem };
        let too_small =
            |bits: usize| unusable(format!("RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"));
        let key_pair = KeyPair::from_pkcs8(&pkcs8).map_err(|e| match declared_modulus_bits(&pkcs8) {
            // aws-lc-rs refuses small keys at parse time; say why rather than "invalid encoding".
            Some(bits) if bits < MIN_RSA_BITS => too_small(bits),
            // OpenSSL 3's `genpkey -outform DER` writes the traditional PKCS#1 form; say so and how to convert.
            _ if KeyPair::from_der(&pkcs8).is_ok() => unusable(
                "is a PKCS#1 RSAPrivateKey, not PKCS#8; convert it with \
                 `openssl pkcs8 -topk8 -nocrypt -inform DER -outform DER -in KEY -out KEY.pk8`"
                    .to_owned(),
            ),
            _ => unusable(format!("not an RSA private key in PKCS#8 DER ({e})")),
        })?;
        let modulus_bits = key_pair.public_modulus_len() * 8;
        if modulus_bits < MIN_RSA_BITS {
            return Err(too_small(modulus_bits));
        }
        let public_der: PublicKeyX509Der<'static> =
            key_pair.public_key().as_der().map_err(|e| unusable(format!("cannot encode the public key ({e})")))?;
        let fingerprint = crate::audit::sha256_hex(public_der.as_ref());
        Ok(Self { pkcs8, source, modulus_bits, fingerprint })
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    pub fn modulus_bits(&self) -> usize {
        self.modulus_bits
    }

    /// SHA-256 of the public key DER (SubjectPublicKeyInfo), lower-case hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// jsonwebtoken's RSA signer wants the inner PKCS#1 key; its PEM reader unwraps a PKCS#8 "PRIVATE KEY".
    fn encoding_key(&self) -> Result<EncodingKey, LayerKeyError> {
        let body = base64::engine::general_purpose::STANDARD.encode(&self.pkcs8);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| LayerKeyError::Unusable {
            variable: self.source.to_string(),
            problem: format!("cannot be used for RS256 ({e})"),
        })
    }
}

/// The modulus size a PKCS#8 RSA key declares, read from the DER without validating the key; only used to
/// explain a rejection.
fn declared_modulus_bits(pkcs8: &[u8]) -> Option<usize> {
    use x509_parser::der_parser::parse_der;
    let (_, info) = parse_der(pkcs8).ok()?;
    let rsa_private_key = info.as_sequence().ok()?.get(2)?.as_slice().ok()?;
    let (_, rsa) = parse_der(rsa_private_key).ok()?;
    let modulus = rsa.as_sequence().ok()?.get(1)?.as_slice().ok()?;
    let significant: Vec<u8> = modulus.iter().copied().skip_while(|b| *b == 0).collect();
    let first = *significant.first()?;
    Some((significant.len() - 1) * 8 + (8 - first.leading_zeros() as usize))
}

/// Reads a key file: PEM (`PRIVATE KEY`, i.e. PKCS#8) when it looks like PEM, raw DER otherwise.
fn read_key_file(path: &Path) -> Result<Vec<u8>, LayerKeyError> {
    let bytes = std::fs::read(path).map_err(|source| LayerKeyError::Read { path: path.to_owned(), source })?;
    let unusable = |problem: &str| LayerKeyError::Unusable {
        variable: format!("{PATH_VARIABLE} ({})", path.display()),
        problem: problem.to_owned(),
    };
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Ok(bytes);
    }
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(PrivateKeyDer::Pkcs8(der)) => Ok(der.secret_pkcs8_der().to_vec()),
        Ok(PrivateKeyDer::Pkcs1(_)) => {
            Err(unusable("PEM holds a PKCS#1 \"RSA PRIVATE KEY\"; convert it with `openssl pkcs8 -topk8 -nocrypt`"))
        }
        Ok(_) => Err(unusable("PEM holds a non-RSA private key")),
        Err(_) => Err(unusable("no unencrypted \"PRIVATE KEY\" PEM block found")),
    }
}

/// The claims of a Layer ID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerClaims {
    /// Provider id (`PHR_LAYER_PROVIDER_ID`).
    pub iss: String,
    /// The user the token is for.
    pub prn: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// `iat + 120`.
    pub exp: i64,
    /// The caller's nonce, echoed so the provider can match the token to its challenge.
    pub nce: String,
}

/// Signs Layer ID tokens with a checked key and its ids.
pub struct LayerSigner {
    /// Built once at start-up; jsonwebtoken holds the PKCS#1 bytes inside.
    encoding_key: EncodingKey,
    /// `kid` header.
    key_id: String,
    /// `iss` claim.
    provider_id: String,
    /// Public key fingerprint, logged at start-up.
    fingerprint: String,
}

impl fmt::Debug for LayerSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerSigner")
            .field("key_id", &self.key_id)
            .field("provider_id", &self.provider_id)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl LayerSigner {
    /// Loads the key the arguments name; `Ok(None)` only when no key is configured and the explicit opt-out
    /// (`PHR_LAYER_KEY_OPTIONAL`) is set. A configured but unusable key is an error even with the opt-out.
    pub fn load(args: &LayerKeyArgs) -> Result<Option<Self>, LayerKeyError> {
        let Some(key) = LayerKey::from_args(args)? else {
            return if args.layer_key_optional { Ok(None) } else { Err(LayerKeyError::Missing) };
        };
        let key_id = required_id(args.layer_key_id.as_deref(), KEY_ID_VARIABLE)?;
        let provider_id = required_id(args.layer_provider_id.as_deref(), PROVIDER_ID_VARIABLE)?;
        let signer = Self { encoding_key: key.encoding_key()?, key_id, provider_id, fingerprint: key.fingerprint };
        // Sign once now, so a key the signer cannot use stops the start-up rather than the first call.
        signer.issue("startup-probe", "startup-probe", Utc::now())?;
        Ok(Some(signer))
    }

    /// SHA-256 of the public key DER, hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The `kid` header of issued tokens.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// A compact JWS for `user` and `nonce`, issued at `now` and valid for [`TOKEN_LIFETIME_SECONDS`].
    pub fn issue(&self, user: &str, nonce: &str, now: DateTime<Utc>) -> Result<String, LayerKeyError> {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".to_owned());
        header.cty = Some(TOKEN_CONTENT_TYPE.to_owned());
        header.kid = Some(self.key_id.clone());
        let iat = now.timestamp();
        let claims = LayerClaims {
            iss: self.provider_id.clone(),
            prn: user.to_owned(),
            iat,
            exp: iat + TOKEN_LIFETIME_SECONDS,
            nce: nonce.to_owned(),
        };
        jsonwebtoken::encode(&header, &claims, &self.encoding_key).map_err(|e| LayerKeyError::Sign(e.to_string()))
    }
}

fn required_id(value: Option<&str>, variable: &'static str) -> Result<String, LayerKeyError> {
    value.map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).ok_or(LayerKeyError::MissingId(variable))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_with(base64: Option<String>, path: Option<PathBuf>) -> LayerKeyArgs {
        LayerKeyArgs {
            layer_private_key_base64: base64,
            layer_private_key_path: path,
            layer_key_id: Some("layer-1".into()),
            layer_provider_id: Some("opd".into()),
            layer_key_optional: false,
        }
    }

    /// A throw-away 1024-bit RSA key (PKCS#8 DER, base64): too small to be accepted.
    const RSA_1024_PKCS8: &str = concat!(
        "MIICeQIBADANBgkqhkiG9w0BAQEFAASCAmMwggJfAgEAAoGBAKIyeubgk0aU6GEj/EIBp+FH5sCf/2aP9R/cwhAzg85oWNy9KCZu",
        "foKdP8NAULcpxObBtXIXLhqbCzFsc0auDktumYAHrzCQMEE2ButMBvDhEv1yPbUz2UBLTboKrzvbtUioVme9Nf9iUDRa7f8xMp04",
        "x0nsuoZ6X61WtReSK4g5AgMBAAECgYEAl3k1NfB9Geluq2mD59DMC6OuaC4DwrCmZz8vLRou+dCRTHSKznlaRHi+V4X021lyvV4i",
        "KY5kTAyHg3yYm2VpiqP9kopu56a5N90q34kCHcjmdHcPrs7OARFC6sFrxgUDSIe76HeDm0Cu2Tw2V8TXolYiCDDUrLranlojeuof",
        "SAECQQDNgrTzBp8zubjukjnd4aPG1QldPjR8QcU7nI/lXS3Ajd/6uhGzHu6iUrtUPSRxBTYM7VFKlCos0MBI7YeZ9HbBAkEAyguj",
        "0Cw2/ZhRaI4N4slvyjNBtQuoiwiqfx7AjjI37hvbrIm/R4aZVw/I/LiRSeAcCsGRW6zwCgBj362buYgneQJBALMxHQYq5/X6Ir4i",
        "0kId1OgyKZAcBTezQX7Q7MdZj+Mt0faU94nvlrQC30R8a6IAoTh0VUVqG7wn6QGt22bqOgECQQCE9D/p3w6YtkDr4n60vAV6M1yL",
        "vI4+X4eCe0QOznELmP1nfoWGlcYWCmciFnpU+Mq7MUFr6FNU4YjXSjDtV/FRAkEAs1O1p/eAkDX7D1pkIZA/Jyrlus66L9II5+I2",
        "jkz9nyehPe2OlqHlyzerr5Ey0SDqN8R6qBhOkNVyuZ4BAmj4MA==",
    );

    fn rsa_pkcs8(bits: aws_lc_rs::rsa::KeySize) -> Vec<u8> {
        let key = KeyPair::generate(bits).unwrap();
        let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = key.as_der().unwrap();
        der.as_ref().to_vec()
    }

    #[test]
    fn missing_key_names_both_variables_unless_optional() {
        let mut args = args_with(None, None);
        let message = LayerSigner::load(&args).unwrap_err().to_string();
        assert!(message.contains(BASE64_VARIABLE) && message.contains(PATH_VARIABLE), "{message}");

        args.layer_key_optional = true;
        assert!(LayerSigner::load(&args).unwrap().is_none());
    }

    #[test]
    fn base64_with_whitespace_loads_and_the_fingerprint_is_of_the_public_key() {
        let der = rsa_pkcs8(aws_lc_rs::rsa::KeySize::Rsa2048);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&der);
        let wrapped: String =
            encoded.as_bytes().chunks(60).map(|c| format!(" {}\n", std::str::from_utf8(c).unwrap())).collect();

        let signer = LayerSigner::load(&args_with(Some(wrapped), None)).unwrap().unwrap();

        let public = KeyPair::from_pkcs8(&der).unwrap().public_key().as_der().unwrap();
        assert_eq!(signer.fingerprint(), crate::audit::sha256_hex(public.as_ref()));
        assert_eq!(signer.fingerprint().len(), 64);
        assert!(!format!("{signer:?}").contains(&encoded[..40]));
    }

    #[test]
    fn pem_and_der_files_load_and_pkcs1_pem_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let der = rsa_pkcs8(aws_lc_rs::rsa::KeySize::Rsa2048);
        let der_path = dir.path().join("layer.der");
        std::fs::write(&der_path, &der).unwrap();
        let pem = PrivateKeyDer::Pkcs8(der.clone().into());
        let pem_path = dir.path().join("layer.pem");
        let body = base64::engine::general_purpose::STANDARD.encode(pem.secret_der());
        std::fs::write(&pem_path, format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")).unwrap();
        let pkcs1_path = dir.path().join("layer-pkcs1.pem");
        std::fs::write(&pkcs1_path, "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n").unwrap();

        let from_der = LayerSigner::load(&args_with(None, Some(der_path))).unwrap().unwrap();
        let from_pem = LayerSigner::load(&args_with(None, Some(pem_path))).unwrap().unwrap();
        let pkcs1 = LayerSigner::load(&args_with(None, Some(pkcs1_path))).unwrap_err().to_string();

        assert_eq!(from_der.fingerprint(), from_pem.fingerprint());
        assert!(pkcs1.contains(PATH_VARIABLE) && pkcs1.contains("pkcs8"), "{pkcs1}");
    }

    #[test]
    fn pkcs1_der_files_are_refused_with_the_conversion_command() {
        let dir = tempfile::tempdir().unwrap();
        let pkcs8 = rsa_pkcs8(aws_lc_rs::rsa::KeySize::Rsa2048);
        // PKCS#8 PrivateKeyInfo = SEQUENCE { version, algorithm, OCTET STRING { RSAPrivateKey (PKCS#1) } }.
        let (_, info) = x509_parser::der_parser::parse_der(&pkcs8).unwrap();
        let pkcs1 = info.as_sequence().unwrap()[2].as_slice().unwrap().to_vec();
        let path = dir.path().join("layer-pkcs1.der");
        std::fs::write(&path, pkcs1).unwrap();

        let error = LayerSigner::load(&args_with(None, Some(path))).unwrap_err().to_string();

        assert!(error.contains("PKCS#1") && error.contains("openssl pkcs8 -topk8"), "{error}");
    }

    #[test]
    fn garbage_small_and_id_less_keys_are_refused_even_with_the_opt_out() {
        let mut garbage = args_with(Some("bm90IGEga2V5".into()), None);
        garbage.layer_key_optional = true;
        let message = LayerSigner::load(&garbage).unwrap_err().to_string();
        assert!(message.starts_with(BASE64_VARIABLE), "{message}");

        let small = LayerSigner::load(&args_with(Some(RSA_1024_PKCS8.into()), None)).unwrap_err().to_string();
        assert!(small.contains("1024") && small.contains("2048"), "{small}");

        let encoded = base64::engine::general_purpose::STANDARD.encode(rsa_pkcs8(aws_lc_rs::rsa::KeySize::Rsa2048));
        let mut no_id = args_with(Some(encoded), None);
        no_id.layer_provider_id = Some("  ".into());
        assert!(matches!(LayerSigner::load(&no_id), Err(LayerKeyError::MissingId(PROVIDER_ID_VARIABLE))));
    }

    #[test]
    fn claims_follow_the_spec() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(rsa_pkcs8(aws_lc_rs::rsa::KeySize::Rsa2048));
        let signer = LayerSigner::load(&args_with(Some(encoded), None)).unwrap().unwrap();
        let now = DateTime::from_timestamp(1_763_500_000, 999_000_000).unwrap();

        let token = signer.issue("patient-7", "n-1", now).unwrap();

        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.cty.as_deref(), Some(TOKEN_CONTENT_TYPE));
        assert_eq!(header.kid.as_deref(), Some("layer-1"));
        let claims: LayerClaims = jsonwebtoken::dangerous::insecure_decode(&token).unwrap().claims;
        assert_eq!(
            claims,
            LayerClaims {
                iss: "opd".into(),
                prn: "patient-7".into(),
                iat: 1_763_500_000,
                exp: 1_763_500_120,
                nce: "n-1".into()
            }
        );
    }
}
