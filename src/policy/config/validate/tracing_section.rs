//! `[tracing]`: the collector's URL and the sampling ratio.

use super::{Checker, Loc};
use crate::policy::config::raw::RawTracing;
use crate::policy::config::TracingConfig;

/// The signal path OTLP/HTTP collectors serve traces on, added to `otlp_endpoint` (the
/// same rule as `OTEL_EXPORTER_OTLP_ENDPOINT`).
const TRACES_PATH: &str = "/v1/traces";

pub(super) fn check(c: &mut Checker, t: RawTracing, loc: Loc) -> Option<TracingConfig> {
    let RawTracing {
        otlp_endpoint,
        sample,
    } = t;
    let sample = sample.unwrap_or(1.0);
    let mut ok = true;
    if !(0.0..=1.0).contains(&sample) {
        c.problem(
            loc,
            "tracing.sample",
            format!("{sample} is not a ratio between 0 and 1"),
        );
        ok = false;
    }
    let url = otlp_endpoint.trim_end_matches('/');
    let parsed = url.parse::<http::Uri>();
    let scheme_ok = matches!(
        parsed.as_ref().ok().and_then(|u| u.scheme_str()),
        Some("http" | "https")
    );
    if !scheme_ok || parsed.as_ref().ok().and_then(|u| u.host()).is_none() {
        c.problem(
            loc,
            "tracing.otlp_endpoint",
            format!("{otlp_endpoint:?} is not an http:// or https:// URL"),
        );
        ok = false;
    }
    let traces_url = if url.ends_with(TRACES_PATH) {
        url.to_string()
    } else {
        format!("{url}{TRACES_PATH}")
    };
    ok.then_some(TracingConfig { traces_url, sample })
}

#[cfg(test)]
mod tests {
    use crate::policy::config::{parse_config, TracingConfig};
    use std::path::Path;

    const SERVER: &str = "[server]\nlisten = [\"127.0.0.1:0\"]\n";

    fn tracing(section: &str) -> Result<Option<TracingConfig>, String> {
        let text = format!("{SERVER}\n{section}\n");
        parse_config(&text, Path::new("t.toml"))
            .map(|c| c.server.tracing)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_the_endpoint_and_the_ratio() {
        assert_eq!(tracing(""), Ok(None));
        let t = tracing("[tracing]\notlp_endpoint = \"http://127.0.0.1:4318/\"\nsample = 0.1");
        assert_eq!(
            t,
            Ok(Some(TracingConfig {
                traces_url: "http://127.0.0.1:4318/v1/traces".into(),
                sample: 0.1
            }))
        );
        let t = tracing("[tracing]\notlp_endpoint = \"https://otel.example/v1/traces\"");
        assert_eq!(
            t.map(|t| t.map(|t| (t.traces_url, t.sample))),
            Ok(Some(("https://otel.example/v1/traces".into(), 1.0)))
        );
    }

    #[test]
    fn refuses_bad_values() {
        let e = tracing("[tracing]\notlp_endpoint = \"127.0.0.1:4318\"\nsample = 1.5")
            .expect_err("refused");
        assert!(
            e.contains("tracing.otlp_endpoint") && e.contains("tracing.sample"),
            "{e}"
        );
        let e = tracing("[tracing]\nendpoint = \"http://x\"").expect_err("refused");
        assert!(e.contains("tracing"), "{e}");
    }
}
