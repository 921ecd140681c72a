//! `phr-server seed`: a deterministic synthetic data set for tests, demos and benchmarks.
//!
//! Three facilities (F001..F003) with an `ops` (admin) and a `viewer` user each, and `--patients` patients per
//! facility with the records described in [`catalog`]. The data is a pure function of the flags, so tests can
//! name fixtures (F001/P0001 has everything, F001/P0002 nothing, F001/P0003's newest image is over the 5 MiB
//! cap, F001/P0004's is exactly at it). Rows are written in multi-row inserts, one transaction per batch of
//! patients, so `--patients 100000` finishes in minutes; progress goes to stderr.
//!
//! Re-running is safe: facilities and users that exist are kept as they are (passwords are not changed), and
//! patients that exist are skipped with all their records and images, so nothing is duplicated and a larger
//! `--patients` only adds the missing patients.

mod batch;
mod catalog;
mod fixtures;
mod jpeg;
mod writer;

use std::collections::HashSet;

use bytes::Bytes;

use crate::audit::sha256_hex;
use crate::db::Db;
use crate::storage::{BlobStore, StorageError};
use batch::Batch;
use catalog::{FACILITIES, USERS};
pub use catalog::{Profile, patient_id, profile};
pub use fixtures::{
    CAP_SIZE_IMAGE_BYTES, NEWEST_IMAGE_P0001_BYTES, OVERSIZE_IMAGE_BYTES, PATIENTS_WITH_IMAGES, SMALL_IMAGE_BYTES,
    access_key, secret_key,
};
pub use jpeg::synthetic_jpeg;
use writer::{SeedTx, TableRows};

/// Patients written per transaction.
const PATIENTS_PER_BATCH: u32 = 500;
/// Progress is printed every this many patients (and at the end of each facility).
const PROGRESS_EVERY: u32 = 10_000;

/// Counts the seeded users that exist; only the seeded (facility, user) pairs count, so users added by operators
/// never hide a missing one. Must name [`catalog::FACILITIES`] and [`catalog::USERS`] (a unit test checks).
const SEEDED_USERS_SQL: &str = "SELECT COUNT(*) FROM phr_user \
     WHERE facility_id IN ('F001', 'F002', 'F003') AND user_id IN ('ops', 'viewer')";

/// Flags of `phr-server seed`.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// Patients per facility.
    #[arg(long, default_value_t = 20)]
    pub patients: u32,
    /// Password of every seeded user (F00n:ops, F00n:viewer); never printed.
    #[arg(long, env = "PHR_SEED_USER_PASSWORD", hide_env_values = true)]
    pub user_password: String,
}

/// What `seed` wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedReport {
    /// Facilities created by this run.
    pub facilities: u64,
    /// Users created by this run.
    pub users: u64,
    /// Patients created by this run.
    pub patients: u64,
    /// Patients that already existed and were left alone.
    pub patients_skipped: u64,
    /// Clinical rows (keys, allergies, diseases, documents, bundles, items, lab rows) created by this run.
    pub records: u64,
    /// Images stored by this run.
    pub images: u64,
}

impl std::fmt::Display for SeedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} facilities, {} users, {} patients ({} already present), {} records, {} images",
            self.facilities, self.users, self.patients, self.patients_skipped, self.records, self.images
        )
    }
}

/// Why seeding stopped. Batches already committed stay; re-running continues where it stopped.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("seed: --patients must be at least 1")]
    NoPatients,
    #[error("seed: PHR_SEED_USER_PASSWORD / --user-password must not be empty")]
    EmptyPassword,
    #[error("seed: cannot hash the user password: {0}")]
    PasswordHash(String),
    #[error("seed: database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("seed: image storage: {0}")]
    Storage(#[from] StorageError),
}

/// Fills the database (already migrated) and the image store.
pub async fn run(db: &Db, images: &BlobStore, args: &SeedArgs) -> Result<SeedReport, SeedError> {
    if args.patients == 0 {
        return Err(SeedError::NoPatients);
    }
    if args.user_password.is_empty() {
        return Err(SeedError::EmptyPassword);
    }
    let mut report = SeedReport::default();
    seed_facilities_and_users(db, &args.user_password, &mut report).await?;
    for facility in &FACILITIES {
        seed_patients(db, images, facility.id, args.patients, &mut report).await?;
        if args.patients >= PROGRESS_EVERY {
            eprintln!("seed: {} done ({} patients)", facility.id, args.patients);
        }
    }
    Ok(report)
}

