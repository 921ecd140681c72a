//! What the seeded world contains: facilities, users, and the deterministic records of each patient.
//!
//! Everything is a pure function of (facility, patient number), so two runs produce identical data and tests
//! can rely on named fixtures: P0001 of every facility has every kind of record (more than three documents and
//! laboratory reports, a severe allergy, active and inactive diseases, a PHR key, images); F001/P0002 has no
//! records at all (the empty-result messages); F001/P0003 and F001/P0004 have the oversize and exactly-at-cap
//! newest images; every other patient gets a small, realistic set so benchmarks hit real rows.

use super::batch::{Batch, Drug, LabTemplate, PatientRow};
use super::fixtures::{
    CAP_SIZE_IMAGE_BYTES, NEWEST_IMAGE_P0001_BYTES, OVERSIZE_IMAGE_BYTES, PATIENTS_WITH_IMAGES, SMALL_IMAGE_BYTES,
};

/// A seeded facility; PHR-11 copies these into every document and report header.
pub struct FacilitySpec {
    pub id: &'static str,
    pub name: &'static str,
    /// The insurance-facility number (`facilityNumber`).
    pub number: &'static str,
    pub zip_code: &'static str,
    pub address: &'static str,
    pub telephone: &'static str,
}

pub const FACILITIES: [FacilitySpec; 3] = [
    FacilitySpec {
        id: "F001",
        name: "オープンドルフィン内科クリニック",
        number: "1312345001",
        zip_code: "113-0033",
        address: "東京都文京区本郷1-1-1",
        telephone: "03-3811-0001",
    },
    FacilitySpec {
        id: "F002",
        name: "さくら整形外科",
        number: "1412345002",
        zip_code: "220-0011",
        address: "神奈川県横浜市西区高島2-2-2",
        telephone: "045-450-0002",
    },
    FacilitySpec {
        id: "F003",
        name: "みなと小児科医院",
        number: "2712345003",
        zip_code: "530-0001",
        address: "大阪府大阪市北区梅田3-3-3",
        telephone: "06-6341-0003",
    },
];

/// Users created in every facility: user id, display name, role.
pub const USERS: [(&str, &str, &str); 2] = [("ops", "運用担当", "admin"), ("viewer", "閲覧担当", "viewer")];

/// The patient id of patient number `n` (1-based): `P0001`, ..., `P100000`.
pub fn patient_id(n: u32) -> String {
    format!("P{n:04}")
}

/// How much clinical data a patient gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Every kind of record, several of each.
    Full,
    /// Nothing but the patient row.
    Empty,
    /// One of each kind.
    Basic,
}

/// The profile of patient number `n` in `facility_id`.
pub fn profile(facility_id: &str, n: u32) -> Profile {
    match (facility_id, n) {
        (_, 1) => Profile::Full,
        ("F001", 2) => Profile::Empty,
        _ => Profile::Basic,
    }
}

const SURNAMES: [&str; 10] = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"];
const GIVEN_F: [&str; 5] = ["花子", "陽子", "美咲", "恵子", "由美"];
const GIVEN_M: [&str; 5] = ["太郎", "健一", "大輔", "誠", "翔太"];
const CITIES: [&str; 5] = ["千代田区1-2-3", "港区4-5-6", "新宿区7-8-9", "渋谷区2-4-6", "世田谷区3-5-7"];

const AMLODIPINE: Drug = ("アムロジピン錠５ｍｇ", "610463147", "1", "錠");
const METFORMIN: Drug = ("メトホルミン塩酸塩錠２５０ｍｇ", "620008835", "2", "錠");
const ROSUVASTATIN: Drug = ("ロスバスタチン錠２．５ｍｇ", "622035601", "1", "錠");
const LOXOPROFEN: Drug = ("ロキソプロフェンＮａ錠６０ｍｇ", "620098801", "3", "錠");
const INSULIN: Drug = ("インスリン　グラルギン注", "640421058", "8", "単位");
const SALINE: Drug = ("生理食塩液　１００ｍＬ", "620007280", "1", "瓶");
const BLOOD_TEST: Drug = ("末梢血液一般検査", "160008010", "1", "回");

pub const LAB_TEMPLATES: [LabTemplate; 6] = [
    ("WBC", "2A990000001930952", "10^3/uL", "3.3-8.6", "5.8", "9.9", "H"),
    ("Hb", "2A990000001930953", "g/dL", "13.7-16.8", "14.2", "11.9", "L"),
    ("AST", "3B035000002327201", "U/L", "13-30", "22", "48", "H"),
    ("ALT", "3B045000002327201", "U/L", "10-42", "25", "61", "H"),
    ("HbA1c", "3D046000001920402", "%", "4.9-6.0", "5.6", "7.2", "H"),
    ("LDL-C", "3F077000002327101", "mg/dL", "65-163", "120", "178", "H"),
];

