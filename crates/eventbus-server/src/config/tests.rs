//! Tests of the settings: defaults, parsing, and the messages of refused values.

use super::*;

#[test]
fn defaults_match_the_design() {
    let c = Config::from_pairs([]).unwrap();
    assert_eq!(c.listen_addr().to_string(), "127.0.0.1:3002");
    assert_eq!(
        c.event_store_url,
        StoreUrl::Sqlite("./data/eventbus.db".into())
    );
    assert!(!c.strict_event_types);
    assert_eq!(c.max_payload_bytes, 262_144);
    let w = c.webhook_options();
    assert_eq!(
        (w.retry_attempts, w.timeout),
        (3, Duration::from_millis(5000))
    );
    assert_eq!(w.retry_schedule.len(), 6);
    assert!(w.allowed_networks.is_empty());
    let p = c.plugin_options();
    let defaults = eventbus::plugin::HostOptions::default();
    assert_eq!(
        (p.retries, p.min_backoff, p.max_backoff, p.suspend_after),
        (
            defaults.retries,
            defaults.min_backoff,
            defaults.max_backoff,
            defaults.suspend_after
        ),
        "the documented plugin defaults are the host's"
    );
    let c = Config::from_pairs([
        ("PLUGIN_RETRIES", "0"),
        ("PLUGIN_RETRY_DELAY", "20s"),
        ("PLUGIN_SUSPEND_AFTER", "1"),
    ])
    .unwrap();
    let p = c.plugin_options();
    assert_eq!(
        (p.retries, p.min_backoff, p.max_backoff, p.suspend_after),
        (0, Duration::from_secs(20), Duration::from_secs(20), 1)
    );
    assert!(Config::from_pairs([("PLUGIN_SUSPEND_AFTER", "0")]).is_err());
}

#[test]
fn the_stats_interval_is_whole_seconds_from_one() {
    let interval = |pairs: &[(&str, &str)]| {
        Config::from_pairs(pairs.iter().copied()).map(|c| c.stats_interval())
    };
    assert_eq!(
        interval(&[]).unwrap(),
        eventbus::sample::DEFAULT_INTERVAL,
        "the documented default is the sampler's"
    );
    assert_eq!(
        interval(&[("STATS_SAMPLE_INTERVAL", "1")]).unwrap(),
        Duration::from_secs(1)
    );
    for bad in ["0", "1.5", "3601", "10s"] {
        let err = interval(&[("STATS_SAMPLE_INTERVAL", bad)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--stats-sample-interval"), "{bad}: {err}");
    }
}

#[test]
fn postgres_connection_settings_parse() {
    let pg = |pairs: &[(&str, &str)]| {
        Config::from_pairs(pairs.iter().copied())
            .unwrap()
            .store_options()
            .postgres
    };
    let defaults = pg(&[]);
    assert_eq!((defaults.pool_size, defaults.direct_url), (8, None));
    assert_eq!(pg(&[("EVENT_STORE_MAX_CONNECTIONS", "20")]).pool_size, 17);
    assert_eq!(pg(&[("EVENT_STORE_MAX_CONNECTIONS", "4")]).pool_size, 1);
    assert_eq!(pg(&[("EVENT_STORE_POOL_SIZE", "5")]).pool_size, 5);
    assert!(Config::from_pairs([("EVENT_STORE_MAX_CONNECTIONS", "3")]).is_err());
    assert!(
        Config::from_pairs([
            ("EVENT_STORE_MAX_CONNECTIONS", "20"),
            ("EVENT_STORE_POOL_SIZE", "5")
        ])
        .is_err(),
        "the former setting and its successor together are ambiguous"
    );
    let direct = pg(&[("EVENT_STORE_DIRECT_URL", "postgres://u:pw@db:5432/x")]);
    assert_eq!(
        direct.direct_url.as_deref(),
        Some("postgres://u:pw@db:5432/x")
    );
    assert_eq!(pg(&[("EVENT_STORE_DIRECT_URL", "")]).direct_url, None);
    let err = Config::from_pairs([("EVENT_STORE_DIRECT_URL", "sqlite://x.db")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("postgres://"), "{err}");
    let shown = format!(
        "{:?}",
        Config::from_pairs([("EVENT_STORE_DIRECT_URL", "postgres://u:pw@db/x")]).unwrap()
    );
    assert!(
        !shown.contains("pw@"),
        "the direct URL's password stays out of debug output"
    );
}

#[test]
fn webhook_settings_parse() {
    let c = Config::from_pairs([
        ("WEBHOOK_RETRY_SCHEDULE", "100ms,200ms"),
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8, ::1/128"),
    ])
    .unwrap();
    assert_eq!(
        c.webhook_options().retry_schedule,
        [Duration::from_millis(100), Duration::from_millis(200)]
    );
    assert_eq!(c.webhook_options().allowed_networks.len(), 2);
    let err = Config::from_pairs([("WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/99")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--webhook-allowed-networks"), "{err}");
    let err = Config::from_pairs([("WEBHOOK_RETRY_SCHEDULE", "5s,soon")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--webhook-retry-schedule"), "{err}");
}

#[test]
fn bad_values_name_the_setting() {
    let err = Config::from_pairs([("EVENT_STORE_URL", "mysql://x")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--event-store-url"), "{err}");
    let err = Config::from_pairs([("PORT", "99999")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--port"), "{err}");
}
