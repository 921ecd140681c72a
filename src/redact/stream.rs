//! Redaction of a body that arrives in chunks, without holding it whole.
//!
//! Response bodies stream to disk; a token may straddle two chunks. The stream holds back only the tail
//! that may still be part of a secret: everything up to the last line end is safe (no rule spans a line
//! end), and when a single line grows past [`STREAM_HOLD_LIMIT`], everything up to the last delimiter that
//! leaves room for the longest configured secret. [`RedactingWriter`] puts the same stream behind
//! `io::Write`, so whole documents (status.json, the HAR, reports) are serialised straight to disk.

use std::io::{self, Write};

use super::{Redactor, Span, VALUE_DELIMITERS, apply};

/// Applies a [`Redactor`] to a body arriving in chunks, holding back only what may still be part of a secret.
pub struct StreamRedactor<'a> {
    /// The rules.
    redactor: &'a Redactor,
    /// Bytes received but not yet safe to emit.
    pending: Vec<u8>,
}

/// How much a stream may hold back before it cuts at a weaker boundary than a line end.
const STREAM_HOLD_LIMIT: usize = 64 * 1024;

impl<'a> StreamRedactor<'a> {
    /// A stream with nothing pending.
    pub fn new(redactor: &'a Redactor) -> Self {
        Self { redactor, pending: Vec::new() }
    }

    /// Takes the next chunk; returns the redacted bytes that are now safe to write.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let spans = self.redactor.spans(&self.pending);
        let cut = self.cut_point(&spans);
        if cut == 0 {
            return Vec::new();
        }
        let head: Vec<Span> = spans.into_iter().filter(|s| s.end <= cut).collect();
        let out = apply(&self.pending[..cut], head);
        self.pending.drain(..cut);
        out
    }

    /// Redacts and returns whatever is still pending.
    pub fn finish(self) -> Vec<u8> {
        self.redactor.bytes(&self.pending)
    }

    /// The end of the prefix that can be flushed: after the last line end, or when too much is held, after
    /// the last delimiter that leaves room for a whole needle; never inside a span.
    fn cut_point(&self, spans: &[Span]) -> usize {
        let pending = &self.pending;
        let mut cut = pending.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if cut == 0 && pending.len() > STREAM_HOLD_LIMIT {
            let limit = pending.len().saturating_sub(self.redactor.longest_needle());
            cut = pending[..limit].iter().rposition(|b| VALUE_DELIMITERS.contains(b)).map_or(limit, |p| p + 1);
        }
        loop {
            match spans.iter().find(|s| s.start < cut && s.end > cut) {
                Some(span) => cut = span.start,
                None => return cut,
            }
        }
    }
}

/// An `io::Write` that redacts everything on its way to `inner`, holding back only what a [`StreamRedactor`]
/// holds back. Put a `BufWriter` in front: every write rescans the bytes held since the last line end.
pub struct RedactingWriter<'a, W: Write> {
    /// The redaction state.
    stream: StreamRedactor<'a>,
    /// Where redacted bytes go.
    inner: W,
}

impl<'a, W: Write> RedactingWriter<'a, W> {
    /// Redacts with `redactor` into `inner`.
    pub fn new(redactor: &'a Redactor, inner: W) -> Self {
        Self { stream: StreamRedactor::new(redactor), inner }
    }

    /// Writes what was held back and hands back `inner` (not flushed).
    pub fn finish(self) -> io::Result<W> {
        let Self { stream, mut inner } = self;
        inner.write_all(&stream.finish())?;
        Ok(inner)
    }
}

impl<W: Write> Write for RedactingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let safe = self.stream.push(buf);
        self.inner.write_all(&safe)?;
        Ok(buf.len())
    }

    /// Flushes `inner`; bytes that may still be part of a secret stay held until [`RedactingWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "FJjmq/d7EP";

    fn redactor() -> Redactor {
        Redactor::new([PASSWORD.to_owned(), "consent-7f3a9c".to_owned()])
    }

    #[test]
    fn stream_redactor_masks_secrets_split_across_chunks() {
        let r = redactor();
        let body =
            format!("{{\"line\":1}}\n{{\"consent\":\"consent-7f3a9c\",\"jwt\":\"eyJa.eyJb.sig123\"}}\n{PASSWORD}");
        let expected = r.text(&body);
        for chunk_size in [1, 3, 7, 64] {
            let mut stream = StreamRedactor::new(&r);
            let mut out = Vec::new();

            for chunk in body.as_bytes().chunks(chunk_size) {
                out.extend(stream.push(chunk));
            }
            out.extend(stream.finish());

            assert_eq!(String::from_utf8(out).unwrap(), expected, "chunk size {chunk_size}");
        }
    }

    #[test]
    fn redacting_writer_matches_redacting_the_whole_text() {
        let r = redactor();
        let text = format!("{{\n  \"auth\": \"Basic b3BzOnB3\",\n  \"pw\": \"{PASSWORD}\",\n  \"n\": 1\n}}");
        let mut writer = io::BufWriter::with_capacity(5, RedactingWriter::new(&r, Vec::new()));

        for piece in text.as_bytes().chunks(3) {
            writer.write_all(piece).unwrap();
        }
        let written = writer.into_inner().map_err(|e| e.into_error()).unwrap().finish().unwrap();

        assert_eq!(String::from_utf8(written).unwrap(), r.text(&text));
    }

    #[test]
    fn stream_redactor_flushes_long_lines_without_holding_them_whole() {
        let r = redactor();
        let mut stream = StreamRedactor::new(&r);
        let piece = "\"abcdefgh\",".repeat(1000);

        let mut flushed = 0;
        for _ in 0..20 {
            flushed += stream.push(piece.as_bytes()).len();
        }

        assert!(flushed > 100_000, "flushed only {flushed} bytes of 220000");
        assert!(stream.pending.len() <= STREAM_HOLD_LIMIT + piece.len());
    }
}
