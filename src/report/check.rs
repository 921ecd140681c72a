//! `connrun templates check` for the Markdown and HTML templates: every template, built-in or overridden,
//! is compiled and rendered against sample runs, and every `*.tera` file in `--templates-dir` must be one
//! connrun knows.
//!
//! A template that only parses can still fail when rendered (a misspelt variable), and a misspelt file name
//! is silently ignored by rendering (the built-in template is used instead). Both used to pass the check and
//! fail or mislead later, in `report daily` or in a pasted log; the check now finds them first.

use std::path::Path;

use serde::Serialize;
use tera::{Context, Tera};

use crate::compare::diff::{DiffOptions, RunDiff};
use crate::compare::parity::{ParityReport, ParityRow, SideRef};
use crate::compare::runindex::LoadedRun;
use crate::evidence::status::{RunStatus, sample_status};
use crate::report::clock::Zone;
use crate::report::context::{ReportContext, ReportSettings};
use crate::report::matrix::{self, TargetResult};
use crate::report::views::VIEWS;
use crate::report::{DOCUMENTS, history, html, logs, register_markdown_filters, template_text, tera_error, trends};

/// One line of the check: a template (or a stray file) and whether it is usable.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateCheck {
    /// Template file name, e.g. `daily.md.tera`.
    pub name: String,
    /// `built-in`, `override` or `unknown`.
    pub source: &'static str,
    /// It compiles and renders the sample runs.
    pub ok: bool,
    /// What is wrong, when it is not ok.
    pub error: Option<String>,
}

/// Every template file name connrun renders.
pub fn known_names() -> Vec<&'static str> {
    DOCUMENTS.iter().map(|(name, _, _)| *name).chain(VIEWS.iter().map(|(name, _)| *name)).collect()
}

/// Checks every template (overrides from `overrides` in place of the built-in ones) and every `*.tera`
/// file in `overrides`; one entry per template, then one per unknown file.
pub fn check_templates(overrides: Option<&Path>) -> Vec<TemplateCheck> {
    let samples = Samples::new();
    let embedded = DOCUMENTS.iter().map(|(name, _, text)| (*name, *text)).chain(VIEWS.iter().copied());
    let mut results: Vec<TemplateCheck> = embedded
        .map(|(name, text)| {
            let overridden = overrides.is_some_and(|dir| dir.join(name).is_file());
            let rendered = template_text(overrides, name, text).and_then(|text| render_sample(name, &text, &samples));
            TemplateCheck {
                name: name.to_owned(),
                source: if overridden { "override" } else { "built-in" },
                ok: rendered.is_ok(),
                error: rendered.err().map(|e| e.to_string()),
            }
        })
        .collect();
    if let Some(dir) = overrides {
        results.extend(unknown_files(dir));
    }
    results
}

/// `*.tera` files in the overrides folder that are no template's name, or the folder itself when missing.
fn unknown_files(dir: &Path) -> Vec<TemplateCheck> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            return vec![TemplateCheck {
                name: dir.display().to_string(),
                source: "unknown",
                ok: false,
                error: Some(format!("--templates-dir {}: {error}", dir.display())),
            }];
        }
    };
    let known = known_names();
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tera") && !known.contains(&name.as_str()))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| TemplateCheck {
            error: Some(format!(
                "{}: not a template connrun renders, so it would be ignored; known names: {}",
                dir.join(&name).display(),
                known.join(", ")
            )),
            name,
            source: "unknown",
            ok: false,
        })
        .collect()
}

/// The sample runs every template is rendered against: a run and the run before it.
struct Samples {
    /// The earlier run (the sample as it is).
    before: RunStatus,
    /// The later run: a probe that regressed with hostile text.
    after: RunStatus,
    /// The zone of the displayed times.
    zone: Zone,
    /// Owner and contacts, so the blocks that show them render too.
    settings: ReportSettings,
}

impl Samples {
    fn new() -> Samples {
        let before = sample_status();
        let mut after = before.clone();
        after.run_id = "20251120TorcaPHRSeqZ1".to_owned();
        after.probes[0].ready = false;
        after.probes[0].http_status = Some(401);
        let contacts = vec!["PHR 実装: @Codex (#server-modernized)".to_owned()];
        let settings = ReportSettings { zone: Zone::default(), owner: Some("@Codex".to_owned()), contacts };
        Samples { before, after, zone: Zone::default(), settings }
    }

