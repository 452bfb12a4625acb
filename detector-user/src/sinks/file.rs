//! NDJSON file, created 0600, rotated by size (`path` → `path.1` → … → `path.N`, the oldest
//! deleted).

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use super::{stdout::ndjson, BoxFuture, Record, Sink, SinkError};

/// File sink.
pub(crate) struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    file: File,
    len: u64,
    buf: Vec<u8>,
}

fn open(path: &Path) -> Result<(File, u64), SinkError> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| SinkError::Setup(format!("{}: {e}", path.display())))?;
    // An existing file keeps its mode on open: narrow it, alerts name hosts and users.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| SinkError::Setup(format!("{}: {e}", path.display())))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((f, len))
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl FileSink {
    /// Opens (appends to) `path`; rotates past `max_bytes`, keeping `max_files` old files.
    pub(crate) fn open(path: PathBuf, max_bytes: u64, max_files: u32) -> Result<Self, SinkError> {
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d)
                .map_err(|e| SinkError::Setup(format!("{}: {e}", d.display())))?;
        }
        let (file, len) = open(&path)?;
        Ok(Self {
            path,
            max_bytes,
            max_files,
            file,
            len,
            buf: Vec::new(),
        })
    }

    fn rotate(&mut self) -> Result<(), SinkError> {
        self.file.sync_all()?;
        if self.max_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(rotated(&self.path, self.max_files));
            for n in (1..self.max_files).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        let (f, len) = open(&self.path)?;
        self.file = f;
        self.len = len;
        Ok(())
    }

    fn write(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        for r in batch {
            let need = r.body.len() as u64 + 1;
            if self.len > 0 && self.len + need > self.max_bytes {
                self.rotate()?;
            }
            ndjson(&mut self.buf, std::slice::from_ref(r));
            self.file.write_all(&self.buf)?;
            self.len += need;
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn deliver<'a>(&'a mut self, batch: &'a [Record]) -> BoxFuture<'a, Result<(), SinkError>> {
        // Local file writes are short; doing them inline keeps the sink simple.
        Box::pin(async move { self.write(batch) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> Record {
        Record {
            id: format!("{i}"),
            body: format!("{{\"id\":\"{i:08}\"}}").into_bytes(),
        }
    }

    #[tokio::test]
    async fn rotates_by_size_keeps_n_files_all_0600() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/alerts.ndjson");
        let mut s = FileSink::open(p.clone(), 100, 2).unwrap();
        // 17-byte lines: 5 per file.
        for i in 0..23 {
            s.deliver(&[rec(i)]).await.unwrap();
        }
        let lines = |p: &Path| -> Vec<String> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| l.to_string())
                .collect()
        };
        let cur = lines(&p);
        let one = lines(&rotated(&p, 1));
        let two = lines(&rotated(&p, 2));
        assert!(!rotated(&p, 3).exists());
        assert_eq!(cur.len(), 3);
        assert_eq!(one.len(), 5);
        assert_eq!(two.len(), 5);
        assert_eq!(two[0], "{\"id\":\"00000010\"}");
        assert_eq!(cur[2], "{\"id\":\"00000022\"}");
        for f in [p.clone(), rotated(&p, 1), rotated(&p, 2)] {
            let m = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, 0o600, "{}", f.display());
            assert!(std::fs::metadata(&f).unwrap().len() <= 100);
        }
    }

    #[test]
    fn existing_file_is_narrowed_to_0600() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.ndjson");
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _s = FileSink::open(p.clone(), 100, 2).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
