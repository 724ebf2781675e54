//! `docs/openapi.json` describes exactly the admin routes of `tollgate::control::admin::routes()`:
//! the same (method, path) pairs, every operation with a response, every `{param}` of a
//! path declared, every `$ref` resolvable, and the token required everywhere but the
//! health probes.

use crate::harness::route_list;
use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Follows a local `$ref` (`#/components/...`), or returns `v` itself.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local $ref are used: {r}"));
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {r} does not resolve"))
        }
        None => v,
    }
}

/// `(METHOD, path, operation, path-level parameters)` for every operation.
fn operations(doc: &Value) -> Vec<(String, String, &Value, &Value)> {
    let paths = doc["paths"]
        .as_object()
        .expect("the document has a `paths` object");
    let mut out = vec![];
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for (method, op) in item {
            if METHODS.contains(&method.as_str()) {
                out.push((
                    method.to_uppercase(),
                    path.clone(),
                    op,
                    item.get("parameters").unwrap_or(&Value::Null),
                ));
            }
        }
    }
    out
}

fn template_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_string)
        .collect()
}

#[test]
fn documented_routes_are_exactly_the_route_table() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _, _)| (m, p))
        .collect();
    let served: BTreeSet<(String, String)> = route_list().into_iter().collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/openapi.json disagrees with tollgate::control::admin::routes():\n  \
         missing from the document (served, not documented): {missing:?}\n  \
         extra in the document (documented, not served): {extra:?}"
    );
}

#[test]
fn every_operation_has_responses_and_declares_its_path_parameters() {
    let doc = document();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document"
    );
    let mut problems = vec![];
    for (method, path, op, shared) in operations(&doc) {
        let name = format!("{method} {path}");
        match op.get("responses").and_then(Value::as_object) {
            Some(r) if !r.is_empty() => {
                for (status, resp) in r {
                    if resolve(&doc, resp).get("description").is_none() {
                        problems.push(format!("{name}: response {status} has no description"));
                    }
                }
            }
            _ => problems.push(format!("{name}: no responses")),
        }
        let declared: BTreeSet<String> = [shared, op.get("parameters").unwrap_or(&Value::Null)]
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| resolve(&doc, p))
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect();
        let wanted: BTreeSet<String> = template_params(&path).into_iter().collect();
        for p in wanted.difference(&declared) {
            problems.push(format!("{name}: path parameter {{{p}}} is not declared"));
        }
        for p in declared.difference(&wanted) {
            problems.push(format!(
                "{name}: declares path parameter {p:?} not in the path"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_ref_resolves() {
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let doc = document();
    let mut refs = vec![];
    walk(&doc, &mut refs);
    let broken: Vec<&str> = refs
        .into_iter()
        .filter(|r| r.strip_prefix('#').and_then(|p| doc.pointer(p)).is_none())
        .collect();
    assert!(broken.is_empty(), "unresolved $ref: {broken:?}");
}

#[test]
fn the_admin_token_is_required_except_for_health_probes() {
    let doc = document();
    assert!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer",
        "a bearerAuth scheme"
    );
    let global = doc["security"].as_array().is_some_and(|s| !s.is_empty());
    let open: BTreeSet<String> = operations(&doc)
        .into_iter()
        .filter(|(_, _, op, _)| match op.get("security") {
            Some(s) => s.as_array().is_some_and(Vec::is_empty),
            None => !global,
        })
        .map(|(m, p, _, _)| format!("{m} {p}"))
        .collect();
    let expected: BTreeSet<String> = ["GET /healthz", "GET /readyz"]
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(open, expected, "operations that need no admin token");
}
