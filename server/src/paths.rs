//! The URL paths of the API, spelled once: the router mounts them and the code that writes a path into a
//! response (the `Location` of a new export job, the signed artifact URL) builds it from the same constants.
//!
//! A leaf module: it imports nothing from the crate, so the export subsystem can name the artifact route
//! without depending on the HTTP handlers that serve it.

use std::fmt::Display;

/// Base path of the PHR API; every route of `phr::routes` is mounted under it.
pub const PHR_BASE: &str = "/openDolphin/resources/20/adm/phr";

/// The server-information route (outside [`PHR_BASE`], as in the original).
pub const SERVER_INFO: &str = "/openDolphin/resources/serverinfo/{*key}";

/// Where [`SERVER_INFO`] is mounted; audited like the PHR paths.
pub const SERVER_INFO_BASE: &str = "/openDolphin/resources/serverinfo";

/// `GET|DELETE` of one export job, relative to [`PHR_BASE`].
pub const EXPORT_STATUS: &str = "/status/{job_id}";

/// The artifact download of one export job, relative to [`PHR_BASE`].
pub const EXPORT_ARTIFACT: &str = "/export/{job_id}/artifact";

/// The absolute path of [`EXPORT_STATUS`] for `job_id`.
pub fn export_status(job_id: impl Display) -> String {
    format!("{PHR_BASE}/status/{job_id}")
}

/// The absolute path of [`EXPORT_ARTIFACT`] for `job_id`.
pub fn export_artifact(job_id: impl Display) -> String {
    format!("{PHR_BASE}/export/{job_id}/artifact")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_paths_match_the_mounted_routes() {
        assert_eq!(export_status("J1"), format!("{PHR_BASE}{}", EXPORT_STATUS.replace("{job_id}", "J1")));
        assert_eq!(export_artifact("J1"), format!("{PHR_BASE}{}", EXPORT_ARTIFACT.replace("{job_id}", "J1")));
        assert_eq!(SERVER_INFO, format!("{SERVER_INFO_BASE}/{{*key}}"));
    }
}
