//! NDJSON on standard output (the default sink).

use std::io::Write as _;

use super::{BoxFuture, Record, Sink, SinkError};

/// Writes one document per line to stdout.
pub(crate) struct StdoutSink {
    buf: Vec<u8>,
}

impl StdoutSink {
    /// The process's stdout.
    pub(crate) fn new() -> Self {
        Self { buf: Vec::new() }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

/// Appends `batch` to `buf` as NDJSON.
pub(crate) fn ndjson(buf: &mut Vec<u8>, batch: &[Record]) {
    buf.clear();
    for r in batch {
        buf.extend_from_slice(&r.body);
        buf.push(b'\n');
    }
}

impl Sink for StdoutSink {
    fn deliver<'a>(&'a mut self, batch: &'a [Record]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            ndjson(&mut self.buf, batch);
            // One locked write per batch: lines from other writers of stdout (`--events`)
            // never interleave inside a line. Sinks run on their own runtime, so a blocked
            // stdout stalls only this sink.
            let mut out = std::io::stdout().lock();
            out.write_all(&self.buf)?;
            out.flush()?;
            Ok(())
        })
    }
}
