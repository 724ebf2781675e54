//! Shared harness for end-to-end tests: the real `tollgate` binary on a port chosen at
//! run time, in front of in-process mock providers.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use tollgate::mock::MockProvider;

pub mod receiver;

/// A key for tests and its digest line.
pub fn key(n: u32) -> String {
    format!("tg-TestKey{n:08}abcdefghijklmnopqrstuvwxyzABCDE")
}

pub fn sha(key: &str) -> String {
    hex::encode(tollgate::auth::digest(key.as_bytes()))
}

/// A port for a server a test starts later. Taken below the kernel's ephemeral range
/// (32768 up) from a counter of this test process: a port picked by `bind(0)` and let go
/// could be taken meanwhile as the source port of any test's outgoing connection.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..SPAN {
        let n = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = (FIRST + n % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

pub struct GatewayProc {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub log: PathBuf,
}

/// Writes `policy` (with `{LISTEN}` and `{DATA}` placeholders filled in) and starts the
/// binary on it, waiting until it accepts connections.
pub fn start_gateway(policy: &str) -> GatewayProc {
    start_gateway_env(policy, &[])
}

/// Same, with extra environment variables (e.g. `TOLLGATE_WINDOW_SCALE`).
pub fn start_gateway_env(policy: &str, env: &[(&str, &str)]) -> GatewayProc {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let conf = dir.path().join("tollgate.toml");
    write_policy(&conf, policy, addr, dir.path());
    let log = dir.path().join("gateway.log");
    let child = spawn(&conf, &log, env);
    let g = GatewayProc {
        child,
        addr,
        dir,
        conf,
        log,
    };
    g.wait_ready();
    g
}

/// Starts the binary on `conf`, appending its output to `log`.
fn spawn(conf: &std::path::Path, log: &std::path::Path, env: &[(&str, &str)]) -> Child {
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("-c")
        .arg(conf)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .env("TEST_PROVIDER_KEY", "sk-provider-secret")
        .stdout(Stdio::from(logf.try_clone().expect("log")))
        .stderr(Stdio::from(logf))
        .spawn()
        .expect("spawn tollgate")
}

pub fn write_policy(
    path: &std::path::Path,
    policy: &str,
    addr: SocketAddr,
    data: &std::path::Path,
) {
    let text = policy
        .replace("{LISTEN}", &addr.to_string())
        .replace("{DATA}", &data.join("data").display().to_string())
        .replace("{SOCK}", &data.join("upgrade.sock").display().to_string());
    let mut f = std::fs::File::create(path).expect("write policy");
    f.write_all(text.as_bytes()).expect("write policy");
}

impl GatewayProc {
    /// Starts the binary again on the same files (after a kill).
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.conf, &self.log, env);
        self.wait_ready();
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway did not start:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Rewrites the policy file (same listen address) and sends SIGHUP.
    pub fn rewrite_and_reload(&self, policy: &str) {
        write_policy(&self.conf, policy, self.addr, self.dir.path());
        self.signal(libc::SIGHUP);
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY-free: kill(1) via the libc crate would need unsafe; use the kill command.
        let name = match sig {
            libc::SIGHUP => "HUP",
            libc::SIGTERM => "TERM",
            libc::SIGKILL => "KILL",
            _ => "TERM",
        };
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Number of reloads the gateway has logged (successful or failed).
    pub fn reload_count(&self) -> (usize, usize) {
        let log = self.log_text();
        (
            log.matches("policy reloaded").count(),
            log.matches("reload failed").count(),
        )
    }

    pub fn wait_reloads(&self, ok: usize, failed: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let (o, f) = self.reload_count();
            if o >= ok && f >= failed {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "reload not seen (want ok {ok} failed {failed}):\n{}",
            self.log_text()
        );
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Every end-to-end test run through this harness ends with a search of its log
        // files for credentials (issue 12): one found fails the test that logged it.
        if !std::thread::panicking() {
            let leaks = leaked_credentials(self.dir.path());
            assert!(leaks.is_empty(), "credentials in log files: {leaks:?}");
        }
    }
}

/// Full credentials found in the log files under `dir` (file names containing "log"): a
/// data-plane key (`tg-` + 40 or more base62), an admin token (`tga-` + 40 or more), or the
/// provider key the harness injects. Logs may name a key by its id or its display prefix
/// (`tg-a1b2c3…`), never in full. Returns (file, what was found, redacted).
pub fn leaked_credentials(dir: &std::path::Path) -> Vec<(PathBuf, String)> {
    let mut found = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if !entry
                .file_name()
                .to_string_lossy()
                .to_lowercase()
                .contains("log")
            {
                continue;
            }
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
    }
    found
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A policy with one OpenAI and one Anthropic provider pointing at `mock`.
pub fn basic_policy(mock: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["{{LISTEN}}"]
data_dir = "{{DATA}}"
upgrade_sock = "{{SOCK}}"
grace_period = "1s"
reload_settle = "50ms"
request_log = "off"
threads = 2

[[providers]]
id = "oa"
api = "openai"
base_url = "http://{mock}"
api_key_env = "TEST_PROVIDER_KEY"

[[providers]]
id = "an"
api = "anthropic"
base_url = "http://{mock}"
api_key_env = "TEST_PROVIDER_KEY"

[[models]]
name = "gpt-4o-mini"
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.60
targets = [{{ provider = "oa", model = "gpt-4o-mini-2024-07-18" }}]

[[models]]
name = "gpt-4o"
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10.0
targets = [{{ provider = "oa" }}]

[[models]]
name = "o1-preview"
targets = [{{ provider = "oa" }}]

[[models]]
name = "claude-sonnet-4-5"
input_usd_per_mtok = 3.0
output_usd_per_mtok = 15.0
targets = [{{ provider = "an", model = "claude-sonnet-4-5-20250929" }}]

[[models]]
name = "text-embedding-3-small"
targets = [{{ provider = "oa" }}]

[[orgs]]
id = "acme"
max_tokens = 8000

[[groups]]
id = "grp_prod"
org = "acme"
models = ["gpt-4o*", "claude-*", "o1-*", "text-embedding-*"]
deny_models = ["*-preview"]
default_model = "gpt-4o-mini"
aliases = {{ fast = "gpt-4o-mini", smart = "claude-sonnet-4-5" }}
max_tokens = 4000

[[keys]]
id = "key_main"
group = "grp_prod"
sha256 = "{main}"

{extra}
"#,
        main = sha(&key(1)),
    )
}

