//! Compiles `proto/berth/v1/*.proto` with protox (a protobuf compiler in Rust, so no `protoc`
//! is needed) and generates the prost messages and tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/berth/v1/compose.proto",
        "proto/berth/v1/system.proto",
        "proto/berth/v1/cluster.proto",
        "proto/berth/v1/service.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
