use super::health::Health;
use super::*;
use crate::policy::config::parse_config;
use crate::policy::config::Api;
use crate::policy::snapshot::{Loopback, Snapshot};
use rand::SeedableRng;
use std::collections::HashMap;

fn snapshot(targets: &str, group: &str) -> Snapshot {
    let text = format!(
        r#"
[server]
listen = ["127.0.0.1:1"]
[[providers]]
id = "a"
api = "openai"
base_url = "http://127.0.0.1:1"
[[providers]]
id = "b"
api = "openai"
base_url = "http://127.0.0.1:2"
[[providers]]
id = "c"
api = "openai"
base_url = "http://127.0.0.1:3"
[[models]]
name = "m"
input_usd_per_mtok = 1
output_usd_per_mtok = 2
targets = [{targets}]
[[models]]
name = "fb"
targets = [{{ provider = "c" }}]
[[orgs]]
id = "o"
[[groups]]
id = "g"
org = "o"
{group}
[[keys]]
id = "k"
group = "g"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
"#
    );
    let cfg = parse_config(&text, std::path::Path::new("t.toml")).expect("config");
    Snapshot::build(
        cfg,
        &Default::default(),
        None,
        1,
        &Loopback,
        &Health::default(),
    )
    .expect("snapshot")
}

fn choice(routing: Routing, affinity: u64, tags: &[String]) -> Choice<'_> {
    Choice {
        providers: None,
        serves: Serves::Only(Api::OpenAi),
        routing,
        affinity,
        tags,
        now_ms: 1_000_000,
    }
}

fn counts(s: &Snapshot, c: &Choice<'_>, n: usize) -> HashMap<String, usize> {
    let m = s.model("m").unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut out = HashMap::new();
    for _ in 0..n {
        let t = pick(m, &[], c, &mut rng).unwrap();
        *out.entry(m.targets[t].label.to_string()).or_default() += 1;
    }
    out
}

#[test]
fn weighted_canary_split() {
    let s = snapshot(
        r#"{ provider = "a", weight = 90 }, { provider = "b", weight = 10 }"#,
        "",
    );
    let c = counts(&s, &choice(Routing::Weighted, 0, &[]), 10_000);
    let canary = c["b/m"] as f64 / 10_000.0;
    assert!((0.08..0.12).contains(&canary), "{canary}");
}

#[test]
fn cost_takes_the_cheapest_target() {
    let s = snapshot(
        r#"{ provider = "a" }, { provider = "b", input_usd_per_mtok = 0.5, output_usd_per_mtok = 1 }"#,
        "",
    );
    let c = counts(&s, &choice(Routing::Cost, 0, &[]), 100);
    assert_eq!(c.get("b/m"), Some(&100));
}

#[test]
fn latency_prefers_the_fast_target_and_still_explores() {
    let s = snapshot(r#"{ provider = "a" }, { provider = "b" }"#, "");
    let m = s.model("m").unwrap();
    m.targets[0].health.record_success(80_000);
    m.targets[1].health.record_success(5_000);
    let c = counts(&s, &choice(Routing::Latency, 0, &[]), 2_000);
    assert!(c["b/m"] > 1_850, "{c:?}");
    assert!(
        c.get("a/m").is_some_and(|n| *n > 10),
        "never explores: {c:?}"
    );
}

#[test]
fn sticky_sessions_move_only_when_their_target_goes() {
    let three = snapshot(
        r#"{ provider = "a" }, { provider = "b" }, { provider = "c" }"#,
        "",
    );
    let two = snapshot(r#"{ provider = "a" }, { provider = "b" }"#, "");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (m3, m2) = (three.model("m").unwrap(), two.model("m").unwrap());
    let mut moved = 0;
    let mut on_c = 0;
    for session in 0..300u64 {
        let c = choice(
            Routing::Sticky,
            affinity(Some(&session.to_be_bytes()), "k"),
            &[],
        );
        let first = m3.targets[pick(m3, &[], &c, &mut rng).unwrap()]
            .label
            .clone();
        for _ in 0..5 {
            assert_eq!(
                m3.targets[pick(m3, &[], &c, &mut rng).unwrap()].label,
                first
            );
        }
        let after = m2.targets[pick(m2, &[], &c, &mut rng).unwrap()]
            .label
            .clone();
        if &*first == "c/m" {
            on_c += 1;
        } else if after != first {
            moved += 1;
        }
    }
    assert_eq!(moved, 0, "sessions not on the removed target moved");
    assert!((60..140).contains(&on_c), "{on_c}");
}

#[test]
fn tags_filter_targets_and_no_match_is_503() {
    let s = snapshot(
        r#"{ provider = "a", tags = ["us"] }, { provider = "b", tags = ["eu", "gpu"] }"#,
        "routing = \"tag\"",
    );
    let eu = vec!["eu".to_string()];
    assert_eq!(
        counts(&s, &choice(Routing::Tag, 0, &eu), 50).get("b/m"),
        Some(&50)
    );
    let key = s.key(&[0; 32]).unwrap();
    let mut plan = Plan::new(
        &s,
        key,
        s.model("m").unwrap().clone(),
        Serves::Only(Api::OpenAi),
    );
    let none = vec!["asia".to_string()];
    let e = plan
        .next(
            &[],
            &choice(Routing::Tag, 0, &none),
            &mut rand::thread_rng(),
        )
        .unwrap_err();
    assert_eq!(e.code(), "no_healthy_target");
}

#[test]
fn plan_tries_targets_then_fallbacks_and_skips_ejected() {
    let s = snapshot(
        r#"{ provider = "a" }, { provider = "b" }"#,
        "retries = 1\nfallbacks = { m = [\"fb\"] }",
    );
    let key = s.key(&[0; 32]).unwrap();
    let m = s.model("m").unwrap().clone();
    // Target a is ejected: b goes first, then a anyway (retries = 1), then the fallback.
    for _ in 0..3 {
        m.targets[0].health.record_failure(1_000_000, None);
    }
    let mut plan = Plan::new(&s, key, m, Serves::Only(Api::OpenAi));
    let c = choice(Routing::Weighted, 0, &[]);
    let mut tried = vec![];
    let mut order = vec![];
    while let Ok((model, t)) = plan.next(&tried, &c, &mut rand::thread_rng()) {
        order.push(model.targets[t].label.to_string());
        tried.push((model.index, t));
    }
    assert_eq!(order, ["b/m", "a/m", "c/fb"]);
    assert!(!plan.has_next(&tried, &c));
    let e = plan.next(&tried, &c, &mut rand::thread_rng()).unwrap_err();
    assert_eq!(e.code(), "upstream_error");
}
