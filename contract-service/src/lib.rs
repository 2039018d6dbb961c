//! contract-service: owns contracts, Work Diaries, payments, refunds and
//! weekly billing disputes; ends contracts and locks Work Diaries.

pub mod app;
pub mod billing;
mod common;
pub mod config;
pub mod contracts;
pub mod diary;
pub mod disputes;
pub mod domain;
pub mod error;
mod events;
pub mod grpc;
pub mod payments;
pub mod store;
#[cfg(test)]
mod test_support;
pub mod workers;

pub use app::Application;
pub use config::Config;
