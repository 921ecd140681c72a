//! The size of every value and list of a template, checked before anything is resolved or sent.
//!
//! A template that passes `templates check` must not fail later for being too big: a timeout that overflows
//! a deadline, an id too long for a file name, thousands of probes. The checks walk the raw template once,
//! next to the shape checks of the validator, and name the key, the line and the accepted range; the
//! limits themselves are listed in [`crate::evidence::limits`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::{RawPhase, RawProbe, RawTemplate, Validator};
use crate::evidence::limits::{
    BODY_FILE, MAX_HEADERS, MAX_LIST_ITEMS, MAX_NAME_CHARS, MAX_PHASES, MAX_PROBES, MAX_TEXT_CHARS,
    MAX_TIMEOUT_SECONDS, MAX_VALUE_BYTES, MAX_VARIABLES, MIN_TIMEOUT_SECONDS, too_many_bytes, too_many_chars,
};
use crate::evidence::runid::label_problem;

impl Validator<'_, '_> {
    /// A timeout in seconds within [`MIN_TIMEOUT_SECONDS`]..=[`MAX_TIMEOUT_SECONDS`]; `default` when it is
    /// not given or refused (so one bad value is reported once, not again by every probe that inherits it).
    pub(super) fn timeout(&mut self, raw: Option<&Spanned<u64>>, key: &str, default: Duration) -> Duration {
        let Some(given) = raw else { return default };
        let seconds = *given.get_ref();
        if (MIN_TIMEOUT_SECONDS..=MAX_TIMEOUT_SECONDS).contains(&seconds) {
            return Duration::from_secs(seconds);
        }
        let message = format!(
            "{seconds} is out of range: a timeout is {MIN_TIMEOUT_SECONDS} to {MAX_TIMEOUT_SECONDS} seconds \
             (one hour at most; a probe is one request, like curl --max-time)"
        );
        self.diag.at(Some(given.span()), key, message);
        default
    }

    /// The label (it becomes part of every RUN_ID), then every length and count of the template, its phases
    /// and probes.
    pub(super) fn bound_template(&mut self, raw: &RawTemplate) {
        if let Some(problem) = label_problem(raw.label.get_ref()) {
            self.diag.at(Some(raw.label.span()), "label", format!("{problem}, because it becomes part of the RUN_ID"));
        }
        self.max_chars(Some(raw.name.span()), "name", raw.name.get_ref(), MAX_NAME_CHARS);
        if let Some(suite) = &raw.suite {
            self.max_chars(Some(suite.span()), "suite", suite.get_ref(), MAX_NAME_CHARS);
        }
        if let Some(description) = &raw.description {
            self.max_chars(Some(description.span()), "description", description.get_ref(), MAX_TEXT_CHARS);
        }
        self.string_table(&raw.variables, "variables", MAX_VARIABLES, "variables");
        self.string_table(&raw.headers, "headers", MAX_HEADERS, "headers");
        let phases = raw.phases.get_ref();
        if phases.len() > MAX_PHASES {
            let message = format!(
                "{} phases; at most {MAX_PHASES} are allowed (split the run into several templates)",
                phases.len()
            );
            self.diag.at(Some(raw.phases.span()), "phases", message);
        }
        let mut probes =
            raw.serverinfo.iter().map(|p| ("serverinfo".to_owned(), p)).chain(phases.iter().flat_map(|phase| {
                phase
                    .probes
                    .iter()
                    .map(move |p| (format!("phases[{}].probes[{}]", phase.id.get_ref(), p.id.get_ref()), p))
            }));
        if let Some((key, probe)) = probes.nth(MAX_PROBES) {
            let message = format!(
                "the template has more than {MAX_PROBES} probes (this is the first one over); split the run into \
                 several templates"
            );
            self.diag.at(Some(probe.id.span()), key, message);
        }
        if let Some(serverinfo) = &raw.serverinfo {
            self.bound_probe(serverinfo, "serverinfo");
        }
        for phase in phases {
            self.bound_phase(phase);
        }
    }

    fn bound_phase(&mut self, phase: &RawPhase) {
        let key = format!("phases[{}]", phase.id.get_ref());
        self.max_chars(Some(phase.id.span()), &format!("{key}.id"), phase.id.get_ref(), MAX_NAME_CHARS);
        self.max_chars(Some(phase.name.span()), &format!("{key}.name"), phase.name.get_ref(), MAX_TEXT_CHARS);
        let first_over = phase.audit.get(MAX_LIST_ITEMS).map(Spanned::span);
        self.max_count(first_over, &format!("{key}.audit"), phase.audit.len(), MAX_LIST_ITEMS, "audit queries");
        for probe in &phase.probes {
            self.bound_probe(probe, &format!("{key}.probes[{}]", probe.id.get_ref()));
        }
    }

