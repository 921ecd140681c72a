//! Body checks evaluated while the response streams past, without keeping the body.
//!
//! A probe is Ready only when its status is in the ready list and its body checks hold (e.g. PHR-06's
//! answer contains a token). `Contains` keeps only a needle-sized tail between chunks; `JsonField` needs the
//! document, so it keeps at most [`JSON_CHECK_LIMIT`] bytes and fails with a clear message beyond that.

use super::BodyCheck;

/// The largest body a `JsonField` check parses.
pub const JSON_CHECK_LIMIT: usize = 1024 * 1024;

/// Running state of a probe's body checks.
pub struct BodyChecks {
    /// The checks as given by the plan.
    checks: Vec<BodyCheck>,
    /// Per `Contains` check (same order as `checks`), whether the text was seen.
    found: Vec<bool>,
    /// The last bytes of the previous chunk, so a needle split across chunks is still seen.
    tail: Vec<u8>,
    /// The longest `Contains` needle; `tail` keeps one byte less.
    longest: usize,
    /// The body so far, kept only when a JSON check needs it and it fits.
    json: Option<Vec<u8>>,
    /// The body outgrew [`JSON_CHECK_LIMIT`].
    json_overflow: bool,
    /// Bytes seen.
    total: u64,
}

impl BodyChecks {
    /// Starts checking.
    pub fn new(checks: &[BodyCheck]) -> Self {
        let longest = checks
            .iter()
            .filter_map(|c| match c {
                BodyCheck::Contains(text) => Some(text.len()),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let needs_json = checks.iter().any(|c| matches!(c, BodyCheck::JsonField(_)));
        Self {
            found: checks.iter().map(|c| matches!(c, BodyCheck::Contains(text) if text.is_empty())).collect(),
            checks: checks.to_vec(),
            tail: Vec::new(),
            longest,
            json: needs_json.then(Vec::new),
            json_overflow: false,
            total: 0,
        }
    }

    /// Also keeps the body (up to [`JSON_CHECK_LIMIT`]) for [`BodyChecks::json`], even without a JSON check.
    pub fn keeping_json(mut self) -> Self {
        if self.json.is_none() && !self.json_overflow {
            self.json = Some(Vec::new());
        }
        self
    }

    /// The body as JSON, when it was kept (see [`BodyChecks::keeping_json`]); the error says why not.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        match &self.json {
            _ if self.json_overflow => Err(format!("the body is larger than {JSON_CHECK_LIMIT} bytes")),
            Some(body) => serde_json::from_slice(body).map_err(|e| format!("the body is not JSON ({e})")),
            None => Err("the body was not kept".to_owned()),
        }
    }

    /// Feeds the next chunk of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if self.longest > 0 {
            let mut window = std::mem::take(&mut self.tail);
            window.extend_from_slice(chunk);
            for (check, found) in self.checks.iter().zip(self.found.iter_mut()) {
                if let BodyCheck::Contains(text) = check
                    && !*found
                {
                    *found = window.windows(text.len()).any(|w| w == text.as_bytes());
                }
            }
            let keep = self.longest.saturating_sub(1).min(window.len());
            self.tail = window[window.len() - keep..].to_vec();
        }
        if let Some(json) = &mut self.json {
            if json.len() + chunk.len() > JSON_CHECK_LIMIT {
                self.json = None;
                self.json_overflow = true;
            } else {
                json.extend_from_slice(chunk);
            }
        }
    }

    /// One message per failed check; empty when all hold.
    pub fn failures(&self) -> Vec<String> {
        let parsed = self.json.as_ref().map(|body| serde_json::from_slice::<serde_json::Value>(body));
        let mut failures = Vec::new();
        for (check, found) in self.checks.iter().zip(&self.found) {
            match check {
                BodyCheck::Contains(text) if !found => failures.push(format!("body does not contain {text:?}")),
                BodyCheck::Contains(_) => {}
                BodyCheck::MaxBytes(limit) if self.total > *limit => {
                    failures.push(format!("body is {} bytes, more than the allowed {limit}", self.total));
                }
                BodyCheck::MaxBytes(_) => {}
                BodyCheck::JsonField(pointer) => match &parsed {
                    _ if self.json_overflow => failures.push(format!(
                        "body is larger than {JSON_CHECK_LIMIT} bytes; JSON field {pointer} not checked"
                    )),
                    Some(Ok(value)) if value.pointer(pointer).is_some() => {}
                    Some(Ok(_)) => failures.push(format!("JSON field {pointer} is missing")),
                    Some(Err(e)) => failures.push(format!("body is not JSON ({e}); JSON field {pointer} not found")),
                    None => failures.push(format!("JSON field {pointer} not checked")),
                },
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(checks: &[BodyCheck], body: &[u8], chunk: usize) -> Vec<String> {
        let mut state = BodyChecks::new(checks);
        for piece in body.chunks(chunk) {
            state.update(piece);
        }
        state.failures()
    }

    #[test]
    fn contains_finds_text_split_across_chunks() {
        let checks = [BodyCheck::Contains("\"token\"".to_owned())];

        assert!(run(&checks, br#"{"token":"abc"}"#, 3).is_empty());
        assert_eq!(run(&checks, br#"{"other":1}"#, 3), vec![r#"body does not contain "\"token\"""#.to_owned()]);
    }

    #[test]
    fn json_field_uses_a_json_pointer() {
        let checks = [BodyCheck::JsonField("/data/id".to_owned())];

        assert!(run(&checks, br#"{"data":{"id":7}}"#, 4).is_empty());
        assert_eq!(run(&checks, br#"{"data":{}}"#, 4), vec!["JSON field /data/id is missing".to_owned()]);
        assert!(run(&checks, b"<html>", 4)[0].starts_with("body is not JSON"));
    }

    #[test]
    fn max_bytes_counts_the_whole_body() {
        let checks = [BodyCheck::MaxBytes(10)];

        assert!(run(&checks, b"0123456789", 4).is_empty());
        assert_eq!(run(&checks, b"0123456789A", 4), vec!["body is 11 bytes, more than the allowed 10".to_owned()]);
    }

    #[test]
    fn kept_json_is_parsed_without_a_json_check() {
        let mut state = BodyChecks::new(&[]).keeping_json();

        for piece in br#"{"state":"SUCCEEDED"}"#.chunks(5) {
            state.update(piece);
        }

        assert_eq!(state.json(), Ok(serde_json::json!({"state": "SUCCEEDED"})));
        assert!(BodyChecks::new(&[]).json().is_err());
    }

    #[test]
    fn json_check_gives_up_clearly_on_huge_bodies() {
        let body = vec![b' '; JSON_CHECK_LIMIT + 1];

        let failures = run(&[BodyCheck::JsonField("/a".to_owned())], &body, 64 * 1024);

        assert!(failures[0].contains("not checked"), "{failures:?}");
    }
}
