//! Masks secrets in everything the harness writes (HARNESS.md §5).
//!
//! Evidence folders are kept as the team's record and pasted into shared logs, so no password, token or
//! cookie may reach them. A [`Redactor`] knows the run's configured secret values in every form they take on
//! the wire (raw, standard and URL-safe base64 at any byte alignment — so a password inside
//! `base64("user:password")` is found too — percent-encoded and JSON-escaped) and also masks what is secret by
//! shape: credential headers (`Authorization: Basic <MASKED>`), cookies, `X-Consent-Token`, `token=` query
//! values and the signature part of JWTs. It works on bytes, finds every secret span in the original input
//! first and then rewrites once, so rules never see each other's output. [`StreamRedactor`] applies the same
//! rules to a body that arrives in chunks without holding it whole.
//!
//! A leaf: it imports nothing of the crate, and every writer of evidence uses it.

mod forms;
mod stream;

use std::borrow::Cow;

pub use stream::{RedactingWriter, StreamRedactor};

/// What every masked value is replaced with.
pub const MASK: &str = "<MASKED>";

/// Headers whose values are always secret, whatever they contain.
const SENSITIVE_HEADERS: &[&str] = &["proxy-authorization", "authorization", "set-cookie", "cookie", "x-consent-token"];

/// A cut capture ending in this many bytes of a secret (or more) has them masked.
const MIN_CUT_FRAGMENT: usize = 3;

/// Characters a `token=` value or a JWT never contains; stream chunks may be cut there.
const VALUE_DELIMITERS: &[u8] = b"\"'&# \t\r\n<>;,(){}[]";

/// Masks secrets in everything the harness writes.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Every configured secret in every wire form, longest first so a longer form wins over its prefix.
    needles: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").field("needles", &self.needles.len()).finish()
    }
}

/// One stretch of the input to replace.
struct Span {
    start: usize,
    end: usize,
    replacement: Cow<'static, str>,
}

impl Span {
    fn masked(start: usize, end: usize) -> Self {
        Self { start, end, replacement: Cow::Borrowed(MASK) }
    }
}

