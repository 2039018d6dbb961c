//! feedback-service: mid-contract and end-of-contract feedback, checked for
//! eligibility with contract-service over gRPC; bonuses paid through it.

pub mod api;
pub mod app;
mod common;
pub mod config;
pub mod contracts;
pub mod domain;
mod end_contract;
pub mod error;
mod events;
pub mod grpc;
mod history;
mod mid_contract;
pub mod moderation;
pub mod prompts;
mod requests;
pub mod store;
pub mod workers;

pub use app::Application;
pub use config::Config;
