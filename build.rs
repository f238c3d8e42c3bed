//! Compiles proto/ with protox (pure Rust, no system protoc) into Rust types and the descriptor
//! set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/tokenauthority/v1/token_authority.proto";
    println!("cargo:rerun-if-changed=proto");

    let mut compiler = protox::Compiler::new(["proto"])?;
    // Imports (google/protobuf/*.proto) go into the set so grpcurl can resolve Struct and
    // Duration; source info carries the proto comments to `grpcurl describe`.
    compiler.include_imports(true).include_source_info(true);
    compiler.open_file(proto)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("token_authority_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
