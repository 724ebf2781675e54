//! raw -> validated. Every cross-reference and inheritance bound is checked here, and every
//! problem is collected, so one `tollgate -t` run shows all of them.

mod layers;
mod sources;

use super::raw::*;
use super::*;
use globset::{Glob, GlobSetBuilder};
use layers::{check_groups, check_keys, check_orgs};
pub use layers::{looser_than, tightest};
use serde::Deserialize;
use sources::{check_models, check_providers, check_server};
use std::collections::HashSet;
use toml::Spanned;

/// The document with each section element kept as an untyped value plus its span, so a
/// bad element is reported with its line and the others are still checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    server: Option<Spanned<toml::Value>>,
    #[serde(default)]
    providers: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    models: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    orgs: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    groups: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    keys: Vec<Spanned<toml::Value>>,
}

pub(super) type Loc = Option<(usize, usize)>;

pub(super) struct Checker<'a> {
    problems: Vec<Problem>,
    lines: LineIndex,
    _text: std::marker::PhantomData<&'a str>,
}

/// Where each line of the text starts: built once, so finding an element's line is a
/// binary search (scanning from the start for each of 100k keys was quadratic).
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = Vec::with_capacity(text.len() / 32 + 1);
        starts.push(0);
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        LineIndex(starts)
    }

    /// 1-based line and column (in bytes) of `offset`.
    fn at(&self, offset: usize) -> (usize, usize) {
        let line = self.0.partition_point(|&start| start <= offset);
        let start = self.0[line.max(1) - 1];
        (line.max(1), offset - start + 1)
    }
}

impl<'a> Checker<'a> {
    fn new(text: &'a str) -> Checker<'a> {
        Checker {
            problems: vec![],
            lines: LineIndex::new(text),
            _text: std::marker::PhantomData,
        }
    }

    fn at(&self, offset: usize) -> Loc {
        Some(self.lines.at(offset))
    }

    pub(super) fn problem(
        &mut self,
        line: Loc,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            line,
            path: path.into(),
            message: message.into(),
        });
    }

    /// Deserializes every element of an array section (`[[name]]`), keeping the good ones.
    fn section<T: for<'de> Deserialize<'de>>(
        &mut self,
        items: Vec<Spanned<toml::Value>>,
        name: &str,
    ) -> Vec<(T, Loc, String)> {
        items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| self.element::<T>(v, format!("{name}[{i}]")))
            .collect()
    }

    /// Deserializes one section element; on error records it and returns `None`.
    fn element<T: for<'de> Deserialize<'de>>(
        &mut self,
        v: Spanned<toml::Value>,
        path: String,
    ) -> Option<(T, Loc, String)> {
        let loc = self.at(v.span().start);
        match T::deserialize(v.into_inner()) {
            Ok(t) => Some((t, loc, path)),
            Err(e) => {
                let msg = e.message().trim().to_string();
                self.problem(loc, path, msg);
                None
            }
        }
    }
}

/// The policy file's field rules, for the admin API: the same checks, one field at a time,
/// the first problem as `(field, message)`.
pub mod fields {
    use super::*;

    pub type FieldError = (String, String);

    fn checked<T>(f: impl FnOnce(&mut Checker) -> T) -> Result<T, FieldError> {
        let mut c = Checker::new("");
        let v = f(&mut c);
        match c.problems.into_iter().next() {
            None => Ok(v),
            Some(p) => {
                let field = p.path.trim_start_matches('.');
                let field = field.split('.').next().unwrap_or(field).to_string();
                Err((field, p.message))
            }
        }
    }

    /// Limit fields, without the inheritance check (see [`looser_than`]).
    pub fn limits(raw: RawLimits) -> Result<Limits, FieldError> {
        checked(|c| layers::layer_limits(c, None, "", raw, None))
    }

    pub fn model_filter(
        allow: Option<Vec<String>>,
        deny: Vec<String>,
    ) -> Result<ModelFilter, FieldError> {
        checked(|c| super::model_filter(c, None, "", allow, deny))
    }

    pub fn cidrs(field: &str, list: &[String]) -> Result<Vec<IpNet>, FieldError> {
        checked(|c| super::cidrs(c, None, field, list))
    }
}