async fn seed_facilities_and_users(db: &Db, password: &str, report: &mut SeedReport) -> Result<(), SeedError> {
    let mut facilities =
        TableRows::new("facility", &["facility_id", "name", "facility_number", "zip_code", "address", "telephone"]);
    for f in &FACILITIES {
        facilities.push(vec![
            f.id.into(),
            f.name.into(),
            f.number.into(),
            f.zip_code.into(),
            f.address.into(),
            f.telephone.into(),
        ]);
    }
    let existing_users: i64 = with_pool!(db, |pool| sqlx::query_scalar(SEEDED_USERS_SQL).fetch_one(pool).await)?;
    let mut tx = SeedTx::begin(db).await?;
    report.facilities += tx.insert(&mut facilities, "ON CONFLICT DO NOTHING").await?;
    let expected_users = FACILITIES.len() * USERS.len();
    if usize::try_from(existing_users).unwrap_or(0) < expected_users {
        // argon2 is deliberately slow: hash once and reuse the hash for every user.
        let hash = crate::auth::hash_password(password).map_err(|e| SeedError::PasswordHash(e.to_string()))?;
        let mut users =
            TableRows::new("phr_user", &["facility_id", "user_id", "password_hash", "display_name", "role"]);
        for f in &FACILITIES {
            for (user_id, display_name, role) in USERS {
                users.push(vec![f.id.into(), user_id.into(), hash.clone().into(), display_name.into(), role.into()]);
            }
        }
        report.users += tx.insert(&mut users, "ON CONFLICT DO NOTHING").await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn seed_patients(
    db: &Db,
    images: &BlobStore,
    facility_id: &str,
    patients: u32,
    report: &mut SeedReport,
) -> Result<(), SeedError> {
    let existing: HashSet<String> = with_pool!(db, |pool| {
        sqlx::query_scalar("SELECT patient_id FROM patient WHERE facility_id = $1")
            .bind(facility_id)
            .fetch_all(pool)
            .await
    })?
    .into_iter()
    .collect();
    let mut batch = Batch::default();
    let mut queued = 0;
    for n in 1..=patients {
        let pid = patient_id(n);
        if existing.contains(&pid) {
            report.patients_skipped += 1;
            continue;
        }
        catalog::add_patient(&mut batch, facility_id, n);
        for (index, (size, created_at)) in catalog::images(facility_id, n).into_iter().enumerate() {
            let object_key = format!("images/{facility_id}/{pid}/{}.jpg", index + 1);
            let bytes = synthetic_jpeg(&object_key, size);
            let sha256 = sha256_hex(&bytes);
            images.put(&object_key, Bytes::from(bytes)).await?;
            batch.add_image(facility_id, &pid, &object_key, size, &sha256, created_at);
            report.images += 1;
        }
        queued += 1;
        if queued == PATIENTS_PER_BATCH {
            flush(db, &mut batch, report).await?;
            queued = 0;
        }
        if n.is_multiple_of(PROGRESS_EVERY) {
            eprintln!("seed: {facility_id}: {n}/{patients} patients");
        }
    }
    flush(db, &mut batch, report).await
}

/// Writes the queued rows of every table in one transaction.
async fn flush(db: &Db, batch: &mut Batch, report: &mut SeedReport) -> Result<(), SeedError> {
    let mut tx = SeedTx::begin(db).await?;
    for (index, table) in batch.tables_mut().into_iter().enumerate() {
        let written = tx.insert(table, "").await?;
        match index {
            0 => report.patients += written,
            9 => {} // images are counted when stored
            _ => report.records += written,
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_profiles_are_as_documented() {
        assert_eq!(profile("F001", 1), Profile::Full);
        assert_eq!(profile("F002", 1), Profile::Full);
        assert_eq!(profile("F001", 2), Profile::Empty);
        assert_eq!(profile("F002", 2), Profile::Basic);
        assert_eq!(patient_id(7), "P0007");
        assert_eq!(patient_id(100_000), "P100000");
    }

    #[test]
    fn the_seeded_user_count_names_every_seeded_user() {
        for facility in &FACILITIES {
            assert!(SEEDED_USERS_SQL.contains(&format!("'{}'", facility.id)), "{}", facility.id);
        }
        for (user_id, _, _) in USERS {
            assert!(SEEDED_USERS_SQL.contains(&format!("'{user_id}'")), "{user_id}");
        }
    }

    #[test]
    fn newest_images_pin_the_size_cap() {
        let newest = |f, n| catalog::images(f, n).last().map(|(size, _)| *size);
        assert_eq!(newest("F001", 3), Some(OVERSIZE_IMAGE_BYTES));
        assert_eq!(newest("F001", 4), Some(CAP_SIZE_IMAGE_BYTES));
        assert_eq!(newest("F001", 1), Some(NEWEST_IMAGE_P0001_BYTES));
        assert_eq!(newest("F001", 2), None);
        assert_eq!(newest("F001", PATIENTS_WITH_IMAGES + 1), None);
    }
}
