//! tollgate: CLI, load the policy file, build the Pingora server, add services, run.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tollgate::policy::config;
use tollgate::policy::reload::install_early_sighup_flag;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "LLM API gateway: keys are identity, groups are policy"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    /// The policy file.
    #[arg(short = 'c', long = "conf", value_name = "FILE")]
    conf: Option<PathBuf>,
    /// Validate the policy file, print a summary, exit (0 = valid, 1 = problems).
    #[arg(short = 't', long = "test")]
    test: bool,
    /// Run in the background (writes `server.pid_file`).
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Take over the listeners of a running instance (graceful upgrade).
    #[arg(short = 'u', long = "upgrade")]
    upgrade: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a fresh API key and the `sha256` line for a `[[keys]]` entry.
    Keygen,
    /// Run the mock provider and the gateway on the demo config.
    Demo {
        #[arg(short = 'c', long = "conf", default_value = "conf/demo.toml")]
        conf: PathBuf,
    },
    /// Run only the mock LLM provider (OpenAI and Anthropic routes).
    Mock {
        #[arg(long, default_value = "127.0.0.1:18081")]
        listen: String,
    },
}

fn main() -> ExitCode {
    // No transparent huge pages for this process: mimalloc asks for them (`madvise`), and
    // half-used 2 MiB pages put ~10% on the resident size (1M store keys: 505–523 → 474–475
    // MiB, `loadtest/startup_rss.sh store`). Checked at page-fault time, so it also covers
    // what the allocator reserved before this line.
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("note: transparent huge pages stay on for this process: {e}");
    }
    // First thing: a SIGHUP during start-up must not kill the process (its default action).
    let early_hup = match install_early_sighup_flag() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot install SIGHUP handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Pingora's debug and trace output prints raw request headers (an unparsable header
    // block, every request's header): credentials. It stays at info whatever RUST_LOG says.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .filter_module("pingora_proxy", log::LevelFilter::Info)
        .filter_module("pingora_core", log::LevelFilter::Info)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Keygen) => {
            let key = tollgate::proxy::auth::generate_key();
            println!("key:    {key}");
            println!(
                "sha256 = \"{}\"",
                hex::encode(tollgate::proxy::auth::digest(key.as_bytes()))
            );
            println!("# The key is shown once: store it now. Only the sha256 line goes in the policy file.");
            ExitCode::SUCCESS
        }
        Some(Cmd::Mock { listen }) => run_mock(&listen),
        Some(Cmd::Demo { conf }) => tollgate::app::demo::run(&conf, early_hup),
        None => {
            let Some(conf) = cli.conf else {
                eprintln!("usage: tollgate -c FILE [-t] [-d] [-u]   (see --help)");
                return ExitCode::from(2);
            };
            if cli.test {
                return test_config(&conf);
            }
            match run(&conf, cli.daemon, cli.upgrade, early_hup) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tollgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn test_config(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(cfg) => {
            print!("{}", cfg.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run_mock(listen: &str) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tollgate mock: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(tollgate::testing::mock::run_forever(listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate mock: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    path: &std::path::Path,
    daemon: bool,
    upgrade: bool,
    early_hup: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let server = tollgate::app::server::build(path, daemon, upgrade, early_hup)?;
    server.run_forever()
}

// Pingora and the request path allocate per request; mimalloc's thread-local free lists make
// that markedly cheaper than glibc malloc (see README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
