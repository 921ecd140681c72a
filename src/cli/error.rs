//! What a command concluded: the [`Verdict`] that becomes exit code 0, 1 (or 2 after partial output), or the
//! [`CliError`] that is exit 2 (HARNESS.md §7). Every variant names what was wrong.

use crate::compare::runindex;

/// What a command concluded (errors are [`CliError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Everything as expected: exit 0.
    Ok,
    /// A probe, check or comparison found a problem: exit 1.
    Problem,
    /// Part of the work could not be done (a target of a matrix run could not run), and what could be
    /// done was written and printed: exit 2, like a [`CliError`], without a second message.
    Incomplete,
}

impl Verdict {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Problem => 1,
            Verdict::Incomplete => 2,
        }
    }

    /// `Ok` when `ok`, otherwise `Problem`.
    pub fn from_ok(ok: bool) -> Verdict {
        if ok { Verdict::Ok } else { Verdict::Problem }
    }
}

/// The harness could not do its job (exit 2); every variant names what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// A RUN_ID that does not parse.
    #[error(transparent)]
    RunId(#[from] crate::evidence::runid::RunIdError),
    /// A template that does not load.
    #[error(transparent)]
    Template(#[from] crate::plan::template::TemplateError),
    /// A targets file or target that does not load.
    #[error(transparent)]
    Target(#[from] crate::plan::target::TargetError),
    /// A plan that cannot be built.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// Evidence folder problems.
    #[error(transparent)]
    Evidence(#[from] crate::evidence::EvidenceError),
    /// A run that could not complete.
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    /// Markdown templates that do not render.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// The demo could not start its server or write its files.
    #[error("demo: {0}")]
    Demo(String),
    /// Writing to stdout or starting the async runtime failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A parity run that could not complete.
    #[error(transparent)]
    Parity(#[from] crate::run::parity::ParityError),
    /// diff / parity / history / report / archive could not do their job (bad or tampered runs, ...).
    #[error(transparent)]
    Routine(#[from] RoutineError),
}

/// Errors of the routine commands (all exit 2).
#[derive(Debug, thiserror::Error)]
pub enum RoutineError {
    /// A run could not be found, verified or read.
    #[error(transparent)]
    RunIndex(#[from] runindex::RunIndexError),
    /// An archive could not be written or read.
    #[error(transparent)]
    Archive(#[from] crate::compare::archive::ArchiveError),
    /// `--append` could not insert the entry.
    #[error(transparent)]
    Append(#[from] crate::report::append::AppendError),
}

impl From<runindex::RunIndexError> for CliError {
    fn from(error: runindex::RunIndexError) -> Self {
        CliError::Routine(error.into())
    }
}

impl From<crate::compare::archive::ArchiveError> for CliError {
    fn from(error: crate::compare::archive::ArchiveError) -> Self {
        CliError::Routine(error.into())
    }
}

impl From<crate::report::append::AppendError> for CliError {
    fn from(error: crate::report::append::AppendError) -> Self {
        CliError::Routine(error.into())
    }
}
