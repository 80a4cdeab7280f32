// Generates the client and server of `z4j.scheduler.v1.SchedulerService`
// from the vendored proto, with the vendored protoc (no system install).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/scheduler.proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    // prost-build reads PROTOC; the build script is single-threaded.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &[std::path::PathBuf::from("proto/scheduler.proto")],
            &[std::path::PathBuf::from("proto"), include],
        )?;
    Ok(())
}
