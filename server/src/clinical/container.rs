//! PHR-11 (the container of recent documents and laboratory reports) and PHR-09 (the current prescription).
//!
//! Both answer from indexed queries with a fixed number of round trips whatever the data: documents (at most
//! three), then all their bundles in one query and all their claim items in another, and the same for
//! laboratory reports and their items. Children are attached in memory by their natural keys.

use std::collections::HashMap;

use chrono::{Days, NaiveDate};

use super::common::{ClinicalError, japanese_date, require_patient, three_slots};
use super::dto::{Medication, PhrBundle, PhrCatch, PhrClaimItem, PhrContainer, PhrLabItem, PhrLabModule};
use super::records::MEDICATION_EMPTY;
use crate::db::Db;

/// At most this many documents and this many laboratory reports are returned.
pub const CONTAINER_LIMIT: usize = 3;

/// What a PHR-11 call asks for, already validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerQuery {
    /// Only documents started strictly after this day.
    pub doc_since: Option<NaiveDate>,
    /// Only laboratory reports sampled strictly after this day.
    pub lab_since: Option<NaiveDate>,
    /// A prescription request to echo into every returned document.
    pub prescription: Option<PrescriptionReply>,
}

/// The `rpRequest`/`replyTo` pair of a six-part PHR-11 path. The server stores no request state: it echoes the
/// pair into each document's `rpRequest` and `rpReplyTo` so the patient app can correlate the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrescriptionReply {
    pub rp_request: i64,
    pub reply_to: String,
}

const DOCUMENTS_SQL: &str = "SELECT d.catch_id, d.started, d.confirmed, d.status, \
     p.patient_id AS patient_number, p.patient_id, p.name AS patient_name, p.sex AS patient_sex, \
     p.birthday AS patient_birthday, p.zip_code AS patient_zip_code, p.address AS patient_address, \
     p.telephone AS patient_telephone, f.facility_number, f.facility_id, f.name AS facility_name, \
     f.zip_code AS facility_zip_code, f.address AS facility_address, f.telephone AS facility_telephone, \
     d.physician_id, d.physician_name, d.department, d.department_desc, d.license, \
     d.rp_request, d.rp_reply, d.rp_reply_to \
     FROM document d \
     JOIN patient p ON p.facility_id = d.facility_id AND p.patient_id = d.patient_id \
     JOIN facility f ON f.facility_id = d.facility_id \
     WHERE d.facility_id = $1 AND d.patient_id = $2 AND d.started >= $3 \
     AND EXISTS (SELECT 1 FROM bundle b WHERE b.facility_id = d.facility_id AND b.catch_id = d.catch_id \
                 AND b.ent IN ('medOrder', 'injectionOrder')) \
     ORDER BY d.started DESC, d.id DESC LIMIT 3";

/// Bundles of up to three documents ($2..$4) whose entity is $5 or $6.
const BUNDLES_SQL: &str = "SELECT b.catch_id, b.bundle_seq, b.bundle_id, d.started, d.confirmed, d.status, b.ent, \
     b.role, b.number, b.cls_name, b.cls_code, b.cls_code_system, b.admin, b.admin_code, b.admin_code_system, \
     b.admin_memo, b.bundle_number, b.memo, b.insurance, f.facility_number, b.order_name \
     FROM bundle b \
     JOIN document d ON d.facility_id = b.facility_id AND d.catch_id = b.catch_id \
     JOIN facility f ON f.facility_id = b.facility_id \
     WHERE b.facility_id = $1 AND b.catch_id IN ($2, $3, $4) AND b.ent IN ($5, $6) \
     ORDER BY b.catch_id, b.bundle_seq";

/// Claim items of the same bundles as [`BUNDLES_SQL`].
const CLAIM_ITEMS_SQL: &str = "SELECT c.catch_id, c.bundle_seq, c.name, c.code, c.code_system, c.cls_code, \
     c.cls_code_system, c.quantity, c.unit, c.number_code, c.number_code_system, c.memo, c.ykz_kbn, c.frequency, \
     c.frequency_name, c.start_date, c.end_date, c.administration, c.dose, c.dose_unit \
     FROM claim_item c \
     JOIN bundle b ON b.facility_id = c.facility_id AND b.catch_id = c.catch_id AND b.bundle_seq = c.bundle_seq \
     WHERE c.facility_id = $1 AND c.catch_id IN ($2, $3, $4) AND b.ent IN ($5, $6) \
     ORDER BY c.catch_id, c.bundle_seq, c.item_seq";

