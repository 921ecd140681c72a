//! Reading a sealed run's `status.json` back with memory that stays small as runs grow.
//!
//! A 10,000-probe `status.json` is ~60 MB; reading it as a `serde_json::Value` and then as records took
//! ~90 MiB per run, so `diff` of two such runs peaked at 188 MiB. The file is now parsed straight from a
//! buffered reader into typed records, and each record drops, as it is read, what no later command uses: the
//! request and response headers (the HAR and `httpdump/` keep them) and the intermediates of a certificate
//! chain already seen in the run (its leaf stays, so diff still compares leaves, and every distinct
//! certificate of the run is still listed once). Parity runs compare headers from the records in memory of
//! the run that made them, never from this reader.

use std::collections::HashSet;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};

use crate::evidence::ProbeRecord;
use crate::evidence::limits::SizeLimit;
use crate::evidence::status::RunStatus;

/// The probes of a `status.json`, reduced while they are read (see the module comment).
pub struct SlimProbes(pub Vec<ProbeRecord>);

impl<'de> Deserialize<'de> for SlimProbes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(SlimVisitor)
    }
}

struct SlimVisitor;

impl<'de> Visitor<'de> for SlimVisitor {
    type Value = SlimProbes;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of probe records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SlimProbes, A::Error> {
        let mut probes = Vec::new();
        let mut chains: HashSet<Vec<String>> = HashSet::new();
        while let Some(mut probe) = seq.next_element::<ProbeRecord>()? {
            slim(&mut probe, &mut chains);
            probes.push(probe);
        }
        probes.shrink_to_fit();
        Ok(SlimProbes(probes))
    }
}

/// Drops a record's headers, and its chain's intermediates when the same chain was seen before.
fn slim(probe: &mut ProbeRecord, chains: &mut HashSet<Vec<String>>) {
    probe.request_headers = Vec::new();
    probe.response_headers = Vec::new();
    if probe.server_chain.len() > 1 {
        let fingerprints: Vec<String> = probe.server_chain.iter().map(|c| c.sha256.clone()).collect();
        if !chains.insert(fingerprints) {
            probe.server_chain.truncate(1);
        }
    }
    probe.server_chain.shrink_to_fit();
}

/// How a `status.json` could not be read.
pub enum ReadError {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// Over the size bound, or not a status of this layout (the message says which).
    Corrupt(String),
    /// Written with another `schema_version`.
    Schema(u64),
}

/// Reads `path` as `status.json` of `schema` with its probes reduced, refusing a file over `limit` and naming
/// another `schema_version` (an unreadable file whose version differs is reported by its version).
pub fn read(path: &Path, limit: &SizeLimit, schema: u32) -> Result<RunStatus, ReadError> {
    let open = || -> Result<_, ReadError> {
        let file = std::fs::File::open(path).map_err(ReadError::Io)?;
        let size = file.metadata().map_err(ReadError::Io)?.len();
        if size > limit.max_bytes {
            return Err(ReadError::Corrupt(limit.refusal(size, false)));
        }
        Ok(BufReader::with_capacity(256 << 10, file.take(limit.max_bytes)))
    };
    match serde_json::from_reader::<_, RunStatus<SlimProbes>>(open()?) {
        Ok(status) if status.schema_version == schema => {
            let (status, slim) = status.with_probes(());
            Ok(status.with_probes(slim.0).0)
        }
        Ok(status) => Err(ReadError::Schema(u64::from(status.schema_version))),
        Err(error) => match schema_version(open()?) {
            Ok(found) if found != Some(u64::from(schema)) => Err(ReadError::Schema(found.unwrap_or(0))),
            _ => Err(ReadError::Corrupt(error.to_string())),
        },
    }
}

/// The `schema_version` of a JSON object, reading nothing else into memory (other fields are skipped);
/// `Err` when the file is not JSON at all (then it is corrupt, whatever its version).
fn schema_version(reader: impl Read) -> Result<Option<u64>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Version {
        schema_version: Option<u64>,
    }
    serde_json::from_reader::<_, Version>(reader).map(|v| v.schema_version)
}

/// What a run is, from the first fields of its `status.json`: enough to pick the runs of one template and
/// target without reading their probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The RUN_ID.
    pub run_id: String,
    /// Template name.
    pub template: String,
    /// Target name.
    pub target: String,
    /// When the run started.
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// Reads the [`Head`] of the `status.json` at `path`, stopping as soon as it has it (connrun writes these
/// fields before the phases and probes); `None` when the file lacks one or cannot be read.
pub fn read_head(path: &Path) -> Option<Head> {
    let file = std::fs::File::open(path).ok()?;
    let mut head = PartialHead::default();
    let mut deserializer = serde_json::Deserializer::from_reader(BufReader::with_capacity(16 << 10, file));
    // The visitor stops before the end of the object, so serde_json reports an error once it has the head.
    let _ = deserializer.deserialize_map(HeadVisitor(&mut head));
    Some(Head { run_id: head.run_id?, template: head.template?, target: head.target?, started_at: head.started_at? })
}

#[derive(Default)]
struct PartialHead {
    run_id: Option<String>,
    template: Option<String>,
    target: Option<String>,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
}

struct HeadVisitor<'h>(&'h mut PartialHead);

impl<'de> Visitor<'de> for HeadVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a status.json object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let head = self.0;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "run_id" => head.run_id = Some(map.next_value()?),
                "template" => head.template = Some(map.next_value()?),
                "target" => head.target = Some(map.next_value()?),
                "started_at" => head.started_at = Some(map.next_value()?),
                _ => drop(map.next_value::<serde::de::IgnoredAny>()?),
            }
            if head.run_id.is_some() && head.template.is_some() && head.target.is_some() && head.started_at.is_some() {
                return Ok(());
            }
        }
        Ok(())
    }
}
