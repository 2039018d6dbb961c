//! Prints a bearer token signed with the public dev key, for grpcurl calls
//! against services started with `--dev`.
//!
//! ```text
//! cargo run -q --bin mint-token -- --sub alice
//! cargo run -q --bin mint-token -- --sub billing --scope payments:write
//! ```

use clap::Parser;
use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, TokenSpec, mint_dev};

/// Mint a dev token (user token without --scope, service token with it).
#[derive(Debug, Parser)]
#[command(name = "mint-token", version)]
struct Args {
    /// The user id, or the service's name for a service token.
    #[arg(long)]
    sub: String,
    /// A scope for a service token (repeat for several, or space-separate).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Lifetime in hours.
    #[arg(long, default_value_t = 24)]
    ttl_hours: i64,
    #[arg(long, default_value = DEFAULT_ISSUER)]
    issuer: String,
    #[arg(long, default_value = DEFAULT_AUDIENCE)]
    audience: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let spec = TokenSpec {
        sub: args.sub,
        scopes: args
            .scopes
            .iter()
            .flat_map(|s| s.split_whitespace())
            .map(str::to_owned)
            .collect(),
        ttl: chrono::Duration::hours(args.ttl_hours),
        issuer: args.issuer,
        audience: args.audience,
    };
    println!("{}", mint_dev(&spec)?);
    Ok(())
}
