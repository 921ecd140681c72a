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
use axum::routing::{delete, get, post, put};

use crate::paths;
use crate::state::AppState;

/// Routes of Phases A–F, relative to [`paths::PHR_BASE`]. Literal segments win over `/{param}` in the router,
/// so `/image/…` is never read as a container CSV.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/accessKey", put(keys::upsert))
        .route("/accessKey/{access_key}", get(keys::fetch))
        .route("/patient/{patient_id}", get(keys::fetch_by_patient))
        .route("/abnormal/{patient_id}", get(text::abnormal))
        .route("/allergy/{patient_id}", get(text::allergy))
        .route("/disease/{patient_id}", get(text::disease))
        .route("/labtest/{patient_id}", get(text::labtest))
        .route("/medication/{patient_id}", get(text::medication))
        .route("/identityToken", post(identity::issue))
        .route("/image/{patient_id}", get(image::stream))
        .route("/export", post(export::submit))
        .route(paths::EXPORT_STATUS, get(export::status).merge(delete(export::cancel)))
        .route(paths::EXPORT_ARTIFACT, get(export::artifact))
        .route("/{csv}", get(container::fetch))
}
