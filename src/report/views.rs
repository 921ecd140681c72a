//! Tera templates for the documents of the weekly routine: diff, parity, history, daily/weekly log entries,
//! status-table rows, the self-contained HTML report, the trends page (`history --html`) and the matrix of
//! one template run against several targets.
//!
//! Like the run's own Markdown ([`crate::report`]), these are compiled into the binary and can be replaced
//! file by file from `--templates-dir`. Markdown templates get the same `md` / `md_code` / `oneline`
//! filters, so a `|`, a newline or HTML from a response cannot break a table in the team's logs; the HTML
//! template is autoescaped by tera.

use std::path::Path;

use serde::Serialize;
use tera::{Context, Tera};

use crate::report::ReportError;

/// Every template: file name and embedded default.
pub const VIEWS: &[(&str, &str)] = &[
    ("diff.md.tera", include_str!("../../templates/diff.md.tera")),
    ("parity.md.tera", include_str!("../../templates/parity.md.tera")),
    ("history.md.tera", include_str!("../../templates/history.md.tera")),
    ("daily.md.tera", include_str!("../../templates/daily.md.tera")),
    ("weekly.md.tera", include_str!("../../templates/weekly.md.tera")),
    ("status_row.md.tera", include_str!("../../templates/status_row.md.tera")),
    ("report.html.tera", include_str!("../../templates/report.html.tera")),
    ("history.html.tera", include_str!("../../templates/history.html.tera")),
    ("matrix.md.tera", include_str!("../../templates/matrix.md.tera")),
    ("matrix.html.tera", include_str!("../../templates/matrix.html.tera")),
];

use crate::report::tera_error as template_error;

/// The compiled routine templates.
#[derive(Debug)]
pub struct Views {
    /// tera with every view, the Markdown filters, and autoescape for `.html.tera` only.
    tera: Tera,
}

impl Views {
    /// The embedded templates, with files of the same name in `overrides` taking their place.
    pub fn load(overrides: Option<&Path>) -> Result<Views, ReportError> {
        let tera = crate::report::markdown::compile(VIEWS.iter().copied(), overrides, vec![".html.tera"])?;
        Ok(Views { tera })
    }

    /// Renders one view with a serializable context.
    pub fn render(&self, name: &str, context: &impl Serialize) -> Result<String, ReportError> {
        let context = Context::from_serialize(context).map_err(|e| template_error(name, &e))?;
        self.tera.render(name, &context).map_err(|e| template_error(name, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::diff::{DiffOptions, RunDiff};

    #[test]
    fn every_view_renders_the_sample_run_and_hostile_text_cannot_break_a_table() {
        let views = Views::load(None).expect("views compile");
        let before = crate::evidence::status::sample_status();
        let mut after = before.clone();
        after.probes[0].ready = false;
        after.probes[0].check_failures = vec!["a|b\n<script>x</script>".to_owned()];
        let diff = RunDiff::new((&before, "a".to_owned()), (&after, "b".to_owned()), DiffOptions::default());
        let markdown = views.render("diff.md.tera", &diff).expect("diff renders");
        let row = markdown.lines().find(|l| l.contains("| PHR-06 |")).expect("PHR-06 row");
        assert!(row.contains("a\\|b<br>&lt;script&gt;"), "{row}");
        let zone = crate::report::clock::Zone::default();
        let daily = crate::report::logs::daily(&after, Some(&before), &["PHR: @Codex".to_owned()], zone);
        assert!(views.render("daily.md.tera", &daily).expect("daily renders").contains("#### 連絡先"));
        let row = crate::report::logs::status_row(&after, Some(&before), "@Codex", zone);
        assert_eq!(views.render("status_row.md.tera", &row).expect("row renders").lines().count(), 1);
        let weekly = crate::report::logs::weekly(&[], chrono::NaiveDate::MIN, None, zone);
        views.render("weekly.md.tera", &weekly).expect("weekly renders");
        views.render("history.md.tera", &serde_json::json!({ "rows": [] })).expect("history renders");
        let html = crate::report::html::render(
            &views,
            &after,
            &[crate::report::html::RunLatency::of(&before), crate::report::html::RunLatency::of(&after)],
            zone,
        )
        .expect("html renders");
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
    }
}
