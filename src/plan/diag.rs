//! Located configuration problems: `file:line:col: key: message`.
//!
//! Templates and targets files are written by hand, and an operator must be able to fix a mistake without
//! guessing, so every refusal names the file, the line and the key. Parse errors come with toml's byte
//! spans; semantic errors carry the span of the `toml::Spanned` value they are about. Problems are collected
//! rather than returned one at a time, so one `connrun templates check` shows every mistake at once.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One mistake in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the mistake is in.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted key path, e.g. `phases[C].probes[PHR-06].ready`.
    pub key: String,
    /// What is wrong and, where useful, what would be accepted.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// All the problems found in one or more files; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// 1-based line and column of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, column)
}

/// Collects problems for one file whose text is known, turning spans into lines.
#[derive(Debug)]
pub struct Collector<'a> {
    /// The file being checked, as the operator named it.
    file: &'a Path,
    /// Its text, to turn byte spans into line and column.
    text: &'a str,
    /// Problems found so far.
    problems: Vec<Problem>,
}

impl<'a> Collector<'a> {
    /// A collector for `file` with contents `text`.
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Self { file, text, problems: Vec::new() }
    }

    /// Records a problem at a byte span of the file (or without a location when `span` is `None`).
    pub fn at(&mut self, span: Option<Range<usize>>, key: impl Into<String>, message: impl Into<String>) {
        let (line, column) = match span {
            Some(span) => {
                let (line, column) = line_col(self.text, span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }

    /// Records a problem found in another file (e.g. an SQL file named by the template).
    pub fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    /// Records a toml parse or deserialisation error, keeping its location and naming the key when toml did.
    pub fn toml_error(&mut self, error: &toml::de::Error) {
        let key = error
            .message()
            .split('`')
            .nth(1)
            .filter(|_| error.message().starts_with("unknown field") || error.message().starts_with("missing field"))
            .unwrap_or_default()
            .to_owned();
        self.at(error.span(), key, error.message().trim().to_owned());
    }

    /// Whether anything was recorded.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, otherwise every problem.
    pub fn finish<T>(self, value: T) -> Result<T, Problems> {
        if self.problems.is_empty() { Ok(value) } else { Err(Problems(self.problems)) }
    }

    /// The problems recorded so far, consuming the collector.
    pub fn into_problems(self) -> Problems {
        Problems(self.problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 9), (2, 4));
    }

    #[test]
    fn problem_display_names_file_line_and_key() {
        let problem = Problem {
            file: "t.toml".into(),
            line: Some(3),
            column: Some(1),
            key: "phases[C].probes[PHR-06].method".into(),
            message: "bad".into(),
        };
        assert_eq!(problem.to_string(), "t.toml:3:1: phases[C].probes[PHR-06].method: bad");
    }
}
