//! End to end: invoices (docs/admin-api.md "Invoices") against traffic through the real
//! gateway — two groups billed to one customer and a third alone, 10 % markup, both APIs,
//! streamed and not, some prompts partly served from the provider's cache — agree with the
//! spend routes to the micro-dollar, as JSON and CSV, and each token sees what its role and
//! groups allow.

use crate::harness::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

fn micros(usd: &Value) -> u64 {
    (usd.as_f64().unwrap() * 1e6).round() as u64
}

fn csv_micros(cell: &str) -> u64 {
    (cell.parse::<f64>().unwrap() * 1e6).round() as u64
}

/// 10 % of `cost`, rounded half up to the micro-dollar (the documented per-line rule).
fn ten_pct(cost: u64) -> u64 {
    (cost + 5) / 10
}

const GROUPS: &str = r#"
[[groups]]
id = "grp_a"
org = "acme"
markup_pct = 10
invoice_to = "customer-x"

[[groups]]
id = "grp_b"
org = "acme"
markup_pct = 10
invoice_to = "customer-x"

[[groups]]
id = "grp_c"
org = "acme"
markup_pct = 10

[[keys]]
id = "key_a"
group = "grp_a"
sha256 = "{A}"

[[keys]]
id = "key_b"
group = "grp_b"
sha256 = "{B}"

[[keys]]
id = "key_c"
group = "grp_c"
sha256 = "{C}"
"#;

struct Env {
    g: GatewayProc,
    admin: Admin,
    _mock: MockProvider,
}

async fn start() -> Env {
    let mock = mock().await;
    let groups = GROUPS
        .replace("{A}", &sha(&key(11)))
        .replace("{B}", &sha(&key(12)))
        .replace("{C}", &sha(&key(13)));
    let policy = basic_policy(mock.addr(), &groups).with_admin();
    let g = start_gateway_env(&policy, ADMIN_ENV);
    Env {
        admin: g.admin(ROOT),
        g,
        _mock: mock,
    }
}

impl Env {
    /// One request; `cached` of its prompt tokens reported as cache reads by the mock.
    async fn send(&self, key: &str, model: &str, stream: bool, out: u32, cached: Option<u32>) {
        let anthropic = model.starts_with("claude");
        let body = json!({"model": model, "stream": stream, "max_tokens": 300,
            "messages": [{"role": "user", "content": "a prompt long enough to have some cached tokens in it"}]});
        let mut r = client()
            .post(self.g.url(if anthropic { MESSAGES } else { CHAT }))
            .header("x-mock-output-tokens", out.to_string())
            .json(&body);
        if let Some(c) = cached {
            r = r.header("x-mock-cached-tokens", c.to_string());
        }
        r = if anthropic {
            r.header("x-api-key", key)
        } else {
            r.bearer_auth(key)
        };
        let a = answer(r).await;
        assert_eq!(a.status, 200, "{model}: {}", a.text);
    }

    async fn invoices_as(&self, token: &str, query: &str) -> (u16, Value) {
        self.admin
            .call_as(token, "GET", &format!("/v1/invoices{query}"), None)
            .await
    }

    async fn token(&self, role: &str, groups: Option<Vec<&str>>) -> String {
        let mut body = json!({"name": role, "role": role});
        if let Some(g) = groups {
            body["groups"] = json!(g);
        }
        if role == "developer" {
            body["owner"] = json!("dev1");
        }
        let (s, v) = self.admin.post("/v1/tokens", body).await;
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }
}

/// Requests on an invoice list's lines.
fn requests(list: &Value) -> u64 {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["lines"].as_array().unwrap())
        .map(|l| l["requests"].as_u64().unwrap())
        .sum()
}

fn invoice<'a>(list: &'a Value, to: &str) -> &'a Value {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["invoice_to"] == to)
        .unwrap_or_else(|| panic!("no invoice to {to}: {list}"))
}

