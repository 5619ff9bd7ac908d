//! `/health/live` and `/health/ready`.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestServer;

#[tokio::test]
async fn live_and_ready_report_up() {
    let server = TestServer::start(&[]).await;

    let live = server.get("/health/live", &[]).await;
    assert_eq!(live.status, StatusCode::OK, "{}", live.body);

    let ready = server.get("/health/ready", &[]).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["status"], json!("ok"), "{}", ready.body);
    assert_eq!(
        ready.body["details"]["store"]["status"],
        json!("up"),
        "{}",
        ready.body
    );
    assert_eq!(
        ready.body["details"]["store"]["backend"],
        json!("sqlite"),
        "{}",
        ready.body
    );
}
