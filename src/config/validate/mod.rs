//! raw -> validated. Every cross-reference and inheritance bound is checked here, and every
//! problem is collected, so one `tollgate -t` run shows all of them.

mod clients;
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

/// The same document read typed in one pass: the fast path for a valid file (no
/// intermediate `toml::Value` per element). Any error sends the file down the
/// [`Document`] path, which reads each element on its own and reports every problem.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypedDocument {
    server: Option<Spanned<RawServer>>,
    #[serde(default)]
    providers: Vec<Spanned<RawProvider>>,
    #[serde(default)]
    models: Vec<Spanned<RawModel>>,
    #[serde(default)]
    orgs: Vec<Spanned<RawOrg>>,
    #[serde(default)]
    groups: Vec<Spanned<RawGroup>>,
    #[serde(default)]
    keys: Vec<Spanned<RawKey>>,
}

/// A run of `[[keys]]` elements and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysChunk {
    keys: Vec<Spanned<RawKey>>,
}

/// `[[keys]]` elements per chunk of the fast path.
const KEYS_PER_CHUNK: usize = 1024;

/// The fast path's reader. A large key list is read in chunks of [`KEYS_PER_CHUNK`]
/// elements cut at `[[keys]]` header lines, so the parser's transient tree (several KiB per
/// key) never holds the whole file. A cut inside a multi-line string leaves a chunk that
/// does not parse, and a chunk holding any other section is refused (`KeysChunk` allows
/// nothing else): either way the whole file goes down the reporting path instead.
fn read_typed(text: &str) -> Option<TypedDocument> {
    let cuts: Vec<usize> = line_starts(text)
        .filter(|&i| text[i..].starts_with("[[keys]]"))
        .collect();
    if cuts.len() <= KEYS_PER_CHUNK {
        return toml::from_str::<TypedDocument>(text).ok();
    }
    let mut doc = toml::from_str::<TypedDocument>(&text[..cuts[0]]).ok()?;
    if !doc.keys.is_empty() {
        return None;
    }
    let mut bounds: Vec<usize> = cuts.iter().copied().step_by(KEYS_PER_CHUNK).collect();
    bounds.push(text.len());
    for w in bounds.windows(2) {
        let chunk: KeysChunk = toml::from_str(&text[w[0]..w[1]]).ok()?;
        doc.keys.extend(chunk.keys.into_iter().map(|k| {
            let span = k.span();
            Spanned::new(span.start + w[0]..span.end + w[0], k.into_inner())
        }));
    }
    Some(doc)
}

fn line_starts(text: &str) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1))
}

/// The elements of a section read typed, each with its location and path.
type Elements<T> = Vec<(T, Loc, String)>;

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

    /// The elements of a section already read typed, with their locations.
    fn typed<T>(&self, items: Vec<Spanned<T>>, name: &str) -> Elements<T> {
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let loc = self.at(v.span().start);
                (v.into_inner(), loc, format!("{name}[{i}]"))
            })
            .collect()
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
    if let Some(doc) = read_typed(text) {
        let mut c = Checker::new(text);
        let server = doc.server.map(|s| {
            let loc = c.at(s.span().start);
            check_server(&mut c, s.into_inner(), loc, "server")
        });
        if server.is_none() {
            c.problem(None, "server", "missing [server] section");
        }
        let providers = c.typed(doc.providers, "providers");
        let providers = check_providers(&mut c, providers);
        let models = c.typed(doc.models, "models");
        let models = check_models(&mut c, models, &providers);
        let orgs = c.typed(doc.orgs, "orgs");
        let orgs = check_orgs(&mut c, orgs);
        let groups = c.typed(doc.groups, "groups");
        let groups = check_groups(&mut c, groups, &orgs, &models);
        let keys = c.typed(doc.keys, "keys");
        let keys = check_keys(&mut c, keys, &groups, &orgs);
        return finish(c, path, server, (providers, models, orgs, groups, keys));
    }
    parse_config_reporting(text, path)
}

