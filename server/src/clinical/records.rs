//! The plain-text summaries of PHR-01, 04, 05 and 08: allergies, active diseases, laboratory results and
//! their abnormal values, one fact per line.
//!
//! Each function first proves the patient exists in the caller's facility (an unknown patient is a 404, not
//! an empty list) and then reads its rows with one indexed query. The empty-result messages are the spec's
//! exact Japanese sentences; [`text_body`] applies them.

use super::common::{ClinicalError, japanese_date, require_patient};
use crate::db::Db;

/// PHR-04 body when the patient has no allergy.
pub const ALLERGY_EMPTY: &str = "アレルギーの登録はありません。";
/// PHR-05 body when the patient has no active disease.
pub const DISEASE_EMPTY: &str = "病名の登録はありません。";
/// PHR-08 body when the patient has no laboratory result.
pub const LABTEST_EMPTY: &str = "検査の登録はありません。";
/// PHR-01 body when no laboratory result is abnormal.
pub const ABNORMAL_EMPTY: &str = "異常値はありません。";
/// PHR-09 `message` when the patient has no prescription.
pub const MEDICATION_EMPTY: &str = "処方の登録はありません。";

/// Lines joined with `\n` (no trailing newline), or `empty_message` when there are none.
pub fn text_body(lines: &[String], empty_message: &str) -> String {
    if lines.is_empty() { empty_message.to_owned() } else { lines.join("\n") }
}

/// PHR-04: `factor`, plus ` severe` when the severity is severe; in registration order.
pub async fn allergy_lines(db: &Db, facility_id: &str, patient_id: &str) -> Result<Vec<String>, ClinicalError> {
    const SQL: &str = "SELECT factor, severity FROM allergy WHERE facility_id = $1 AND patient_id = $2 ORDER BY id";
    require_patient(db, facility_id, patient_id).await?;
    let rows: Vec<(String, Option<String>)> =
        with_pool!(db, |pool| sqlx::query_as(SQL).bind(facility_id).bind(patient_id).fetch_all(pool).await)?;
    Ok(rows.into_iter().map(|(factor, severity)| allergy_line(&factor, severity.as_deref())).collect())
}

fn allergy_line(factor: &str, severity: Option<&str>) -> String {
    match severity {
        Some(s) if s.trim().eq_ignore_ascii_case("severe") => format!("{factor} severe"),
        _ => factor.to_owned(),
    }
}

/// PHR-05: the active diagnoses, newest first.
pub async fn disease_lines(db: &Db, facility_id: &str, patient_id: &str) -> Result<Vec<String>, ClinicalError> {
    const SQL: &str = "SELECT diagnosis FROM disease \
         WHERE facility_id = $1 AND patient_id = $2 AND status = 'active' ORDER BY started DESC, id DESC";
    require_patient(db, facility_id, patient_id).await?;
    let rows: Vec<String> =
        with_pool!(db, |pool| sqlx::query_scalar(SQL).bind(facility_id).bind(patient_id).fetch_all(pool).await)?;
    Ok(rows)
}

/// One laboratory item with its report's id and date, as the text endpoints read it.
#[derive(Debug, sqlx::FromRow)]
struct LabLineRow {
    catch_id: String,
    sample_date: String,
    item_name: String,
    value: Option<String>,
    unit: Option<String>,
    abnormal_flg: Option<String>,
}

/// Lab items of every report of the patient, newest report first, items in report order.
const LAB_ITEMS_SQL: &str = "SELECT m.catch_id, m.sample_date, i.item_name, i.value, i.unit, i.abnormal_flg \
     FROM lab_module m JOIN lab_item i ON i.facility_id = m.facility_id AND i.catch_id = m.catch_id \
     WHERE m.facility_id = $1 AND m.patient_id = $2 \
     ORDER BY m.sample_date DESC, m.id DESC, i.item_seq";

