//! `--append FILE`: insert a generated entry into a hand-maintained Markdown file, touching nothing else.
//!
//! The team's logs are edited by people, so the tool may only add: the entry goes right after a marker line
//! (`<!-- connrun:daily -->` by default) or under a heading (`--under "## 日次ログ"`), newest first; a table
//! row goes after the header separator of the first table below that heading. Every other byte of the file
//! stays as it was (line endings included: a CRLF file gets a CRLF entry). The file is replaced atomically,
//! and an entry that is already present is not inserted twice.

use std::path::{Path, PathBuf};

/// Where to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// After the first line containing this text.
    Marker(String),
    /// Under the first line equal to this heading (trailing spaces ignored).
    Heading(String),
}

/// What is being inserted: a block of lines, or one table row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A Markdown block (daily or weekly entry), separated by a blank line.
    Block,
    /// One `| ... |` row for the table that follows the anchor.
    TableRow,
}

/// Why the entry could not be inserted.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The anchor is not in the file.
    #[error("{}: {what} not found; add the line `{hint}` where entries should go, or pass --under \"<heading>\"", path.display())]
    AnchorNotFound {
        /// The file.
        path: PathBuf,
        /// The anchor looked for.
        what: String,
        /// A marker line that would work.
        hint: String,
    },
    /// A table row was asked for but no table follows the anchor.
    #[error("{}: no Markdown table (header and `| --- |` line) after {what}", path.display())]
    NoTable {
        /// The file.
        path: PathBuf,
        /// The anchor.
        what: String,
    },
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The entry was inserted.
    Inserted,
    /// The file already held the entry's first line; nothing was changed.
    AlreadyPresent,
}

/// Byte offsets of the starts of each line (and the end of the text).
fn line_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    if starts.last() != Some(&text.len()) {
        starts.push(text.len());
    }
    starts
}

fn line<'a>(text: &'a str, starts: &[usize], index: usize) -> &'a str {
    text[starts[index]..starts[index + 1]].trim_end_matches(['\n', '\r'])
}

/// Computes the new file content: `text` with `entry` inserted at the anchor (pure, for tests and dry runs).
pub fn insert(text: &str, entry: &str, anchor: &Anchor, kind: EntryKind, path: &Path) -> Result<String, AppendError> {
    let crlf = text.contains("\r\n");
    let starts = line_starts(text);
    let lines = starts.len() - 1;
    let found = (0..lines).find(|&i| match anchor {
        Anchor::Marker(marker) => line(text, &starts, i).contains(marker.as_str()),
        Anchor::Heading(heading) => line(text, &starts, i).trim_end() == heading.trim_end(),
    });
    let what = match anchor {
        Anchor::Marker(m) => format!("marker `{m}`"),
        Anchor::Heading(h) => format!("heading `{h}`"),
    };
    let Some(anchor_line) = found else {
        let hint = match anchor {
            Anchor::Marker(m) => m.clone(),
            Anchor::Heading(h) => h.clone(),
        };
        return Err(AppendError::AnchorNotFound { path: path.to_owned(), what, hint });
    };
    let insert_line = match kind {
        EntryKind::Block => anchor_line + 1,
        EntryKind::TableRow => {
            let separator = (anchor_line + 1..lines).find(|&i| {
                let l = line(text, &starts, i).trim();
                l.starts_with('|') && l.contains("---") && l.chars().all(|c| "|-: ".contains(c))
            });
            let heading_between =
                separator.is_some_and(|s| (anchor_line + 1..s).any(|i| line(text, &starts, i).starts_with('#')));
            match separator {
                Some(s) if !heading_between => s + 1,
                _ => return Err(AppendError::NoTable { path: path.to_owned(), what }),
            }
        }
    };
    let newline = if crlf { "\r\n" } else { "\n" };
    let mut body = entry.trim_end_matches('\n').replace("\r\n", "\n");
    if crlf {
        body = body.replace('\n', "\r\n");
    }
    let at = starts[insert_line];
    let mut out = String::with_capacity(text.len() + body.len() + 8);
    out.push_str(&text[..at]);
    if at > 0 && !text[..at].ends_with('\n') {
        out.push_str(newline);
    }
    match kind {
        EntryKind::Block => {
            out.push_str(newline);
            out.push_str(&body);
            out.push_str(newline);
        }
        EntryKind::TableRow => {
            out.push_str(&body);
            out.push_str(newline);
        }
    }
    out.push_str(&text[at..]);
    Ok(out)
}

/// Inserts `entry` into the file at `path` (atomically replaced), unless its first line is already there.
pub fn append_to_file(
    path: &Path,
    entry: &str,
    anchor: &Anchor,
    kind: EntryKind,
) -> Result<AppendOutcome, AppendError> {
    let io = |source| AppendError::Io { path: path.to_owned(), source };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let first = entry.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    if !first.is_empty() && text.lines().any(|l| l.trim_end() == first.trim_end()) {
        return Ok(AppendOutcome::AlreadyPresent);
    }
    let updated = insert(&text, entry, anchor, kind, path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.connrun-append"));
    std::fs::write(&temporary, updated.as_bytes())
        .map_err(|source| AppendError::Io { path: temporary.clone(), source })?;
    std::fs::rename(&temporary, path).map_err(io)?;
    Ok(AppendOutcome::Inserted)
}
