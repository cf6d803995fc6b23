use std::{env, error::Error, path::PathBuf};

// protoc comes from protoc-bin-vendored, so a fresh machine needs nothing
// downloaded or installed to build the workspace.
fn main() -> Result<(), Box<dyn Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let include = protoc_bin_vendored::include_path()?;
    let protos = [
        "huddle/user/v1/user.proto",
        "huddle/meeting/v1/meeting.proto",
        "huddle/recording/v1/recording.proto",
        "huddle/chat/v1/chat.proto",
    ]
    .map(|p| root.join(p));
    let out = PathBuf::from(env::var("OUT_DIR")?);

    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("huddle_descriptor.bin"))
        .compile_with_config(config, &protos, &[root.clone(), include])?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
