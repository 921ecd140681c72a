//! The Markdown (and curl-style log) an operator pastes into the team's logs, rendered from `status.json`.
//!
//! Templates are tera files in `templates/`, compiled into the binary with `include_str!` and overridable
//! file by file with `--templates-dir`. Rendering reads only the run's status (no network I/O). Every value
//! that came from the network goes through the `md` filter, so a `|`, a newline, a backtick or HTML in a
//! response can neither break a table nor inject markup into the rendered page.

use std::path::{Path, PathBuf};

use tera::{Context, Tera, Value};

use crate::evidence::EvidenceLayout;
use crate::evidence::status::RunStatus;
use crate::report::context::{ReportContext, ReportSettings};

/// Each rendered document: template file name, output path in the run folder, embedded default.
pub const DOCUMENTS: &[(&str, &str, &str)] = &[
    ("README.md.tera", EvidenceLayout::README, include_str!("../../templates/README.md.tera")),
    ("summary.md.tera", EvidenceLayout::SUMMARY, include_str!("../../templates/summary.md.tera")),
    (
        "phr_container_summary.md.tera",
        EvidenceLayout::CONTAINER_SUMMARY,
        include_str!("../../templates/phr_container_summary.md.tera"),
    ),
    ("open_items.md.tera", EvidenceLayout::OPEN_ITEMS, include_str!("../../templates/open_items.md.tera")),
    ("curl_summary.log.tera", EvidenceLayout::CURL_SUMMARY, include_str!("../../templates/curl_summary.log.tera")),
];

/// Why templates could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// An override file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A rendered page could not be written.
    #[error("{}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A template does not parse or render; the message includes tera's cause chain.
    #[error("template {name}: {message}")]
    Template {
        /// Template file name.
        name: String,
        /// tera's message with its causes.
        message: String,
    },
}

/// A tera error as a [`ReportError`] naming the template, with tera's whole cause chain.
pub(crate) fn tera_error(name: &str, error: &tera::Error) -> ReportError {
    ReportError::Template { name: name.to_owned(), message: crate::evidence::text::error_chain(error) }
}

/// A tera registry of `(name, embedded text)` templates, each replaced by the file of that name in
/// `overrides` when there is one, with the Markdown filters; `autoescape` lists the suffixes to HTML-escape.
pub(crate) fn compile<'a>(
    templates: impl IntoIterator<Item = (&'a str, &'a str)>,
    overrides: Option<&Path>,
    autoescape: Vec<&'static str>,
) -> Result<Tera, ReportError> {
    let mut tera = Tera::default();
    tera.autoescape_on(autoescape);
    register_markdown_filters(&mut tera);
    for (name, embedded) in templates {
        let text = template_text(overrides, name, embedded)?;
        tera.add_raw_template(name, &text).map_err(|e| tera_error(name, &e))?;
    }
    Ok(tera)
}

/// The text of template `name`: the file of that name in `overrides` when there is one, else `embedded`.
pub(crate) fn template_text(overrides: Option<&Path>, name: &str, embedded: &str) -> Result<String, ReportError> {
    match overrides.map(|dir| dir.join(name)).filter(|path| path.is_file()) {
        Some(path) => std::fs::read_to_string(&path).map_err(|source| ReportError::Read { path, source }),
        None => Ok(embedded.to_owned()),
    }
}

