//! End to end: the spend routes (docs/admin-api.md) against scripted traffic with known usage — two
//! groups, three models, streamed and not, both APIs, one stream cut short — agree to the
//! micro-dollar with the request log and `/metrics`, as JSON and CSV, before and after a
//! restart.

use crate::harness::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

fn micros(usd: &Value) -> i64 {
    (usd.as_f64().unwrap() * 1e6).round() as i64
}

#[derive(Default, Debug, Clone, Copy, PartialEq)]
struct Sum {
    requests: u64,
    input: u64,
    output: u64,
    cost: i64,
}

impl Sum {
    fn add(&mut self, l: &Value) {
        self.requests += 1;
        self.input += l["input_tokens"].as_u64().unwrap();
        self.output += l["output_tokens"].as_u64().unwrap();
        self.cost += micros(&l["cost_usd"]);
    }

    fn of(v: &Value) -> Sum {
        Sum {
            requests: v["requests"].as_u64().unwrap(),
            input: v["input_tokens"].as_u64().unwrap(),
            output: v["output_tokens"].as_u64().unwrap(),
            cost: micros(&v["cost_usd"]),
        }
    }

    /// The same from a CSV row keyed by header.
    fn of_csv(row: &HashMap<String, String>) -> Sum {
        let n = |k: &str| row[k].parse::<u64>().unwrap();
        Sum {
            requests: n("requests"),
            input: n("input_tokens"),
            output: n("output_tokens"),
            cost: (row["cost_usd"].parse::<f64>().unwrap() * 1e6).round() as i64,
        }
    }
}

fn parse_csv(text: &str) -> Vec<HashMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

/// A spend route's JSON answer.
async fn spend(admin: &Admin, path: &str) -> Value {
    let (s, v) = admin.get(path).await;
    assert_eq!(s, 200, "{path}");
    v
}

