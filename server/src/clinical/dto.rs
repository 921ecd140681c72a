//! The PHR JSON shapes (PHR_API.md "DTO field names"), exactly as real clients of the legacy server read them.
//!
//! Field names are the contract, so every struct is `camelCase` and every optional field is skipped when
//! absent (the spec: "JSON omits null fields"; empty child lists are omitted too). Most structs double as
//! `sqlx` rows: the queries in this module's siblings alias their columns to these field names, so a row is
//! decoded straight into the DTO and only the children are attached afterwards. Fields that exist only to
//! attach children (`bundle_seq`) are never serialized.

use serde::{Deserialize, Serialize};

/// `PHRKey`: the credentials a patient app uses to fetch its PHR (PHR-02/03/10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhrKey {
    /// Database id; PHR-02 answers it as `[id]`.
    pub id: i64,
    pub facility_id: String,
    pub patient_id: String,
    pub access_key: String,
    pub secret_key: String,
    /// Registration time in epoch milliseconds, as the legacy server's `java.util.Date` serialized.
    pub registered: i64,
    /// The same instant as `yyyy-MM-dd'T'HH:mm:ss` (UTC).
    pub registered_string: String,
}

/// The body of PHR-02 `PUT /accessKey`. Other PHRKey fields (`id`, `facilityId`, `registered`, ...) are accepted
/// and ignored: the key is identified by facility and patient, the facility is always the caller's and the
/// server stamps the registration time.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhrKeyInput {
    pub patient_id: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

/// `PHRCatch`: one clinical document with its patient and facility header (PHR-11 `docList`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct PhrCatch {
    pub catch_id: String,
    /// `yyyy-MM-ddTHH:mm:ss`.
    pub started: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The clinic's patient number; this server's patient id is that number.
    pub patient_number: String,
    pub patient_id: String,
    pub patient_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_sex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_birthday: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_zip_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_telephone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility_number: Option<String>,
    pub facility_id: String,
    pub facility_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility_zip_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility_telephone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physician_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physician_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department_desc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Prescription request marker; PHR-11 echoes the request's `rpRequest` here when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rp_request: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rp_reply: Option<String>,
    /// Where the reply goes; PHR-11 echoes the request's `replyTo` here when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rp_reply_to: Option<String>,
    /// Only `medOrder` and `injectionOrder` bundles, in document order.
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bundles: Vec<PhrBundle>,
}

/// `PHRBundle`: one order of a document (a prescription, an injection, ...), with its claim items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct PhrBundle {
    pub catch_id: String,
    /// Position inside the document; used to attach claim items, not part of the JSON.
    #[serde(skip)]
    pub bundle_seq: i32,
    pub bundle_id: String,
    pub started: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `medOrder`, `injectionOrder`, `testOrder`, ...
    pub ent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cls_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cls_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cls_code_system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_code_system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_memo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_number: Option<String>,
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub claim_items: Vec<PhrClaimItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insurance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_name: Option<String>,
}

/// `PHRClaimItem`: one drug, procedure or material of a bundle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct PhrClaimItem {
    /// Parent document; used to attach the item, not part of the JSON.
    #[serde(skip)]
    pub catch_id: String,
    /// Parent bundle's position; used to attach the item, not part of the JSON.
    #[serde(skip)]
    pub bundle_seq: i32,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cls_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cls_code_system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_code_system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ykz_kbn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub administration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dose: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dose_unit: Option<String>,
}

/// `PHRLabModule`: one laboratory report (PHR-11 `labList`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct PhrLabModule {
    pub catch_id: String,
    pub patient_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_sex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_birthday: Option<String>,
    pub facility_id: String,
    pub facility_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lab_center_code: Option<String>,
    /// Stored `yyyy-MM-dd`; rewritten to `yyyy年M月d日` before it is served.
    pub sample_date: String,
    /// The number of `testItems`, as text like the legacy server's `numOfItems`.
    #[sqlx(skip)]
    pub num_of_items: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_format: Option<String>,
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub test_items: Vec<PhrLabItem>,
}

/// `PHRLabItem`: one result line of a laboratory report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct PhrLabItem {
    /// Parent report; used to attach the item, not part of the JSON.
    #[serde(skip)]
    pub catch_id: String,
    pub patient_id: String,
    /// `yyyy-MM-dd`, as the legacy items carried it.
    pub sample_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lab_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lipemia: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hemolysis: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialysis: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medis_code: Option<String>,
    pub item_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abnormal_flg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normal_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub specimen_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub specimen_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment_code1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment_code2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort_key: Option<String>,
}

/// `PHRContainer`: the PHR-11 answer (and one file of a Phase F export).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhrContainer {
    /// Newest first, at most three.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub doc_list: Vec<PhrCatch>,
    /// Newest first, at most three.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lab_list: Vec<PhrLabModule>,
}

/// The PHR-09 answer. `bundles` is always present (`[]` when there is no prescription).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Medication {
    /// `処方の登録はありません。` without a prescription, else `yyyy年M月d日の処方です。` naming its date.
    pub message: String,
    /// The `medOrder` bundles of the newest prescription, with their claim items.
    pub bundles: Vec<PhrBundle>,
}