/// Escapes text for a Markdown table cell or inline Markdown: HTML is entity-encoded, `|`, backticks and link
/// brackets are backslash-escaped, line breaks become `<br>` and other control characters are dropped.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '|' | '`' | '[' | ']' | '\\' | '*' => {
                out.push('\\');
                out.push(c);
            }
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("<br>");
            }
            '\n' => out.push_str("<br>"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Renders text as one inline code span that is safe inside a Markdown table: backticks become `'`, line
/// breaks become spaces and `|` is escaped (GitHub tables split on it even inside code spans).
pub fn markdown_code(text: &str) -> String {
    let inner: String = text
        .chars()
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    format!("`{}`", inner.replace('|', "\\|"))
}

/// Collapses text to one line for plain-text logs (line breaks and control characters become spaces).
pub fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Registers the filters every Markdown document uses: `md` (table cells), `md_code` (inline code),
/// `oneline` (plain-text logs), and `class_ja` / `aspect_ja` (a diff's verdict and aspect in the logs' words).
pub fn register_markdown_filters(tera: &mut Tera) {
    tera.register_filter("md", string_filter(escape_markdown));
    tera.register_filter("md_code", string_filter(markdown_code));
    tera.register_filter("oneline", string_filter(one_line));
    tera.register_filter("class_ja", string_filter(|c| super::wording::change_class_ja(c).to_owned()));
    tera.register_filter("aspect_ja", string_filter(super::wording::aspect_ja));
}

fn string_filter(f: fn(&str) -> String) -> impl tera::Filter {
    move |value: &Value, _: &std::collections::HashMap<String, Value>| -> tera::Result<Value> {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        Ok(Value::String(f(&text)))
    }
}

/// The compiled templates and how the operator wants them filled in.
#[derive(Debug)]
pub struct Reports {
    /// tera with every document and the `md` / `oneline` filters registered.
    tera: Tera,
    /// Time zone, owner and contacts of the documents.
    settings: ReportSettings,
}

impl Reports {
    /// The embedded templates, with files of the same name in `overrides` (if given) taking their place.
    pub fn load(overrides: Option<&Path>) -> Result<Reports, ReportError> {
        let templates = DOCUMENTS.iter().map(|(name, _, embedded)| (*name, *embedded));
        let tera = compile(templates, overrides, Vec::new())?;
        Ok(Reports { tera, settings: ReportSettings::default() })
    }

    /// The same templates filled in for this operator: time zone, owner and contacts.
    pub fn with_settings(mut self, settings: ReportSettings) -> Reports {
        self.settings = settings;
        self
    }

    /// Renders every document for a run; returns (path in the run folder, text).
    pub fn render_all(&self, status: &RunStatus) -> Result<Vec<(&'static str, String)>, ReportError> {
        let context = self.context(status)?;
        DOCUMENTS
            .iter()
            .map(|(name, output, _)| {
                self.tera.render(name, &context).map(|text| (*output, text)).map_err(|e| tera_error(name, &e))
            })
            .collect()
    }

    /// What every document renders from; built once per run and shared by [`Reports::render_to`].
    pub fn context(&self, status: &RunStatus) -> Result<Context, ReportError> {
        self.excerpt_context(status, None)
    }

    /// The context of a run whose `status.probes` lists only what `excerpt` says (a run too large to list
    /// whole); every document then says so.
    pub fn excerpt_context(
        &self,
        status: &RunStatus,
        excerpt: Option<&crate::evidence::spool::Excerpt>,
    ) -> Result<Context, ReportError> {
        Context::from_serialize(ReportContext::excerpted(status, &self.settings, excerpt))
            .map_err(|e| tera_error("context", &e))
    }

    /// Renders one document (its template file name, see [`DOCUMENTS`]) straight into `out`.
    pub fn render_to(&self, name: &str, context: &Context, out: impl std::io::Write) -> Result<(), ReportError> {
        self.tera.render_to(name, context, out).map_err(|e| tera_error(name, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_and_newlines_cannot_break_a_table_row() {
        let escaped = escape_markdown("a|b\nc\r\nd");
        assert_eq!(escaped, "a\\|b<br>c<br>d");
        assert!(!escaped.contains('\n'));
    }

    #[test]
    fn html_is_entity_encoded() {
        assert_eq!(escape_markdown("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
    }

    #[test]
    fn backticks_and_links_are_neutralised() {
        assert_eq!(escape_markdown("`x` [a](http://e)"), "\\`x\\` \\[a\\](http://e)");
    }

    #[test]
    fn code_spans_cannot_be_closed_or_split() {
        assert_eq!(markdown_code("a`b|c\nd"), "`a'b\\|c d`");
    }

    #[test]
    fn one_line_removes_line_breaks() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
    }
}
