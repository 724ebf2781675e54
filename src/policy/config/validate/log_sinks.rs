//! `[[log_sinks]]` blocks, and the `log_sinks` / `log_retention` fields of orgs and groups
//! (docs/policy.md "Log sinks"). Secrets are read from the environment only: a variable
//! that is named but not set is a load error, its value is never kept here.

use super::super::log_sinks::{Batch, HttpFormat, LogSink, SinkKind, DEFAULT_SPOOL_MAX};
use super::super::raw::*;
use super::super::*;
use super::{check_unique, duration, Checker, Loc};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A size such as `"8MiB"`; `None` (and a problem) when it is not one or is zero.
pub(super) fn size(c: &mut Checker, loc: Loc, path: &str, v: &str) -> Option<u64> {
    match v.parse::<bytesize::ByteSize>() {
        Ok(b) if b.as_u64() > 0 => Some(b.as_u64()),
        Ok(_) => {
            c.problem(loc, path, "want a size above zero");
            None
        }
        Err(e) => {
            c.problem(loc, path, format!("invalid size {v:?}: {e}"));
            None
        }
    }
}

fn env_set(c: &mut Checker, loc: Loc, path: &str, var: &str) {
    if var.is_empty() {
        c.problem(loc, path, "want the name of an environment variable");
    } else if std::env::var_os(var).is_none() {
        c.problem(loc, path, format!("environment variable {var} is not set"));
    }
}

fn http_url(c: &mut Checker, loc: Loc, path: &str, url: &str) {
    match url.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
        _ => c.problem(
            loc,
            path,
            format!("{url:?}: want an http:// or https:// URL"),
        ),
    }
}

/// Every `[[log_sinks]]` block; the bad ones are reported and left out.
pub(super) fn check_log_sinks(
    c: &mut Checker,
    raw: Vec<(RawLogSink, Loc, String)>,
) -> Vec<LogSink> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    for (s, loc, path) in raw {
        check_unique(c, loc, &path, "log sink", &s.id, &mut seen);
        let path = format!("{path} ({})", s.id);
        if s.id.contains(['/', '\\', '.']) || s.id.chars().any(char::is_whitespace) {
            c.problem(
                loc,
                format!("{path}.id"),
                "want letters, digits, - and _ (it names a directory)",
            );
        }
        if let Some(s) = check_log_sink(c, loc, &path, s) {
            out.push(s);
        }
    }
    out
}