/// Parses and validates policy-file text. `path` is used for messages only.
pub fn parse_config(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let doc: Document = match toml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let mut c = Checker::new(text);
            let loc = e.span().and_then(|s| c.at(s.start));
            c.problem(loc, "", e.message().trim().to_string());
            return Err(ConfigError {
                file,
                problems: c.problems,
            });
        }
    };
    let mut c = Checker::new(text);
    let Document {
        server,
        providers,
        models,
        orgs,
        groups,
        keys,
    } = doc;

    let server = match server {
        Some(s) => c.element::<RawServer>(s, "server".into()),
        None => {
            c.problem(None, "server", "missing [server] section");
            None
        }
    };
    let server = server.map(|(s, loc, p)| check_server(&mut c, s, loc, &p));

    let providers = c.section::<RawProvider>(providers, "providers");
    let providers = check_providers(&mut c, providers);

    let models = c.section::<RawModel>(models, "models");
    let models = check_models(&mut c, models, &providers);

    let orgs = c.section::<RawOrg>(orgs, "orgs");
    let orgs = check_orgs(&mut c, orgs);

    let groups = c.section::<RawGroup>(groups, "groups");
    let groups = check_groups(&mut c, groups, &orgs, &models);

    let keys = c.section::<RawKey>(keys, "keys");
    let keys = check_keys(&mut c, keys, &groups, &orgs);

    match server {
        Some(server) if c.problems.is_empty() => Ok(Config {
            path: path.to_path_buf(),
            server,
            providers,
            models,
            orgs,
            groups,
            keys,
        }),
        _ => Err(ConfigError {
            file,
            problems: c.problems,
        }),
    }
}

pub(super) fn duration(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    v: Option<&str>,
    default: Duration,
) -> Duration {
    match v {
        None => default,
        Some(s) => match humantime::parse_duration(s) {
            Ok(d) => d,
            Err(e) => {
                c.problem(loc, path, format!("invalid duration {s:?}: {e}"));
                default
            }
        },
    }
}

pub(super) fn cidrs(c: &mut Checker, loc: Loc, path: &str, list: &[String]) -> Vec<IpNet> {
    list.iter()
        .filter_map(|s| {
            let parsed = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => Some(n),
                Err(_) => {
                    c.problem(loc, path, format!("invalid CIDR {s:?}"));
                    None
                }
            }
        })
        .collect()
}

pub(super) fn globs(c: &mut Checker, loc: Loc, path: &str, list: &[String]) -> Option<GlobSet> {
    if list.is_empty() {
        return None;
    }
    let mut b = GlobSetBuilder::new();
    for g in list {
        match Glob::new(g) {
            Ok(g) => {
                b.add(g);
            }
            Err(e) => c.problem(loc, path, format!("invalid glob {g:?}: {}", e.kind())),
        }
    }
    b.build().ok()
}

pub(super) fn model_filter(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    allow: Option<Vec<String>>,
    deny: Vec<String>,
) -> ModelFilter {
    let allow_set = allow.as_ref().map(|a| {
        globs(c, loc, &format!("{path}.models"), a).unwrap_or_else(|| {
            // An explicit empty list allows nothing.
            GlobSetBuilder::new().build().unwrap_or_default()
        })
    });
    ModelFilter {
        allow: allow_set,
        deny: globs(c, loc, &format!("{path}.deny_models"), &deny),
        allow_src: allow,
        deny_src: deny,
    }
}

pub(super) fn usd_to_micros(c: &mut Checker, loc: Loc, path: &str, usd: f64) -> u64 {
    if !usd.is_finite() || !(0.0..=1e12).contains(&usd) {
        c.problem(
            loc,
            path,
            format!("invalid amount {usd}: want 0 ..= 1e12 USD"),
        );
        return 0;
    }
    (usd * 1_000_000.0).round() as u64
}

pub(super) fn check_unique(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    kind: &str,
    id: &str,
    seen: &mut HashSet<String>,
) {
    if id.is_empty() {
        c.problem(
            loc,
            format!("{path}.id"),
            format!("{kind} id must not be empty"),
        );
    } else if !seen.insert(id.to_string()) {
        c.problem(
            loc,
            format!("{path}.id"),
            format!("duplicate {kind} id {id:?}"),
        );
    }
}

#[cfg(test)]
mod line_index_tests {
    use super::LineIndex;

    /// The scan it replaces: count the newlines before `offset`.
    fn scan(text: &str, offset: usize) -> (usize, usize) {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, col)
    }

    #[test]
    fn agrees_with_a_scan_from_the_start() {
        for text in [
            "",
            "a",
            "\n",
            "ab\ncd\n\nef",
            "\n\nx\n",
            "[server]\nlisten = []\n",
        ] {
            let index = LineIndex::new(text);
            for offset in 0..=text.len() + 2 {
                assert_eq!(index.at(offset), scan(text, offset), "{text:?} @ {offset}");
            }
        }
    }
}
