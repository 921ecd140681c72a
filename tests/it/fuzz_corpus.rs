//! Replays the committed regression corpus (`tests/it/fuzz_corpus/`): every input is refused with an error
//! that names its file, and none panics.

use crate::fuzz_support::corpus;
use connrun::compare::archive;
use connrun::evidence::{self, EvidenceError};
use connrun::plan::target::{TargetError, Targets};
use connrun::plan::template::{Template, TemplateError};

#[test]
fn every_template_in_the_corpus_is_refused_naming_its_file() {
    for input in corpus("templates") {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(&input, dir.path().join("template.toml")).expect("copy");

        let error = match Template::load(dir.path()) {
            Ok(_) => panic!("{} was accepted", input.display()),
            Err(error @ (TemplateError::Invalid(_) | TemplateError::Read { .. })) => error.to_string(),
        };

        assert!(
            error.starts_with(&dir.path().join("template.toml").display().to_string()),
            "{}: {error}",
            input.display()
        );
    }
}

#[test]
fn every_targets_file_in_the_corpus_is_refused_naming_it() {
    for input in corpus("targets") {
        let error = match Targets::load(&input) {
            Ok(_) => panic!("{} was accepted", input.display()),
            Err(error @ (TargetError::Invalid(_) | TargetError::Read { .. })) => error.to_string(),
            Err(other) => panic!("{}: loading never resolves a target, got {other}", input.display()),
        };

        assert!(error.starts_with(&input.display().to_string()), "{}: {error}", input.display());
    }
}

#[test]
fn every_manifest_in_the_corpus_is_refused_in_a_folder_and_in_an_archive() {
    for input in corpus("manifests") {
        let bytes = std::fs::read(&input).expect("read corpus file");
        let run = tempfile::tempdir().expect("temp dir");
        std::fs::write(run.path().join("manifest.json"), &bytes).expect("write manifest");
        let packed = run.path().join("run.tar.gz");
        let writer =
            flate2::write::GzEncoder::new(std::fs::File::create(&packed).expect("create"), flate2::Compression::fast());
        let mut builder = tar::Builder::new(writer);
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        builder.append_data(&mut header, "20251119TaZ1/manifest.json", &bytes[..]).expect("append");
        builder.into_inner().expect("tar").finish().expect("gzip");

        let parsed = evidence::parse_manifest(&bytes);
        let folder = evidence::verify_dir(run.path());
        let archived = archive::verify_archive(&packed);

        assert!(parsed.is_err(), "{} was parsed", input.display());
        match folder {
            Err(error @ EvidenceError::Corrupt { .. }) => {
                assert!(error.to_string().contains("manifest.json: "), "{}: {error}", input.display());
            }
            other => panic!("{}: expected a refusal of the manifest, got {other:?}", input.display()),
        }
        let error = archived.expect_err("refused").to_string();
        assert!(error.starts_with(&format!("{}: manifest.json: ", packed.display())), "{}: {error}", input.display());
    }
}