/// The slow path: each element read on its own, so every bad one is reported.
fn parse_config_reporting(text: &str, path: &Path) -> Result<Config, ConfigError> {
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
    finish(c, path, server, (providers, models, orgs, groups, keys))
}

type Checked = (Vec<Provider>, Vec<Model>, Vec<Org>, Vec<Group>, Vec<KeyDef>);

fn finish(
    c: Checker,
    path: &Path,
    server: Option<ServerConfig>,
    (providers, models, orgs, groups, keys): Checked,
) -> Result<Config, ConfigError> {
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
            file: path.display().to_string(),
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

#[cfg(test)]
mod chunked_tests {
    use super::*;

    const HEAD: &str = "[server]\nlisten = [\"127.0.0.1:1\"]\n\n[[providers]]\nid = \"p\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:2\"\n\n[[models]]\nname = \"m\"\ntargets = [{ provider = \"p\" }]\n\n[[orgs]]\nid = \"o\"\n\n[[groups]]\nid = \"g\"\norg = \"o\"\n";

    fn key(i: usize) -> String {
        format!("\n[[keys]]\nid = \"k{i}\"\ngroup = \"g\"\nsha256 = \"{i:064x}\"\ntags = {{ n = \"{i}\" }}\n")
    }

    fn file(n: usize) -> String {
        HEAD.to_string() + &(0..n).map(key).collect::<String>()
    }

    #[test]
    fn a_long_key_list_is_read_in_chunks_with_file_positions() {
        let text = file(3 * KEYS_PER_CHUNK + 7);
        let cfg = parse_config(&text, Path::new("t.toml")).expect("valid");
        assert_eq!(cfg.keys.len(), 3 * KEYS_PER_CHUNK + 7);
        assert_eq!(&*cfg.keys[2500].id, "k2500");
        // A problem in a late key: reported at its line in the whole file.
        let bad = text.replace(
            "id = \"k2500\"\ngroup = \"g\"",
            "id = \"k2500\"\ngroup = \"nope\"",
        );
        let err = parse_config(&bad, Path::new("t.toml")).expect_err("unknown group");
        let at = bad.find("id = \"k2500\"").expect("k2500");
        let line = bad[..at].matches('\n').count(); // the `[[keys]]` line above it
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].line.map(|l| l.0), Some(line), "{err}");
    }

    #[test]
    fn other_sections_after_the_keys_and_broken_chunks_take_the_full_path() {
        let text = file(2 * KEYS_PER_CHUNK) + "\n[[groups]]\nid = \"g2\"\norg = \"o\"\n";
        let cfg = parse_config(&text, Path::new("t.toml")).expect("valid");
        assert_eq!(cfg.groups.len(), 2);
        assert_eq!(cfg.keys.len(), 2 * KEYS_PER_CHUNK);
        // A multi-line string holding a `[[keys]]` line: not a cut.
        let tricky = file(2 * KEYS_PER_CHUNK).replace(
            "id = \"k1500\"\n",
            "id = \"k1500\"\nname = \"\"\"\n[[keys]]\nid = \"\"\"\n",
        );
        let cfg = parse_config(&tricky, Path::new("t.toml")).expect("valid");
        assert_eq!(cfg.keys.len(), 2 * KEYS_PER_CHUNK);
        assert_eq!(cfg.keys[1500].name.as_deref(), Some("[[keys]]\nid = "));
        // Every problem is still reported, with its line.
        let two_bad = file(2 * KEYS_PER_CHUNK)
            .replace("id = \"k3\"\ngroup = \"g\"", "id = \"k3\"\ngroup = \"x\"")
            .replace(
                "id = \"k2000\"\ngroup = \"g\"",
                "id = \"k2000\"\ngroup = \"y\"\nbogus = 1",
            );
        let err = parse_config(&two_bad, Path::new("t.toml")).expect_err("problems");
        assert_eq!(err.problems.len(), 2, "{err}");
    }
}
