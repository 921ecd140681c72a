//! psql's aligned output format, so stored audit results read exactly like the screenshots they replace.
//!
//! Column names are centred, values padded to the widest cell, number-only columns right-aligned (psql
//! aligns numeric types right), NULL is empty, and the footer is `(1 row)` / `(N rows)`. Widths count
//! East Asian wide characters as two columns, since audit rows carry Japanese text.

use std::fmt::Write as _;

use super::QueryOutcome;

/// Renders `outcome` the way `psql` prints a result (or an error).
pub fn render(outcome: &QueryOutcome) -> String {
    if let Some(error) = &outcome.error {
        return format!("ERROR:  {error}\n");
    }
    let cells: Vec<Vec<String>> = outcome
        .rows
        .iter()
        .map(|row| row.iter().map(|v| v.as_deref().map(single_line).unwrap_or_default()).collect())
        .collect();
    let columns = outcome.columns.len();
    let mut widths: Vec<usize> = outcome.columns.iter().map(|c| display_width(c)).collect();
    for row in &cells {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(display_width(cell));
        }
    }
    let numeric: Vec<bool> = (0..columns)
        .map(|i| {
            let mut values = cells.iter().filter_map(|row| row.get(i)).filter(|v| !v.is_empty()).peekable();
            values.peek().is_some() && values.all(|v| v.parse::<f64>().is_ok())
        })
        .collect();

    let mut out = String::new();
    let header: Vec<String> = outcome.columns.iter().zip(&widths).map(|(name, &w)| centre(name, w)).collect();
    let _ = writeln!(out, " {}", header.join(" | ").trim_end());
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w + 2)).collect();
    let _ = writeln!(out, "{}", rule.join("+"));
    for row in &cells {
        let padded: Vec<String> = (0..columns)
            .map(|i| {
                let cell = row.get(i).map_or("", String::as_str);
                if numeric[i] { pad_left(cell, widths[i]) } else { pad_right(cell, widths[i]) }
            })
            .collect();
        let _ = writeln!(out, " {}", padded.join(" | ").trim_end());
    }
    let count = outcome.rows.len();
    let _ = writeln!(out, "({count} {})", if count == 1 { "row" } else { "rows" });
    out
}

/// Keeps one row per line: line breaks and tabs inside values are shown escaped.
fn single_line(value: &str) -> String {
    value.replace('\r', "\\r").replace('\n', "\\n").replace('\t', "\\t")
}

fn display_width(s: &str) -> usize {
    s.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum()
}

/// East Asian wide and fullwidth ranges (CJK, kana, hangul, fullwidth forms).
fn is_wide(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6 | 0x20000..=0x3FFFD)
}

fn pad_right(s: &str, width: usize) -> String {
    format!("{s}{}", " ".repeat(width.saturating_sub(display_width(s))))
}

fn pad_left(s: &str, width: usize) -> String {
    format!("{}{s}", " ".repeat(width.saturating_sub(display_width(s))))
}

fn centre(s: &str, width: usize) -> String {
    let free = width.saturating_sub(display_width(s));
    let left = free / 2;
    format!("{}{s}{}", " ".repeat(left), " ".repeat(free - left))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(columns: &[&str], rows: &[&[Option<&str>]]) -> QueryOutcome {
        QueryOutcome {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: rows.iter().map(|r| r.iter().map(|v| v.map(str::to_owned)).collect()).collect(),
            error: None,
            elapsed_ms: 0.0,
        }
    }

    #[test]
    fn renders_like_psql_with_numbers_right_aligned() {
        let table = outcome(
            &["action", "count"],
            &[&[Some("PHR_LAYER_ID_TOKEN_ISSUE"), Some("1")], &[Some("PHR_IMAGE_STREAM"), Some("12")]],
        );

        assert_eq!(
            render(&table),
            "          action          | count\n\
             --------------------------+-------\n \
             PHR_LAYER_ID_TOKEN_ISSUE |     1\n \
             PHR_IMAGE_STREAM         |    12\n\
             (2 rows)\n"
        );
    }

    #[test]
    fn empty_result_keeps_the_header_and_says_zero_rows() {
        let table = outcome(&["id"], &[]);

        assert_eq!(render(&table), " id\n----\n(0 rows)\n");
    }

    #[test]
    fn null_is_empty_wide_characters_count_double_and_one_row_is_singular() {
        let table = outcome(&["memo", "n"], &[&[Some("監査"), None]]);

        assert_eq!(render(&table), " memo | n\n------+---\n 監査 |\n(1 row)\n");
    }

    #[test]
    fn errors_render_as_psql_errors() {
        let failed =
            QueryOutcome { error: Some("relation \"x\" does not exist".to_owned()), ..QueryOutcome::default() };

        assert_eq!(render(&failed), "ERROR:  relation \"x\" does not exist\n");
    }
}
