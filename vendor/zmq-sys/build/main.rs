use std::env;

pub fn configure() {
    println!("cargo:rerun-if-changed=build/main.rs");
    println!("cargo:rerun-if-env-changed=PROFILE");

    // Patched for zavro: link the libsodium that libsodium-sys-stable builds
    // (it passes its folders as DEP_SODIUM_LIB and DEP_SODIUM_INCLUDE), so that
    // libzmq has ZMQ_CURVE. Upstream passes `None`, which leaves CURVE out.
    let lib = env::var("DEP_SODIUM_LIB").expect("libsodium-sys-stable sets DEP_SODIUM_LIB");
    let include =
        env::var("DEP_SODIUM_INCLUDE").expect("libsodium-sys-stable sets DEP_SODIUM_INCLUDE");
    zeromq_src::Build::new()
        .with_libsodium(Some(zeromq_src::LibLocation::new(lib, include)))
        .build();
}

fn main() {
    configure()
}
