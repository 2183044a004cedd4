//! Facts about how this extension was built, recorded by `build.rs` at compile time.
use crate::errors::Error;

/// The keys `build_info` reports, in display order, each with its value.
pub fn facts() -> Vec<(&'static str, String)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    vec![
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        // What users care about: were optimisations and debug assertions on?
        (
            "profile",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_string(),
        ),
        ("cargo_profile", env!("QGFAST_BUILD_PROFILE").to_string()),
        ("opt_level", env!("QGFAST_BUILD_OPT_LEVEL").to_string()),
        ("target", env!("QGFAST_BUILD_TARGET").to_string()),
        ("rustc", env!("QGFAST_RUSTC_VERSION").to_string()),
        ("abi3", "cp310".to_string()),
        ("available_threads", threads.to_string()),
        // found at run time, not build time: the decoder ImageStream's "auto" takes
        ("jpeg_decoder", crate::io::jpeg::describe()),
    ]
}

/// The value of one fact, or an error naming the keys that exist.
pub fn lookup(key: &str) -> Result<String, Error> {
    let all = facts();
    if let Some((_, value)) = all.iter().find(|(k, _)| *k == key) {
        return Ok(value.clone());
    }
    let known: Vec<&str> = all.iter().map(|(k, _)| *k).collect();
    Err(Error::InvalidArgument(format!(
        "build_info: unknown key {key:?}; known keys: {}",
        known.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_have_unique_nonempty_keys_and_values() {
        let all = facts();
        let mut keys: Vec<&str> = all.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), all.len());
        assert!(all.iter().all(|(_, v)| !v.is_empty()));
    }

    #[test]
    fn lookup_finds_version_and_rejects_unknown_keys() {
        assert_eq!(lookup("version").unwrap(), env!("CARGO_PKG_VERSION"));
        let err = lookup("colour").unwrap_err();
        match err {
            Error::InvalidArgument(msg) => {
                assert!(
                    msg.contains("\"colour\"") && msg.contains("version"),
                    "{msg}"
                )
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn profile_matches_debug_assertions() {
        let expected = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        assert_eq!(lookup("profile").unwrap(), expected);
    }
}