const LAB_MODULES_SQL: &str = "SELECT m.catch_id, p.name AS patient_name, p.sex AS patient_sex, \
     p.birthday AS patient_birthday, f.facility_id, f.name AS facility_name, f.facility_number, \
     m.lab_center_code, m.sample_date, m.report_format \
     FROM lab_module m \
     JOIN patient p ON p.facility_id = m.facility_id AND p.patient_id = m.patient_id \
     JOIN facility f ON f.facility_id = m.facility_id \
     WHERE m.facility_id = $1 AND m.patient_id = $2 AND m.sample_date > $3 \
     ORDER BY m.sample_date DESC, m.id DESC LIMIT 3";

/// Items of up to three laboratory reports ($3..$5) of patient $2.
const LAB_ITEMS_SQL: &str = "SELECT i.catch_id, m.patient_id, m.sample_date, i.lab_code, i.lipemia, i.hemolysis, \
     i.dialysis, i.report_status, i.group_code, i.group_name, i.parent_code, i.item_code, i.medis_code, \
     i.item_name, i.abnormal_flg, i.normal_value, i.value, i.unit, i.specimen_code, i.specimen_name, \
     i.comment_code1, i.comment1, i.comment_code2, i.comment2, i.sort_key \
     FROM lab_item i JOIN lab_module m ON m.facility_id = i.facility_id AND m.catch_id = i.catch_id \
     WHERE i.facility_id = $1 AND m.patient_id = $2 AND i.catch_id IN ($3, $4, $5) \
     ORDER BY i.catch_id, i.item_seq";

/// The newest prescription document: the newest document with a `medOrder` bundle.
const NEWEST_PRESCRIPTION_SQL: &str = "SELECT d.catch_id, d.started FROM document d \
     WHERE d.facility_id = $1 AND d.patient_id = $2 \
     AND EXISTS (SELECT 1 FROM bundle b WHERE b.facility_id = d.facility_id AND b.catch_id = d.catch_id \
                 AND b.ent = 'medOrder') \
     ORDER BY d.started DESC, d.id DESC LIMIT 1";

/// PHR-11: the patient's newest documents carrying prescriptions or injections (only those bundles) and newest
/// laboratory reports, at most [`CONTAINER_LIMIT`] of each.
pub async fn container(
    db: &Db,
    facility_id: &str,
    patient_id: &str,
    query: &ContainerQuery,
) -> Result<PhrContainer, ClinicalError> {
    require_patient(db, facility_id, patient_id).await?;
    // "Strictly after day D" is "on or after D+1": `started` is a timestamp, and comparing it with the next day
    // as text keeps the indexed range scan. No filter compares with '', which every value follows.
    let doc_from = query.doc_since.and_then(|d| d.checked_add_days(Days::new(1))).map(iso_day).unwrap_or_default();
    let mut documents: Vec<PhrCatch> = with_pool!(db, |pool| {
        sqlx::query_as(DOCUMENTS_SQL).bind(facility_id).bind(patient_id).bind(&doc_from).fetch_all(pool).await
    })?;
    let catch_ids = three_slots(documents.iter().map(|d| d.catch_id.as_str()));
    let mut bundles = bundles_of(db, facility_id, catch_ids, ["medOrder", "injectionOrder"]).await?;
    for document in &mut documents {
        document.bundles = bundles.remove(&document.catch_id).unwrap_or_default();
        if let Some(reply) = &query.prescription {
            document.rp_request = Some(reply.rp_request);
            document.rp_reply_to = Some(reply.reply_to.clone());
        }
    }

    let lab_after = query.lab_since.map(iso_day).unwrap_or_default();
    let lab_list = lab_modules(db, facility_id, patient_id, &lab_after).await?;
    Ok(PhrContainer { doc_list: documents, lab_list })
}

