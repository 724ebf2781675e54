//! The web console (docs/console.md) at `/console/`: static files compiled into the binary
//! (`console/` in the repository), served with a strict Content-Security-Policy. The pages
//! hold no data of their own: every number and action goes through the documented admin
//! API with the token from the browser's session storage, so the console can do exactly
//! what its token can. These routes need no token (they carry no data) and are not part of
//! the API's route table.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// No inline script or style, nothing from another origin, no framing, no forms posted
/// anywhere: an injected string can neither run nor leak the token.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

macro_rules! assets {
    ($($path:literal => $mime:literal),* $(,)?) => {
        &[$(($path, $mime, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $path)))),*]
    };
}

/// `(path under /console/, content type, bytes)`.
static ASSETS: &[(&str, &str, &[u8])] = assets! {
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "js/app.js" => "text/javascript; charset=utf-8",
    "js/api.js" => "text/javascript; charset=utf-8",
    "js/ui.js" => "text/javascript; charset=utf-8",
    "js/chart.js" => "text/javascript; charset=utf-8",
    "js/overview.js" => "text/javascript; charset=utf-8",
    "js/groups.js" => "text/javascript; charset=utf-8",
    "js/keys.js" => "text/javascript; charset=utf-8",
    "js/bulk.js" => "text/javascript; charset=utf-8",
    "js/spend.js" => "text/javascript; charset=utf-8",
    "js/invoices.js" => "text/javascript; charset=utf-8",
    "js/audit.js" => "text/javascript; charset=utf-8",
    "js/policy.js" => "text/javascript; charset=utf-8",
    "js/drift.js" => "text/javascript; charset=utf-8",
    "vendor/uPlot.iife.min.js" => "text/javascript; charset=utf-8",
    "vendor/uPlot.min.css" => "text/css; charset=utf-8",
    "vendor/LICENSE" => "text/plain; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
};

pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(|| async { asset("index.html") }))
        .route(
            "/console/{*path}",
            get(|Path(path): Path<String>| async move { asset(&path) }),
        )
}

fn asset(path: &str) -> Response {
    let found = ASSETS.iter().find(|(p, _, _)| *p == path);
    let mut resp = match found {
        Some((_, mime, body)) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(mime))],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such console file\n").into_response(),
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The files change with the binary; a browser must not keep a stale module.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_the_security_headers() {
        for (path, mime, _) in ASSETS {
            let r = asset(path);
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], *mime);
            assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
            assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
        }
        assert_eq!(asset("../Cargo.toml").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_modules_never_parse_strings_as_html() {
        for (path, _, body) in ASSETS.iter().filter(|(p, _, _)| p.starts_with("js/")) {
            let text = String::from_utf8_lossy(body);
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(
                    !text.contains(sink),
                    "{path} uses {sink}: set textContent instead"
                );
            }
        }
    }

    #[test]
    fn the_pages_have_no_inline_script_or_style() {
        for (path, _, body) in ASSETS.iter().filter(|(p, _, _)| p.ends_with(".html")) {
            let text = String::from_utf8_lossy(body);
            assert!(!text.contains("<style"), "{path}");
            assert!(!text.contains(" style="), "{path}");
            for tag in text.split("<script").skip(1) {
                assert!(
                    tag.trim_start().starts_with("src=") || tag.contains(" src="),
                    "{path}: inline script"
                );
            }
        }
    }
}
