//! The real `tollgate` binary, started on a policy file in a directory of its own.

use super::admin::Admin;
use super::logs::{leaked_credentials, wait_log_line};
use super::turn;
use super::wait::poll_blocking;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The binary under test, as a command; the caller's test takes its turn.
pub fn tollgate() -> Command {
    turn::shared();
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
}

/// `tollgate -t -c path`: the check of a policy file.
pub fn check_policy(path: &Path) -> Output {
    tollgate()
        .arg("-t")
        .arg("-c")
        .arg(path)
        .output()
        .expect("tollgate -t")
}

pub struct GatewayProc {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin listener, when the policy has one.
    pub admin_addr: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub log: PathBuf,
}

/// Writes `policy` (with `{LISTEN}`, `{DATA}` and `{SOCK}` filled in) and starts the binary on
/// it, waiting until its listeners (the admin one too) accept connections.
pub fn start_gateway(policy: &str) -> GatewayProc {
    start_gateway_env(policy, &[])
}

/// Same, with extra environment variables (e.g. `TOLLGATE_WINDOW_SCALE`, `RUST_LOG`).
pub fn start_gateway_env(policy: &str, env: &[(&str, &str)]) -> GatewayProc {
    let g = GatewayProc::launch(policy, env);
    g.wait_ready();
    g
}

/// [`start_gateway_env`] with more files beside the policy (e.g. included ones).
pub fn start_gateway_files(
    policy: &str,
    env: &[(&str, &str)],
    files: &[(&str, &str)],
) -> GatewayProc {
    let g = GatewayProc::launch_with(policy, env, files);
    g.wait_ready();
    g
}

/// Fills in a policy's placeholders for a gateway on `addr` with its files under `dir`.
pub fn fill(policy: &str, addr: SocketAddr, dir: &Path) -> String {
    policy
        .replace("{LISTEN}", &addr.to_string())
        .replace("{DATA}", &dir.join("data").display().to_string())
        .replace("{SOCK}", &dir.join("upgrade.sock").display().to_string())
}

pub fn write_policy(path: &Path, policy: &str, addr: SocketAddr, dir: &Path) {
    std::fs::write(path, fill(policy, addr, dir)).expect("write policy");
}

/// Starts the binary on `conf`, appending its output to `log`.
fn spawn(conf: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    tollgate()
        .arg("-c")
        .arg(conf)
        .env("RUST_LOG", "info")
        .env("TEST_PROVIDER_KEY", "sk-provider-secret")
        .envs(env.iter().copied())
        .stdout(Stdio::from(logf.try_clone().expect("log")))
        .stderr(Stdio::from(logf))
        .spawn()
        .expect("spawn tollgate")
}

impl GatewayProc {
    /// Writes the policy and starts the binary, without waiting for it.
    pub fn launch(policy: &str, env: &[(&str, &str)]) -> GatewayProc {
        Self::launch_with(policy, env, &[])
    }

    /// The same, with more files (name, text) beside the policy (e.g. included ones).
    pub fn launch_with(policy: &str, env: &[(&str, &str)], files: &[(&str, &str)]) -> GatewayProc {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write file");
        }
        let addr = super::free_addr();
        let conf = dir.path().join("tollgate.toml");
        write_policy(&conf, policy, addr, dir.path());
        let admin_addr = policy
            .lines()
            .find_map(|l| l.strip_prefix("admin_listen = \""))
            .and_then(|l| l.trim_end_matches('"').parse().ok());
        let log = dir.path().join("gateway.log");
        let child = spawn(&conf, &log, env);
        GatewayProc {
            child,
            addr,
            admin_addr,
            dir,
            conf,
            log,
        }
    }

    /// Starts the binary again on the same files (after a kill, or killing it: `kill -9`).
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.conf, &self.log, env);
        self.wait_ready();
    }

    /// Sends `sig` and waits for the process to exit.
    pub fn stop(&mut self, sig: i32) {
        self.signal(sig);
        let _ = self.child.wait();
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The admin API of this gateway, called with `token`.
    pub fn admin(&self, token: &str) -> Admin {
        Admin::new(self.admin_addr.expect("a policy with_admin()"), token)
    }

    /// Waits until the data plane accepts connections and the admin listener, if any,
    /// answers `GET /healthz`.
    fn wait_ready(&self) {
        let listening =
            || TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok();
        let healthy = || self.admin_addr.is_none_or(healthz);
        if !poll_blocking(Duration::from_secs(20), || listening() && healthy()) {
            panic!("gateway did not start:\n{}", self.log_text());
        }
    }

    /// What the process has printed.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The request log of a policy [`with_request_log`](super::PolicyExt::with_request_log).
    pub fn request_log(&self) -> PathBuf {
        self.dir.path().join("requests.log")
    }

    /// The request-log line of `request_id`, waiting for it.
    pub async fn log_line(&self, request_id: &str) -> serde_json::Value {
        wait_log_line(&self.request_log(), request_id).await
    }

    /// Rewrites the policy file (same listen address) and sends SIGHUP.
    pub fn rewrite_and_reload(&self, policy: &str) {
        write_policy(&self.conf, policy, self.addr, self.dir.path());
        self.signal(libc::SIGHUP);
    }

    pub fn signal(&self, sig: i32) {
        signal(self.child.id(), sig);
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
        let seen = || {
            let (o, f) = self.reload_count();
            o >= ok && f >= failed
        };
        if !poll_blocking(Duration::from_secs(10), seen) {
            panic!(
                "reload not seen (want ok {ok} failed {failed}):\n{}",
                self.log_text()
            );
        }
    }
}

/// An answer (any) to `GET /healthz` at `addr`.
fn healthz(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let mut head = [0u8; 9];
    s.set_read_timeout(Some(Duration::from_secs(5))).is_ok()
        && s.write_all(b"GET /healthz HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
            .is_ok()
        && s.read_exact(&mut head).is_ok()
        && &head == b"HTTP/1.1 "
}

/// Sends `sig` to `pid` with kill(1) (the crate forbids `unsafe`, so no libc::kill).
pub fn signal(pid: u32, sig: i32) {
    let name = match sig {
        libc::SIGHUP => "HUP",
        libc::SIGKILL => "KILL",
        libc::SIGQUIT => "QUIT",
        libc::SIGUSR1 => "USR1",
        _ => "TERM",
    };
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{name} {pid} failed");
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

/// Kills the child however the test ends (a failed assertion must not leave it running).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The same for a process known by its pid only (a daemon).
pub struct KillPidOnDrop(pub u32);

impl Drop for KillPidOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-9")
            .arg(self.0.to_string())
            .status();
    }
}