    fn bound_probe(&mut self, probe: &RawProbe, key: &str) {
        self.max_chars(Some(probe.id.span()), &format!("{key}.id"), probe.id.get_ref(), MAX_NAME_CHARS);
        self.max_chars(Some(probe.name.span()), &format!("{key}.name"), probe.name.get_ref(), MAX_TEXT_CHARS);
        if let Some(memo) = &probe.memo {
            self.max_chars(Some(memo.span()), &format!("{key}.memo"), memo.get_ref(), MAX_TEXT_CHARS);
        }
        self.max_bytes(Some(probe.path.span()), &format!("{key}.path"), probe.path.get_ref(), MAX_VALUE_BYTES);
        self.string_table(&probe.headers, &format!("{key}.headers"), MAX_HEADERS, "headers");
        let ready = probe.ready.get_ref();
        self.max_count(Some(probe.ready.span()), &format!("{key}.ready"), ready.len(), MAX_LIST_ITEMS, "statuses");
        let first_check = probe.checks.get(MAX_LIST_ITEMS).map(Spanned::span);
        self.max_count(first_check, &format!("{key}.checks"), probe.checks.len(), MAX_LIST_ITEMS, "checks");
        for check in &probe.checks {
            let text = check.get_ref().contains.iter().chain(&check.get_ref().json_field);
            for text in text {
                self.max_bytes(Some(check.span()), &format!("{key}.checks"), text, MAX_VALUE_BYTES);
            }
        }
        let first_action = probe.audit.get(MAX_LIST_ITEMS).map(Spanned::span);
        self.max_count(first_action, &format!("{key}.audit"), probe.audit.len(), MAX_LIST_ITEMS, "audit actions");
        for action in &probe.audit {
            self.max_chars(Some(action.span()), &format!("{key}.audit"), action.get_ref(), MAX_NAME_CHARS);
        }
        let first_capture = probe.capture.values().nth(MAX_LIST_ITEMS).map(Spanned::span);
        self.max_count(first_capture, &format!("{key}.capture"), probe.capture.len(), MAX_LIST_ITEMS, "captures");
        for (name, value) in &probe.capture {
            self.max_chars(Some(value.span()), &format!("{key}.capture"), name, MAX_NAME_CHARS);
            let pointer = match value.get_ref() {
                toml::Value::String(pointer) => Some(pointer.as_str()),
                toml::Value::Table(table) => table.get("pointer").and_then(toml::Value::as_str),
                _ => None,
            };
            if let Some(pointer) = pointer {
                self.max_bytes(Some(value.span()), &format!("{key}.capture.{name}"), pointer, MAX_VALUE_BYTES);
            }
        }
        if let Some(poll) = &probe.poll {
            let key = format!("{key}.poll");
            let each = &poll.audit_each_attempt;
            let first_over = each.get(MAX_LIST_ITEMS).map(Spanned::span);
            self.max_count(first_over, &format!("{key}.audit_each_attempt"), each.len(), MAX_LIST_ITEMS, "actions");
            self.max_bytes(
                Some(poll.pointer.span()),
                &format!("{key}.pointer"),
                poll.pointer.get_ref(),
                MAX_VALUE_BYTES,
            );
            if let toml::Value::String(equals) = poll.equals.get_ref() {
                self.max_bytes(Some(poll.equals.span()), &format!("{key}.equals"), equals, MAX_VALUE_BYTES);
            }
        }
    }

    /// Refuses a body file larger than [`BODY_FILE`] (by its size: nothing is read at validation time).
    pub(super) fn bound_body_file(&mut self, path: &Path, span: Range<usize>, key: &str) {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        if size > BODY_FILE.max_bytes {
            self.diag.at(Some(span), key, format!("{}: {}", path.display(), BODY_FILE.refusal(size, false)));
        }
    }

    /// A `name = "value"` table: at most `max_entries`, names of at most [`MAX_NAME_CHARS`], values of at
    /// most [`MAX_VALUE_BYTES`].
    fn string_table(&mut self, table: &BTreeMap<String, Spanned<String>>, key: &str, max_entries: usize, what: &str) {
        let first_over = table.values().nth(max_entries).map(Spanned::span);
        self.max_count(first_over, key, table.len(), max_entries, what);
        for (name, value) in table {
            let entry = format!("{key}.{}", shorten(name));
            self.max_chars(Some(value.span()), &entry, name, MAX_NAME_CHARS);
            self.max_bytes(Some(value.span()), &entry, value.get_ref(), MAX_VALUE_BYTES);
        }
    }

    fn max_chars(&mut self, span: Option<Range<usize>>, key: &str, text: &str, max: usize) {
        if let Some(message) = too_many_chars(text, max) {
            self.diag.at(span, key, message);
        }
    }

    fn max_bytes(&mut self, span: Option<Range<usize>>, key: &str, text: &str, max: usize) {
        if let Some(message) = too_many_bytes(text, max) {
            self.diag.at(span, key, message);
        }
    }

    fn max_count(&mut self, span: Option<Range<usize>>, key: &str, count: usize, max: usize, what: &str) {
        if count > max {
            self.diag.at(span, key, format!("{count} {what}; at most {max} are allowed"));
        }
    }
}

/// A name as a key shows it: long names are cut so the message stays one readable line.
fn shorten(name: &str) -> String {
    match name.char_indices().nth(MAX_NAME_CHARS) {
        Some((at, _)) => format!("{}…", &name[..at]),
        None => name.to_owned(),
    }
}
