//! What both services share: the generated wire contract, authentication,
//! error-to-status mapping, input validation, the database pool, idempotency,
//! the outbox, group commit, paging, telemetry, the clock and the gRPC server builder.

pub mod api;
pub mod auth;
pub mod clock;
pub mod db;
pub mod deadline;
pub mod host;
pub mod idempotency;
pub mod ids;
pub mod metrics;
pub mod migrate;
pub mod nats;
pub mod observe;
pub mod outbox;
pub mod paging;
pub mod proto;
pub mod server;
pub mod service;
pub mod sqlite_inline;
pub mod status;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod validate;
pub mod writer;
