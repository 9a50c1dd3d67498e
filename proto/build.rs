use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Clients are built on our own unix-socket channel, so no transport helpers.
        .build_transport(false)
        .file_descriptor_set_path(out.join("lanes_descriptor.bin"))
        .compile_protos(&["lanes/v1/cni.proto", "lanes/v1/node.proto"], &["."])?;
    Ok(())
}