/// PHR-09: the `medOrder` bundles of the newest prescription, or the empty message and no bundles.
pub async fn medication(db: &Db, facility_id: &str, patient_id: &str) -> Result<Medication, ClinicalError> {
    require_patient(db, facility_id, patient_id).await?;
    let newest: Option<(String, String)> = with_pool!(db, |pool| {
        sqlx::query_as(NEWEST_PRESCRIPTION_SQL).bind(facility_id).bind(patient_id).fetch_optional(pool).await
    })?;
    let Some((catch_id, started)) = newest else {
        return Ok(Medication { message: MEDICATION_EMPTY.to_owned(), bundles: Vec::new() });
    };
    let mut bundles = bundles_of(db, facility_id, three_slots([catch_id.as_str()]), ["medOrder", "medOrder"]).await?;
    Ok(Medication {
        message: format!("{}の処方です。", japanese_date(&started)),
        bundles: bundles.remove(&catch_id).unwrap_or_default(),
    })
}

/// Bundles (with claim items) of up to three documents, restricted to two entities, grouped by document.
async fn bundles_of(
    db: &Db,
    facility_id: &str,
    catch_ids: [&str; 3],
    entities: [&str; 2],
) -> Result<HashMap<String, Vec<PhrBundle>>, ClinicalError> {
    if catch_ids.iter().all(|id| id.is_empty()) {
        return Ok(HashMap::new());
    }
    let [a, b, c] = catch_ids;
    let [e1, e2] = entities;
    let rows: Vec<PhrBundle> = with_pool!(db, |pool| {
        sqlx::query_as(BUNDLES_SQL).bind(facility_id).bind(a).bind(b).bind(c).bind(e1).bind(e2).fetch_all(pool).await
    })?;
    let items: Vec<PhrClaimItem> = with_pool!(db, |pool| {
        sqlx::query_as(CLAIM_ITEMS_SQL)
            .bind(facility_id)
            .bind(a)
            .bind(b)
            .bind(c)
            .bind(e1)
            .bind(e2)
            .fetch_all(pool)
            .await
    })?;
    let mut items_by_bundle: HashMap<(String, i32), Vec<PhrClaimItem>> = HashMap::new();
    for item in items {
        items_by_bundle.entry((item.catch_id.clone(), item.bundle_seq)).or_default().push(item);
    }
    let mut grouped: HashMap<String, Vec<PhrBundle>> = HashMap::new();
    for mut bundle in rows {
        bundle.claim_items = items_by_bundle.remove(&(bundle.catch_id.clone(), bundle.bundle_seq)).unwrap_or_default();
        grouped.entry(bundle.catch_id.clone()).or_default().push(bundle);
    }
    Ok(grouped)
}

/// The newest laboratory reports sampled after `after` (`yyyy-MM-dd`, or '' for all), with their items.
async fn lab_modules(
    db: &Db,
    facility_id: &str,
    patient_id: &str,
    after: &str,
) -> Result<Vec<PhrLabModule>, ClinicalError> {
    let mut modules: Vec<PhrLabModule> = with_pool!(db, |pool| {
        sqlx::query_as(LAB_MODULES_SQL).bind(facility_id).bind(patient_id).bind(after).fetch_all(pool).await
    })?;
    if modules.is_empty() {
        return Ok(modules);
    }
    let [a, b, c] = three_slots(modules.iter().map(|m| m.catch_id.as_str()));
    let items: Vec<PhrLabItem> = with_pool!(db, |pool| {
        sqlx::query_as(LAB_ITEMS_SQL).bind(facility_id).bind(patient_id).bind(a).bind(b).bind(c).fetch_all(pool).await
    })?;
    let mut items_by_module: HashMap<String, Vec<PhrLabItem>> = HashMap::new();
    for item in items {
        items_by_module.entry(item.catch_id.clone()).or_default().push(item);
    }
    for module in &mut modules {
        module.test_items = items_by_module.remove(&module.catch_id).unwrap_or_default();
        module.num_of_items = module.test_items.len().to_string();
        module.sample_date = japanese_date(&module.sample_date);
    }
    Ok(modules)
}

fn iso_day(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}
