//! Policies: the one most tests start from, and the edits tests make to a policy.

use super::{free_addr, key, sha};
use std::net::SocketAddr;

/// The `[server]` table every test policy starts with: listeners and files in the
/// gateway's directory ([`fill`](super::gateway::fill)), a short grace period, no request
/// log.
pub const SERVER: &str = r#"[server]
listen = ["{LISTEN}"]
data_dir = "{DATA}"
upgrade_sock = "{SOCK}"
grace_period = "1s"
request_log = "off"
"#;

/// `grp_hook` (in org acme, with `extra` lines) whose webhooks go to `hook`, signed with
/// `TEST_WEBHOOK_SECRET`, and its key `key_hook`, key(2).
pub fn webhook_group(hook: &str, extra: &str) -> String {
    format!(
        r#"
[[groups]]
id = "grp_hook"
org = "acme"
webhook = "{hook}"
webhook_secret_env = "TEST_WEBHOOK_SECRET"
{extra}

[[keys]]
id = "key_hook"
group = "grp_hook"
sha256 = "{sha}"
"#,
        sha = sha(&key(2))
    )
}

/// A policy with one OpenAI and one Anthropic provider pointing at `mock`.
pub fn basic_policy(mock: SocketAddr, extra: &str) -> String {
    format!(
        r#"
{SERVER}reload_settle = "50ms"
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

/// Edits of a policy's text.
pub trait PolicyExt {
    /// `lines` added at the top of the `[server]` table.
    fn in_server(&self, lines: &str) -> String;
    /// An admin listener on a free port, its root token read from `TEST_ADMIN_TOKEN`
    /// ([`ADMIN_ENV`](super::ADMIN_ENV)); [`GatewayProc::admin`](super::GatewayProc::admin)
    /// calls it.
    fn with_admin(&self) -> String;
    /// `gpt-4o` served first (by weight) by provider "dead" (with `extra` lines), on a port
    /// where nothing listens, then by "oa": every request to it is retried.
    fn with_dead_target(&self, extra: &str) -> String;
    /// A request log in the gateway's directory
    /// ([`GatewayProc::request_log`](super::GatewayProc::request_log)).
    fn with_request_log(&self) -> String;
}

impl PolicyExt for str {
    fn in_server(&self, lines: &str) -> String {
        assert!(
            self.contains("[server]\n"),
            "a policy with a [server] table"
        );
        self.replacen("[server]\n", &format!("[server]\n{lines}\n"), 1)
    }

    fn with_admin(&self) -> String {
        self.in_server(&format!(
            "admin_listen = \"{}\"\nadmin_token_env = \"TEST_ADMIN_TOKEN\"",
            free_addr()
        ))
    }

    fn with_dead_target(&self, extra: &str) -> String {
        let one_target = "targets = [{ provider = \"oa\" }]\n\n[[models]]\nname = \"o1-preview\"";
        assert!(self.contains(one_target), "basic_policy's gpt-4o");
        self.replace(
            one_target,
            "targets = [{ provider = \"dead\", weight = 1000000 }, { provider = \"oa\", weight = 1 }]\n\n[[models]]\nname = \"o1-preview\"",
        ) + &format!(
            "\n[[providers]]\nid = \"dead\"\napi = \"openai\"\nbase_url = \"http://{}\"\n{extra}",
            free_addr()
        )
    }

    fn with_request_log(&self) -> String {
        assert!(self.contains("request_log = \"off\""), "{self}");
        self.replace(
            "request_log = \"off\"",
            "request_log = \"{DATA}/../requests.log\"",
        )
    }
}
