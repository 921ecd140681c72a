//! The PHR endpoints (`/openDolphin/resources/20/adm/phr/*`) and the pipeline every one of them runs through.
//!
//! The spec's common rules and its audit rule are the same for every endpoint, so they live in one place,
//! [`pipeline::handle`]. An endpoint is a closure from an authenticated [`request::Caller`] to a
//! [`reply::Reply`] or an [`ApiError`](crate::error::ApiError); it never writes audit rows or error bodies
//! itself. This file only mounts the routes: the pipeline and its types live in `pipeline`, `request` and
//! `reply`, which the endpoint modules (`keys`, `text`, `identity`, `image`, `container`, `export`) import
//! directly, so no endpoint module imports this one.

pub mod container;
pub mod delivery;
pub mod export;
pub mod guard;
pub mod identity;
pub mod image;
pub mod keys;
mod mask;
pub mod pipeline;
pub mod reply;
pub mod request;
pub mod text;

use axum::Router;

use crate::audit::Action;
use crate::paths;
use crate::state::AppState;

/// One mounted route: its method, its path (relative to the router it is mounted in), and the audit action
/// of its calls (`phr-server routes` prints these; a test calls each one and reads the action back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// Lower-case HTTP method, as axum's routing function is named.
    pub method: &'static str,
    pub path: &'static str,
    pub action: Action,
}

/// Mounts each route and lists it in [`ROUTES`] from one line, so the map cannot drift from the router.
macro_rules! phr_routes {
    ($($method:ident $path:expr => $handler:path, $action:ident;)*) => {
        /// Routes of Phases A–F, relative to [`paths::PHR_BASE`], in the order they are mounted.
        pub const ROUTES: &[RouteSpec] =
            &[$(RouteSpec { method: stringify!($method), path: $path, action: Action::$action }),*];

        /// The router of [`ROUTES`]. Literal segments win over `/{param}` in the router, so `/image/…` is never
        /// read as a container CSV.
        pub fn routes() -> Router<AppState> {
            Router::new()$(.route($path, axum::routing::$method($handler)))*
        }
    };
}

phr_routes! {
    put "/accessKey" => keys::upsert, AccessKeyUpsert;
    get "/accessKey/{access_key}" => keys::fetch, AccessKeyFetch;
    get "/patient/{patient_id}" => keys::fetch_by_patient, AccessKeyFetchByPatient;
    get "/abnormal/{patient_id}" => text::abnormal, LabtestAbnormalText;
    get "/allergy/{patient_id}" => text::allergy, AllergyText;
    get "/disease/{patient_id}" => text::disease, DiseaseText;
    get "/labtest/{patient_id}" => text::labtest, LabtestText;
    get "/medication/{patient_id}" => text::medication, MedicationText;
    post "/identityToken" => identity::issue, LayerIdTokenIssue;
    get "/image/{patient_id}" => image::stream, ImageStream;
    post "/export" => export::submit, ExportRequest;
    get paths::EXPORT_STATUS => export::status, ExportStatus;
    delete paths::EXPORT_STATUS => export::cancel, ExportCancel;
    get paths::EXPORT_ARTIFACT => export::artifact, ExportArtifact;
    get "/{csv}" => container::fetch, ContainerFetch;
}