/// A spend route's CSV answer, by row.
async fn csv(admin: &Admin, path: &str) -> Vec<HashMap<String, String>> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = client()
        .get(admin.url(&format!("{path}{sep}format=csv")))
        .bearer_auth(ROOT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    parse_csv(&r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spend_routes_match_the_request_log_and_metrics() {
    let mock = mock().await;
    let policy = basic_policy(
        mock.addr(),
        "[[groups]]\nid = \"grp_c\"\norg = \"acme\"\ntimeout = \"1s\"\ntags = { team = \"c\" }\n",
    )
    .with_admin()
    .with_request_log();
    let mut g = start_gateway_env(&policy, ADMIN_ENV);
    let admin = g.admin(ROOT);
    // An API key in grp_c with a tag of its own.
    let created = admin
        .new_key(json!({"name": "c", "group": "grp_c", "tags": {"team": "own"}}))
        .await;
    let ckey = created["key"].as_str().unwrap().to_string();
    let cid = created["id"].as_str().unwrap().to_string();

    // Scripted traffic: each request says how many output tokens the provider reports.
    let send = |path: &str, key: String, out: u32, body: Value| {
        let r = client()
            .post(g.url(path))
            .header("x-mock-output-tokens", out.to_string())
            .json(&body);
        let r = match path {
            CHAT => r.bearer_auth(key),
            _ => r.header("x-api-key", key),
        };
        async move { assert_eq!(answer(r).await.status, 200) }
    };
    let chat = |key: String, model: &str, stream: bool, out: u32| {
        let body = json!({"model": model, "stream": stream, "max_tokens": 500, "messages": [{"role": "user", "content": "count my tokens please"}]});
        send(CHAT, key, out, body)
    };
    let messages = |key: String, stream: bool, out: u32| {
        let body = json!({"model": "claude-sonnet-4-5", "stream": stream, "max_tokens": 300, "messages": [{"role": "user", "content": "hello there"}]});
        send(MESSAGES, key, out, body)
    };
    for i in 0..3 {
        chat(key(1), "gpt-4o-mini", false, 10 + i).await;
    }
    chat(key(1), "gpt-4o", true, 40).await;
    chat(key(1), "gpt-4o", true, 41).await;
    messages(key(1), false, 25).await;
    messages(key(1), true, 26).await;
    chat(ckey.clone(), "gpt-4o-mini", false, 7).await;
    chat(ckey.clone(), "gpt-4o", true, 9).await;
    // A stream cut mid-way (the provider stalls; the group's 1 s idle limit ends it): charged
    // the output counted from what it streamed.
    let cut = json!({"model": "gpt-4o-mini", "stream": true, "max_tokens": 100, "messages": [{"role": "user", "content": "cut"}]});
    let r = g
        .post(CHAT, &ckey, &[("x-mock-fault", "stall_mid_stream")], &cut)
        .send()
        .await
        .unwrap();
    let _ = r.bytes().await;

    // The request log: every line of a served request.
    let log_path = g.request_log();
    let read = || -> Vec<Value> {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    wait_until(
        Duration::from_secs(10),
        "10 lines in the request log",
        || read().len() >= 10,
    )
    .await;
    let lines = read();
    let cut = lines
        .iter()
        .find(|l| l["key_id"] == cid && l["stream"] == true && l["model"] == "gpt-4o-mini")
        .unwrap();
    // What it streamed ("tok0 "), counted: not zero, not the 100 reserved.
    assert_eq!(cut["usage_source"], "counted", "{cut}");
    let out = cut["output_tokens"].as_u64().unwrap();
    assert!(
        (1..=3).contains(&out),
        "a cut stream pays what it streamed: {cut}"
    );
    let mut by_group: HashMap<String, Sum> = HashMap::new();
    let mut by_model: HashMap<(String, String), Sum> = HashMap::new();
    let mut by_key: HashMap<String, Sum> = HashMap::new();
    for l in &lines {
        let grp = l["group"].as_str().unwrap().to_string();
        by_group.entry(grp.clone()).or_default().add(l);
        by_model
            .entry((grp, l["model"].as_str().unwrap().to_string()))
            .or_default()
            .add(l);
        by_key
            .entry(l["key_id"].as_str().unwrap().to_string())
            .or_default()
            .add(l);
    }
    let total = Sum {
        requests: by_group.values().map(|s| s.requests).sum(),
        input: by_group.values().map(|s| s.input).sum(),
        output: by_group.values().map(|s| s.output).sum(),
        cost: by_group.values().map(|s| s.cost).sum(),
    };

    for round in ["before restart", "after restart"] {
        for grp in ["grp_prod", "grp_c"] {
            let want = by_group[grp];
            assert_eq!(
                Sum::of(&spend(&admin, &format!("/v1/spend/groups/{grp}")).await),
                want,
                "{grp} {round}"
            );
            let rows = csv(&admin, &format!("/v1/spend/groups/{grp}")).await;
            assert_eq!(Sum::of_csv(&rows[0]), want, "{grp} csv {round}");
            // By model, largest cost first.
            let v = spend(&admin, &format!("/v1/spend/groups/{grp}/by-model")).await;
            let data = v["data"].as_array().unwrap();
            let costs: Vec<i64> = data.iter().map(|r| micros(&r["cost_usd"])).collect();
            assert!(costs.windows(2).all(|w| w[0] >= w[1]), "{costs:?}");
            for row in data {
                let m = row["model"].as_str().unwrap().to_string();
                assert_eq!(
                    Sum::of(row),
                    by_model[&(grp.to_string(), m.clone())],
                    "{grp} {m} {round}"
                );
            }
            assert_eq!(
                data.len(),
                by_model.keys().filter(|(g2, _)| g2 == grp).count()
            );
            for row in csv(&admin, &format!("/v1/spend/groups/{grp}/by-model")).await {
                assert_eq!(
                    Sum::of_csv(&row),
                    by_model[&(grp.to_string(), row["model"].clone())]
                );
            }
            // By key.
            for row in spend(&admin, &format!("/v1/spend/groups/{grp}/by-key")).await["data"]
                .as_array()
                .unwrap()
            {
                assert_eq!(
                    Sum::of(row),
                    by_key[row["key_id"].as_str().unwrap()],
                    "{round}"
                );
            }
            // Timeline: hour and day buckets add up; empty buckets are present.
            let now = std::time::SystemTime::now();
            let from = humantime::format_rfc3339_seconds(now - Duration::from_secs(3 * 86400));
            let to = humantime::format_rfc3339_seconds(now + Duration::from_secs(86400));
            for grain in ["hour", "day"] {
                let path =
                    format!("/v1/spend/groups/{grp}/timeline?grain={grain}&from={from}&to={to}");
                let v = spend(&admin, &path).await;
                let mut s = Sum::default();
                let data = v["data"].as_array().unwrap();
                for b in data {
                    let b = Sum::of(b);
                    s.requests += b.requests;
                    s.input += b.input;
                    s.output += b.output;
                    s.cost += b.cost;
                }
                assert_eq!(s, want, "{grp} timeline {grain} {round}");
                assert!(
                    data.iter().filter(|b| b["requests"] == 0).count() > 1,
                    "empty buckets listed"
                );
            }
        }
        // Per key, per org, per tag.
        assert_eq!(
            Sum::of(&spend(&admin, &format!("/v1/spend/keys/{cid}")).await),
            by_key[&cid]
        );
        assert_eq!(
            Sum::of(&spend(&admin, "/v1/spend/keys/key_main").await),
            by_key["key_main"]
        );
        assert_eq!(
            Sum::of(&spend(&admin, "/v1/spend/orgs/acme").await),
            total,
            "{round}"
        );
        let tags = spend(&admin, "/v1/spend/tags/team").await;
        let tag_rows: HashMap<String, Sum> = tags["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["value"].as_str().unwrap_or("(none)").to_string(),
                    Sum::of(r),
                )
            })
            .collect();
        assert_eq!(
            tag_rows["own"], by_group["grp_c"],
            "the key's tag wins over its group's"
        );
        assert_eq!(tag_rows["(none)"], by_group["grp_prod"]);
        // /metrics: tollgate_spend_usd_total per group and model.
        let metrics = admin.metrics().await;
        if round == "before restart" {
            for ((grp, model), s) in &by_model {
                let series =
                    format!("tollgate_spend_usd_total{{group=\"{grp}\",model=\"{model}\"}} ");
                let line = metrics
                    .lines()
                    .find(|l| l.starts_with(&series))
                    .unwrap_or_else(|| panic!("{series}"));
                let v: f64 = line[series.len()..].trim().parse().unwrap();
                assert_eq!((v * 1e6).round() as i64, s.cost, "{series}");
            }
        }
        // Spend is flushed every 250 ms and at least every second (documented): past that, with a
        // margin for a slow disk, kill -9 and start again. (Real time is what is tested: a
        // flush shows nowhere but on disk.)
        tokio::time::sleep(Duration::from_millis(1500)).await;
        g.restart(ADMIN_ENV);
    }
    // Bad input.
    let (s, v) = admin.get("/v1/spend/groups/grp_prod?from=yesterday").await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "from");
    assert_eq!(admin.get("/v1/spend/groups/nope").await.0, 404);
    assert_eq!(
        admin.get("/v1/spend/groups/grp_prod?format=xml").await.0,
        400
    );
    // An empty answer as CSV still has its header.
    let empty = admin
        .text("/v1/spend/groups/grp_prod/by-model?format=csv&from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z")
        .await;
    assert_eq!(
        empty,
        "model,requests,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,cost_usd\n"
    );
}
