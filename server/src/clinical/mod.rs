//! The clinical data behind the PHR endpoints: patients, PHR keys, allergies, diseases, documents with their
//! bundles and claim items, laboratory reports, and the queries that read them.
//!
//! Every function takes the caller's facility id and filters by it in SQL, so facility isolation does not
//! depend on a handler remembering to check; an id of another facility simply does not exist here. Functions
//! return [`ClinicalError`], which maps onto the spec's error codes ([`ApiError`](crate::error::ApiError));
//! the HTTP shapes (text lines, JSON DTOs) are built here so the export jobs of Phase F can reuse them
//! without the HTTP layer. This file only re-exports; the shared rules are in `common`.

mod common;
mod container;
mod dto;
mod keys;
mod records;

pub use common::{ClinicalError, MAX_ID_CHARS, japanese_date, plausible_id, require_patient};
pub use container::{CONTAINER_LIMIT, ContainerQuery, PrescriptionReply, container, medication};
pub use dto::{
    Medication, PhrBundle, PhrCatch, PhrClaimItem, PhrContainer, PhrKey, PhrKeyInput, PhrLabItem, PhrLabModule,
};
pub use keys::{NewPhrKey, key_by_access_key, key_by_patient, upsert_key};
pub use records::{
    ABNORMAL_EMPTY, ALLERGY_EMPTY, DISEASE_EMPTY, LABTEST_EMPTY, MEDICATION_EMPTY, abnormal_lines, allergy_lines,
    disease_lines, labtest_lines, text_body,
};
