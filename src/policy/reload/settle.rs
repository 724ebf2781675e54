//! docs/operations.md "Reload": a reload reads the policy file only once it has been unchanged for
//! `server.reload_settle` — its size, modification time and content — and the wait starts
//! over whenever any of them changes. An editor or a deploy tool that truncates the file
//! and writes it in pieces is never caught half-way: the prefix it has written so far may
//! well be a valid policy with fewer keys.
//!
//! Writing the new file beside the old one and renaming it over (atomic) stays the safe
//! way; the settle wait is for everything else.

use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// One observation of the file. Two equal observations `settle` apart mean it is at rest.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    File {
        len: u64,
        mtime: Option<SystemTime>,
        digest: [u8; 32],
    },
    /// Unreadable (missing while a writer replaces it, say): also a state that must settle.
    Error(String),
}

fn look(path: &Path) -> (Seen, Option<Vec<u8>>) {
    let read = std::fs::metadata(path).and_then(|m| Ok((m, std::fs::read(path)?)));
    match read {
        Ok((meta, bytes)) => (
            Seen::File {
                len: meta.len(),
                mtime: meta.modified().ok(),
                digest: Sha256::digest(&bytes).into(),
            },
            Some(bytes),
        ),
        Err(e) => (Seen::Error(e.to_string()), None),
    }
}

/// Waits until the file at `path` has not changed for `settle`, then returns its bytes
/// (the content that was at rest). Gives up after `give_up` of continuous change.
/// Blocking: runs on a blocking thread, off the request path.
pub(crate) fn read_settled(
    path: &Path,
    settle: Duration,
    give_up: Duration,
) -> Result<Vec<u8>, String> {
    let started = Instant::now();
    let (mut seen, mut bytes) = look(path);
    let mut since = Instant::now();
    // Look often enough to notice a change well within the window, without spinning.
    let step = (settle / 5).clamp(Duration::from_millis(5), Duration::from_millis(200));
    loop {
        let quiet = since.elapsed();
        if quiet >= settle {
            return match (bytes, seen) {
                (Some(b), _) => Ok(b),
                (None, Seen::Error(e)) => Err(format!("cannot read file: {e}")),
                (None, Seen::File { .. }) => Err("cannot read file".into()),
            };
        }
        if started.elapsed() >= give_up {
            return Err(format!(
                "the file kept changing for {}; not loaded (write the new file elsewhere and rename it over the old one)",
                humantime::format_duration(give_up)
            ));
        }
        std::thread::sleep(step.min(settle - quiet));
        let (now, b) = look(path);
        if now != seen {
            (seen, bytes, since) = (now, b, Instant::now());
        }
    }
}

/// How long a reload keeps waiting for a file that never settles.
pub(crate) fn give_up_after(settle: Duration) -> Duration {
    (settle * 30).max(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_at_rest_is_read_after_the_settle_time() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("p.toml");
        std::fs::write(&p, "a = 1\n").unwrap_or_else(|e| panic!("{e}"));
        let t = Instant::now();
        let got = read_settled(&p, Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(got.as_deref(), Ok(&b"a = 1\n"[..]));
        assert!(t.elapsed() >= Duration::from_millis(100));
        // Zero settle: read at once.
        let got = read_settled(&p, Duration::ZERO, Duration::from_secs(5));
        assert_eq!(got.as_deref(), Ok(&b"a = 1\n"[..]));
    }

    #[test]
    fn the_wait_restarts_while_the_file_is_written_and_gives_up_if_it_never_rests() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("p.toml");
        std::fs::write(&p, "").unwrap_or_else(|e| panic!("{e}"));
        let writer = {
            let p = p.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&p)
                    .unwrap_or_else(|e| panic!("{e}"));
                for i in 0..10 {
                    writeln!(f, "k{i} = {i}").unwrap_or_else(|e| panic!("{e}"));
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let got = read_settled(&p, Duration::from_millis(150), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        writer.join().unwrap_or_else(|_| panic!("writer"));
        assert!(
            String::from_utf8_lossy(&got).contains("k9 = 9"),
            "read before the end"
        );

        // A file that never rests: given up.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    std::fs::write(&p, format!("n = {i}\n")).unwrap_or_else(|e| panic!("{e}"));
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let got = read_settled(&p, Duration::from_millis(100), Duration::from_millis(400));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap_or_else(|_| panic!("writer"));
        assert!(got.is_err_and(|e| e.contains("kept changing")));
    }

    #[test]
    fn a_missing_file_is_an_error_once_settled() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let got = read_settled(
            &dir.path().join("nope.toml"),
            Duration::from_millis(20),
            Duration::from_secs(5),
        );
        assert!(got.is_err_and(|e| e.contains("cannot read")));
    }
}
