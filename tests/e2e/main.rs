//! End-to-end tests: real services on port 0, real gRPC clients, every
//! test on SQLite and on PostgreSQL.

mod contract_service;
mod disputes;
mod feedback_service;
mod hostile;
mod metrics;
mod moderation;
mod nats;
mod operations;
mod prompts;
mod schema;
mod security;
mod soak;
