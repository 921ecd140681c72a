//! `[groups]` of a targets file: named lists of targets that one command runs together
//! (`connrun run --group weekly` runs the template against each and writes one matrix).
//!
//! A group is checked with the rest of the file: every member must be a target defined in the same file, a
//! member may appear once, a group has 1 to [`MAX_MATRIX_TARGETS`] members and a short name, and the file has
//! at most [`MAX_TARGETS`] groups; each refusal names the line, the key and what is accepted.

use std::collections::BTreeMap;

use toml::Spanned;

use crate::evidence::limits::{MAX_MATRIX_TARGETS, MAX_NAME_CHARS, MAX_TARGETS, too_many_chars};
use crate::plan::diag::Collector;

/// The `[groups]` table as written.
pub(super) type RawGroups = BTreeMap<String, Spanned<Vec<Spanned<String>>>>;

/// Validates the groups against the defined target names; returns them with their members in order.
pub(super) fn check_groups(
    diag: &mut Collector<'_>,
    raw: RawGroups,
    defined: &BTreeMap<String, super::TargetSpec>,
) -> BTreeMap<String, Vec<String>> {
    if let Some(first_over) = raw.values().nth(MAX_TARGETS) {
        diag.at(Some(first_over.span()), "groups", format!("{} groups; at most {MAX_TARGETS} are allowed", raw.len()));
    }
    let mut groups = BTreeMap::new();
    for (name, members) in raw {
        let shown: String = name.chars().take(MAX_NAME_CHARS).collect();
        let key = format!("groups.{shown}");
        let span = members.span();
        if let Some(message) = too_many_chars(&name, MAX_NAME_CHARS) {
            diag.at(Some(span.clone()), &key, format!("the name {message}"));
        }
        let members = members.into_inner();
        if members.is_empty() || members.len() > MAX_MATRIX_TARGETS {
            let message = format!("{} targets; a group lists 1 to {MAX_MATRIX_TARGETS} target names", members.len());
            diag.at(Some(span), &key, message);
        }
        let mut names: Vec<String> = Vec::new();
        for member in members {
            let member_span = member.span();
            let member = member.into_inner();
            if !defined.contains_key(&member) {
                let known = defined.keys().cloned().collect::<Vec<_>>().join(", ");
                diag.at(Some(member_span), &key, format!("`{member}` is not a target of this file (defined: {known})"));
            } else if names.contains(&member) {
                diag.at(Some(member_span), &key, format!("`{member}` is listed twice; each target runs once"));
            } else {
                names.push(member);
            }
        }
        groups.insert(name, names);
    }
    groups
}
