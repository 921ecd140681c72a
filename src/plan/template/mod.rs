//! Run templates (`run-templates/<name>/template.toml`): what a connectivity run sends, phase by phase.
//!
//! A template is parsed raw with serde (`deny_unknown_fields`, values wrapped in `toml::Spanned` so their
//! line is known) and then validated once into a typed [`Template`]: methods, status lists, header names,
//! file references (`bodies/`, `audit/`) and every `{{variable}}` are checked here, so that nothing about the
//! template can go wrong after the first request has been sent. Every mistake names file, line and key.

mod flow;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::evidence::limits::{self, BoundedReadError, TEMPLATE_FILE};
use crate::plan::diag::{Collector, Problem, Problems};
use crate::probe::BodyCheck;
use validate::{RawTemplate, Validator};

/// The template schema this version of connrun understands.
pub const SCHEMA_VERSION: u32 = 1;
/// Suite (folder under `artifacts/`) used when a template does not name one.
pub const DEFAULT_SUITE: &str = "orca-connectivity";
/// Variables every template may use without declaring them; filled in per run.
pub const BUILTIN_VARIABLES: &[&str] = &["run_id", "date", "suite", "template", "target"];
/// Extra placeholders available in audit SQL: the phase's time window.
pub const SQL_WINDOW_VARIABLES: &[&str] = &["since", "until"];
/// Headers the probe client sets itself; a template may not set them.
pub(crate) const RESERVED_HEADERS: &[&str] =
    &["authorization", "host", "content-length", "transfer-encoding", "connection"];
pub(crate) const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

/// A validated run template.
#[derive(Debug, Clone)]
pub struct Template {
    /// The template folder; body and SQL files are resolved inside it.
    pub dir: PathBuf,
    /// Schema version the file declared.
    pub schema_version: u32,
    /// Template name, e.g. `phr-seq`.
    pub name: String,
    /// One-line purpose, shown in the run README.
    pub description: String,
    /// Default RUN_ID label, e.g. `orcaPHRSeq`.
    pub label: String,
    /// Folder under `artifacts/` that holds its runs.
    pub suite: String,
    /// Declared variables and their defaults (may reference built-in variables).
    pub variables: BTreeMap<String, String>,
    /// The server-info probe, if the template has one.
    pub serverinfo: Option<Probe>,
    /// Phases in the order they run.
    pub phases: Vec<Phase>,
}

/// One phase: audit queries around a group of probes.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Phase id, e.g. `C`.
    pub id: String,
    /// Human name, e.g. `Layer ID`.
    pub name: String,
    /// Queries run before and after the phase's probes.
    pub audit_queries: Vec<AuditQuery>,
    /// Probes, in template order (they may run concurrently).
    pub probes: Vec<Probe>,
}

/// An audit SQL file named by a phase.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    /// File stem, e.g. `PHR_LAYER_ID_TOKEN_ISSUE`; names the evidence file.
    pub name: String,
    /// Path of the SQL file.
    pub file: PathBuf,
    /// SQL text with `{{placeholders}}` still in it.
    pub sql: String,
}

/// One probe as declared, placeholders not yet substituted.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Probe id, e.g. `PHR-06`; names evidence files.
    pub id: String,
    /// Endpoint name, e.g. `identityToken`.
    pub name: String,
    /// Operator's note for reports (what this probe shows).
    pub memo: String,
    /// HTTP method.
    pub method: http::Method,
    /// Path below the target's base URL, with placeholders.
    pub path: String,
    /// Template-wide headers followed by the probe's own, with placeholders.
    pub headers: Vec<(String, String)>,
    /// What to send.
    pub body: TemplateBody,
    /// Statuses that count as Ready.
    pub ready_statuses: Vec<u16>,
    /// Extra Ready conditions on the response body.
    pub body_checks: Vec<BodyCheck>,
    /// Audit actions the probe should produce.
    pub audit_expected: Vec<String>,
    /// Per-probe timeout.
    pub timeout: Duration,
    /// Values taken from the JSON response into variables for later phases.
    pub captures: Vec<crate::probe::capture::Capture>,
    /// Repeat the request until the response says so (e.g. a job's state).
    pub poll: Option<crate::probe::poll::Poll>,
}

/// A probe's body before substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateBody {
    /// Nothing.
    Empty,
    /// Text with placeholders.
    Inline(String),
    /// A file under `bodies/`, sent as is.
    File(PathBuf),
}

/// Why a template could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One or more located mistakes.
    #[error("{0}")]
    Invalid(Problems),
}

impl Template {
    /// Loads and validates `<dir>/template.toml`.
    pub fn load(dir: &Path) -> Result<Template, TemplateError> {
        let file = dir.join("template.toml");
        let text = match limits::read_bounded_string(&file, &TEMPLATE_FILE) {
            Ok(text) => text,
            Err(BoundedReadError::Io(source)) => return Err(TemplateError::Read { path: file, source }),
            Err(BoundedReadError::TooLarge(message)) => {
                let problem = Problem { file, line: None, column: None, key: String::new(), message };
                return Err(TemplateError::Invalid(Problems(vec![problem])));
            }
        };
        let mut diag = Collector::new(&file, &text);
        let raw: RawTemplate = match toml::from_str(&text) {
            Ok(raw) => raw,
            Err(error) => {
                diag.toml_error(&error);
                return Err(TemplateError::Invalid(diag.into_problems()));
            }
        };
        let template =
            Validator { dir, diag: &mut diag, known: BTreeSet::new(), captures: Default::default() }.template(raw);
        diag.finish(template).map_err(TemplateError::Invalid)
    }

    /// Loads every template under `root` (each sub-folder with a `template.toml`), sorted by folder name.
    pub fn load_all(root: &Path) -> Result<Vec<Result<Template, TemplateError>>, TemplateError> {
        let io_err = |source| TemplateError::Read { path: root.to_owned(), source };
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(io_err)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.join("template.toml").is_file())
            .collect();
        dirs.sort();
        Ok(dirs.iter().map(|dir| Template::load(dir)).collect())
    }

    /// Every probe of every phase, in order.
    pub fn probes(&self) -> impl Iterator<Item = (&Phase, &Probe)> {
        self.phases.iter().flat_map(|phase| phase.probes.iter().map(move |probe| (phase, probe)))
    }
}
