//! `eventbus outbox init`: the outbox tables in an application's database (see
//! `eventbus::outbox::ddl` and docs/outbox.md).

use anyhow::Context;

use crate::config::OutboxAction;

/// Runs one `outbox` action.
pub async fn run(action: OutboxAction) -> anyhow::Result<()> {
    match action {
        OutboxAction::Init {
            print: true,
            schema,
            ..
        } => {
            print!("{}", eventbus::outbox::ddl::script(&schema));
            Ok(())
        }
        OutboxAction::Init { url, schema, .. } => {
            let url = url.context("--url is required")?;
            let connect = eventbus::store::postgres::link::parse_url(&url)
                .with_context(|| "--url is not a valid postgres:// URL")?;
            let shown = eventbus::outbox::source::hide_password(&url);
            let ran = eventbus::outbox::ddl::init_at(&connect, &schema)
                .await
                .with_context(|| format!("creating the outbox in schema {schema} at {shown}"))?;
            let version = eventbus::outbox::ddl::latest_version();
            if ran == 0 {
                println!("outbox in schema {schema}: up to date (version {version})");
            } else {
                println!(
                    "outbox in schema {schema}: created (version {version}, {ran} migration(s) applied)"
                );
            }
            Ok(())
        }
    }
}
