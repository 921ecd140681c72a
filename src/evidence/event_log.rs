//! `logs/run.ndjson.gz`: the run's structured log, one JSON line per event, each line its own gzip member.
//!
//! Every event is compressed into a complete gzip member and appended with a single `write`, so `zcat` (or
//! `MultiGzDecoder`) reads every event written so far even when the process is killed mid-run. Nothing is
//! fsync'd: a crashed run stays a `.partial` folder, and the page cache already gives readers every byte
//! written. The deflate state is allocated once and reset between events; a fresh encoder per event
//! (allocating and zeroing its window and hash tables) cost more than everything else an event does.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Utc;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use super::{EvidenceError, io_at};

/// The member header flate2's `GzEncoder` writes at the fast level: deflate, no name or mtime, XFL 4
/// ("fastest"), OS 255 ("unknown").
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 0xff];

/// `logs/run.ndjson.gz`, appended one gzip member per event.
#[derive(Debug)]
pub struct EventLog {
    /// The open file and the reusable compressor; the mutex keeps concurrent probe events whole.
    state: Mutex<LogState>,
    /// The file's path, for errors.
    path: PathBuf,
}

/// What appending an event needs, reused from one event to the next.
struct LogState {
    /// The log file, opened for appending.
    file: File,
    /// Raw deflate at the fast level; reset before each member.
    deflate: Compress,
    /// The member being built.
    member: Vec<u8>,
}

impl std::fmt::Debug for LogState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogState").field("file", &self.file).finish_non_exhaustive()
    }
}

impl EventLog {
    /// Opens (creating) the log under `run_dir/logs/`.
    pub fn open(run_dir: &Path) -> Result<EventLog, EvidenceError> {
        let path = run_dir.join(super::EvidenceLayout::EVENT_LOG);
        let logs = path.parent().unwrap_or(run_dir);
        fs::create_dir_all(logs).map_err(io_at(logs))?;
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_at(&path))?;
        let deflate = Compress::new(Compression::fast(), false);
        Ok(EventLog { state: Mutex::new(LogState { file, deflate, member: Vec::new() }), path })
    }

    /// Appends one event: `{"ts": ..., "event": <name>, ...fields}`.
    pub fn event(&self, name: &str, fields: serde_json::Value) -> Result<(), EvidenceError> {
        let mut line = serde_json::json!({ "ts": Utc::now().to_rfc3339(), "event": name });
        if let (Some(target), serde_json::Value::Object(extra)) = (line.as_object_mut(), fields) {
            target.extend(extra);
        }
        let mut text = line.to_string();
        text.push('\n');
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let LogState { file, deflate, member } = &mut *state;
        gzip_member(deflate, text.as_bytes(), member).map_err(io_at(&self.path))?;
        file.write_all(member).map_err(io_at(&self.path))
    }
}

/// Compresses `data` into one complete gzip member (header, deflate stream, CRC-32 and length) in `out`.
fn gzip_member(deflate: &mut Compress, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    out.extend_from_slice(&GZIP_HEADER);
    deflate.reset();
    loop {
        out.reserve(data.len() + 64);
        let consumed = usize::try_from(deflate.total_in()).map_err(io::Error::other)?;
        match deflate.compress_vec(&data[consumed..], out, FlushCompress::Finish).map_err(io::Error::other)? {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError => {}
        }
    }
    let mut crc = Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the length modulo 2^32.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn members_decode_like_gz_encoder_output_and_the_state_is_reused() {
        let mut deflate = Compress::new(Compression::fast(), false);
        let mut stream = Vec::new();
        let mut member = Vec::new();
        let lines = ["{\"event\":\"a\"}\n".to_owned(), format!("{}\n", "x".repeat(100_000)), "{}\n".to_owned()];

        for line in &lines {
            gzip_member(&mut deflate, line.as_bytes(), &mut member).unwrap();
            stream.extend_from_slice(&member);
        }

        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(stream.as_slice()).read_to_string(&mut text).unwrap();
        assert_eq!(text, lines.concat());
        let mut expected = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
        expected.write_all(lines[0].as_bytes()).unwrap();
        gzip_member(&mut deflate, lines[0].as_bytes(), &mut member).unwrap();
        assert_eq!(member, expected.finish().unwrap(), "byte for byte what GzEncoder wrote before");
    }
}