fn parse_csv(text: &str) -> (Vec<String>, Vec<HashMap<String, String>>) {
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| {
            let cells: Vec<String> = l.split(',').map(String::from).collect();
            assert_eq!(cells.len(), header.len(), "{l}");
            header.iter().cloned().zip(cells).collect()
        })
        .collect();
    (header, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invoices_match_spend_with_markup_and_scopes() {
    let env = start().await;
    let (ka, kb, kc) = (key(11), key(12), key(13));
    env.send(&ka, "gpt-4o-mini", false, 10, None).await;
    env.send(&ka, "gpt-4o-mini", false, 11, Some(5)).await;
    env.send(&ka, "gpt-4o-mini", true, 12, None).await;
    env.send(&ka, "gpt-4o", true, 41, Some(4)).await;
    env.send(&ka, "claude-sonnet-4-5", false, 25, Some(7)).await;
    env.send(&kb, "gpt-4o", false, 13, None).await;
    env.send(&kb, "gpt-4o", false, 17, None).await;
    env.send(&kc, "claude-sonnet-4-5", true, 26, Some(3)).await;
    env.send(&kc, "claude-sonnet-4-5", true, 9, Some(3)).await;
    env.send(&kc, "gpt-4o-mini", false, 7, None).await;
    env.send(&key(1), "gpt-4o-mini", false, 8, None).await;
    let total_requests = 11;

    // The month the traffic fell in, as the spend routes count it (UTC).
    let (_, s) = env.admin.get("/v1/spend/groups/grp_a").await;
    let period = s["from"].as_str().unwrap()[..7].to_string();
    let q = format!("?period={period}");
    let list = poll_until(Duration::from_secs(10), || async {
        let (s, v) = env.invoices_as(ROOT, &q).await;
        assert_eq!(s, 200, "{v}");
        (requests(&v) == total_requests).then_some(v)
    })
    .await
    .expect("every request settled on an invoice");
    assert_eq!(list["period"], period.as_str());
    let (from, to) = (
        list["from"].as_str().unwrap().to_string(),
        list["to"].as_str().unwrap().to_string(),
    );
    assert!(
        from.starts_with(&period) && from.ends_with("-01T00:00:00Z"),
        "{list}"
    );
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["invoice_to"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["customer-x", "grp_c", "grp_prod"], "{list}");
    assert_eq!(
        invoice(&list, "customer-x")["groups"],
        json!(["grp_a", "grp_b"])
    );

    // Every line against the spend routes over the same month, to the micro-dollar.
    let range = format!("?from={from}&to={to}");
    let mut want_total: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
    for (group, to_whom, pct) in [
        ("grp_a", "customer-x", 10),
        ("grp_b", "customer-x", 10),
        ("grp_c", "grp_c", 10),
        ("grp_prod", "grp_prod", 0),
    ] {
        let (s, by_model) = env
            .admin
            .get(&format!("/v1/spend/groups/{group}/by-model{range}"))
            .await;
        assert_eq!(s, 200, "{by_model}");
        let inv = invoice(&list, to_whom);
        for row in by_model["data"].as_array().unwrap() {
            let model = row["model"].as_str().unwrap();
            let line = inv["lines"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["group"] == group && l["model"] == model)
                .unwrap_or_else(|| panic!("{group} {model} on {inv}"));
            for f in [
                "requests",
                "input_tokens",
                "cached_input_tokens",
                "cache_write_tokens",
                "output_tokens",
                "reasoning_tokens",
            ] {
                assert_eq!(line[f], row[f], "{group} {model} {f}");
            }
            let cost = micros(&row["cost_usd"]);
            assert!(cost > 0, "{row}");
            let markup = if pct == 10 { ten_pct(cost) } else { 0 };
            assert_eq!(micros(&line["cost_usd"]), cost, "{group} {model}");
            assert_eq!(micros(&line["markup_usd"]), markup, "{group} {model}");
            assert_eq!(micros(&line["total_usd"]), cost + markup, "{group} {model}");
            assert_eq!(line["markup_pct"].as_f64(), Some(f64::from(pct)));
            let t = want_total.entry(to_whom).or_default();
            t[0] += cost;
            t[1] += markup;
            t[2] += cost + markup;
        }
        // A group's lines add up to its spend total.
        let (_, total) = env
            .admin
            .get(&format!("/v1/spend/groups/{group}{range}"))
            .await;
        let lines_cost: u64 = inv["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["group"] == group)
            .map(|l| micros(&l["cost_usd"]))
            .sum();
        assert_eq!(lines_cost, micros(&total["cost_usd"]), "{group}");
    }
    for (to_whom, [cost, markup, total]) in &want_total {
        let inv = invoice(&list, to_whom);
        assert_eq!(micros(&inv["subtotal_usd"]), *cost, "{to_whom}");
        assert_eq!(micros(&inv["markup_usd"]), *markup, "{to_whom}");
        assert_eq!(micros(&inv["total_usd"]), *total, "{to_whom}");
    }
    // Spend × 1.10, line by line: the total is never the rounded sum's markup plus
    // more than half a micro-dollar per line.
    let x = want_total["customer-x"];
    assert!(x[2].abs_diff(x[0] + x[0] / 10) <= 4, "{x:?}");

    // Cached prompt tokens, from both APIs: a part of the input, reported apart.
    let line = |to: &str, group: &str, model: &str| -> Value {
        invoice(&list, to)["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["group"] == group && l["model"] == model)
            .unwrap()
            .clone()
    };
    let mini = line("customer-x", "grp_a", "gpt-4o-mini");
    assert_eq!(mini["cached_input_tokens"], 5, "{mini}");
    assert_eq!(
        line("customer-x", "grp_a", "gpt-4o")["cached_input_tokens"],
        4
    );
    let claude_a = line("customer-x", "grp_a", "claude-sonnet-4-5");
    assert_eq!(claude_a["cached_input_tokens"], 7, "{claude_a}");
    assert!(claude_a["input_tokens"].as_u64().unwrap() > 7, "{claude_a}");
    assert_eq!(
        line("grp_c", "grp_c", "claude-sonnet-4-5")["cached_input_tokens"],
        6
    );
    assert_eq!(
        line("customer-x", "grp_b", "gpt-4o")["cached_input_tokens"],
        0
    );
    let (_, spend_a) = env
        .admin
        .get(&format!("/v1/spend/groups/grp_a{range}"))
        .await;
    assert_eq!(spend_a["cached_input_tokens"], 16, "{spend_a}");

    // CSV: a header and a row per line, the same numbers.
    let r = client()
        .get(env.admin.url(&format!("/v1/invoices{q}&format=csv")))
        .bearer_auth(ROOT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let (header, rows) = parse_csv(&r.text().await.unwrap());
    assert_eq!(
        header.join(","),
        "invoice_to,group,model,requests,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,cost_usd,markup_pct,markup_usd,total_usd"
    );
    let json_lines: usize = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["lines"].as_array().unwrap().len())
        .sum();
    assert_eq!(rows.len(), json_lines);
    for row in &rows {
        let l = line(&row["invoice_to"], &row["group"], &row["model"]);
        for f in [
            "requests",
            "input_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "output_tokens",
            "reasoning_tokens",
        ] {
            assert_eq!(
                row[f].parse::<u64>().unwrap(),
                l[f].as_u64().unwrap(),
                "{f}"
            );
        }
        for f in ["cost_usd", "markup_usd", "total_usd"] {
            assert_eq!(csv_micros(&row[f]), micros(&l[f]), "{f} {row:?}");
        }
        assert_eq!(
            row["markup_pct"].parse::<f64>().ok(),
            l["markup_pct"].as_f64()
        );
    }
    // Per invoice, the CSV rows add up to the JSON totals.
    for (to_whom, [_, _, total]) in &want_total {
        let sum: u64 = rows
            .iter()
            .filter(|r| r["invoice_to"] == *to_whom)
            .map(|r| csv_micros(&r["total_usd"]))
            .sum();
        assert_eq!(sum, *total, "{to_whom}");
    }

    // Scopes: a viewer of grp_a sees customer-x with grp_a's lines only; a group admin of
    // grp_c its invoice only; an unscoped viewer everything; a developer nothing (403).
    let viewer_a = env.token("viewer", Some(vec!["grp_a"])).await;
    let (s, v) = env.invoices_as(&viewer_a, &q).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    let inv = invoice(&v, "customer-x");
    assert_eq!(inv["groups"], json!(["grp_a"]), "{v}");
    assert!(inv["lines"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["group"] == "grp_a"));
    let (_, spend_a) = env
        .admin
        .get(&format!("/v1/spend/groups/grp_a{range}"))
        .await;
    assert_eq!(micros(&inv["subtotal_usd"]), micros(&spend_a["cost_usd"]));
    let csv_a = client()
        .get(env.admin.url(&format!("/v1/invoices{q}&format=csv")))
        .bearer_auth(&viewer_a)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !csv_a.contains("grp_b") && !csv_a.contains("grp_c") && csv_a.contains("grp_a"),
        "{csv_a}"
    );
    let admin_c = env.token("group_admin", Some(vec!["grp_c"])).await;
    let (s, v) = env.invoices_as(&admin_c, &q).await;
    assert_eq!(s, 200, "{v}");
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["invoice_to"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["grp_c"], "{v}");
    let viewer = env.token("viewer", None).await;
    assert_eq!(env.invoices_as(&viewer, &q).await, (200, list.clone()));
    let dev = env.token("developer", Some(vec!["grp_a"])).await;
    let (s, v) = env.invoices_as(&dev, &q).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    assert_eq!(
        env.invoices_as("tga-nope", &q).await.0,
        401,
        "no token, no invoice"
    );

    // Bad input: 400 invalid_request naming the parameter.
    for (query, param) in [
        ("?period=2026-13", "period"),
        ("?period=2026-1", "period"),
        ("?period=november", "period"),
        ("?period=", "period"),
        ("?format=xml", "format"),
        ("?month=2026-11", ""),
    ] {
        let (s, v) = env.invoices_as(ROOT, query).await;
        assert_eq!(s, 400, "{query}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{query}: {v}");
        assert_eq!(v["error"]["param"], param, "{query}: {v}");
    }
    // A month without usage: no invoices; as CSV, the header alone.
    let (s, v) = env.invoices_as(ROOT, "?period=2001-01").await;
    assert_eq!(
        (s, v["data"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    assert_eq!(v["from"], "2001-01-01T00:00:00Z");
    assert_eq!(v["to"], "2001-02-01T00:00:00Z");
    let empty = env
        .admin
        .text("/v1/invoices?period=2001-01&format=csv")
        .await;
    assert_eq!(empty.lines().count(), 1, "{empty}");
    // No period: the current month.
    let (s, v) = env.invoices_as(ROOT, "").await;
    assert_eq!(
        (s, v["period"].as_str()),
        (200, Some(period.as_str())),
        "{v}"
    );

    // The groups' answers show the two fields.
    let (_, g) = env.admin.get("/v1/groups/grp_a").await;
    assert_eq!(
        (g["markup_pct"].as_f64(), g["invoice_to"].as_str()),
        (Some(10.0), Some("customer-x"))
    );
    let (_, g) = env.admin.get("/v1/groups/grp_prod").await;
    assert_eq!(
        (g["markup_pct"].as_f64(), &g["invoice_to"]),
        (Some(0.0), &Value::Null)
    );
}
