//! The rows of one seeding batch, per table, and how one clinical fact becomes rows.
//!
//! [`catalog`](super::catalog) decides what each patient has; this module knows the tables' columns and how a
//! document, a laboratory report or an image is spread over them (documents into bundles and claim items,
//! reports into items), so the catalog reads as data and the column lists live in one place.

use super::fixtures::{access_key, secret_key};
use super::writer::{Cell, TableRows};

/// A drug, injection or procedure line of a seeded bundle: name, code, quantity, unit.
pub type Drug = (&'static str, &'static str, &'static str, &'static str);

/// A laboratory item template: name, code, unit, normal range, normal value, abnormal value, abnormal flag.
pub type LabTemplate =
    (&'static str, &'static str, &'static str, &'static str, &'static str, &'static str, &'static str);

/// The demographic columns of a patient row (PHR-11 copies them into every document header).
pub struct PatientRow {
    /// Family and given name, space separated.
    pub name: String,
    /// `M` or `F`.
    pub sex: &'static str,
    /// `yyyy-MM-dd`.
    pub birthday: String,
    /// `nnn-nnnn`.
    pub zip_code: String,
    pub address: String,
    pub telephone: String,
}

/// Every table `seed` writes, in foreign-key order (parents are written before their children).
pub struct Batch {
    /// Parent of every other table's rows.
    pub patient: TableRows,
    pub phr_key: TableRows,
    pub allergy: TableRows,
    pub disease: TableRows,
    /// Parent of `bundle`, which is the parent of `claim_item`.
    pub document: TableRows,
    pub bundle: TableRows,
    pub claim_item: TableRows,
    /// Parent of `lab_item`.
    pub lab_module: TableRows,
    pub lab_item: TableRows,
    /// Rows for blobs the caller has already stored.
    pub phr_image: TableRows,
}

/// The columns each table is written with, in the order `Batch::add_*` pushes the cells.
const PATIENT_COLUMNS: &[&str] =
    &["facility_id", "patient_id", "name", "sex", "birthday", "zip_code", "address", "telephone"];
const PHR_KEY_COLUMNS: &[&str] = &["facility_id", "patient_id", "access_key", "secret_key", "registered"];
const ALLERGY_COLUMNS: &[&str] = &["facility_id", "patient_id", "factor", "severity", "identified_date", "memo"];
const DISEASE_COLUMNS: &[&str] =
    &["facility_id", "patient_id", "diagnosis", "diagnosis_code", "started", "ended", "status"];
const DOCUMENT_COLUMNS: &[&str] = &[
    "facility_id",
    "patient_id",
    "catch_id",
    "started",
    "confirmed",
    "status",
    "physician_id",
    "physician_name",
    "department",
    "department_desc",
    "license",
];
const BUNDLE_COLUMNS: &[&str] = &[
    "facility_id",
    "catch_id",
    "bundle_seq",
    "bundle_id",
    "ent",
    "role",
    "number",
    "cls_name",
    "cls_code",
    "cls_code_system",
    "admin",
    "admin_code",
    "admin_code_system",
    "bundle_number",
    "insurance",
    "order_name",
];
const CLAIM_ITEM_COLUMNS: &[&str] = &[
    "facility_id",
    "catch_id",
    "bundle_seq",
    "item_seq",
    "name",
    "code",
    "code_system",
    "quantity",
    "unit",
    "ykz_kbn",
    "frequency",
    "frequency_name",
    "start_date",
    "end_date",
    "administration",
    "dose",
    "dose_unit",
];
const LAB_MODULE_COLUMNS: &[&str] =
    &["facility_id", "patient_id", "catch_id", "lab_center_code", "sample_date", "report_format"];
const LAB_ITEM_COLUMNS: &[&str] = &[
    "facility_id",
    "catch_id",
    "item_seq",
    "lab_code",
    "report_status",
    "group_code",
    "group_name",
    "item_code",
    "medis_code",
    "item_name",
    "abnormal_flg",
    "normal_value",
    "value",
    "unit",
    "specimen_code",
    "specimen_name",
    "sort_key",
];
const PHR_IMAGE_COLUMNS: &[&str] =
    &["facility_id", "patient_id", "object_key", "content_type", "size_bytes", "sha256", "created_at"];

impl Default for Batch {
    fn default() -> Self {
        Self {
            patient: TableRows::new("patient", PATIENT_COLUMNS),
            phr_key: TableRows::new("phr_key", PHR_KEY_COLUMNS),
            allergy: TableRows::new("allergy", ALLERGY_COLUMNS),
            disease: TableRows::new("disease", DISEASE_COLUMNS),
            document: TableRows::new("document", DOCUMENT_COLUMNS),
            bundle: TableRows::new("bundle", BUNDLE_COLUMNS),
            claim_item: TableRows::new("claim_item", CLAIM_ITEM_COLUMNS),
            lab_module: TableRows::new("lab_module", LAB_MODULE_COLUMNS),
            lab_item: TableRows::new("lab_item", LAB_ITEM_COLUMNS),
            phr_image: TableRows::new("phr_image", PHR_IMAGE_COLUMNS),
        }
    }
}

impl Batch {
    /// Queues a patient row.
    pub fn add_patient(&mut self, facility_id: &str, pid: &str, row: PatientRow) {
        self.patient.push(vec![
            facility_id.into(),
            pid.into(),
            row.name.into(),
            row.sex.into(),
            row.birthday.into(),
            row.zip_code.into(),
            row.address.into(),
            row.telephone.into(),
        ]);
    }

    pub fn add_key(&mut self, facility_id: &str, pid: &str) {
        self.phr_key.push(vec![
            facility_id.into(),
            pid.into(),
            access_key(facility_id, pid).into(),
            secret_key(facility_id, pid).into(),
            "2026-01-05T10:00:00".into(),
        ]);
    }

    pub fn add_allergy(&mut self, facility_id: &str, pid: &str, factor: &str, severity: &str, date: &str) {
        self.allergy.push(vec![
            facility_id.into(),
            pid.into(),
            factor.into(),
            severity.into(),
            date.into(),
            Cell::Text(None),
        ]);
    }

    pub fn add_disease(
        &mut self,
        facility_id: &str,
        pid: &str,
        name: &str,
        code: &str,
        started: &str,
        ended: Option<&str>,
    ) {
        let status = if ended.is_some() { "inactive" } else { "active" };
        self.disease.push(vec![
            facility_id.into(),
            pid.into(),
            name.into(),
            code.into(),
            started.into(),
            ended.into(),
            status.into(),
        ]);
    }

    /// A document with its bundles: each bundle is an entity and its drug lines.
    pub fn add_document(&mut self, facility_id: &str, pid: &str, seq: u32, started: &str, bundles: &[(&str, &[Drug])]) {
        let catch_id = format!("{facility_id}-{pid}-D{seq:02}");
        self.document.push(vec![
            facility_id.into(),
            pid.into(),
            catch_id.clone().into(),
            started.into(),
            started.into(),
            "F".into(),
            "doctor1".into(),
            "青木 誠一".into(),
            "01".into(),
            "内科".into(),
            "doctor".into(),
        ]);
        for (bundle_seq, (ent, drugs)) in (1_i32..).zip(bundles) {
            let (cls_code, cls_name, admin) = match *ent {
                "medOrder" => ("212", "内服薬剤（院外処方）", Some("1日1回朝食後に")),
                "injectionOrder" => ("311", "皮下筋肉内注射", None),
                "testOrder" => ("600", "検体検査", None),
                _ => ("400", "処置", None),
            };
            let is_med = *ent == "medOrder";
            self.bundle.push(vec![
                facility_id.into(),
                catch_id.clone().into(),
                bundle_seq.into(),
                format!("{catch_id}-B{bundle_seq}").into(),
                (*ent).into(),
                "p".into(),
                "1".into(),
                cls_name.into(),
                cls_code.into(),
                "Claim007".into(),
                admin.into(),
                is_med.then_some("1013044400000000").into(),
                is_med.then_some("Claim007").into(),
                (if is_med { "14" } else { "1" }).into(),
                "06 社保".into(),
                (*ent).into(),
            ]);
            for (item_seq, (name, code, quantity, unit)) in (1_i32..).zip(drugs.iter()) {
                self.claim_item.push(vec![
                    facility_id.into(),
                    catch_id.clone().into(),
                    bundle_seq.into(),
                    item_seq.into(),
                    (*name).into(),
                    (*code).into(),
                    "YkzCD".into(),
                    (*quantity).into(),
                    (*unit).into(),
                    (if is_med { "1" } else { "0" }).into(),
                    is_med.then_some("1").into(),
                    is_med.then_some("1日1回").into(),
                    started.get(..10).into(),
                    Cell::Text(None),
                    admin.into(),
                    is_med.then_some(*quantity).into(),
                    is_med.then_some(*unit).into(),
                ]);
            }
        }
    }

    /// A laboratory report with one item per template; `abnormal` decides, per template index, whether the
    /// abnormal value is reported.
    pub fn add_lab(
        &mut self,
        facility_id: &str,
        pid: &str,
        templates: &[LabTemplate],
        seq: u32,
        date: &str,
        abnormal: impl Fn(usize) -> bool,
    ) {
        let catch_id = format!("{facility_id}-{pid}-L{seq:02}");
        self.lab_module.push(vec![
            facility_id.into(),
            pid.into(),
            catch_id.clone().into(),
            "LC001".into(),
            date.into(),
            "MML".into(),
        ]);
        for (index, (name, code, unit, range, normal, high, flag)) in templates.iter().enumerate() {
            let is_abnormal = abnormal(index);
            let item_seq = i32::try_from(index + 1).unwrap_or(i32::MAX);
            self.lab_item.push(vec![
                facility_id.into(),
                catch_id.clone().into(),
                item_seq.into(),
                "LC001".into(),
                "F".into(),
                "G01".into(),
                "生化学".into(),
                format!("I{:03}", index + 1).into(),
                (*code).into(),
                (*name).into(),
                (if is_abnormal { *flag } else { "N" }).into(),
                (*range).into(),
                (if is_abnormal { *high } else { *normal }).into(),
                (*unit).into(),
                "023".into(),
                "血清".into(),
                format!("{:03}", index + 1).into(),
            ]);
        }
    }

    /// Queues one image row; the caller has stored its bytes.
    pub fn add_image(
        &mut self,
        facility_id: &str,
        pid: &str,
        object_key: &str,
        size: usize,
        sha256: &str,
        created_at: &str,
    ) {
        self.phr_image.push(vec![
            facility_id.into(),
            pid.into(),
            object_key.into(),
            "image/jpeg".into(),
            i64::try_from(size).unwrap_or(i64::MAX).into(),
            sha256.into(),
            created_at.into(),
        ]);
    }

    /// Every table, parents before children.
    pub fn tables_mut(&mut self) -> [&mut TableRows; 10] {
        [
            &mut self.patient,
            &mut self.phr_key,
            &mut self.allergy,
            &mut self.disease,
            &mut self.document,
            &mut self.bundle,
            &mut self.claim_item,
            &mut self.lab_module,
            &mut self.lab_item,
            &mut self.phr_image,
        ]
    }
}
