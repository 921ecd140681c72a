//! The `capture` and `poll` keys of a probe: their raw shapes and their validation.
//!
//! Captured variables exist only after the phase that captures them (probes inside a phase may run
//! concurrently), so the validator tracks which captures each phase may use and refuses a probe that
//! uses a variable no earlier phase captures, naming file, line and key like every other mistake.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::BUILTIN_VARIABLES;
use super::validate::{RawPoll, Validator};
use crate::evidence::limits::{MAX_POLL_ATTEMPTS, MAX_POLL_INTERVAL_MS, MAX_POLL_WAIT_MS};
use crate::probe::capture::{Capture, CapturePart};
use crate::probe::poll::{self, Poll};

impl Validator<'_, '_> {
    /// Validates `capture = { name = "/pointer" | { pointer = "/p", part = "path_and_query" } }`.
    pub(super) fn captures(&mut self, raw: &BTreeMap<String, Spanned<toml::Value>>, key: &str) -> Vec<Capture> {
        let mut captures = Vec::new();
        for (variable, value) in raw {
            let entry_key = format!("{key}.capture.{variable}");
            let span = Some(value.span());
            let named_ok = variable.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && variable.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !named_ok {
                self.diag.at(span.clone(), &entry_key, "a variable name is ASCII letters, digits and `_`");
            } else if BUILTIN_VARIABLES.contains(&variable.as_str()) || self.known.contains(variable) {
                self.diag.at(span.clone(), &entry_key, "this variable is already defined; capture into a new name");
            } else if self.captures.earlier.contains(variable) || self.captures.this_phase.contains(variable) {
                self.diag.at(span.clone(), &entry_key, "this variable is already captured by another probe");
            }
            let parsed = match value.get_ref() {
                toml::Value::String(pointer) => Some((pointer.clone(), CapturePart::Whole)),
                toml::Value::Table(table) => self.capture_table(table, span.clone(), &entry_key),
                _ => {
                    self.diag.at(
                        span.clone(),
                        &entry_key,
                        "give a JSON pointer (\"/jobId\") or { pointer = \"/downloadUrl\", part = \"path_and_query\" }",
                    );
                    None
                }
            };
            let Some((pointer, part)) = parsed else { continue };
            if !pointer.starts_with('/') {
                self.diag.at(span, &entry_key, "the pointer is a JSON pointer starting with `/`, e.g. `/jobId`");
            }
            self.captures.this_phase.insert(variable.clone());
            captures.push(Capture { variable: variable.clone(), pointer, part });
        }
        captures
    }

    fn capture_table(
        &mut self,
        table: &toml::Table,
        span: Option<std::ops::Range<usize>>,
        key: &str,
    ) -> Option<(String, CapturePart)> {
        for unknown in table.keys().filter(|k| !["pointer", "part"].contains(&k.as_str())) {
            self.diag.at(span.clone(), format!("{key}.{unknown}"), "unknown key (expected pointer, part)");
        }
        let Some(toml::Value::String(pointer)) = table.get("pointer") else {
            self.diag.at(span, format!("{key}.pointer"), "missing or not a string: the JSON pointer to capture");
            return None;
        };
        let part = match table.get("part") {
            None => CapturePart::Whole,
            Some(toml::Value::String(name)) if CapturePart::parse(name).is_some() => CapturePart::parse(name)?,
            Some(_) => {
                let message = format!("expected one of {}", CapturePart::NAMES);
                self.diag.at(span, format!("{key}.part"), message);
                return None;
            }
        };
        Some((pointer.clone(), part))
    }

