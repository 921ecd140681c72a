//! Captures: values a probe takes from its JSON response into run variables that later phases use.
//!
//! Some flows cannot be written as fixed paths: an export answers with a job id, its status with a signed
//! download URL, and the next probes must use exactly those. A template says
//! `capture = { job_id = "/jobId" }` (a JSON pointer) or, for an absolute URL that must be sent to the
//! target's own base URL, `capture = { artifact = { pointer = "/downloadUrl", part = "path_and_query" } }`.
//! The template check makes sure a variable is only used in a phase after the one that captures it; at run
//! time a value that could not be captured turns each probe that needs it into a recorded outcome.
//!
//! Captured values may be secrets (a signed URL's token): they live only in memory here, and whatever
//! the harness writes about them passes through the [`crate::redact::Redactor`].

use std::collections::BTreeMap;

use crate::probe::placeholder;
use crate::probe::{ProbeBody, ProbeSpec};

/// One value a probe captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The run variable it fills, used as `{{variable}}` by later phases.
    pub variable: String,
    /// RFC 6901 pointer into the JSON response body, e.g. `/jobId`.
    pub pointer: String,
    /// Which part of the value to keep.
    pub part: CapturePart,
}

/// Which part of a captured value is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapturePart {
    /// The value as it is (strings unquoted, numbers and booleans as written).
    Whole,
    /// Path and query of an absolute URL, so the next request goes to the target's base URL with its mTLS
    /// identity whatever host the server put in the URL.
    PathAndQuery,
}

impl CapturePart {
    /// The template spellings, for error messages.
    pub const NAMES: &'static str = "whole, path_and_query";

    /// Parses the template spelling.
    pub fn parse(name: &str) -> Option<CapturePart> {
        match name {
            "whole" => Some(CapturePart::Whole),
            "path_and_query" => Some(CapturePart::PathAndQuery),
            _ => None,
        }
    }
}

impl Capture {
    /// The value this capture takes from `json`, or why it cannot (the message names the variable and
    /// pointer, never the value, which may be a secret).
    pub fn extract(&self, json: &serde_json::Value) -> Result<String, String> {
        let fail = |why: &str| format!("capture {} from {}: {why}", self.variable, self.pointer);
        let value = match json.pointer(&self.pointer) {
            None | Some(serde_json::Value::Null) => return Err(fail("missing in the response")),
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(scalar @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => scalar.to_string(),
            Some(_) => return Err(fail("is an object or array, not a single value")),
        };
        if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail("is empty or holds spaces or control characters"));
        }
        match self.part {
            CapturePart::Whole => Ok(value),
            CapturePart::PathAndQuery => {
                let uri: http::Uri = value.parse().map_err(|_| fail("is not a URL"))?;
                match (uri.scheme(), uri.path_and_query()) {
                    (Some(_), Some(path)) => Ok(path.as_str().to_owned()),
                    _ => Err(fail("is not an absolute URL")),
                }
            }
        }
    }
}

