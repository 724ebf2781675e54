//! Presets (docs/policy.md "Presets"): `[[presets]]` blocks name bundles of group fields;
//! a group with `preset = "id"` takes every field it does not set itself from the
//! preset. They are resolved here, on the file's raw tables, before the groups are read
//! and checked, so a preset's fields go through the same validation and inheritance
//! checks as the group's own.
//!
//! `include = ["presets.toml"]` (paths relative to the policy file) reads `[[presets]]`
//! and `[[guardrails]]` blocks from other files, such as the shipped `conf/presets.toml`.

use super::super::raw::{RawGroup, RawGuardrail};
use super::{Checker, Elements, Loc};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use toml::Spanned;

/// A file named in `include`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncludedFile {
    #[serde(default)]
    presets: Vec<toml::Value>,
    #[serde(default)]
    guardrails: Vec<toml::Value>,
}

/// What the included files bring: presets (table, path for messages) and guardrails.
#[derive(Default)]
pub(super) struct Included {
    presets: Vec<(toml::Value, String)>,
    pub(super) guardrails: Elements<RawGuardrail>,
}

/// Reads every file of `include`, relative to the policy file's directory.
pub(super) fn read_includes(c: &mut Checker, policy: &Path, include: &[String]) -> Included {
    let base = policy.parent().unwrap_or(Path::new("."));
    let mut out = Included::default();
    for (i, name) in include.iter().enumerate() {
        let at = format!("include[{i}]");
        let file = base.join(name);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                c.problem(None, at, format!("cannot read {}: {e}", file.display()));
                continue;
            }
        };
        let doc: IncludedFile = match toml::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                let msg = e.message().trim().to_string();
                c.problem(None, at, format!("{}: {msg}", file.display()));
                continue;
            }
        };
        for (j, p) in doc.presets.into_iter().enumerate() {
            out.presets.push((p, format!("{name}: presets[{j}]")));
        }
        for (j, g) in doc.guardrails.into_iter().enumerate() {
            let path = format!("{name}: guardrails[{j}]");
            match RawGuardrail::deserialize(g) {
                Ok(g) => out.guardrails.push((g, None, path)),
                Err(e) => c.problem(None, path, e.message().trim().to_string()),
            }
        }
    }
    out
}

/// For `-t` and the admin API: which preset each group named, and the fields it took.
pub(super) type FromPreset = BTreeMap<String, (String, Vec<String>)>;

/// Checks the presets (the file's, then the included ones) and fills each group that
/// names one with the fields it does not set itself.
pub(super) fn resolve(
    c: &mut Checker,
    own: Vec<Spanned<toml::Value>>,
    included: &mut Included,
    groups: &mut [Spanned<toml::Value>],
) -> FromPreset {
    let mut all: Vec<(toml::Value, Loc, String)> = own
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let loc = c.at(v.span().start);
            (v.into_inner(), loc, format!("presets[{i}]"))
        })
        .collect();
    all.extend(
        std::mem::take(&mut included.presets)
            .into_iter()
            .map(|(v, p)| (v, None, p)),
    );
    let mut seen = HashSet::new();
    let mut presets: BTreeMap<String, toml::Table> = BTreeMap::new();
    for (v, loc, path) in all {
        let toml::Value::Table(mut t) = v else {
            c.problem(loc, path, "a preset is a table");
            continue;
        };
        let Some(toml::Value::String(id)) = t.remove("id") else {
            c.problem(loc, format!("{path}.id"), "a preset needs an id (a string)");
            continue;
        };
        super::check_unique(c, loc, &path, "preset", &id, &mut seen);
        let path = format!("{path} ({id})");
        if t.contains_key("preset") {
            c.problem(
                loc,
                format!("{path}.preset"),
                "presets do not name other presets",
            );
            continue;
        }
        // Its fields must be group fields: read it as a group of its own.
        let mut probe = t.clone();
        probe.insert("id".into(), toml::Value::String(id.clone()));
        probe
            .entry("org")
            .or_insert(toml::Value::String(String::new()));
        if let Err(e) = RawGroup::deserialize(toml::Value::Table(probe)) {
            c.problem(loc, path, e.message().trim().to_string());
            continue;
        }
        presets.insert(id, t);
    }
    let mut from = FromPreset::new();
    for (i, g) in groups.iter_mut().enumerate() {
        let loc = c.at(g.span().start);
        let toml::Value::Table(t) = g.get_mut() else {
            continue;
        };
        let Some(name) = t.get("preset") else {
            continue;
        };
        let id = t
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let path = format!("groups[{i}] ({id}).preset");
        let Some(name) = name.as_str().map(str::to_string) else {
            c.problem(loc, path, "expected a preset id (a string)");
            continue;
        };
        let Some(preset) = presets.get(&name) else {
            let known: Vec<&str> = presets.keys().map(String::as_str).collect();
            c.problem(
                loc,
                path,
                format!("unknown preset {name:?} (known: {})", known.join(", ")),
            );
            continue;
        };
        let mut taken = vec![];
        for (k, v) in preset {
            if !t.contains_key(k) {
                t.insert(k.clone(), v.clone());
                taken.push(k.clone());
            }
        }
        taken.sort();
        from.insert(id, (name, taken));
    }
    from
}

#[cfg(test)]
mod tests {
    use crate::policy::config::parse_config;
    use std::path::Path;

    const HEAD: &str = "[server]\nlisten = [\"127.0.0.1:1\"]\n\n[[providers]]\nid = \"p\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:2\"\n\n[[models]]\nname = \"m\"\ntargets = [{ provider = \"p\" }]\n\n[[orgs]]\nid = \"o\"\nrpm = 100\n";

    fn parse(extra: &str) -> Result<crate::policy::config::Config, String> {
        parse_config(&format!("{HEAD}{extra}"), Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_group_takes_only_what_it_does_not_set() {
        let cfg = parse(
            "[[presets]]\nid = \"p1\"\nrpm = 50\nlog_level = \"full\"\n\n[[groups]]\nid = \"g\"\norg = \"o\"\npreset = \"p1\"\nrpm = 10\n",
        )
        .unwrap();
        let g = &cfg.groups[0];
        assert_eq!(g.limits.rpm.map(|r| r.get()), Some(10));
        assert_eq!(g.log_level, crate::policy::config::LogLevel::Full);
        let p = g.preset.as_ref().unwrap();
        assert_eq!(
            (&*p.id, p.fields.clone()),
            ("p1", vec!["log_level".to_string()])
        );
        assert!(
            cfg.summary().contains("preset p1: log_level"),
            "{}",
            cfg.summary()
        );
    }

    #[test]
    fn preset_fields_are_checked_like_the_groups_own() {
        let e = parse("[[presets]]\nid = \"p1\"\nrpm = 500\n\n[[groups]]\nid = \"g\"\norg = \"o\"\npreset = \"p1\"\n")
            .unwrap_err();
        assert!(e.contains("rpm: 500 exceeds org o rpm 100"), "{e}");
        let e = parse("[[presets]]\nid = \"p1\"\npreset = \"p2\"\n").unwrap_err();
        assert!(e.contains("presets do not name other presets"), "{e}");
        let e = parse("[[presets]]\nid = \"p1\"\n\n[[presets]]\nid = \"p1\"\n").unwrap_err();
        assert!(e.contains("duplicate preset id"), "{e}");
    }
}