impl Redactor {
    /// A redactor for these secret values (empty values are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut needles: Vec<Vec<u8>> = Vec::new();
        for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
            for form in forms::wire_forms(&secret) {
                if !needles.contains(&form) {
                    needles.push(form);
                }
            }
        }
        needles.sort_by_key(|needle| std::cmp::Reverse(needle.len()));
        Self { needles }
    }

    /// Masks configured secrets (all forms), `Authorization: Basic <MASKED>`, cookies, X-Consent-Token,
    /// `token=` query values, and the signature part of any JWT.
    pub fn text(&self, s: &str) -> String {
        match String::from_utf8(self.bytes(s.as_bytes())) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// The same as [`Redactor::text`] for bytes that may not be UTF-8 (wire captures, bodies).
    pub fn bytes(&self, input: &[u8]) -> Vec<u8> {
        apply(input, self.spans(input))
    }

    /// Like [`Redactor::bytes`] for a capture that was cut off at its end: a trailing fragment that could
    /// be the beginning of a configured secret is masked too, so a cut never leaves half a password.
    pub fn cut_bytes(&self, input: &[u8]) -> Vec<u8> {
        let mut spans = self.spans(input);
        let fragment = self
            .needles
            .iter()
            .filter_map(|needle| {
                (MIN_CUT_FRAGMENT..needle.len().min(input.len() + 1)).rev().find(|&len| input.ends_with(&needle[..len]))
            })
            .max();
        if let Some(len) = fragment {
            spans.push(Span::masked(input.len() - len, input.len()));
        }
        apply(input, spans)
    }

    /// One header value, given its name (e.g. authorization -> `Basic <MASKED>`).
    pub fn header(&self, name: &str, value: &str) -> String {
        match name.trim().to_ascii_lowercase().as_str() {
            "authorization" | "proxy-authorization" => mask_credentials(value),
            "cookie" => mask_cookie_pairs(value),
            "set-cookie" => self.mask_set_cookie(value),
            "x-consent-token" => MASK.to_owned(),
            _ => self.text(value),
        }
    }

    /// The longest configured needle; a stream must keep this much unflushed to see a needle whole.
    fn longest_needle(&self) -> usize {
        self.needles.first().map_or(0, Vec::len)
    }

    /// Every secret span of `input`, from all rules, on the original bytes.
    fn spans(&self, input: &[u8]) -> Vec<Span> {
        let lower = input.to_ascii_lowercase();
        let mut spans = self.header_spans(input, &lower);
        spans.extend(self.needle_spans(input));
        spans.extend(token_param_spans(input, &lower));
        spans.extend(jwt_signature_spans(input));
        spans
    }

    fn needle_spans(&self, input: &[u8]) -> Vec<Span> {
        let mut spans = Vec::new();
        for needle in &self.needles {
            let mut from = 0;
            while let Some(at) = find(&input[from..], needle) {
                spans.push(Span::masked(from + at, from + at + needle.len()));
                from += at + needle.len();
            }
        }
        spans
    }

    /// `Name: value` (also `"name": "value"` as in JSON) for every sensitive header name, value masked.
    fn header_spans(&self, input: &[u8], lower: &[u8]) -> Vec<Span> {
        let mut spans = Vec::new();
        for name in SENSITIVE_HEADERS {
            let mut from = 0;
            while let Some(at) = find(&lower[from..], name.as_bytes()) {
                let start = from + at;
                from = start + name.len();
                // `cookie` inside `set-cookie` is the other header; other names may carry a prefix
                // (`echo_authorization`, `x-consent-token`) and are still secret.
                let inside_set_cookie = *name == "cookie" && start > 0 && is_token_byte(input[start - 1]);
                if inside_set_cookie {
                    continue;
                }
                if let Some((value_start, value_end)) = header_value_after(input, start + name.len()) {
                    let value = String::from_utf8_lossy(&input[value_start..value_end]);
                    let replacement = Cow::Owned(self.header(name, &value));
                    spans.push(Span { start: value_start, end: value_end, replacement });
                }
            }
        }
        spans
    }

    fn mask_set_cookie(&self, value: &str) -> String {
        let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
        let masked = mask_cookie_pairs(pair);
        if attributes.is_empty() { masked } else { format!("{masked};{}", self.text(attributes)) }
    }
}

/// Applies spans to `input`; overlapping spans merge into the first one.
fn apply(input: &[u8], mut spans: Vec<Span>) -> Vec<u8> {
    spans.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut out = Vec::with_capacity(input.len());
    let mut cursor = 0;
    for span in spans {
        if span.end <= cursor {
            continue;
        }
        if span.start >= cursor {
            out.extend_from_slice(&input[cursor..span.start]);
            out.extend_from_slice(span.replacement.as_bytes());
        }
        cursor = span.end;
    }
    out.extend_from_slice(&input[cursor..]);
    out
}

/// After a header name at `at`: optional closing quote, `:` or `=`, blanks, then the value up to the line
/// end (or the closing quote when the value is quoted). Returns the value's byte range.
fn header_value_after(input: &[u8], mut at: usize) -> Option<(usize, usize)> {
    if input.get(at) == Some(&b'"') {
        at += 1;
    }
    at = skip_blanks(input, at);
    if !matches!(input.get(at), Some(b':') | Some(b'=')) {
        return None;
    }
    at = skip_blanks(input, at + 1);
    let (start, end) = if input.get(at) == Some(&b'"') {
        let start = at + 1;
        let mut end = start;
        while end < input.len() && !(input[end] == b'"' && input[end - 1] != b'\\') {
            end += 1;
        }
        (start, end)
    } else {
        let end = input[at..].iter().position(|&b| b == b'\r' || b == b'\n').map_or(input.len(), |p| at + p);
        (at, end)
    };
    (end > start).then_some((start, end))
}

fn skip_blanks(input: &[u8], mut at: usize) -> usize {
    while matches!(input.get(at), Some(b' ') | Some(b'\t')) {
        at += 1;
    }
    at
}

