//! Shared pieces of the property tests: a fixed-seed configuration (so a run is reproducible and a
//! failure names the same input every time) and TOML quoting.
#![allow(dead_code)]

use proptest::test_runner::{Config, RngSeed};

/// `cases` cases from a fixed seed, no regression files written into the source tree (the committed
/// corpus under `tests/it/fuzz_corpus/` plays that part).
pub fn config(cases: u32) -> Config {
    Config { cases, rng_seed: RngSeed::Fixed(0x1551_e009), failure_persistence: None, ..Config::default() }
}

/// `text` as a TOML basic string, quotes and escapes included.
pub fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The checkout's corpus folder of one parser.
pub fn corpus(kind: &str) -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fuzz_corpus").join(kind);
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("corpus folder").map(|entry| entry.expect("entry").path()).collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    files
}