fn check_log_sink(c: &mut Checker, loc: Loc, path: &str, s: RawLogSink) -> Option<LogSink> {
    let at = |f: &str| format!("{path}.{f}");
    let headers = |c: &mut Checker, h: BTreeMap<String, String>| {
        h.into_iter()
            .map(|(name, var)| {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    c.problem(
                        loc,
                        at("headers_env"),
                        format!("{name:?}: not a header name"),
                    );
                }
                env_set(c, loc, &at(&format!("headers_env.{name}")), &var);
                (name, var)
            })
            .collect::<Vec<_>>()
    };
    let only = |c: &mut Checker, field: &str, set: bool, kinds: &str| {
        if set {
            c.problem(loc, at(field), format!("only for kind {kinds}"));
        }
    };
    only(c, "endpoint", s.endpoint.is_some() && s.kind != "s3", "s3");
    only(c, "region", s.region.is_some() && s.kind != "s3", "s3");
    only(c, "format", s.format.is_some() && s.kind != "http", "http");
    only(
        c,
        "encoding",
        s.encoding.is_some() && s.kind != "otlp",
        "otlp",
    );
    only(
        c,
        "ca_file",
        s.ca_file.is_some() && s.kind != "syslog",
        "syslog",
    );
    let kind = match s.kind.as_str() {
        "s3" => {
            let Some(rest) = s.url.strip_prefix("s3://") else {
                c.problem(
                    loc,
                    at("url"),
                    format!("{:?}: want s3://bucket/prefix/", s.url),
                );
                return None;
            };
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                c.problem(loc, at("url"), format!("{:?}: no bucket", s.url));
            }
            let mut prefix = prefix.to_string();
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            if let Some(e) = &s.endpoint {
                http_url(c, loc, &at("endpoint"), e);
            }
            let keys_env = match (s.access_key_env, s.secret_key_env) {
                (Some(a), Some(k)) => {
                    env_set(c, loc, &at("access_key_env"), &a);
                    env_set(c, loc, &at("secret_key_env"), &k);
                    Some((a, k))
                }
                (None, None) => None,
                _ => {
                    c.problem(
                        loc,
                        at("access_key_env"),
                        "set both access_key_env and secret_key_env, or neither",
                    );
                    None
                }
            };
            only(c, "headers_env", !s.headers_env.is_empty(), "http, otlp");
            SinkKind::S3 {
                bucket: bucket.to_string(),
                prefix,
                endpoint: s.endpoint,
                region: s.region,
                keys_env,
            }
        }
        "http" => {
            http_url(c, loc, &at("url"), &s.url);
            let format = match s.format.as_deref() {
                None | Some("jsonl") => HttpFormat::Jsonl,
                Some("splunk_hec") => HttpFormat::SplunkHec,
                Some("elastic_bulk") => HttpFormat::ElasticBulk,
                Some(f) => {
                    c.problem(
                        loc,
                        at("format"),
                        format!("{f:?}: want jsonl, splunk_hec or elastic_bulk"),
                    );
                    HttpFormat::Jsonl
                }
            };
            SinkKind::Http {
                url: s.url,
                format,
                headers_env: headers(c, s.headers_env),
            }
        }
        "otlp" => {
            http_url(c, loc, &at("url"), &s.url);
            let json = match s.encoding.as_deref() {
                None | Some("protobuf") => false,
                Some("json") => true,
                Some(e) => {
                    c.problem(loc, at("encoding"), format!("{e:?}: want protobuf or json"));
                    false
                }
            };
            SinkKind::Otlp {
                url: s.url,
                json,
                headers_env: headers(c, s.headers_env),
            }
        }
        "syslog" => {
            only(c, "headers_env", !s.headers_env.is_empty(), "http, otlp");
            let (tls, rest) = if let Some(r) = s.url.strip_prefix("tcp://") {
                (false, r)
            } else if let Some(r) = s.url.strip_prefix("tls://") {
                (true, r)
            } else {
                c.problem(
                    loc,
                    at("url"),
                    format!("{:?}: want tcp://host:port or tls://host:port", s.url),
                );
                return None;
            };
            let parsed = rest
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                .filter(|(h, p)| !h.is_empty() && *p > 0);
            let Some((host, port)) = parsed else {
                c.problem(loc, at("url"), format!("{:?}: want host:port", s.url));
                return None;
            };
            SinkKind::Syslog {
                host: host.trim_start_matches('[').trim_end_matches(']').into(),
                port,
                tls,
                ca_file: s.ca_file,
            }
        }
        k => {
            c.problem(
                loc,
                at("kind"),
                format!("{k:?}: want s3, http, syslog or otlp"),
            );
            return None;
        }
    };
    let mut batch = Batch::default_for(&kind);
    if let Some(b) = s.batch {
        if let Some(n) = b.max_lines {
            if n == 0 || n > 10_000_000 {
                c.problem(
                    loc,
                    at("batch.max_lines"),
                    format!("{n}: want 1 ..= 10000000"),
                );
            } else {
                batch.max_lines = n as usize;
            }
        }
        if let Some(v) = b.max_bytes {
            if let Some(n) = size(c, loc, &at("batch.max_bytes"), &v) {
                batch.max_bytes = n.min(1 << 30) as usize;
            }
        }
        batch.max_wait = duration(
            c,
            loc,
            &at("batch.max_wait"),
            b.max_wait.as_deref(),
            batch.max_wait,
        );
    }
    let spool_max = s
        .spool_max
        .and_then(|v| size(c, loc, &at("spool_max"), &v))
        .unwrap_or(DEFAULT_SPOOL_MAX);
    Some(LogSink {
        id: s.id.into(),
        kind,
        batch,
        spool_max,
    })
}

/// A layer's own `log_sinks` (checked against the blocks) and `log_retention`.
pub(super) type Layer = (Box<[Arc<str>]>, Option<Duration>);