/// `token=value` (also `access_token=`, `X-Consent-Token=` ...): the value up to the next delimiter.
fn token_param_spans(input: &[u8], lower: &[u8]) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(at) = find(&lower[from..], b"token=") {
        let start = from + at + b"token=".len();
        let end = input[start..].iter().position(|b| VALUE_DELIMITERS.contains(b)).map_or(input.len(), |p| start + p);
        if end > start && &input[start..end] != MASK.as_bytes() {
            spans.push(Span::masked(start, end));
        }
        from = end.max(start);
    }
    spans
}

/// `eyJ<header>.<payload>.<signature>`: the signature is masked, header and payload stay readable.
fn jwt_signature_spans(input: &[u8]) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(at) = find(&input[from..], b"eyJ") {
        let start = from + at;
        from = start + 3;
        if start > 0 && (is_base64url_byte(input[start - 1]) || input[start - 1] == b'.') {
            continue;
        }
        let header_end = run_end(input, start);
        if input.get(header_end) != Some(&b'.') {
            continue;
        }
        let payload_end = run_end(input, header_end + 1);
        if payload_end == header_end + 1 || input.get(payload_end) != Some(&b'.') {
            continue;
        }
        let signature_end = run_end(input, payload_end + 1);
        if signature_end > payload_end + 1 {
            spans.push(Span::masked(payload_end + 1, signature_end));
        }
        from = signature_end;
    }
    spans
}

fn run_end(input: &[u8], start: usize) -> usize {
    input[start..].iter().position(|&b| !is_base64url_byte(b)).map_or(input.len(), |p| start + p)
}

fn is_base64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The first occurrence of `needle` (never empty) in `haystack`; SIMD-accelerated, as every byte written to
/// the evidence passes through here several times.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(haystack, needle)
}

/// `Basic abc` -> `Basic <MASKED>`; a value without a scheme is masked whole.
fn mask_credentials(value: &str) -> String {
    match value.trim().split_once(' ') {
        Some((scheme, _)) => format!("{scheme} {MASK}"),
        None => MASK.to_owned(),
    }
}