/// PHR-08: for each report a line `yyyy年M月d日`, then `itemName=value[unit][(abnormalFlg)]` per item.
pub async fn labtest_lines(db: &Db, facility_id: &str, patient_id: &str) -> Result<Vec<String>, ClinicalError> {
    lab_lines(db, facility_id, patient_id, |_| true).await
}

/// PHR-01: as PHR-08, but only the abnormal items (and only the reports that have one).
pub async fn abnormal_lines(db: &Db, facility_id: &str, patient_id: &str) -> Result<Vec<String>, ClinicalError> {
    lab_lines(db, facility_id, patient_id, is_abnormal).await
}

async fn lab_lines(
    db: &Db,
    facility_id: &str,
    patient_id: &str,
    keep: impl Fn(Option<&str>) -> bool,
) -> Result<Vec<String>, ClinicalError> {
    require_patient(db, facility_id, patient_id).await?;
    let rows: Vec<LabLineRow> = with_pool!(db, |pool| {
        sqlx::query_as(LAB_ITEMS_SQL).bind(facility_id).bind(patient_id).fetch_all(pool).await
    })?;
    let mut lines = Vec::new();
    let mut current_report: Option<String> = None;
    for row in rows.into_iter().filter(|row| keep(row.abnormal_flg.as_deref())) {
        if current_report.as_deref() != Some(row.catch_id.as_str()) {
            lines.push(japanese_date(&row.sample_date));
            current_report = Some(row.catch_id.clone());
        }
        lines.push(lab_item_line(&row));
    }
    Ok(lines)
}

/// Empty, missing and `N` (normal) flags are normal; `H`, `L`, `A`, ... are abnormal.
fn is_abnormal(flag: Option<&str>) -> bool {
    flag.map(str::trim).is_some_and(|f| !f.is_empty() && !f.eq_ignore_ascii_case("N"))
}

fn lab_item_line(row: &LabLineRow) -> String {
    let mut line = format!("{}={}", row.item_name, row.value.as_deref().unwrap_or_default());
    if let Some(unit) = row.unit.as_deref().filter(|u| !u.is_empty()) {
        line.push_str(unit);
    }
    if let Some(flag) = row.abnormal_flg.as_deref().filter(|f| is_abnormal(Some(f))) {
        line.push('(');
        line.push_str(flag.trim());
        line.push(')');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(value: Option<&str>, unit: Option<&str>, flag: Option<&str>) -> LabLineRow {
        LabLineRow {
            catch_id: "L1".into(),
            sample_date: "2026-01-02".into(),
            item_name: "HbA1c".into(),
            value: value.map(Into::into),
            unit: unit.map(Into::into),
            abnormal_flg: flag.map(Into::into),
        }
    }

    #[test]
    fn lab_item_lines_follow_the_spec_shape() {
        assert_eq!(lab_item_line(&item(Some("7.2"), Some("%"), Some("H"))), "HbA1c=7.2%(H)");
        assert_eq!(lab_item_line(&item(Some("5.4"), Some("%"), Some("N"))), "HbA1c=5.4%");
        assert_eq!(lab_item_line(&item(Some("5.4"), None, None)), "HbA1c=5.4");
        assert_eq!(lab_item_line(&item(None, Some(""), Some(""))), "HbA1c=");
    }

    #[test]
    fn only_severe_allergies_are_marked() {
        assert_eq!(allergy_line("ペニシリン", Some("severe")), "ペニシリン severe");
        assert_eq!(allergy_line("卵", Some("mild")), "卵");
        assert_eq!(allergy_line("卵", None), "卵");
    }

    #[test]
    fn text_bodies_have_no_trailing_newline_and_use_the_empty_message() {
        assert_eq!(text_body(&["a".into(), "b".into()], ALLERGY_EMPTY), "a\nb");
        assert_eq!(text_body(&[], ALLERGY_EMPTY), "アレルギーの登録はありません。");
    }
}
