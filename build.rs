//! The `ctranslate2` feature links CTranslate2's shared library: ct2rs asks for `-lctranslate2`
//! and finds it on `CMAKE_LIBRARY_PATH`; .cargo/config.toml points that and `CTRANSLATE2_LIB_DIR`
//! at .ctranslate2/lib, where scripts/ctranslate2.sh puts it. This checks the library is there
//! (a clear error instead of a linker's) and adds its directory to the binaries' and test
//! binaries' rpath, so they find it at run time; elsewhere, install it where the dynamic loader
//! looks (the Dockerfile copies it to /usr/local/lib).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CTRANSLATE2_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_CTRANSLATE2").is_none() {
        return;
    }
    let dir = std::env::var_os("CTRANSLATE2_LIB_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it")).join(".ctranslate2/lib")
    });
    let library = dir.join("libctranslate2.so");
    if !library.exists() {
        panic!(
            "CTranslate2's library is not at {}: run scripts/ctranslate2.sh (scripts/setup.sh runs it), \
             point CTRANSLATE2_LIB_DIR at a directory holding libctranslate2.so 4.8.4, or build \
             without the `ctranslate2` feature",
            library.display()
        );
    }
    println!("cargo:rerun-if-changed={}", library.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}
