//! Compiles the wire contract in `proto/` with the pure-Rust `protox` (no system
//! `protoc`), generates tonic code, and keeps the encoded descriptor set for
//! server reflection.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "marketplace/contract/v1/contract_service.proto",
    "marketplace/feedback/v1/feedback_service.proto",
    "marketplace/testing/v1/test_clock_service.proto",
    "marketplace/testing/v1/echo_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [&root])?;
    std::fs::write(out_dir.join("descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
