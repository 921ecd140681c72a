//! `{{variable}}` placeholders in template paths, headers, bodies and audit SQL.
//!
//! The syntax is deliberately tiny (a name between double braces, spaces allowed) so that a template can be
//! checked for undefined variables before any request is sent, and so that substitution cannot run code.

use std::ops::Range;

/// A placeholder found in a text: its variable name and where it sits (byte range of `{{...}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// Variable name between the braces, trimmed.
    pub name: String,
    /// Byte range of the whole `{{ name }}` in the text.
    pub range: Range<usize>,
}

/// Why a text's placeholders are malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at byte {offset}")]
pub struct SyntaxError {
    /// Byte offset in the text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

fn is_variable_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every placeholder in `text`, in order.
pub fn scan(text: &str) -> Result<Vec<Placeholder>, SyntaxError> {
    let mut found = Vec::new();
    let mut cursor = 0;
    while let Some(open) = text[cursor..].find("{{").map(|p| p + cursor) {
        let Some(close) = text[open + 2..].find("}}").map(|p| p + open + 2) else {
            return Err(SyntaxError { offset: open, message: "`{{` without a closing `}}`".into() });
        };
        let name = text[open + 2..close].trim();
        if !is_variable_name(name) {
            return Err(SyntaxError { offset: open, message: format!("`{{{{{name}}}}}` is not a variable name") });
        }
        found.push(Placeholder { name: name.to_owned(), range: open..close + 2 });
        cursor = close + 2;
    }
    Ok(found)
}

/// Replaces every placeholder using `lookup`, passing each value through `escape`; returns the first
/// unknown variable name as the error.
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
    escape: impl Fn(&str) -> String,
) -> Result<String, String> {
    let placeholders = scan(text).map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for placeholder in placeholders {
        out.push_str(&text[cursor..placeholder.range.start]);
        let value = lookup(&placeholder.name).ok_or_else(|| placeholder.name.clone())?;
        out.push_str(&escape(&value));
        cursor = placeholder.range.end;
    }
    out.push_str(&text[cursor..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_names_with_spaces() {
        let found = scan("/a/{{ facility }},{{patient}}").expect("valid");
        assert_eq!(found.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["facility", "patient"]);
    }

    #[test]
    fn refuses_unclosed_braces() {
        assert!(scan("/a/{{facility").is_err());
    }

    #[test]
    fn substitutes_and_reports_unknown_names() {
        let lookup = |name: &str| (name == "a").then(|| "x'y".to_owned());
        assert_eq!(substitute("{{a}}-{{a}}", lookup, |v| v.replace('\'', "''")).as_deref(), Ok("x''y-x''y"));
        assert_eq!(substitute("{{b}}", lookup, str::to_owned), Err("b".to_owned()));
    }
}
