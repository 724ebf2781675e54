//! raw -> validated. Every cross-reference and inheritance bound is checked here, and every
//! problem is collected, so one `tollgate -t` run shows all of them.

mod alerts;
mod clients;
mod guardrails;
mod layers;
mod limits;
mod log_sinks;
mod presets;
mod reqpolicy;
mod sources;
mod tracing_section;

use super::guardrails::Guardrail;
use super::raw::*;
use super::*;
use globset::{Glob, GlobSetBuilder};
use guardrails::check_guardrails;
use layers::{check_groups, check_keys, check_orgs, KeyChecker};
pub(crate) use limits::looser_patterns;
pub(crate) use limits::looser_than;
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
    #[serde(default)]
    guardrails: Vec<Spanned<toml::Value>>,
    /// Files with more `[[presets]]` and `[[guardrails]]`, relative to this one.
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    presets: Vec<Spanned<toml::Value>>,
    smtp: Option<Spanned<toml::Value>>,
    tracing: Option<Spanned<toml::Value>>,
    #[serde(default)]
    log_sinks: Vec<Spanned<toml::Value>>,
}

/// The head of the file (everything before its first `[[keys]]` line) read typed in one
/// pass: the fast path for a valid file (no intermediate `toml::Value` per element). Any
/// error sends the file down the [`Document`] path, which reads each element on its own and
/// reports every problem.
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
    #[serde(default)]
    guardrails: Vec<Spanned<RawGuardrail>>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    presets: Vec<toml::Value>,
    smtp: Option<Spanned<RawSmtp>>,
    tracing: Option<Spanned<RawTracing>>,
    log_sinks: Vec<Spanned<RawLogSink>>,
}

/// A run of `[[keys]]` elements and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysChunk {
    keys: Vec<Spanned<RawKey>>,
}

/// `[[keys]]` elements per chunk of the fast path.
const KEYS_PER_CHUNK: usize = 1024;

/// One piece of the file for the fast path: its text and the number of lines before it.
/// The first piece is the head (everything before the first `[[keys]]` line), each later
/// one starts at a `[[keys]]` line and holds up to [`KEYS_PER_CHUNK`] of them. `None`: the
/// file could not be read this way (the reporting path then reads it whole).
pub(super) type Piece<'t> = Option<(std::borrow::Cow<'t, str>, usize)>;

fn is_cut(line: &[u8]) -> bool {
    line.starts_with(b"[[keys]]")
}

/// The pieces of text already in memory (borrowed, nothing copied).
fn text_pieces(text: &str) -> impl Iterator<Item = Piece<'_>> + '_ {
    let mut cuts = vec![];
    let mut seen = 0;
    for (n, i) in line_starts(text).enumerate() {
        if is_cut(&text.as_bytes()[i..]) {
            if seen % KEYS_PER_CHUNK == 0 {
                cuts.push((i, n));
            }
            seen += 1;
        }
    }
    let mut bounds = vec![(0, 0)];
    bounds.extend(cuts);
    bounds.push((text.len(), 0));
    (0..bounds.len() - 1).map(move |w| {
        let ((a, line), (b, _)) = (bounds[w], bounds[w + 1]);
        Some((std::borrow::Cow::Borrowed(&text[a..b]), line))
    })
}

/// The pieces of a file read through a buffer: the whole text is never in memory at once.
pub(super) struct FilePieces<R> {
    reader: R,
    /// A `[[keys]]` line already read: the start of the next piece.
    pending: Vec<u8>,
    /// Lines before `pending`.
    line: usize,
    started: bool,
    done: bool,
}

impl<R: std::io::BufRead> FilePieces<R> {
    pub(super) fn new(reader: R) -> FilePieces<R> {
        FilePieces {
            reader,
            pending: vec![],
            line: 0,
            started: false,
            done: false,
        }
    }
}

impl<R: std::io::BufRead> Iterator for FilePieces<R> {
    type Item = Piece<'static>;

