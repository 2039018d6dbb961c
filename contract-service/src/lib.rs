//! contract-service: owns contracts, Work Diaries, payments, refunds and
//! weekly billing disputes; ends contracts and locks Work Diaries.

pub mod app;
pub mod config;
pub mod disputes;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod store;

pub use app::Application;
pub use config::Config;
