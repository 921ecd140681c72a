//! The fixtures tests and demos name: the sizes of the seeded images that pin PHR-07's limits, and the
//! deterministic access and secret keys of every seeded patient.
//!
//! A leaf of `seed`: the catalog (which patient gets what) and the batch (how rows are spread over tables)
//! both read these, so they live apart from the module that drives the two.

use crate::audit::sha256_hex;

/// Size of the small seeded images.
pub const SMALL_IMAGE_BYTES: usize = 2 * 1024;
/// Size of F001/P0001's newest image.
pub const NEWEST_IMAGE_P0001_BYTES: usize = 1024 * 1024;
/// Size of F001/P0003's newest image: one byte over the default 5 MiB cap (PHR-07 answers 413).
pub const OVERSIZE_IMAGE_BYTES: usize = 5 * 1024 * 1024 + 1;
/// Size of F001/P0004's newest image: exactly the default 5 MiB cap (PHR-07 streams it).
pub const CAP_SIZE_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// Patients numbered up to this get images (F001/P0002 excepted), so a large seed stays small on disk.
pub const PATIENTS_WITH_IMAGES: u32 = 20;

/// The seeded access key of a patient (deterministic, so tests and demos can use it).
pub fn access_key(facility_id: &str, patient_id: &str) -> String {
    format!("AK{}", &sha256_hex(format!("phr-seed:access:{facility_id}:{patient_id}").as_bytes())[..30])
}

/// The seeded secret key of a patient.
pub fn secret_key(facility_id: &str, patient_id: &str) -> String {
    format!("SK{}", &sha256_hex(format!("phr-seed:secret:{facility_id}:{patient_id}").as_bytes())[..30])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_and_distinct_per_facility() {
        assert_eq!(access_key("F001", "P0001"), access_key("F001", "P0001"));
        assert_ne!(access_key("F001", "P0001"), access_key("F002", "P0001"));
        assert_ne!(access_key("F001", "P0001"), secret_key("F001", "P0001"));
        assert_eq!(access_key("F001", "P0001").len(), 32);
    }
}