    fn next(&mut self) -> Option<Piece<'static>> {
        if self.done {
            return None;
        }
        let first = !self.started;
        self.started = true;
        let base = self.line;
        let mut buf = std::mem::take(&mut self.pending);
        let mut cuts = usize::from(!buf.is_empty());
        if !first && buf.is_empty() {
            self.done = true;
            return None;
        }
        self.line += cuts;
        loop {
            let at = buf.len();
            match self.reader.read_until(b'\n', &mut buf) {
                Err(_) => {
                    self.done = true;
                    return Some(None);
                }
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(_) => {}
            }
            if is_cut(&buf[at..]) {
                if first || cuts == KEYS_PER_CHUNK {
                    self.pending = buf.split_off(at);
                    break;
                }
                cuts += 1;
            }
            self.line += 1;
        }
        match String::from_utf8(buf) {
            Ok(s) => Some(Some((std::borrow::Cow::Owned(s), base))),
            Err(_) => {
                self.done = true;
                Some(None)
            }
        }
    }
}

/// The fast path: the head read typed and checked, then the key list read and checked
/// chunk by chunk, so neither the whole text (when read from a file) nor the whole raw key
/// list is ever held. `None`: something did not parse (or the head holds keys, or a chunk
/// holds another section); the caller then takes the reporting path.
fn read_fast<'t>(
    mut pieces: impl Iterator<Item = Piece<'t>>,
    path: &Path,
) -> Option<Result<Config, ConfigError>> {
    let (head, _) = pieces.next()??;
    let doc = toml::from_str::<TypedDocument>(&head).ok()?;
    // Presets are resolved on the raw tables: the reporting path does that.
    let presets = !doc.include.is_empty()
        || !doc.presets.is_empty()
        || doc.groups.iter().any(|g| g.get_ref().preset.is_some());
    if !doc.keys.is_empty() || presets {
        return None;
    }
    let mut c = Checker::new(&head);
    let mut server = doc.server.map(|s| {
        let loc = c.at(s.span().start);
        check_server(&mut c, s.into_inner(), loc, "server")
    });
    if let (Some(s), Some(raw)) = (server.as_mut(), doc.smtp) {
        let loc = c.at(raw.span().start);
        s.smtp = Some(alerts::check_smtp(&mut c, loc, raw.into_inner()));
    }
    if let (Some(server), Some(t)) = (server.as_mut(), doc.tracing) {
        let loc = c.at(t.span().start);
        server.tracing = tracing_section::check(&mut c, t.into_inner(), loc);
    }
    if server.is_none() {
        c.problem(None, "server", "missing [server] section");
    }
    let providers = c.typed(doc.providers, "providers");
    let providers = check_providers(&mut c, providers);
    let models = c.typed(doc.models, "models");
    let models = check_models(&mut c, models, &providers);
    let guards = c.typed(doc.guardrails, "guardrails");
    let guards = check_guardrails(&mut c, guards, &providers);
    let sinks = c.typed(doc.log_sinks, "log_sinks");
    let sinks = log_sinks::check_log_sinks(&mut c, sinks);
    let orgs = c.typed(doc.orgs, "orgs");
    let org_sinks = org_layers(&mut c, &orgs, &sinks);
    let mut orgs = check_orgs(&mut c, orgs, &guards);
    log_sinks::apply_orgs(&mut orgs, &org_sinks);
    let groups = c.typed(doc.groups, "groups");
    let group_sinks = group_layers(&mut c, &groups, &sinks);
    let mut groups = check_groups(&mut c, groups, &orgs, &models, &guards);
    log_sinks::apply_groups(&mut groups, &orgs, &group_sinks);
    let server = server.map(|s| with_sinks(s, sinks));
    let mut keys = KeyChecker::default();
    let mut i = 0;
    for piece in pieces {
        let (text, line) = piece?;
        let chunk: KeysChunk = toml::from_str(&text).ok()?;
        c.lines = LineIndex::new(&text).after(line);
        drop(text);
        for k in chunk.keys {
            let loc = c.at(k.span().start);
            keys.check(
                &mut c,
                k.into_inner(),
                loc,
                format!("keys[{i}]"),
                (&groups, &orgs, &guards),
            );
            i += 1;
        }
    }
    let keys = keys.finish();
    Some(finish(
        c,
        path,
        server,
        (providers, models, guards, orgs, groups, keys),
    ))
}

