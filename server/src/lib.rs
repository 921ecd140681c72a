//! `phr-server`: the PHR (OpenDolphin adm20) REST API under test.
//!
//! Mutual TLS plus HTTP Basic in front of the PHR endpoints of `shared/spec/PHR_API.md`, every call leaving a
//! hash-chained row in `d_audit_event`. The crate is a library first: [`App::build`] validates and loads,
//! [`App::serve`] runs on listeners the caller bound, so the binary, the tests and `connrun demo` start the
//! same server the same way. See ARCHITECTURE.md for the map.

#[macro_use]
pub mod db;

pub mod app;
pub mod audit;
pub mod auth;
pub mod burst;
pub mod clinical;
pub mod clock;
pub mod config;
pub mod dbtx;
pub mod error;
pub mod export;
pub mod layer_key;
pub mod listener;
pub mod metrics;
pub mod ops;
pub mod paths;
pub mod phr;
pub mod secrets;
pub mod seed;
pub mod serverinfo;
pub mod state;
pub mod storage;
pub mod tls;

pub use app::{App, Listeners, MappedRoute, StartupError, install_crypto_provider, route_map};
pub use clock::Clock;
pub use config::{Config, ImagePolicy, TlsMaterial};
pub use db::Db;
pub use state::AppState;