    /// Validates `poll = { pointer = "/state", equals = "SUCCEEDED", attempts = 40, interval_ms = 250 }`.
    pub(super) fn poll(&mut self, raw: &RawPoll, key: &str, audit: &[String]) -> Option<Poll> {
        let key = format!("{key}.poll");
        let mut ok = true;
        for action in &raw.audit_each_attempt {
            if !audit.contains(action.get_ref()) {
                let message = format!("`{}` is not in the probe's `audit` list", action.get_ref());
                self.diag.at(Some(action.span()), format!("{key}.audit_each_attempt"), message);
                ok = false;
            }
        }
        if !raw.pointer.get_ref().starts_with('/') {
            self.diag.at(Some(raw.pointer.span()), format!("{key}.pointer"), "a JSON pointer starting with `/`");
            ok = false;
        }
        let equals = match raw.equals.get_ref() {
            toml::Value::String(s) => serde_json::Value::from(s.clone()),
            toml::Value::Integer(i) => serde_json::Value::from(*i),
            toml::Value::Boolean(b) => serde_json::Value::from(*b),
            _ => {
                self.diag.at(Some(raw.equals.span()), format!("{key}.equals"), "a string, integer or boolean");
                ok = false;
                serde_json::Value::Null
            }
        };
        let mut bounded = |value: &Option<Spanned<i64>>, name: &str, range: std::ops::RangeInclusive<i64>| {
            let given = value.as_ref()?;
            if range.contains(given.get_ref()) {
                return Some(*given.get_ref());
            }
            let message = format!("must be between {} and {}", range.start(), range.end());
            self.diag.at(Some(given.span()), format!("{key}.{name}"), message);
            ok = false;
            None
        };
        let attempts = bounded(&raw.attempts, "attempts", 1..=MAX_POLL_ATTEMPTS);
        let interval_ms = bounded(&raw.interval_ms, "interval_ms", 0..=MAX_POLL_INTERVAL_MS);
        let attempts = attempts.and_then(|a| u32::try_from(a).ok()).unwrap_or(poll::DEFAULT_ATTEMPTS);
        let interval =
            interval_ms.and_then(|ms| u64::try_from(ms).ok()).map_or(poll::DEFAULT_INTERVAL, Duration::from_millis);
        let wait_ms = u128::from(attempts) * interval.as_millis();
        if ok && wait_ms > MAX_POLL_WAIT_MS as u128 {
            let span = raw.attempts.as_ref().or(raw.interval_ms.as_ref()).map(Spanned::span);
            let message = format!(
                "{attempts} attempts x {} ms wait {} s in all; at most {} s (one hour) are allowed",
                interval.as_millis(),
                wait_ms / 1000,
                MAX_POLL_WAIT_MS / 1000
            );
            self.diag.at(span, key, message);
            ok = false;
        }
        ok.then(|| Poll {
            pointer: raw.pointer.get_ref().clone(),
            equals,
            attempts,
            interval,
            audit_each_attempt: raw.audit_each_attempt.iter().map(|a| a.get_ref().clone()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::template::{Template, TemplateError};

    const HEAD: &str = "schema_version = 1\nname = \"t\"\nlabel = \"tLabel\"\n";

    fn phase(id: &str, probe: &str, extra: &str) -> String {
        format!(
            "\n[[phases]]\nid = \"{id}\"\nname = \"{id}\"\n\n[[phases.probes]]\nid = \"{probe}\"\nname = \"n\"\n\
             method = \"GET\"\nready = [200]\n{extra}\n"
        )
    }

    /// The problems of a template made of `phases`, one per line.
    fn problems(phases: &[String]) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = format!("{HEAD}{}", phases.concat());
        std::fs::write(dir.path().join("template.toml"), text).expect("write template");
        match Template::load(dir.path()) {
            Ok(_) => String::new(),
            Err(TemplateError::Invalid(problems)) => problems.to_string(),
            Err(other) => panic!("unexpected error kind: {other}"),
        }
    }

    #[test]
    fn captures_and_polls_load_into_the_probe() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = format!(
            "{HEAD}{}{}",
            phase("F1", "a", "path = \"/e\"\ncapture = { job_id = \"/jobId\" }"),
            phase(
                "F2",
                "b",
                "path = \"/s/{{job_id}}\"\npoll = { pointer = \"/state\", equals = \"SUCCEEDED\", attempts = 4, \
                 interval_ms = 10 }\ncapture = { url = { pointer = \"/downloadUrl\", part = \"path_and_query\" } }"
            )
        );
        std::fs::write(dir.path().join("template.toml"), text).expect("write template");

        let template = Template::load(dir.path()).expect("valid");

        let b = &template.phases[1].probes[0];
        assert_eq!(b.captures[0].part, crate::probe::capture::CapturePart::PathAndQuery);
        let poll = b.poll.as_ref().expect("poll");
        assert_eq!((poll.attempts, poll.interval), (4, std::time::Duration::from_millis(10)));
        assert_eq!(poll.equals, serde_json::json!("SUCCEEDED"));
    }

    #[test]
    fn a_variable_captured_in_the_same_phase_is_refused_with_line_and_key() {
        let first = phase("F", "a", "path = \"/e\"\ncapture = { job_id = \"/jobId\" }");
        let same = "\n[[phases.probes]]\nid = \"b\"\nname = \"n\"\nmethod = \"GET\"\nready = [200]\npath = \"/s/{{job_id}}\"\n";

        let message = problems(&[first, same.to_owned()]);

        assert!(message.contains("template.toml:22:"), "{message}");
        assert!(message.contains("phases[F].probes[b].path"), "{message}");
        assert!(message.contains("captured in this same phase"), "{message}");
    }

    #[test]
    fn a_variable_nobody_captures_is_refused() {
        let message = problems(&[phase("F", "a", "path = \"/s/{{job_id}}\"")]);

        assert!(message.contains("template.toml:14:"), "{message}");
        assert!(message.contains("phases[F].probes[a].path"), "{message}");
        assert!(message.contains("undefined variable `{{job_id}}`"), "{message}");
    }

    #[test]
    fn unknown_capture_and_poll_keys_name_line_and_key() {
        let capture = phase("F1", "a", "path = \"/e\"\ncapture = { url = { pointer = \"/u\", prt = \"path\" } }");
        let poll = phase("F2", "b", "path = \"/e\"\npoll = { pointer = \"/state\", equals = \"X\", tries = 3 }");

        let capture_message = problems(std::slice::from_ref(&capture));
        let poll_message = problems(&[poll]);

        assert!(capture_message.contains("template.toml:15:"), "{capture_message}");
        assert!(capture_message.contains("phases[F1].probes[a].capture.url.prt"), "{capture_message}");
        assert!(poll_message.contains("template.toml:15:"), "{poll_message}");
        assert!(poll_message.contains("tries"), "{poll_message}");
    }

    #[test]
    fn bad_poll_and_capture_values_are_each_reported() {
        let probe = phase(
            "F",
            "a",
            "path = \"/e\"\npoll = { pointer = \"state\", equals = 1.5, attempts = 0 }\n\
             capture = { run_id = \"/x\", u = { pointer = \"/u\", part = \"host\" } }",
        );

        let message = problems(&[probe]);

        for key in [
            "phases[F].probes[a].poll.pointer",
            "phases[F].probes[a].poll.equals",
            "phases[F].probes[a].poll.attempts",
            "phases[F].probes[a].capture.run_id",
            "phases[F].probes[a].capture.u.part",
        ] {
            assert!(message.contains(key), "{key} missing in {message}");
        }
    }
}
