//! feedback-service: mid-contract and end-of-contract feedback, checked for
//! eligibility with contract-service over gRPC; bonuses paid through it.

pub mod app;
pub mod config;
pub mod contracts;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod moderation;
pub mod prompts;
pub mod store;

pub use app::Application;
pub use config::Config;
