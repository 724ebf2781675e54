//! A file `request_log` (docs/operations.md "Log export"): rotated daily (UTC) and at
//! `request_log_max_size`, and reopened on `SIGUSR1` (for logrotate). A rotated file is
//! renamed `<path>.<YYYY-MM-DDTHH-MM-SS.mmm>`; the retention sweeper prunes those.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The flag `SIGUSR1` sets: the request log reopens its file at its next write.
pub(crate) fn on_sigusr1() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, flag.clone())?;
    Ok(flag)
}

pub(crate) struct LocalLog {
    path: PathBuf,
    file: File,
    /// The UTC day (days since the epoch) the file's lines are from.
    day: u64,
    size: u64,
    max_size: Option<u64>,
    reopen: Arc<AtomicBool>,
}

fn day_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86_400
}

/// Whether `name` is a rotated file of the log named `base`.
pub(crate) fn is_rotated(base: &str, name: &str) -> bool {
    name.strip_prefix(base)
        .and_then(|r| r.strip_prefix('.'))
        .is_some_and(|r| r.len() >= 19 && r.as_bytes()[..4].iter().all(u8::is_ascii_digit))
}

impl LocalLog {
    /// Opens `path` for appending; `reopen` is the flag `SIGUSR1` sets.
    pub(crate) fn open(
        path: &Path,
        max_size: Option<u64>,
        reopen: Arc<AtomicBool>,
    ) -> std::io::Result<LocalLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let meta = file.metadata()?;
        let day = if meta.len() > 0 {
            day_of(meta.modified().unwrap_or_else(|_| crate::clock::wall()))
        } else {
            day_of(crate::clock::wall())
        };
        Ok(LocalLog {
            path: path.to_path_buf(),
            size: meta.len(),
            file,
            day,
            max_size,
            reopen,
        })
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = file;
        Ok(())
    }

    fn rotate(&mut self, now: SystemTime) -> std::io::Result<()> {
        let stamp = humantime::format_rfc3339_millis(now).to_string();
        // `2026-11-25T06:25:00.123Z` -> `2026-11-25T06-25-00.123`
        let stamp = stamp.trim_end_matches('Z').replace(':', "-");
        let mut to = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        let mut n = 1;
        while to.exists() {
            to = PathBuf::from(format!("{}.{stamp}-{n}", self.path.display()));
            n += 1;
        }
        self.file.sync_data()?;
        std::fs::rename(&self.path, &to)?;
        self.reopen()?;
        self.day = day_of(now);
        Ok(())
    }
}

impl Write for LocalLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.reopen.swap(false, Ordering::Relaxed) {
            self.reopen()?;
        }
        if self.size > 0 {
            let now = crate::clock::wall();
            let over = self
                .max_size
                .is_some_and(|m| self.size + buf.len() as u64 > m);
            if over || day_of(now) != self.day {
                if let Err(e) = self.rotate(now) {
                    log::warn!("request log: cannot rotate {}: {e}", self.path.display());
                }
            }
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_size_and_reopens_on_the_flag() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("requests.log");
        let flag = Arc::new(AtomicBool::new(false));
        let mut log = LocalLog::open(&path, Some(100), flag.clone()).expect("open");
        for _ in 0..10 {
            log.write_all(&[b'x'; 39]).expect("write");
            log.write_all(b"\n").expect("write");
        }
        let rotated: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| is_rotated("requests.log", n))
            .collect();
        assert!(rotated.len() >= 3, "{rotated:?}");
        // logrotate moved it away: SIGUSR1 makes the next write create it again.
        std::fs::rename(&path, dir.path().join("moved")).expect("mv");
        flag.store(true, Ordering::Relaxed);
        log.write_all(b"y\n").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"y\n");
    }
}
