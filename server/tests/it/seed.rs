//! `phr-server seed` against real databases: the documented fixtures exist, the data is deterministic, image
//! blobs match their rows, and re-running never duplicates anything.

use crate::support;
use futures::TryStreamExt;
use phr_server::Db;
use phr_server::seed::{self, SeedArgs, SeedError, SeedReport};
use phr_server::storage::BlobStore;
use sqlx::Row;

/// A migrated database plus an image folder.
struct Seeded {
    db: Db,
    images: BlobStore,
    _images_dir: tempfile::TempDir,
    _test_db: support::TestDb,
}

async fn open(test_db: support::TestDb) -> Seeded {
    let db = Db::connect(&test_db.url).await.expect("connect");
    db.migrate().await.expect("migrate");
    let images_dir = tempfile::tempdir().expect("image dir");
    let images = BlobStore::local(images_dir.path()).expect("blob store");
    Seeded { db, images, _images_dir: images_dir, _test_db: test_db }
}

fn args(patients: u32) -> SeedArgs {
    SeedArgs { patients, user_password: support::PASSWORD.to_owned() }
}

async fn count(db: &Db, sql: &'static str) -> i64 {
    phr_server::with_pool!(db, |pool| sqlx::query_scalar(sql).fetch_one(pool).await).expect(sql)
}

/// Row counts of every seeded table, in a fixed order.
async fn table_counts(db: &Db) -> Vec<i64> {
    let mut counts = Vec::new();
    for sql in [
        "SELECT COUNT(*) FROM facility",
        "SELECT COUNT(*) FROM phr_user",
        "SELECT COUNT(*) FROM patient",
        "SELECT COUNT(*) FROM phr_key",
        "SELECT COUNT(*) FROM allergy",
        "SELECT COUNT(*) FROM disease",
        "SELECT COUNT(*) FROM document",
        "SELECT COUNT(*) FROM bundle",
        "SELECT COUNT(*) FROM claim_item",
        "SELECT COUNT(*) FROM lab_module",
        "SELECT COUNT(*) FROM lab_item",
        "SELECT COUNT(*) FROM phr_image",
    ] {
        counts.push(count(db, sql).await);
    }
    counts
}

/// `(object_key, size_bytes, sha256)` of a patient's images, newest first.
async fn images_of(db: &Db, facility: &str, patient: &str) -> Vec<(String, i64, String)> {
    const SQL: &str = "SELECT object_key, size_bytes, sha256 FROM phr_image \
                       WHERE facility_id = $1 AND patient_id = $2 ORDER BY created_at DESC, id DESC";
    phr_server::with_pool!(db, |pool| {
        sqlx::query(SQL)
            .bind(facility)
            .bind(patient)
            .fetch_all(pool)
            .await
            .map(|rows| rows.into_iter().map(|r| (r.get("object_key"), r.get("size_bytes"), r.get("sha256"))).collect())
    })
    .expect("image rows")
}

async fn blob_bytes(images: &BlobStore, key: &str) -> Vec<u8> {
    let blob = images.open(key).await.expect("blob exists");
    let chunks: Vec<bytes::Bytes> = blob.chunks.try_collect().await.expect("blob reads");
    chunks.concat()
}