/// Reads and validates the policy file at `path`: the fast path reads it piece by piece;
/// a file it cannot take is read whole and goes down the reporting path.
pub(super) fn load_file(path: &Path) -> Result<Config, ConfigError> {
    if let Ok(f) = std::fs::File::open(path) {
        let pieces = FilePieces::new(std::io::BufReader::with_capacity(1 << 16, f));
        if let Some(result) = read_fast(pieces, path) {
            return result;
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        problems: vec![Problem {
            line: None,
            path: String::new(),
            message: format!("cannot read file: {e}"),
        }],
    })?;
    parse_config_reporting(&text, path)
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
/// A piece of the file that starts after `base` lines is indexed on its own.
struct LineIndex(Vec<usize>, usize);

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = Vec::with_capacity(text.len() / 32 + 1);
        starts.push(0);
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        LineIndex(starts, 0)
    }

    /// The index of a piece that starts at the beginning of line `base + 1`.
    fn after(self, base: usize) -> LineIndex {
        LineIndex(self.0, base)
    }

    /// 1-based line and column (in bytes) of `offset`.
    fn at(&self, offset: usize) -> (usize, usize) {
        let line = self.0.partition_point(|&start| start <= offset);
        let start = self.0[line.max(1) - 1];
        (line.max(1) + self.1, offset - start + 1)
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
pub(crate) mod fields {
    use super::*;

    pub(crate) type FieldError = (String, String);

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
    pub(crate) fn limits(raw: RawLimits) -> Result<Limits, FieldError> {
        checked(|c| limits::layer_limits(c, None, "", raw, None))
    }

    pub(crate) fn model_filter(
        allow: Option<Vec<String>>,
        deny: Vec<String>,
    ) -> Result<ModelFilter, FieldError> {
        checked(|c| super::model_filter(c, None, "", allow, deny))
    }

    pub(crate) fn cidrs(field: &str, list: &[String]) -> Result<Vec<IpNet>, FieldError> {
        checked(|c| super::cidrs(c, None, field, list))
    }
}

/// Parses and validates policy-file text. `path` is used for messages only.
pub fn parse_config(text: &str, path: &Path) -> Result<Config, ConfigError> {
    if let Some(result) = read_fast(text_pieces(text), path) {
        return result;
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
        mut groups,
        keys,
        guardrails,
        include,
        presets,
        smtp,
        tracing,
        log_sinks: sinks,
    } = doc;
    let mut included = presets::read_includes(&mut c, path, &include);
    let from_preset = presets::resolve(&mut c, presets, &mut included, &mut groups);

    let server = match server {
        Some(s) => c.element::<RawServer>(s, "server".into()),
        None => {
            c.problem(None, "server", "missing [server] section");
            None
        }
    };
    let mut server = server.map(|(s, loc, p)| check_server(&mut c, s, loc, &p));
    let smtp = smtp.and_then(|s| c.element::<RawSmtp>(s, "smtp".into()));
    if let (Some(s), Some((raw, loc, _))) = (server.as_mut(), smtp) {
        s.smtp = Some(alerts::check_smtp(&mut c, loc, raw));
    }
    let tracing = tracing.and_then(|t| c.element::<RawTracing>(t, "tracing".into()));
    if let (Some(server), Some((t, loc, _))) = (server.as_mut(), tracing) {
        server.tracing = tracing_section::check(&mut c, t, loc);
    }

    let providers = c.section::<RawProvider>(providers, "providers");
    let providers = check_providers(&mut c, providers);

    let models = c.section::<RawModel>(models, "models");
    let models = check_models(&mut c, models, &providers);

    let mut guards = c.section::<RawGuardrail>(guardrails, "guardrails");
    guards.extend(included.guardrails);
    let guards = check_guardrails(&mut c, guards, &providers);

    let sinks = c.section::<RawLogSink>(sinks, "log_sinks");
    let sinks = log_sinks::check_log_sinks(&mut c, sinks);

    let orgs = c.section::<RawOrg>(orgs, "orgs");
    let org_sinks = org_layers(&mut c, &orgs, &sinks);
    let mut orgs = check_orgs(&mut c, orgs, &guards);
    log_sinks::apply_orgs(&mut orgs, &org_sinks);

    let groups = c.section::<RawGroup>(groups, "groups");
    let group_sinks = group_layers(&mut c, &groups, &sinks);
    let mut groups = check_groups(&mut c, groups, &orgs, &models, &guards);
    for g in &mut groups {
        if let Some((id, fields)) = from_preset.get(&*g.id) {
            g.preset = Some(GroupPreset {
                id: id.as_str().into(),
                fields: fields.clone(),
            });
        }
    }
    log_sinks::apply_groups(&mut groups, &orgs, &group_sinks);
    let server = server.map(|s| with_sinks(s, sinks));

    let keys = c.section::<RawKey>(keys, "keys");
    let keys = check_keys(&mut c, keys, &groups, &orgs, &guards);
    finish(
        c,
        path,
        server,
        (providers, models, guards, orgs, groups, keys),
    )
}

fn org_layers(
    c: &mut Checker,
    orgs: &[(RawOrg, Loc, String)],
    sinks: &[super::log_sinks::LogSink],
) -> std::collections::HashMap<String, log_sinks::Layer> {
    let raw = orgs.iter().map(|(o, loc, path)| {
        let r = o.log_retention.as_deref();
        (&*o.id, &*o.log_sinks, r, *loc, path.as_str())
    });
    log_sinks::layers(c, raw, sinks)
}

fn group_layers(
    c: &mut Checker,
    groups: &[(RawGroup, Loc, String)],
    sinks: &[super::log_sinks::LogSink],
) -> std::collections::HashMap<String, log_sinks::Layer> {
    let raw = groups.iter().map(|(g, loc, path)| {
        let r = g.log_retention.as_deref();
        (&*g.id, &*g.log_sinks, r, *loc, path.as_str())
    });
    log_sinks::layers(c, raw, sinks)
}

/// `[[log_sinks]]` travel with `[server]` (the snapshot keeps the server section).
fn with_sinks(mut s: ServerConfig, sinks: Vec<super::log_sinks::LogSink>) -> ServerConfig {
    s.log_sinks = sinks.into();
    s
}

type Checked = (
    Vec<Provider>,
    Vec<Model>,
    Vec<Guardrail>,
    Vec<Org>,
    Vec<Group>,
    KeyDefs,
);

fn finish(
    c: Checker,
    path: &Path,
    server: Option<ServerConfig>,
    (providers, models, guardrails, orgs, groups, keys): Checked,
) -> Result<Config, ConfigError> {
    let mut c = c;
    if let Some(s) = &server {
        check_client_ca(&mut c, s, &orgs, &groups, &keys);
        if s.smtp.is_none() {
            let mailing = orgs.iter().map(|o| (format!("orgs ({})", o.id), &o.alerts));
            let groups = groups
                .iter()
                .map(|g| (format!("groups ({})", g.id), &g.alerts));
            if let Some((at, _)) = mailing.chain(groups).find(|(_, a)| !a.email.is_empty()) {
                c.problem(None, format!("{at}.alert_email"), "needs an [smtp] section");
            }
        }
    }
    match server {
        Some(server) if c.problems.is_empty() => Ok(Config {
            path: path.to_path_buf(),
            server,
            providers,
            models,
            guardrails,
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

/// A certificate rule with no `tls.client_ca` to verify certificates would refuse every
/// request it covers: a problem where it is written (one per layer kind is enough).
fn check_client_ca(
    c: &mut Checker,
    s: &ServerConfig,
    orgs: &[Org],
    groups: &[Group],
    keys: &KeyDefs,
) {
    if s.tls.as_ref().is_some_and(|t| t.client_ca.is_some()) {
        return;
    }
    if let Some(o) = orgs.iter().find(|o| o.require_client_cert) {
        let at = format!("orgs ({}).require_client_cert", o.id);
        c.problem(None, at, mtls::NEEDS_CLIENT_CA);
    } else if let Some(g) = groups.iter().find(|g| g.require_client_cert) {
        let at = format!("groups ({}).require_client_cert", g.id);
        c.problem(None, at, mtls::NEEDS_CLIENT_CA);
    }
    if let Some(k) = keys.iter().find(|k| k.client_cert.is_some()) {
        let at = format!("keys ({}).client_cert_sha256", k.id);
        c.problem(None, at, mtls::NEEDS_CLIENT_CA);
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
    fn repeated_key_ids_and_digests_are_reported_at_each_repeat() {
        let key = |id: &str, group: &str, sha: &str| {
            format!("\n[[keys]]\nid = \"{id}\"\ngroup = \"{group}\"\nsha256 = \"{sha}\"\n")
        };
        let d = |i: u32| format!("{i:064x}");
        // Spread over several chunks; the repeats come after their first use.
        let mut text = file(KEYS_PER_CHUNK + 10);
        for k in [
            key("k5", "g", &d(90_001)),    // id repeated
            key("x1", "g", &d(500)),       // digest repeated
            key("x2", "nope", &d(90_002)), // unknown group: not kept
            key("x2", "g", &d(90_003)),    // its id repeated all the same
            key("", "g", &d(90_004)),      // empty ids are not repeats
            key("", "g", &d(90_005)),
            key("x3", "g", "zz"), // bad digests are not repeats
            key("x4", "g", "zz"),
            key("x5", "g", &d(90_001)), // the digest of the first repeat above
            key("k1000", "g", &d(1000)), // both
        ] {
            text += &k;
        }
        let err = parse_config(&text, Path::new("t.toml")).expect_err("repeats");
        let got: Vec<String> = err
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        let n = KEYS_PER_CHUNK + 10;
        let want = [
            format!("keys[{n}].id: duplicate key id \"k5\""),
            format!(
                "keys[{}] (x1).sha256: the same key digest appears twice",
                n + 1
            ),
            format!("keys[{}] (x2).group: unknown group \"nope\"", n + 2),
            format!("keys[{}].id: duplicate key id \"x2\"", n + 3),
            format!("keys[{}].id: key id must not be empty", n + 4),
            format!("keys[{}].id: key id must not be empty", n + 5),
            format!(
                "keys[{}] (x3).sha256: want 64 hex digits (see `tollgate keygen`)",
                n + 6
            ),
            format!(
                "keys[{}] (x4).sha256: want 64 hex digits (see `tollgate keygen`)",
                n + 7
            ),
            format!(
                "keys[{}] (x5).sha256: the same key digest appears twice",
                n + 8
            ),
            format!("keys[{}].id: duplicate key id \"k1000\"", n + 9),
            format!(
                "keys[{}] (k1000).sha256: the same key digest appears twice",
                n + 9
            ),
        ];
        assert_eq!(got, want);
    }

    /// `load` reads the file piece by piece: the same verdict, problems and lines as
    /// `parse_config` on the whole text.
    #[test]
    fn a_file_read_in_pieces_agrees_with_the_whole_text() {
        let dir = std::env::temp_dir().join(format!("tollgate-pieces-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("p.toml");
        let render = |r: Result<Config, ConfigError>| match r {
            Ok(c) => format!(
                "ok {} keys, key 2500 {:?}",
                c.keys.len(),
                c.keys.get(2500).map(|k| k.id.clone())
            ),
            Err(e) => e.to_string(),
        };
        let n = 3 * KEYS_PER_CHUNK + 7;
        let texts = [
            file(n),
            file(5),
            HEAD.to_string(),
            file(n).replace(
                "id = \"k2500\"\ngroup = \"g\"",
                "id = \"k2500\"\ngroup = \"nope\"",
            ),
            file(n).replace(
                "id = \"k3000\"\ngroup = \"g\"",
                "id = \"k3000\"\ngroup = \"g\"\nbogus = 1",
            ),
            file(n).replace(
                "id = \"k1500\"\n",
                "id = \"k1500\"\nname = \"\"\"\n[[keys]]\nid = \"\"\"\n",
            ),
            file(n).replace(
                &format!("sha256 = \"{:064x}\"", 2049),
                &format!("sha256 = \"{:064x}\"", 7),
            ),
            file(n).replace("id = \"k1024\"", "id = \"k1\"")
                + "\n[[groups]]\nid = \"g2\"\norg = \"o\"\n",
            file(n).replace("\n", "\r\n"),
        ];
        for text in texts {
            std::fs::write(&f, &text).expect("write");
            let whole = render(parse_config(&text, &f));
            assert_eq!(render(super::super::load(&f)), whole);
        }
        std::fs::write(&f, b"[server]\nlisten = [\"\xff\"]\n").expect("write");
        let err = super::super::load(&f).expect_err("not UTF-8");
        assert!(err.to_string().contains("cannot read file"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
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