/// The `log_sinks` and `log_retention` of each org or group, by id.
pub(super) fn layers<'r>(
    c: &mut Checker,
    raw: impl Iterator<Item = (&'r str, &'r [String], Option<&'r str>, Loc, &'r str)>,
    sinks: &[LogSink],
) -> HashMap<String, Layer> {
    raw.map(|(id, names, retention, loc, path)| {
        let mut ids: Vec<Arc<str>> = vec![];
        for n in names {
            match sinks.iter().find(|s| *s.id == **n) {
                Some(s) if !ids.contains(&s.id) => ids.push(s.id.clone()),
                Some(_) => {}
                None => c.problem(
                    loc,
                    format!("{path} ({id}).log_sinks"),
                    format!("unknown log sink {n:?}"),
                ),
            }
        }
        let retention = retention.map(|r| {
            duration(
                c,
                loc,
                &format!("{path} ({id}).log_retention"),
                Some(r),
                Duration::ZERO,
            )
        });
        if retention == Some(Duration::ZERO) {
            c.problem(
                loc,
                format!("{path} ({id}).log_retention"),
                "want a duration above zero",
            );
        }
        (id.to_string(), (ids.into_boxed_slice(), retention))
    })
    .collect()
}

pub(super) fn apply_orgs(orgs: &mut [Org], own: &HashMap<String, Layer>) {
    for o in orgs {
        if let Some((sinks, retention)) = own.get(&*o.id) {
            o.log_sinks = sinks.clone();
            o.log_retention = *retention;
        }
    }
}

/// A group's sinks are its org's plus its own; its retention the shorter of both.
pub(super) fn apply_groups(groups: &mut [Group], orgs: &[Org], own: &HashMap<String, Layer>) {
    for g in groups {
        let Some(org) = orgs.get(g.org) else { continue };
        let mut sinks: Vec<Arc<str>> = org.log_sinks.to_vec();
        let mut retention = org.log_retention;
        if let Some((mine, r)) = own.get(&*g.id) {
            for s in mine.iter() {
                if !sinks.contains(s) {
                    sinks.push(s.clone());
                }
            }
            retention = match (retention, *r) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        g.log_sinks = sinks.into_boxed_slice();
        g.log_retention = retention;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    const HEAD: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[[log_sinks]]
id = "a"
kind = "http"
url = "http://127.0.0.1:1/a"

[[log_sinks]]
id = "b"
kind = "syslog"
url = "tcp://127.0.0.1:514"

[[orgs]]
id = "o"
log_sinks = ["a"]
log_retention = "30d"

[[groups]]
id = "g1"
org = "o"
log_sinks = ["b", "a"]
log_retention = "1d"

[[groups]]
id = "g2"
org = "o"
log_retention = "90d"
"#;

    /// Both readers (the fast one, and the reporting one a `[[keys]]` before a sink sends
    /// the file to) resolve the layers alike: the group's sinks added to the org's, the
    /// shorter retention.
    #[test]
    fn a_group_adds_its_sinks_to_its_orgs_and_the_shorter_retention_wins() {
        let key = "\n[[keys]]\nid = \"k\"\ngroup = \"g1\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";
        let sink =
            "\n[[log_sinks]]\nid = \"c\"\nkind = \"otlp\"\nurl = \"http://127.0.0.1:4318\"\n";
        for text in [HEAD.to_string(), format!("{HEAD}{key}{sink}")] {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("p.toml");
            std::fs::write(&path, &text).expect("write");
            let cfg = super::super::super::load(&path).expect("valid");
            let ids = |g: &str| -> Vec<String> {
                let g = cfg.groups.iter().find(|x| &*x.id == g).expect("group");
                g.log_sinks.iter().map(|s| s.to_string()).collect()
            };
            let retention = |g: &str| {
                cfg.groups
                    .iter()
                    .find(|x| &*x.id == g)
                    .expect("g")
                    .log_retention
            };
            assert_eq!(ids("g1"), ["a", "b"]);
            assert_eq!(ids("g2"), ["a"]);
            assert_eq!(retention("g1"), Some(Duration::from_secs(86_400)));
            assert_eq!(retention("g2"), Some(Duration::from_secs(30 * 86_400)));
            assert_eq!(cfg.orgs[0].log_sinks.len(), 1);
            assert!(cfg.server.log_sinks.len() >= 2);
        }
    }
}
