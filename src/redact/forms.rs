//! Every form a configured secret can take on the wire, so the redactor can find it in any of them.
//!
//! A password is not only sent raw: it travels percent-encoded in forms and query strings (upper- or
//! lower-case hex, `+` for spaces), JSON-escaped in bodies, and base64-encoded inside Basic credentials,
//! where it starts at an arbitrary byte offset of `user:password`. For base64 the forms are the characters
//! that depend on the secret alone at each of the three possible alignments.

use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Percent-encoding as `encodeURIComponent` does it: unreserved characters stay.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Base64 fragments shorter than this are not masked: they would match ordinary text.
const MIN_BASE64_CORE: usize = 4;

/// The secret as it may appear on the wire: raw, percent-encoded, JSON-escaped, base64 at every alignment.
pub(super) fn wire_forms(secret: &str) -> Vec<Vec<u8>> {
    let mut forms = vec![secret.as_bytes().to_vec()];
    for set in [NON_ALPHANUMERIC, URI_COMPONENT] {
        let upper = utf8_percent_encode(secret, set).to_string();
        forms.push(upper.replace("%20", "+").into_bytes());
        forms.push(lower_hex_escapes(&upper).into_bytes());
        forms.push(upper.into_bytes());
    }
    if let Ok(json) = serde_json::to_string(secret) {
        forms.push(json.trim_matches('"').as_bytes().to_vec());
    }
    for engine in [&base64::engine::general_purpose::STANDARD_NO_PAD, &base64::engine::general_purpose::URL_SAFE_NO_PAD]
    {
        forms.extend(base64_cores(secret.as_bytes(), engine).into_iter().map(String::into_bytes));
    }
    forms.retain(|f| !f.is_empty());
    forms
}

/// `%2F` -> `%2f`: some encoders write lower-case hex.
fn lower_hex_escapes(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut hex_left = 0;
    for c in encoded.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The base64 characters that depend only on the secret, for the secret starting at byte offset 0, 1 or 2
/// of a larger encoded value (as the password does inside `base64("user:password")`).
fn base64_cores(secret: &[u8], engine: &impl Engine) -> Vec<String> {
    (0..3)
        .filter_map(|offset: usize| {
            let mut input = vec![0u8; offset];
            input.extend_from_slice(secret);
            let encoded = engine.encode(&input);
            let first = (8 * offset).div_ceil(6);
            let end = (8 * input.len() / 6).min(encoded.len());
            (end >= first + MIN_BASE64_CORE).then(|| encoded[first..end].to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_core_is_inside_the_encoding_at_every_offset() {
        let secret = b"FJjmq/d7EP";
        for prefix in [&b""[..], b"u:", b"ops:"] {
            let mut plain = prefix.to_vec();
            plain.extend_from_slice(secret);
            let encoded = base64::engine::general_purpose::STANDARD.encode(&plain);

            let cores = base64_cores(secret, &base64::engine::general_purpose::STANDARD_NO_PAD);

            assert!(cores.iter().any(|core| encoded.contains(core.as_str())), "{prefix:?}: {encoded} vs {cores:?}");
        }
    }

    #[test]
    fn percent_forms_cover_both_hex_cases_and_plus_for_space() {
        let forms: Vec<String> = wire_forms("a b/c").into_iter().map(|f| String::from_utf8(f).unwrap()).collect();

        for expected in ["a b/c", "a%20b%2Fc", "a%20b%2fc", "a+b%2Fc"] {
            assert!(forms.iter().any(|f| f == expected), "{expected} missing in {forms:?}");
        }
    }
}