/// `a=1; b=2` -> `a=<MASKED>; b=<MASKED>`: cookie names stay, they help reading the evidence.
fn mask_cookie_pairs(value: &str) -> String {
    value
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) => format!("{name}={MASK}"),
            None => MASK.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const PASSWORD: &str = "FJjmq/d7EP";

    fn redactor() -> Redactor {
        Redactor::new([PASSWORD.to_owned(), "consent-7f3a9c".to_owned()])
    }

    #[test]
    fn masks_a_configured_secret_in_raw_url_encoded_and_json_escaped_forms() {
        let r = redactor();

        let out = r.text("pw=FJjmq/d7EP q=FJjmq%2Fd7EP l=FJjmq%2fd7EP");

        assert_eq!(out, "pw=<MASKED> q=<MASKED> l=<MASKED>");
    }

    #[test]
    fn masks_a_secret_with_a_quote_in_its_json_escaped_form() {
        let r = Redactor::new(["pa\"ss".to_owned()]);
        let json = serde_json::json!({ "p": "pa\"ss" }).to_string();

        assert_eq!(r.text(&json), r#"{"p":"<MASKED>"}"#);
    }

    #[test]
    fn masks_a_secret_inside_base64_at_every_alignment_and_both_alphabets() {
        let r = redactor();
        for prefix in ["", "u:", "ops:", "user:"] {
            let plain = format!("{prefix}{PASSWORD}");
            for encoded in [
                base64::engine::general_purpose::STANDARD.encode(&plain),
                base64::engine::general_purpose::URL_SAFE.encode(&plain),
            ] {
                let out = r.text(&format!("x-forwarded: {encoded}"));

                assert!(out.contains(MASK), "{prefix:?} {encoded} -> {out}");
                assert!(!out.contains(&encoded), "{out}");
            }
        }
    }

    #[test]
    fn masks_credentials_cookies_and_consent_headers_by_name() {
        let r = Redactor::new(Vec::new());
        let request = "GET / HTTP/1.1\r\nauthorization: Basic b3BzOnNlY3JldA==\r\nCookie: sid=abc; theme=dark\r\n\
                       Set-Cookie: sid=abc; Path=/; HttpOnly\r\nX-Consent-Token: c0ffee\r\nX-Trace-Id: run1\r\n\r\n";

        let out = r.text(request);

        assert!(out.contains("authorization: Basic <MASKED>\r\n"), "{out}");
        assert!(out.contains("Cookie: sid=<MASKED>; theme=<MASKED>\r\n"), "{out}");
        assert!(out.contains("Set-Cookie: sid=<MASKED>; Path=/; HttpOnly\r\n"), "{out}");
        assert!(out.contains("X-Consent-Token: <MASKED>\r\n"), "{out}");
        assert!(out.contains("X-Trace-Id: run1\r\n"), "{out}");
        assert!(!out.contains("b3BzOnNlY3JldA"));
    }

    #[test]
    fn header_masks_by_name_and_applies_text_rules_otherwise() {
        let r = redactor();

        assert_eq!(r.header("Authorization", "Basic b3BzOnNlY3JldA=="), "Basic <MASKED>");
        assert_eq!(r.header("Proxy-Authorization", "opaque"), MASK);
        assert_eq!(r.header("X-Consent-Token", "consent-7f3a9c"), MASK);
        assert_eq!(r.header("Location", "/dl?token=abc&x=1"), "/dl?token=<MASKED>&x=1");
        assert_eq!(r.header("X-Other", "plain"), "plain");
    }

    #[test]
    fn masks_json_header_maps_as_written_in_har_or_logs() {
        let r = Redactor::new(Vec::new());

        let out = r.text(r#"{"Authorization": "Bearer abc.def", "x-consent-token":"zz", "n": 1}"#);

        assert_eq!(out, r#"{"Authorization": "Bearer <MASKED>", "x-consent-token":"<MASKED>", "n": 1}"#);
    }

    #[test]
    fn masks_credentials_under_prefixed_names_such_as_echoed_json_keys() {
        let r = Redactor::new(Vec::new());

        let out = r.text(r#"{"echo_authorization":"Basic b3BzOnB3","x_consent_token": "c"}"#);

        assert_eq!(out, r#"{"echo_authorization":"Basic <MASKED>","x_consent_token": "c"}"#);
    }

    #[test]
    fn masks_token_query_values_and_jwt_signatures_only() {
        let r = Redactor::new(Vec::new());
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwYXQifQ.c2lnbmF0dXJlLWJ5dGVz";

        let out = r.text(&format!("GET /x?a=1&token=s3cr3t&b=2 {{\"t\":\"{jwt}\"}} www.example.com"));

        assert_eq!(
            out,
            "GET /x?a=1&token=<MASKED>&b=2 {\"t\":\"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwYXQifQ.<MASKED>\"} www.example.com"
        );
    }

    #[test]
    fn redaction_is_idempotent() {
        let r = redactor();
        let once = r.text("Authorization: Basic xyz\r\nCookie: a=b\r\n?token=q FJjmq/d7EP");

        assert_eq!(r.text(&once), once);
    }

    #[test]
    fn a_cut_capture_never_ends_in_half_a_secret() {
        let r = redactor();

        assert_eq!(r.cut_bytes(b"Basic xyz FJjmq/d"), b"Basic xyz <MASKED>");
        assert_eq!(r.cut_bytes(b"ends with FJ"), b"ends with FJ", "two bytes are too few to mean anything");
        assert_eq!(r.bytes(b"password FJjmq/d"), b"password FJjmq/d", "only cut captures are treated so");
    }

    #[test]
    fn empty_secrets_are_ignored_and_debug_shows_no_secret() {
        let r = Redactor::new(["".to_owned(), PASSWORD.to_owned()]);

        assert_eq!(r.text("plain text"), "plain text");
        assert!(!format!("{r:?}").contains(PASSWORD));
    }
}
