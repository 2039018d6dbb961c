//! feedback-service's binary: the command line and start-up both services
//! share (`shared::service`).

/// mimalloc, as in contract-service (see its main.rs and docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    shared::service::main::<feedback_service::Application>()
}
