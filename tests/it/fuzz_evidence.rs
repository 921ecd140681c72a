//! Property tests of the manifest and archive readers: arbitrary bytes and arbitrary archives never panic
//! and are refused naming the file; a run folder round-trips through its manifest and through an archive,
//! and a changed byte is always found.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use crate::fuzz_support::config;
use connrun::compare::archive::{self, ArchiveError};
use connrun::evidence::{self, Mismatch};

/// A file path inside a run: 1 to 4 plain segments, some long enough to need a long-name tar header.
fn run_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9_-][a-zA-Z0-9_.-]{0,59}", 1..4).prop_map(|parts| parts.join("/"))
}

/// Files of a run folder: no path is also the folder of another, and none is the manifest.
fn run_files() -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
    prop::collection::btree_map(run_path(), prop::collection::vec(any::<u8>(), 0..300), 1..8)
        .prop_filter("a path cannot be both a file and a folder", |files| {
            files.keys().all(|a| a != "manifest.json" && !files.keys().any(|b| b.starts_with(&format!("{a}/"))))
        })
}

/// JSON that looks like a manifest more or less: the right keys with odd values, or the wrong shape.
fn manifest_like() -> impl Strategy<Value = String> {
    let entry = (prop_oneof!["\\PC{0,20}", run_path(), Just("../x".to_owned())], any::<u64>(), "[0-9a-f]{0,64}")
        .prop_map(|(path, size, sha)| serde_json::json!({"path": path, "size": size, "sha256": sha}));
    let files = prop::collection::vec(entry, 0..6);
    (any::<u32>(), "\\PC{0,30}", files, 0u8..4).prop_map(|(version, run_id, files, shape)| {
        let value = match shape {
            0 => serde_json::json!({"schema_version": version, "run_id": run_id, "files": files}),
            1 => serde_json::json!({"schema_version": version, "files": files}),
            2 => serde_json::json!([version, run_id, files]),
            _ => serde_json::json!({"schema_version": -1, "run_id": run_id, "files": "none"}),
        };
        value.to_string()
    })
}

/// Writes a `.tar.gz` of `(name, kind, bytes)` entries; kind 0 is a file, 1 a folder, 2 a symbolic link.
fn write_archive(to: &Path, entries: &[(String, u8, Vec<u8>)]) {
    let writer = flate2::write::GzEncoder::new(std::fs::File::create(to).expect("create"), flate2::Compression::fast());
    let mut builder = tar::Builder::new(writer);
    for (name, kind, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(match kind {
            0 => tar::EntryType::Regular,
            1 => tar::EntryType::Directory,
            _ => tar::EntryType::Symlink,
        });
        header.set_size(if *kind == 0 { bytes.len() as u64 } else { 0 });
        let data: &[u8] = if *kind == 0 { bytes } else { &[] };
        if name.len() < 100 {
            // Written raw, so names the tar writer would refuse (`..`) reach the reader too.
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, data).expect("append");
        } else {
            builder.append_data(&mut header, name, data).expect("append");
        }
    }
    builder.into_inner().expect("tar").finish().expect("gzip");
}

fn archive_entry() -> impl Strategy<Value = (String, u8, Vec<u8>)> {
    let name = prop_oneof![
        Just("r/manifest.json".to_owned()),
        run_path().prop_map(|p| format!("r/{p}")),
        "[a-z]{1,8}",
        Just("r/a/../../x".to_owned()),
    ];
    let bytes = prop_oneof![prop::collection::vec(any::<u8>(), 0..200), manifest_like().prop_map(String::into_bytes)];
    (name, prop_oneof![4 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)], bytes)
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_bytes_are_parsed_or_refused_as_a_manifest_without_panicking(
        bytes in prop_oneof![prop::collection::vec(any::<u8>(), 0..400), manifest_like().prop_map(String::into_bytes)]
    ) {
        match evidence::parse_manifest(&bytes) {
            Ok(manifest) => {
                let inside = |path: &str| path.split('/').all(|part| !["", ".", ".."].contains(&part));
                prop_assert!(manifest.files.iter().all(|f| inside(&f.path)));
            }
            Err(message) => prop_assert!(!message.trim().is_empty()),
        }
    }
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn any_archive_is_verified_or_refused_naming_it(entries in prop::collection::vec(archive_entry(), 0..8)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fuzz.tar.gz");
        write_archive(&path, &entries);

        match archive::verify_archive(&path) {
            Ok(report) => prop_assert_eq!(report.dir, path),
            Err(error) => prop_assert!(error.to_string().starts_with(&path.display().to_string()), "{}", error),
        }
    }

    #[test]
    fn any_bytes_named_tar_gz_are_refused_naming_the_file(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        gzip in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("noise.tar.gz");
        let bytes = if gzip {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut encoder, &bytes).expect("gzip");
            encoder.finish().expect("gzip")
        } else {
            bytes
        };
        std::fs::write(&path, bytes).expect("write");

        let error = archive::verify_archive(&path).expect_err("noise is not an archive with a manifest");

        let kind_ok = matches!(
            error,
            ArchiveError::Io { .. } | ArchiveError::Manifest { .. } | ArchiveError::Refused { .. }
        );
        prop_assert!(kind_ok, "{}", error);
        prop_assert!(error.to_string().starts_with(&path.display().to_string()), "{}", error);
    }
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn a_run_round_trips_through_its_manifest_and_archive_and_a_changed_byte_is_found(
        files in run_files(),
        victim in any::<prop::sample::Index>(),
    ) {
        let root = tempfile::tempdir().expect("temp dir");
        let run = root.path().join("20251119TfuzzZ1");
        for (path, bytes) in &files {
            let file = run.join(path);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(file, bytes).expect("write");
        }
        let run_id = "20251119TfuzzZ1".parse().expect("run id");
        evidence::write_manifest(&run, &run_id).expect("manifest");
        let packed = root.path().join("run.tar.gz");

        let folder = evidence::verify_dir(&run).expect("verify folder");
        archive::create(&run, &packed).expect("archive");
        let archived = archive::verify_archive(&packed).expect("verify archive");
        let (path, bytes) = files.iter().nth(victim.index(files.len())).expect("a file");
        let mut changed = bytes.clone();
        match changed.first_mut() { Some(byte) => *byte ^= 1, None => changed.push(0) }
        std::fs::write(run.join(path), changed).expect("change");
        let after = evidence::verify_dir(&run).expect("verify changed folder");

        prop_assert_eq!(folder.first_mismatch, None);
        prop_assert_eq!(folder.files_listed, files.len());
        prop_assert_eq!(archived.first_mismatch, None);
        prop_assert_eq!(archived.files_listed, files.len());
        let found = matches!(after.first_mismatch, Some(Mismatch::Changed { path: ref p, .. }) if p == path);
        prop_assert!(found, "{:?}", after.first_mismatch);
    }
}