/// Queues patient number `n` of `facility_id` and the records of its profile (images are the caller's).
pub fn add_patient(batch: &mut Batch, facility_id: &str, n: u32) {
    let pid = patient_id(n);
    let female = n.is_multiple_of(2);
    let given = if female { GIVEN_F } else { GIVEN_M };
    let index = n as usize;
    let row = PatientRow {
        name: format!("{} {}", SURNAMES[index % SURNAMES.len()], given[(index / SURNAMES.len()) % given.len()]),
        sex: if female { "F" } else { "M" },
        birthday: format!("{:04}-{:02}-{:02}", 1940 + (n * 7) % 70, 1 + n % 12, 1 + n % 28),
        zip_code: format!("{:03}-{:04}", 100 + n % 900, n % 10_000),
        address: format!("東京都{}", CITIES[index % CITIES.len()]),
        telephone: format!("090-{:04}-{:04}", (n / 10_000) % 10_000, n % 10_000),
    };
    batch.add_patient(facility_id, &pid, row);
    match profile(facility_id, n) {
        Profile::Empty => {}
        Profile::Basic => basic_records(batch, facility_id, &pid, n),
        Profile::Full => full_records(batch, facility_id, &pid),
    }
}

fn basic_records(batch: &mut Batch, facility_id: &str, pid: &str, n: u32) {
    batch.add_key(facility_id, pid);
    let factor = ["スギ花粉", "卵", "ペニシリン", "サバ"][n as usize % 4];
    batch.add_allergy(facility_id, pid, factor, if n.is_multiple_of(5) { "severe" } else { "mild" }, "2025-04-01");
    batch.add_disease(facility_id, pid, "高血圧症", "8833421", "2024-05-01", None);
    batch.add_document(facility_id, pid, 1, "2026-09-15T10:00:00", &[("medOrder", &[AMLODIPINE])]);
    batch.add_lab(facility_id, pid, &LAB_TEMPLATES[..2], 1, "2026-09-15", |index| n % 2 == 1 && index == 0);
}

fn full_records(batch: &mut Batch, facility_id: &str, pid: &str) {
    batch.add_key(facility_id, pid);
    batch.add_allergy(facility_id, pid, "ペニシリン", "severe", "2019-06-01");
    batch.add_allergy(facility_id, pid, "卵", "mild", "2020-02-10");
    batch.add_allergy(facility_id, pid, "スギ花粉", "moderate", "2021-03-15");
    batch.add_disease(facility_id, pid, "脂質異常症", "2720004", "2023-04-01", None);
    batch.add_disease(facility_id, pid, "急性上気道炎", "4659007", "2025-01-10", Some("2025-01-24"));
    batch.add_disease(facility_id, pid, "高血圧症", "8833421", "2024-05-01", None);
    batch.add_disease(facility_id, pid, "２型糖尿病", "2500015", "2025-02-10", None);
    batch.add_document(
        facility_id,
        pid,
        1,
        "2026-06-01T09:30:00",
        &[("medOrder", &[AMLODIPINE]), ("testOrder", &[BLOOD_TEST])],
    );
    batch.add_document(
        facility_id,
        pid,
        2,
        "2026-07-01T10:00:00",
        &[("medOrder", &[AMLODIPINE, METFORMIN]), ("injectionOrder", &[INSULIN])],
    );
    batch.add_document(facility_id, pid, 3, "2026-08-03T11:00:00", &[("testOrder", &[BLOOD_TEST])]);
    batch.add_document(
        facility_id,
        pid,
        4,
        "2026-09-01T09:00:00",
        &[("medOrder", &[AMLODIPINE, METFORMIN]), ("injectionOrder", &[SALINE]), ("treatmentOrder", &[LOXOPROFEN])],
    );
    batch.add_document(
        facility_id,
        pid,
        5,
        "2026-10-01T09:15:00",
        &[("medOrder", &[AMLODIPINE, METFORMIN, ROSUVASTATIN]), ("testOrder", &[BLOOD_TEST])],
    );
    batch.add_lab(facility_id, pid, &LAB_TEMPLATES, 1, "2026-05-10", |index| index == 4);
    batch.add_lab(facility_id, pid, &LAB_TEMPLATES, 2, "2026-06-10", |_| false);
    batch.add_lab(facility_id, pid, &LAB_TEMPLATES, 3, "2026-07-10", |index| index == 2 || index == 3);
    batch.add_lab(facility_id, pid, &LAB_TEMPLATES, 4, "2026-08-10", |index| index == 1);
    batch.add_lab(facility_id, pid, &LAB_TEMPLATES, 5, "2026-09-10", |index| index == 4 || index == 5);
}

/// The images of patient number `n`: (size in bytes, created_at), oldest first; the last one is the newest.
pub fn images(facility_id: &str, n: u32) -> Vec<(usize, &'static str)> {
    const MIB: usize = 1024 * 1024;
    match (facility_id, n) {
        ("F001", 1) => vec![
            (SMALL_IMAGE_BYTES, "2026-01-10T09:00:00"),
            (200 * 1024, "2026-03-10T09:00:00"),
            (NEWEST_IMAGE_P0001_BYTES, "2026-06-10T09:00:00"),
        ],
        ("F001", 2) => Vec::new(),
        ("F001", 3) => vec![(MIB, "2026-02-01T09:00:00"), (OVERSIZE_IMAGE_BYTES, "2026-05-01T09:00:00")],
        ("F001", 4) => vec![(SMALL_IMAGE_BYTES, "2026-02-01T09:00:00"), (CAP_SIZE_IMAGE_BYTES, "2026-05-01T09:00:00")],
        (_, n) if n <= PATIENTS_WITH_IMAGES => vec![(SMALL_IMAGE_BYTES * 4, "2026-04-01T09:00:00")],
        _ => Vec::new(),
    }
}