    /// The context template `name` renders from.
    fn context(&self, name: &str) -> Result<Context, tera::Error> {
        let (before, after, zone) = (&self.before, &self.after, self.zone);
        match name {
            "diff.md.tera" => Context::from_serialize(RunDiff::new(
                (before, "a".to_owned()),
                (after, "b".to_owned()),
                DiffOptions::default(),
            )),
            "parity.md.tera" => Context::from_serialize(sample_parity(before)),
            "history.md.tera" => Context::from_serialize(serde_json::json!({
                "rows": [history::row(after, Some(before), zone), history::row(before, None, zone)]
            })),
            "daily.md.tera" => Context::from_serialize(logs::daily(after, Some(before), &self.settings.contacts, zone)),
            "weekly.md.tera" => {
                let runs: Vec<LoadedRun> = [before, after]
                    .into_iter()
                    .map(|status| LoadedRun { dir: std::path::PathBuf::new(), status: status.clone(), parity: None })
                    .collect();
                Context::from_serialize(logs::weekly(&runs, zone.date(after.started_at), None, zone))
            }
            "status_row.md.tera" => Context::from_serialize(logs::status_row(after, Some(before), "@Codex", zone)),
            "report.html.tera" => {
                let series = [html::RunLatency::of(before), html::RunLatency::of(after)];
                Context::from_serialize(html::context(after, &series, zone, Vec::new()))
            }
            "history.html.tera" => {
                let runs = [before, after].map(|status| LoadedRun {
                    dir: std::path::PathBuf::new(),
                    status: status.clone(),
                    parity: None,
                });
                Context::from_serialize(trends::page(&runs, None, 20, zone))
            }
            "matrix.md.tera" | "matrix.html.tera" => {
                let results = [
                    ("clinic-a".to_owned(), TargetResult::Ran(before)),
                    ("clinic-b".to_owned(), TargetResult::Ran(after)),
                    ("clinic-c".to_owned(), TargetResult::Failed("no target named `clinic-c` | <x>".to_owned())),
                ];
                let folder = format!("artifacts/{}/matrix/20251119T013000Z/", before.suite);
                Context::from_serialize(matrix::build(
                    &before.template,
                    &before.suite,
                    &folder,
                    &results,
                    after.started_at,
                    zone,
                ))
            }
            _ => Context::from_serialize(ReportContext::new(after, &self.settings)),
        }
    }
}

fn sample_parity(status: &RunStatus) -> ParityReport {
    let side = |target: &str| SideRef {
        target: target.to_owned(),
        base_url: status.base_url.clone(),
        ready: "1/2".to_owned(),
        evidence: format!("artifacts/{}/{}/{target}/", status.suite, status.run_id),
    };
    let row = ParityRow {
        id: "PHR-06".to_owned(),
        name: "identityToken | <x>".to_owned(),
        left_http: "200".to_owned(),
        right_http: "401".to_owned(),
        header_differences: vec!["content-type: a ≠ b".to_owned()],
        body: "JSON: /a: 1 ≠ 2".to_owned(),
        body_differs: true,
        equal: false,
    };
    ParityReport {
        run_id: status.run_id.clone(),
        template: status.template.clone(),
        left: side("legacy"),
        right: side("modern"),
        headers: vec!["content-type".to_owned()],
        ignored: vec!["generatedAt".to_owned()],
        rows: vec![row],
        differences: 1,
    }
}

/// Compiles `text` as template `name` on its own and renders it against the samples.
fn render_sample(name: &str, text: &str, samples: &Samples) -> Result<String, crate::report::ReportError> {
    let mut tera = Tera::default();
    tera.autoescape_on(vec![".html.tera"]);
    register_markdown_filters(&mut tera);
    tera.add_raw_template(name, text).map_err(|e| tera_error(name, &e))?;
    let context = samples.context(name).map_err(|e| tera_error(name, &e))?;
    tera.render(name, &context).map_err(|e| tera_error(name, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_template_renders_the_samples() {
        let results = check_templates(None);
        assert_eq!(results.len(), known_names().len());
        for result in &results {
            assert!(result.ok, "{}: {:?}", result.name, result.error);
        }
    }

    #[test]
    fn a_template_that_parses_but_does_not_render_fails() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("weekly.md.tera"), "{{ no_such_variable.field }}").expect("write");
        let results = check_templates(Some(dir.path()));
        let weekly = results.iter().find(|r| r.name == "weekly.md.tera").expect("weekly");
        assert!(!weekly.ok && weekly.source == "override", "{weekly:?}");
    }
}
