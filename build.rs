//! Link libtorch into the engine binary (`loupe-engine`) so that it (1) starts without
//! LD_LIBRARY_PATH, through an rpath to the libtorch it was built against, and (2) keeps
//! libtorch_cuda.so: nothing references it by symbol, so `--as-needed` would drop it and CUDA
//! would silently be absent at run time (tch-rs issues #177, #329, #907, #980).
//!
//! The `loupe` binary references no tch symbol, so the linker leaves libtorch out of it; the
//! rpath is harmless there and lets the test executables that link the engine's code find it.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        return;
    };
    let lib = libtorch.canonicalize().unwrap_or(libtorch).join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        for arg in ["-Wl,--no-as-needed", "-ltorch_cuda", "-Wl,--as-needed"] {
            println!("cargo:rustc-link-arg-bin=loupe-engine={arg}");
        }
    }
}
