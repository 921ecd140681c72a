//! Golden files for the rendered documents of a fixed sample run (times are the Unix epoch, so the output
//! is stable). A template change shows up as a diff here; `UPDATE_SNAPSHOTS=1` rewrites the files.

use std::path::Path;

use connrun::evidence::status::sample_status;
use connrun::report::Reports;

#[test]
fn rendered_documents_match_their_snapshots() {
    let reports = Reports::load(None).expect("embedded templates");
    let snapshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");

    let documents = reports.render_all(&sample_status()).expect("render");

    let update = std::env::var("UPDATE_SNAPSHOTS").as_deref() == Ok("1");
    for (path, text) in documents {
        let file = snapshots.join(path.replace('/', "__"));
        if update {
            std::fs::write(&file, &text).expect("write snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1 to create it)", file.display()));
        assert_eq!(text, expected, "{path} differs from {}", file.display());
    }
}
