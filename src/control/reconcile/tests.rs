use super::*;

#[test]
fn diff_is_relative_to_the_gateway_on_total_tokens() {
    assert_eq!(diff_pct(1000, 1000), Some(0.0));
    assert_eq!(diff_pct(1100, 1000), Some(10.0));
    assert_eq!(diff_pct(900, 1000), Some(-10.0));
    assert_eq!(diff_pct(1, 3), Some(-66.67));
    assert_eq!(diff_pct(0, 0), Some(0.0));
    assert_eq!(diff_pct(5, 0), None);
    assert_eq!(diff_pct(0, 5), Some(-100.0));
}

#[test]
fn drift_is_above_the_alert_either_way() {
    assert!(!is_drift(Some(0.0), 2.0));
    assert!(!is_drift(Some(2.0), 2.0));
    assert!(is_drift(Some(2.01), 2.0));
    assert!(is_drift(Some(-10.0), 2.0));
    assert!(is_drift(None, 2.0));
    assert!(is_drift(Some(0.5), 0.0));
}

#[test]
fn dated_snapshots_match_the_target_they_extend() {
    let known: BTreeSet<&str> = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"].into();
    assert_eq!(match_model("gpt-4o", &known), "gpt-4o");
    assert_eq!(match_model("gpt-4o-mini-2024-07-18", &known), "gpt-4o-mini");
    assert_eq!(match_model("gpt-4o-2024-08-06", &known), "gpt-4o");
    assert_eq!(
        match_model("claude-sonnet-4-5-20250929", &known),
        "claude-sonnet-4-5"
    );
    assert_eq!(match_model("gpt-4omni", &known), "gpt-4omni");
    assert_eq!(match_model("o1", &known), "o1");
}

#[test]
fn days_are_utc_dates() {
    assert_eq!(parse_day("1970-01-02"), Some(1));
    assert_eq!(day_name(1), "1970-01-02");
    let d = parse_day("2026-12-07").unwrap();
    assert_eq!(day_name(d), "2026-12-07");
    for bad in [
        "2026-12-7",
        "2026-13-01",
        "yesterday",
        "",
        "2026-12-07T00:00:00Z",
    ] {
        assert_eq!(parse_day(bad), None, "{bad}");
    }
}

#[test]
fn only_unscoped_tokens_and_bounded_ranges() {
    let scoped = Actor {
        id: "t".into(),
        role: crate::control::Role::Viewer,
        groups: Some(vec!["g".into()]),
        owner: None,
    };
    assert_eq!(unscoped(&scoped).unwrap_err().status, 403);
    assert!(unscoped(&Actor::root()).is_ok());
    assert!(span(5, 5, 1).is_ok());
    assert_eq!(span(6, 5, 31).unwrap_err().param.as_deref(), Some("from"));
    assert!(span(0, 31, 31).is_err());
    assert_eq!(
        day_param("to", Some("x")).unwrap_err().param.as_deref(),
        Some("to")
    );
}

/// Both usage APIs of the mock provider, read through every page (the mock answers one
/// result a page), with the admin key in each API's own header.
#[tokio::test]
async fn every_page_of_both_usage_apis_is_read() {
    use crate::policy::config::Api;
    use crate::testing::mock::{Behaviour, MockProvider};
    use serde_json::json;
    let mock = MockProvider::start("127.0.0.1:0").await.unwrap();
    mock.set_behaviour(Behaviour {
        usage_key: Some("sk-admin-t".into()),
        ..Default::default()
    });
    let base = format!("http://{}", mock.addr());
    let http = reqwest::Client::new();
    for (path, model) in [
        ("/v1/chat/completions", "gpt-a"),
        ("/v1/chat/completions", "gpt-b"),
        ("/v1/chat/completions", "gpt-b"),
        ("/v1/messages", "claude-c"),
        ("/v1/messages", "claude-d"),
    ] {
        let body = json!({"model": model, "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}]});
        let r = http
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let today = crate::clock::wall()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let client = usage_api::client().unwrap();
    let key = Secret::new("sk-admin-t".into());
    let oa = usage_api::fetch(&client, Api::OpenAi, &base, &key, today, today + 1)
        .await
        .unwrap();
    assert_eq!(oa.len(), 2, "{oa:?}");
    let b = oa[&(today, "gpt-b".to_string())];
    assert_eq!((b.requests, b.output_tokens), (Some(2), 16));
    let an = usage_api::fetch(&client, Api::Anthropic, &base, &key, today, today + 1)
        .await
        .unwrap();
    assert_eq!(an.len(), 2, "{an:?}");
    assert_eq!(an[&(today, "claude-c".to_string())].requests, None);
    let pages = |p: &str| {
        mock.received()
            .iter()
            .filter(|r| r.path.starts_with(p))
            .count()
    };
    assert_eq!(pages("/v1/organization/usage/completions"), 2);
    assert_eq!(pages("/v1/organization/usage/embeddings"), 1);
    assert_eq!(pages("/v1/organizations/usage_report/messages"), 2);

    // Another key, or the API down: an error naming the status, never the key.
    let other = Secret::new("sk-provider-key".into());
    let e = usage_api::fetch(&client, Api::OpenAi, &base, &other, today, today + 1)
        .await
        .unwrap_err();
    assert!(
        e.contains("HTTP 401") && !e.contains("sk-provider-key"),
        "{e}"
    );
    mock.set_behaviour(Behaviour {
        usage_status: Some(503),
        ..Default::default()
    });
    let e = usage_api::fetch(&client, Api::Anthropic, &base, &key, today, today + 1)
        .await
        .unwrap_err();
    assert!(e.contains("HTTP 503"), "{e}");
}
