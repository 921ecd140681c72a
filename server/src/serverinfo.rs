//! `GET /openDolphin/resources/serverinfo/{jamri | claim/conn | cloud/zero}`: installation facts as text.
//!
//! The connectivity run's first probe reads these (the ops log records `body=server` for `claim/conn`), so
//! the paths and the plain-text answers are the original's. Values come from configuration
//! ([`ServerInfoArgs`]); nothing else is reachable through this endpoint, and as a second guard any property
//! whose name or value mentions a password, token, secret or JDBC URL answers blank, so a misconfigured value
//! can never leak credentials to a caller. The endpoint sits behind the same mTLS and Basic auth as the PHR
//! calls and is audited like them (`SERVER_INFO_FETCH`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::audit::Action;
use crate::config::ServerInfoArgs;
use crate::error::{ApiError, ErrorCode};
use crate::phr::pipeline;
use crate::phr::reply::Reply;
use crate::phr::request::{AuthMode, RequestMeta};
use crate::state::AppState;

/// Words that make a property answer blank, whether in its name or its value (case-insensitive).
const SENSITIVE_WORDS: [&str; 4] = ["password", "token", "secret", "jdbc"];

/// One served property: its path under `serverinfo/`, its property name in the original, its value.
struct Property<'a> {
    path: &'static str,
    name: &'static str,
    value: &'a str,
}

fn properties(info: &ServerInfoArgs) -> [Property<'_>; 3] {
    [
        Property { path: "jamri", name: "jamri.code", value: &info.jamri },
        Property { path: "claim/conn", name: "claim.conn", value: &info.claim_conn },
        Property { path: "cloud/zero", name: "cloud.zero", value: &info.cloud_zero },
    ]
}

/// The text served for `path`: `None` for an unknown path, blank for a sensitive property.
pub fn lookup<'a>(info: &'a ServerInfoArgs, path: &str) -> Option<&'a str> {
    let path = path.trim_matches('/');
    let property = properties(info).into_iter().find(|p| p.path == path)?;
    Some(if is_sensitive(property.name) || is_sensitive(property.value) { "" } else { property.value })
}

fn is_sensitive(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    SENSITIVE_WORDS.iter().any(|word| lower.contains(word))
}

/// `GET /openDolphin/resources/serverinfo/{*key}`.
pub async fn fetch(State(app): State<AppState>, meta: RequestMeta, Path(key): Path<String>) -> Response {
    pipeline::handle(&app, meta, Action::ServerInfo, AuthMode::Basic, async |_caller| {
        let value = lookup(&app.config.server_info, &key).ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidParameter, format!("unknown server info key {key:?}"))
                .with_status(StatusCode::NOT_FOUND)
                .with_detail("key", key.clone())
        })?;
        Ok(Reply::text(value.to_owned()).detail("key", key.clone()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_answer_their_values_and_unknown_ones_none() {
        let info = ServerInfoArgs { jamri: "1234567".into(), claim_conn: "server".into(), cloud_zero: "false".into() };

        assert_eq!(lookup(&info, "jamri"), Some("1234567"));
        assert_eq!(lookup(&info, "claim/conn"), Some("server"));
        assert_eq!(lookup(&info, "cloud/zero/"), Some("false"));
        assert_eq!(lookup(&info, "claim"), None);
        assert_eq!(lookup(&info, "../jamri"), None);
    }

    #[test]
    fn a_value_that_looks_like_a_credential_answers_blank() {
        let info = ServerInfoArgs {
            jamri: "jdbc:postgresql://db/opd?user=a".into(),
            claim_conn: "Token=abc".into(),
            cloud_zero: "my-SECRET".into(),
        };

        assert_eq!(lookup(&info, "jamri"), Some(""));
        assert_eq!(lookup(&info, "claim/conn"), Some(""));
        assert_eq!(lookup(&info, "cloud/zero"), Some(""));
    }
}
