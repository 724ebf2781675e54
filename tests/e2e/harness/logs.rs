//! Log files: the request log's lines, and the search for credentials in every log file.

use super::sha;
use super::wait::poll_until;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The log files under `dir`: the gateway's own output, request logs (any file whose name
/// contains "log").
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry
                .file_name()
                .to_string_lossy()
                .to_lowercase()
                .contains("log")
            {
                files.push(path);
            }
        }
    }
    files
}

/// Full credentials found in the log files under `dir`: a data-plane key (`tg-` + 40 or
/// more base62), an admin token (`tga-` + 40 or more), or the provider key the harness
/// injects. Logs may name a key by its id or its display prefix (`tg-a1b2c3…`), never in
/// full. Returns (file, what was found, redacted).
pub fn leaked_credentials(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = vec![];
    for path in log_files(dir) {
        let bytes = std::fs::read(&path).unwrap_or_default();
        if memchr::memmem::find(&bytes, b"sk-provider-secret").is_some() {
            found.push((path.clone(), "the provider key".to_string()));
        }
        for prefix in [&b"tg-"[..], &b"tga-"[..]] {
            for at in memchr::memmem::find_iter(&bytes, prefix) {
                let run = bytes[at + prefix.len()..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric())
                    .count();
                if run >= 40 {
                    let shown = String::from_utf8_lossy(&bytes[at..at + prefix.len() + 6]);
                    found.push((path.clone(), format!("{shown}… ({run} characters)")));
                }
            }
        }
    }
    found
}

/// Searches every log file under `dir` for each secret and for its hex digest: the log
/// lines may name a key only by its id. Panics naming the file and the secret's place in
/// `secrets`; returns the number of files searched.
pub fn assert_no_secret_in_logs(dir: &Path, secrets: &[impl AsRef<str>]) -> usize {
    let files = log_files(dir);
    for path in &files {
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
        for (i, s) in secrets.iter().enumerate() {
            let s = s.as_ref();
            assert!(!text.contains(s), "secret #{i} in {}", path.display());
            assert!(
                !text.contains(&sha(s)),
                "digest of secret #{i} in {}",
                path.display()
            );
        }
    }
    files.len()
}

/// The request-log line of `request_id` in the log file at `path`, waiting for it: a line
/// is written once its request is settled, just after the answer.
pub async fn wait_log_line(path: &Path, request_id: &str) -> Value {
    let lines = || {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["request_id"] == request_id)
    };
    poll_until(Duration::from_secs(10), || async { lines() })
        .await
        .unwrap_or_else(|| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            panic!("no log line for {request_id}:\n{text}")
        })
}
