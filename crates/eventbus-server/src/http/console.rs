//! `GET /console`: the web console, a single-page application built from `clients/console` into
//! `crates/eventbus-server/console/` and embedded in the binary, so the server serves it without
//! Node.js. The page holds no data: it calls the public API with the key its reader signs in
//! with, so what a key may not see, the API refuses and the page shows as refused.
//!
//! Every file is sent with an `ETag` (its content hash) and `Cache-Control: no-cache`, so a
//! browser revalidates and gets `304` until the binary changes; the script and the style sheet
//! go gzipped to browsers that accept it. The page's `Content-Security-Policy` allows only this
//! origin: no inline script, no third-party request.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::state::AppState;

/// One embedded file.
struct Asset {
    content_type: &'static str,
    body: &'static [u8],
    gzip: Option<&'static [u8]>,
    /// Its `ETag`, computed on first use.
    tag: OnceLock<HeaderValue>,
}

macro_rules! console_file {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $name))
    };
}

static INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: console_file!("index.html"),
    gzip: None,
    tag: OnceLock::new(),
};
static SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: console_file!("console.js"),
    gzip: Some(console_file!("console.js.gz")),
    tag: OnceLock::new(),
};
static STYLE: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: console_file!("console.css"),
    gzip: Some(console_file!("console.css.gz")),
    tag: OnceLock::new(),
};

/// The page's policy: scripts, styles and requests of this origin only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Routes of the console. They take no key: the page is public, the data behind the API.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/console",
            get(|h: HeaderMap| async move { serve(&INDEX, &h) }),
        )
        .route(
            "/console/",
            get(|h: HeaderMap| async move { serve(&INDEX, &h) }),
        )
        .route(
            "/console/console.js",
            get(|h: HeaderMap| async move { serve(&SCRIPT, &h) }),
        )
        .route(
            "/console/console.css",
            get(|h: HeaderMap| async move { serve(&STYLE, &h) }),
        )
}

/// A strong validator of the embedded file: SipHash with fixed keys, so the same bytes give the
/// same tag on every node.
fn etag(asset: &'static Asset) -> HeaderValue {
    asset
        .tag
        .get_or_init(|| {
            let mut hasher = std::hash::DefaultHasher::new();
            asset.body.hash(&mut hasher);
            let tag = format!("\"{:016x}-{:x}\"", hasher.finish(), asset.body.len());
            HeaderValue::from_str(&tag).expect("hex is a valid header value")
        })
        .clone()
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let tag = etag(asset);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == tag)
        });
    let gzip = asset.gzip.filter(|_| accepts_gzip(request));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, gzip.unwrap_or(asset.body)).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, tag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if asset.gzip.is_some() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if gzip.is_some() && !fresh {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

/// Whether `Accept-Encoding` lists gzip with a non-zero quality.
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !zero
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn gzip_is_sent_only_to_who_accepts_it() {
        assert!(accepts_gzip(&headers(&[(
            header::ACCEPT_ENCODING,
            "gzip, deflate, br"
        )])));
        assert!(accepts_gzip(&headers(&[(
            header::ACCEPT_ENCODING,
            "br;q=1.0, GZIP;q=0.5"
        )])));
        assert!(!accepts_gzip(&headers(&[(
            header::ACCEPT_ENCODING,
            "gzip;q=0"
        )])));
        assert!(!accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, "br")])));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
