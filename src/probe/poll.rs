//! Polls: a probe repeated until a JSON pointer in its response equals a value (e.g. an export job's
//! `/state` becomes `SUCCEEDED`).
//!
//! An operator used to re-run the same curl until the job was done; a polled probe does that with a fixed
//! number of attempts and pause. Every attempt writes the probe's usual evidence over the previous one,
//! so the folder keeps the final attempt, numbered in `status.txt` and `status.json` (`attempts`). A poll
//! that never matches is not Ready, with a check failure saying what was last seen.

use std::path::Path;
use std::time::Duration;

use crate::probe::{Inspect, Inspected, ProbeClient, ProbeSpec};
use crate::redact::Redactor;

/// Attempts when a template does not say.
pub const DEFAULT_ATTEMPTS: u32 = 20;
/// Pause between attempts when a template does not say.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);

/// How a probe is repeated.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    /// RFC 6901 pointer into the JSON response body, e.g. `/state`.
    pub pointer: String,
    /// The value that ends the poll (a string, number or boolean).
    pub equals: serde_json::Value,
    /// Requests sent at most (at least 1).
    pub attempts: u32,
    /// Pause between two attempts.
    pub interval: Duration,
    /// Audit actions (of the probe's `audit` list) that every attempt writes, so the run expects one row
    /// per attempt; the probe's other actions are expected once (e.g. a signed URL issued only when the
    /// job is done).
    pub audit_each_attempt: Vec<String>,
}

impl Poll {
    /// `Ok` when the body has the awaited value; otherwise what was seen instead (for the check failure).
    pub fn check(&self, json: &Result<serde_json::Value, String>) -> Result<(), String> {
        match json {
            Err(why) => Err(why.clone()),
            Ok(json) => match json.pointer(&self.pointer) {
                Some(value) if *value == self.equals => Ok(()),
                Some(value) => Err(format!("{} was {value}", self.pointer)),
                None => Err(format!("{} was missing", self.pointer)),
            },
        }
    }

    /// Sends `spec` until the awaited value appears or the attempts run out, pausing `interval` between
    /// attempts. The result is the last attempt; when it did not match, it is not Ready and says why (the
    /// text passes through `redactor`, as the seen value comes from the network).
    pub async fn run(
        &self,
        client: &ProbeClient,
        spec: &ProbeSpec,
        run_id: &str,
        run_dir: &Path,
        redactor: &Redactor,
    ) -> Inspected {
        let attempts = self.attempts.max(1);
        let mut attempt = 1;
        loop {
            let inspect = Inspect { keep_json: true, attempt: Some(attempt) };
            let mut inspected = client.run_inspected(spec, run_id, run_dir, inspect).await;
            let seen = self.check(&inspected.json);
            if seen.is_ok() {
                return inspected;
            }
            if attempt >= attempts {
                if let Err(seen) = seen {
                    let message = format!(
                        "poll: {} did not become {} in {attempts} attempts (last: {seen})",
                        self.pointer, self.equals
                    );
                    inspected.record.ready = false;
                    inspected.record.check_failures.push(redactor.text(&message));
                    client.rewrite_status(&mut inspected.record, run_id, run_dir).await;
                }
                return inspected;
            }
            attempt += 1;
            tokio::time::sleep(self.interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn poll() -> Poll {
        Poll {
            pointer: "/state".to_owned(),
            equals: json!("SUCCEEDED"),
            attempts: 3,
            interval: DEFAULT_INTERVAL,
            audit_each_attempt: Vec::new(),
        }
    }

    #[test]
    fn matches_only_the_awaited_value() {
        assert_eq!(poll().check(&Ok(json!({"state": "SUCCEEDED"}))), Ok(()));
        assert_eq!(poll().check(&Ok(json!({"state": "RUNNING"}))), Err("/state was \"RUNNING\"".to_owned()));
        assert_eq!(poll().check(&Ok(json!({}))), Err("/state was missing".to_owned()));
        assert_eq!(poll().check(&Err("the body is not JSON".to_owned())), Err("the body is not JSON".to_owned()));
    }

    #[test]
    fn numbers_and_strings_differ() {
        let numeric = Poll { equals: json!(3), ..poll() };

        assert_eq!(numeric.check(&Ok(json!({"state": 3}))), Ok(()));
        assert!(numeric.check(&Ok(json!({"state": "3"}))).is_err());
    }
}
