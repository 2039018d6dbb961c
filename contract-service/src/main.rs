//! contract-service's binary: the command line and start-up both services
//! share (`shared::service`).

/// mimalloc rather than the system allocator: under load, glibc's malloc
/// (its arena locks and consolidation) took about a third of the machine's
/// CPU in a profile of the batch eligibility check (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    shared::service::main::<contract_service::Application>()
}