/// Kills the child however the test ends (a failed assertion must not leave it running).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The same for a process we only know by pid (a daemon).
pub struct KillPidOnDrop(pub u32);

impl Drop for KillPidOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-9")
            .arg(self.0.to_string())
            .status();
    }
}

/// `POST {path}` with a JSON body and `Authorization: Bearer {key}`.
pub async fn post_json(
    g: &GatewayProc,
    path: &str,
    key: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    client()
        .post(g.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("send")
}

/// Searches every log file under `dir` (the gateway's own output, request logs; any file
/// whose name contains "log") for each secret and for its hex digest: the log lines may
/// name a key only by its id. Panics naming the file and the secret's id in `secrets`.
pub fn assert_no_secret_in_logs(dir: &std::path::Path, secrets: &[&str]) -> usize {
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_lowercase();
            if !name.contains("log") {
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            for (i, s) in secrets.iter().enumerate() {
                assert!(!text.contains(s), "secret #{i} in {}", path.display());
                assert!(
                    !text.contains(&sha(s)),
                    "digest of secret #{i} in {}",
                    path.display()
                );
            }
        }
    }
    files
}

/// A loopback address with a free port, for an admin listener.
pub fn admin_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().expect("addr")
}

/// A policy with an admin listener, the root token read from `TEST_ADMIN_TOKEN`.
pub trait WithAdmin {
    fn with_admin(&self, admin: SocketAddr) -> String;
}

impl WithAdmin for str {
    fn with_admin(&self, admin: SocketAddr) -> String {
        self.replace(
            "[server]\n",
            &format!(
                "[server]\nadmin_listen = \"{admin}\"\nadmin_token_env = \"TEST_ADMIN_TOKEN\"\n"
            ),
        )
    }
}

/// Waits (10 s at most) until the admin listener answers `/healthz`.
pub async fn wait_admin(admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while client()
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "admin listener {admin} not up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The request-log line of `request_id` in the log file at `path`, waiting for it (lines
/// are written shortly after the answer) for up to 10 s.
pub async fn wait_log_line(path: &std::path::Path, request_id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(v) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["request_id"] == request_id)
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no log line for {request_id}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Chat completions from `workers` clients with `key(1)` until stopped: each completed
/// request is recorded with the time it completed and the tokens the provider reported.
/// `pause` holds the load without stopping it.
pub struct ChatLoad {
    pub done: std::sync::Arc<std::sync::Mutex<Vec<(Instant, u64)>>>,
    pub pause: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ChatLoad {
    pub fn start(addr: SocketAddr, workers: usize) -> ChatLoad {
        use std::sync::atomic::Ordering;
        let (done, pause, stop) =
            <(std::sync::Arc<_>, std::sync::Arc<_>, std::sync::Arc<_>)>::default();
        let mut load = ChatLoad {
            done,
            pause,
            stop,
            tasks: vec![],
        };
        for _ in 0..workers {
            let (done, pause, stop) = (load.done.clone(), load.pause.clone(), load.stop.clone());
            load.tasks.push(tokio::spawn(async move {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    if pause.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    let r = c
                        .post(format!("http://{addr}/v1/chat/completions"))
                        .bearer_auth(key(1))
                        .header("x-mock-output-tokens", "5")
                        .json(&serde_json::json!({"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            if let Ok(v) = r.json::<serde_json::Value>().await {
                                let t = v["usage"]["total_tokens"].as_u64().unwrap_or(0);
                                done.lock().unwrap().push((Instant::now(), t));
                            }
                        }
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }));
        }
        load
    }

    /// Stops the clients and waits for them.
    pub async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}