#[tokio::test]
async fn seed_creates_the_documented_fixtures() {
    for test_db in support::backends().await {
        let backend = test_db.backend;
        let seeded = open(test_db).await;

        let report = seed::run(&seeded.db, &seeded.images, &args(5)).await.expect("seed");

        assert_eq!((report.facilities, report.users, report.patients), (3, 6, 15), "{backend:?}: {report}");
        assert_eq!(
            count(&seeded.db, "SELECT COUNT(*) FROM phr_user WHERE user_id = 'ops' AND role = 'admin'").await,
            3
        );
        let empty_patient = [
            "SELECT COUNT(*) FROM phr_key WHERE facility_id = 'F001' AND patient_id = 'P0002'",
            "SELECT COUNT(*) FROM allergy WHERE facility_id = 'F001' AND patient_id = 'P0002'",
            "SELECT COUNT(*) FROM disease WHERE facility_id = 'F001' AND patient_id = 'P0002'",
            "SELECT COUNT(*) FROM document WHERE facility_id = 'F001' AND patient_id = 'P0002'",
            "SELECT COUNT(*) FROM lab_module WHERE facility_id = 'F001' AND patient_id = 'P0002'",
            "SELECT COUNT(*) FROM phr_image WHERE facility_id = 'F001' AND patient_id = 'P0002'",
        ];
        for sql in empty_patient {
            assert_eq!(count(&seeded.db, sql).await, 0, "{backend:?}: F001/P0002 has no records: {sql}");
        }
        assert!(
            count(&seeded.db, "SELECT COUNT(*) FROM document WHERE facility_id = 'F001' AND patient_id = 'P0001'")
                .await
                > 3
        );
        assert!(
            count(&seeded.db, "SELECT COUNT(*) FROM lab_module WHERE facility_id = 'F001' AND patient_id = 'P0001'")
                .await
                > 3
        );
        assert_eq!(count(&seeded.db, "SELECT COUNT(*) FROM allergy WHERE facility_id = 'F001' AND patient_id = 'P0001' AND severity = 'severe'").await, 1);
        assert_eq!(count(&seeded.db, "SELECT COUNT(*) FROM disease WHERE facility_id = 'F001' AND patient_id = 'P0001' AND status = 'inactive'").await, 1);
        assert!(
            count(&seeded.db, "SELECT COUNT(*) FROM document WHERE facility_id = 'F002' AND patient_id = 'P0001'")
                .await
                > 0
        );

        for (patient, newest_size) in [
            ("P0001", seed::NEWEST_IMAGE_P0001_BYTES),
            ("P0003", seed::OVERSIZE_IMAGE_BYTES),
            ("P0004", seed::CAP_SIZE_IMAGE_BYTES),
        ] {
            let images = images_of(&seeded.db, "F001", patient).await;
            assert!(images.len() >= 2, "{patient} has several images");
            let (key, size, sha256) = &images[0];
            assert_eq!(*size, i64::try_from(newest_size).unwrap(), "{patient}'s newest image");
            let bytes = blob_bytes(&seeded.images, key).await;
            assert_eq!(bytes.len(), newest_size, "{patient}: the blob has the row's size");
            assert_eq!(&bytes[..2], &[0xFF, 0xD8], "JPEG SOI");
            assert_eq!(&bytes[bytes.len() - 2..], &[0xFF, 0xD9], "JPEG EOI");
            assert_eq!(sha256, &phr_server::audit::sha256_hex(&bytes), "{patient}: the row's digest matches the blob");
        }
    }
}

#[tokio::test]
async fn seeding_again_duplicates_nothing_and_only_adds_missing_patients() {
    for test_db in support::backends().await {
        let backend = test_db.backend;
        let seeded = open(test_db).await;
        seed::run(&seeded.db, &seeded.images, &args(3)).await.expect("first seed");
        let before = table_counts(&seeded.db).await;

        let again = seed::run(&seeded.db, &seeded.images, &args(3)).await.expect("second seed");

        assert_eq!(again, SeedReport { patients_skipped: 9, ..SeedReport::default() }, "{backend:?}");
        assert_eq!(table_counts(&seeded.db).await, before, "{backend:?}: nothing duplicated");

        let larger = seed::run(&seeded.db, &seeded.images, &args(5)).await.expect("larger seed");
        assert_eq!((larger.patients, larger.patients_skipped), (6, 9), "{backend:?}");
        assert_eq!(count(&seeded.db, "SELECT COUNT(*) FROM patient").await, 15);
    }
}

#[tokio::test]
async fn seed_is_deterministic_across_databases() {
    let first = open(support::sqlite()).await;
    let second = open(support::sqlite()).await;

    seed::run(&first.db, &first.images, &args(4)).await.expect("seed one");
    seed::run(&second.db, &second.images, &args(4)).await.expect("seed two");

    assert_eq!(table_counts(&first.db).await, table_counts(&second.db).await);
    assert_eq!(images_of(&first.db, "F001", "P0001").await, images_of(&second.db, "F001", "P0001").await);
    let key = |db: Db| async move {
        phr_server::with_pool!(&db, |pool| {
            sqlx::query_scalar::<_, String>(
                "SELECT access_key FROM phr_key WHERE facility_id = 'F002' AND patient_id = 'P0001'",
            )
            .fetch_one(pool)
            .await
        })
        .expect("key")
    };
    assert_eq!(key(first.db.clone()).await, seed::access_key("F002", "P0001"));
    assert_eq!(key(second.db.clone()).await, seed::access_key("F002", "P0001"));
}

#[tokio::test]
async fn seed_refuses_empty_passwords_and_zero_patients() {
    let seeded = open(support::sqlite()).await;

    let no_password =
        seed::run(&seeded.db, &seeded.images, &SeedArgs { patients: 1, user_password: String::new() }).await;
    let no_patients = seed::run(&seeded.db, &seeded.images, &args(0)).await;

    assert!(matches!(no_password, Err(SeedError::EmptyPassword)), "{no_password:?}");
    assert!(matches!(no_patients, Err(SeedError::NoPatients)), "{no_patients:?}");
    assert_eq!(count(&seeded.db, "SELECT COUNT(*) FROM patient").await, 0, "nothing written");
}
