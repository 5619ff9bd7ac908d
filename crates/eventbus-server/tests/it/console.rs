//! `GET /console`: the embedded web console is served by the binary itself, without a key,
//! revalidated by `ETag`, gzipped for browsers that accept it, under a same-origin-only policy.

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::{StatusCode, header};

use crate::common::TestServer;

#[tokio::test]
async fn the_console_page_and_its_files_are_served_without_a_key() {
    let server = TestServer::start(&[]).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    for path in ["/console", "/console/"] {
        let page = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        let html = page.text().await.unwrap();
        assert!(html.contains(r#"<div id="root">"#), "{html}");
        assert!(html.contains(r#"src="/console/console.js""#), "{html}");
        assert!(html.contains(r#"href="/console/console.css""#), "{html}");
    }

    let script = http
        .get(server.url("/console/console.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(
        script.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(script.headers().get(header::CONTENT_ENCODING).is_none());
    let plain = script.bytes().await.unwrap();
    assert!(plain.len() > 10_000, "the bundle is {} bytes", plain.len());

    let style = http
        .get(server.url("/console/console.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(style.status(), StatusCode::OK);
    assert_eq!(
        style.headers()[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );

    // Neither a file outside the console nor a guessable path is served.
    for path in [
        "/console/../Cargo.toml",
        "/console/index.html.gz",
        "/console/nope.js",
    ] {
        let reply = server.get(path, &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn the_console_script_goes_gzipped_and_revalidates_with_its_etag() {
    let server = TestServer::start(&[]).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = server.url("/console/console.js");

    let plain = http.get(&url).send().await.unwrap();
    let tag = plain.headers()[header::ETAG].clone();
    assert_eq!(plain.headers()[header::CACHE_CONTROL], "no-cache");
    assert_eq!(plain.headers()[header::VARY], "accept-encoding");
    let plain = plain.bytes().await.unwrap();

    let zipped = http
        .get(&url)
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.status(), StatusCode::OK);
    assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(zipped.headers()[header::ETAG], tag);
    let zipped = zipped.bytes().await.unwrap();
    assert!(
        zipped.len() < plain.len() / 2,
        "{} of {}",
        zipped.len(),
        plain.len()
    );
    assert_eq!(
        gunzip(&zipped),
        plain.to_vec(),
        "the gzip holds the same script"
    );

    let again = http
        .get(&url)
        .header(header::IF_NONE_MATCH, tag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG], tag);
    assert!(again.bytes().await.unwrap().is_empty());

    let changed = http
        .get(&url)
        .header(header::IF_NONE_MATCH, "\"another\"")
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
}

/// `gzip -dc`: the test checks the server's bytes with a decoder of its own.
fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running gzip");
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "gzip -dc failed");
    out.stdout
}
