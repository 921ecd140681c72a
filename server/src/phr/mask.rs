//! Access keys as audit rows may show them: the last four characters, never the key.
//!
//! `d_audit_event` is append-only and can never be purged, so a PHR access key (or a failed guess at one)
//! must not reach it. The pipeline masks the request path it records as `resource`, and the key endpoints
//! record the suffix as `accessKeySuffix`; both use these two functions. A leaf of `phr/`.

use std::borrow::Cow;

/// The last four characters of an access key, for audit rows; `None` for keys too short to hide the rest.
pub fn access_key_suffix(access_key: &str) -> Option<String> {
    let count = access_key.chars().count();
    (count >= 8).then(|| access_key.chars().skip(count - 4).collect())
}

/// The path as the audit row's `resource` records it: whatever follows an `accessKey` segment (PHR-03's
/// `/accessKey/{key}`, in any letter case, and anything below it that the router refused) becomes `****`
/// plus the key's last four characters, as in `accessKeySuffix`, so no row holds an access key, not even a
/// failed guess.
pub fn mask_access_key(path: &str) -> Cow<'_, str> {
    let mut offset = 0;
    for segment in path.split('/') {
        offset += segment.len() + 1;
        if segment.eq_ignore_ascii_case("accessKey") && offset < path.len() {
            let key = percent_encoding::percent_decode_str(&path[offset..]).decode_utf8_lossy();
            let suffix = access_key_suffix(&key).unwrap_or_default();
            return Cow::Owned(format!("{}****{suffix}", &path[..offset]));
        }
    }
    Cow::Borrowed(path)
}