/// Variables captured so far in one run. Debug shows the names only: the values may be secrets.
#[derive(Clone, Default)]
pub struct Captured {
    /// Variable name to captured value.
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Captured {
    /// Takes each capture's value from a probe's JSON body (`json` is the body or why there is none);
    /// returns one message per capture that failed. A failed capture leaves its variable unset.
    pub fn take(&mut self, captures: &[Capture], json: &Result<serde_json::Value, String>) -> Vec<String> {
        let mut failures = Vec::new();
        for capture in captures {
            let value = match json {
                Ok(json) => capture.extract(json),
                Err(why) => Err(format!("capture {} from {}: {why}", capture.variable, capture.pointer)),
            };
            match value {
                Ok(value) => {
                    self.values.insert(capture.variable.clone(), value);
                }
                Err(message) => failures.push(message),
            }
        }
        failures
    }

    /// Adds the values of `other` (captured by another probe of the same phase).
    pub fn merge(&mut self, other: Captured) {
        self.values.extend(other.values);
    }

    /// The names of the variables holding a value (the values may be secrets and are not shown).
    pub fn names(&self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }

    /// Whether `variable` holds a value.
    pub fn contains(&self, variable: &str) -> bool {
        self.values.contains_key(variable)
    }

    /// `spec` with the captured variables it `needs` filled into its URL, header values and inline body;
    /// the error names the first variable that was not captured.
    pub fn resolve(&self, spec: &ProbeSpec, needs: &[String]) -> Result<ProbeSpec, String> {
        if let Some(missing) = needs.iter().find(|n| !self.contains(n)) {
            return Err(format!("variable {missing} was not captured"));
        }
        let fill = |text: &str| {
            placeholder::substitute(text, |name| self.values.get(name).cloned(), str::to_owned)
                .map_err(|name| format!("variable {name} was not captured"))
        };
        let mut resolved = spec.clone();
        resolved.url = fill(&spec.url)?;
        for (_, value) in &mut resolved.headers {
            *value = fill(value)?;
        }
        if let ProbeBody::Inline(bytes) = &spec.body
            && let Ok(text) = std::str::from_utf8(bytes)
        {
            resolved.body = ProbeBody::Inline(fill(text)?.into_bytes());
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn capture(variable: &str, pointer: &str, part: CapturePart) -> Capture {
        Capture { variable: variable.to_owned(), pointer: pointer.to_owned(), part }
    }

    fn spec(url: &str) -> ProbeSpec {
        ProbeSpec {
            id: "F3".to_owned(),
            name: "artifact".to_owned(),
            phase: "F3".to_owned(),
            method: http::Method::GET,
            url: url.to_owned(),
            headers: vec![("X-Job".to_owned(), "{{job_id}}".to_owned())],
            body: ProbeBody::Inline(br#"{"job":"{{job_id}}"}"#.to_vec()),
            ready_statuses: vec![200],
            body_checks: Vec::new(),
            audit_expected: Vec::new(),
            timeout: std::time::Duration::from_secs(5),
        }
    }

    #[test]
    fn path_and_query_drops_scheme_and_host() {
        let body = json!({"downloadUrl": "https://phr.example:8443/a/export/7/artifact?expires=1&token=abc"});

        let value = capture("artifact", "/downloadUrl", CapturePart::PathAndQuery).extract(&body);

        assert_eq!(value.as_deref(), Ok("/a/export/7/artifact?expires=1&token=abc"));
    }

    #[test]
    fn whole_values_keep_strings_and_numbers() {
        let body = json!({"jobId": "j-1", "count": 3});

        assert_eq!(capture("job_id", "/jobId", CapturePart::Whole).extract(&body).as_deref(), Ok("j-1"));
        assert_eq!(capture("n", "/count", CapturePart::Whole).extract(&body).as_deref(), Ok("3"));
    }

    #[test]
    fn failures_name_variable_and_pointer_but_not_the_value() {
        let body = json!({"downloadUrl": "not a url secret-token", "nested": {"a": 1}});

        let relative = capture("artifact", "/downloadUrl", CapturePart::PathAndQuery).extract(&body);
        let missing = capture("job_id", "/jobId", CapturePart::Whole).extract(&body);
        let object = capture("n", "/nested", CapturePart::Whole).extract(&body);

        let relative = relative.expect_err("spaces refused");
        assert!(relative.starts_with("capture artifact from /downloadUrl"), "{relative}");
        assert!(!relative.contains("secret-token"), "{relative}");
        assert_eq!(missing, Err("capture job_id from /jobId: missing in the response".to_owned()));
        assert!(object.expect_err("object refused").contains("object or array"));
    }

    #[test]
    fn resolve_fills_url_headers_and_body() {
        let mut captured = Captured::default();
        let failures = captured.take(&[capture("job_id", "/jobId", CapturePart::Whole)], &Ok(json!({"jobId": "j-9"})));

        let resolved = captured.resolve(&spec("https://h/status/{{job_id}}"), &["job_id".to_owned()]);

        assert!(failures.is_empty(), "{failures:?}");
        let resolved = resolved.expect("captured");
        assert_eq!(resolved.url, "https://h/status/j-9");
        assert_eq!(resolved.headers, vec![("X-Job".to_owned(), "j-9".to_owned())]);
        assert_eq!(resolved.body, ProbeBody::Inline(br#"{"job":"j-9"}"#.to_vec()));
    }

    #[test]
    fn a_missing_capture_is_named_when_resolving() {
        let mut captured = Captured::default();
        let failures = captured.take(&[capture("job_id", "/jobId", CapturePart::Whole)], &Err("no body".to_owned()));

        let resolved = captured.resolve(&spec("https://h/status/{{job_id}}"), &["job_id".to_owned()]);

        assert_eq!(failures, vec!["capture job_id from /jobId: no body".to_owned()]);
        assert_eq!(resolved.expect_err("not captured"), "variable job_id was not captured");
        assert_eq!(format!("{captured:?}"), "{}");
    }
}
