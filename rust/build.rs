//! Records facts about the build that `qgfast._native.build_info()` reports at run time:
//! which rustc and target produced the extension, and with which cargo profile.
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=QGFAST_RUSTC_VERSION={version}");
    for key in ["TARGET", "PROFILE", "OPT_LEVEL"] {
        let value = std::env::var(key).unwrap_or_else(|_| "unknown".to_string());
        println!("cargo:rustc-env=QGFAST_BUILD_{key}={value}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
