//! The configuration of one outbox source: `name=situs,url=postgres://…[,schema=eventbus]
//! [,tenant=t_1][,types=project.*|user.*]`, several separated by `;` (`OUTBOX_SOURCES`).

use std::fmt;

use sqlx::postgres::PgConnectOptions;

use crate::core::pattern::Pattern;
use crate::store::postgres::link::parse_url;

/// The default schema of the outbox tables in the application's database.
pub const DEFAULT_SCHEMA: &str = "eventbus";

/// One application database whose outbox the bus relays.
#[derive(Clone)]
pub struct OutboxSource {
    /// Names the source in metrics, logs and `/v1/outboxes/{name}`.
    pub name: String,
    /// The application's database (the URL's `sslmode` and the rest as for `EVENT_STORE_URL`).
    pub connect: PgConnectOptions,
    /// The URL without its password, for logs and `GET /v1/outboxes`.
    pub display_url: String,
    /// The schema of the outbox tables.
    pub schema: String,
    /// Every relayed event is bound to this tenant (an event naming another is refused).
    pub tenant: Option<String>,
    /// The types the source may publish (default: all).
    pub types: Vec<Pattern>,
    /// How long relayed rows stay in the outbox (marked `relayed_at`); `None`: deleted at once.
    pub keep: Option<std::time::Duration>,
}

impl fmt::Debug for OutboxSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxSource")
            .field("name", &self.name)
            .field("url", &self.display_url)
            .field("schema", &self.schema)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// Why `OUTBOX_SOURCES` cannot be read; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("OUTBOX_SOURCES: {0}")]
pub struct SourceError(pub String);

/// Whether `name` may name a schema (or a source): `[a-z_][a-z0-9_]{0,62}`.
pub fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && name.len() <= 63
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// Parses `OUTBOX_SOURCES`; an empty value is no source.
pub fn parse_sources(value: &str) -> Result<Vec<OutboxSource>, SourceError> {
    let mut out: Vec<OutboxSource> = Vec::new();
    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let source = parse_one(part)?;
        if out.iter().any(|s| s.name == source.name) {
            return Err(SourceError(format!(
                "the name `{}` is used twice",
                source.name
            )));
        }
        out.push(source);
    }
    Ok(out)
}

fn parse_one(part: &str) -> Result<OutboxSource, SourceError> {
    let (mut name, mut url, mut schema, mut tenant, mut types, mut keep) =
        (None, None, None, None, None, None);
    // Fields are split at a comma followed by `word=`, so a URL may hold other commas (a host
    // list such as `h1:5432,h2:5432`).
    for field in split_fields(part) {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| SourceError(format!("`{field}` is not key=value")))?;
        let slot = match key.trim() {
            "name" => &mut name,
            "url" => &mut url,
            "schema" => &mut schema,
            "tenant" => &mut tenant,
            "types" => &mut types,
            "keep" => &mut keep,
            other => {
                return Err(SourceError(format!(
                    "unknown key `{other}`; a source is name=…,url=…[,schema=…][,tenant=…][,types=…][,keep=…]"
                )));
            }
        };
        *slot = Some(value.trim().to_owned());
    }
    let name = name.ok_or_else(|| SourceError(format!("`{part}` has no name=")))?;
    if !is_identifier(&name) {
        return Err(SourceError(format!(
            "the name `{name}` must be lowercase letters, digits and _ (at most 63)"
        )));
    }
    let url = url.ok_or_else(|| SourceError(format!("source `{name}` has no url=")))?;
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err(SourceError(format!(
            "source `{name}`: the url must be postgres://…"
        )));
    }
    let connect = parse_url(&url)
        .map_err(|e| SourceError(format!("source `{name}`: the url is invalid: {e}")))?;
    let schema = schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
    if !is_identifier(&schema) {
        return Err(SourceError(format!(
            "source `{name}`: the schema `{schema}` must be lowercase letters, digits and _"
        )));
    }
    let types = match types {
        None => vec![Pattern::all()],
        Some(list) => list
            .split('|')
            .map(|p| {
                Pattern::parse(p.trim())
                    .map_err(|e| SourceError(format!("source `{name}`: types: {e}")))
            })
            .collect::<Result<_, _>>()?,
    };
    let keep = match keep.filter(|k| !k.is_empty()) {
        None => None,
        Some(k) => Some(
            crate::transport::webhook::parse_duration(&k)
                .map_err(|e| SourceError(format!("source `{name}`: keep: {e}")))?,
        ),
    };
    Ok(OutboxSource {
        keep,
        display_url: hide_password(&url),
        name,
        connect,
        schema,
        tenant: tenant.filter(|t| !t.is_empty()),
        types,
    })
}

/// `part` split at each comma that is followed by `word=`.
fn split_fields(part: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut start = 0;
    for (i, _) in part.match_indices(',') {
        let rest = &part[i + 1..];
        let key_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
            .count();
        if key_len > 0 && rest.as_bytes().get(key_len) == Some(&b'=') {
            fields.push(&part[start..i]);
            start = i + 1;
        }
    }
    fields.push(&part[start..]);
    fields
}

/// `url` with its password replaced by `***`.
pub fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_several_sources() {
        let sources = parse_sources(
            "name=situs,url=postgres://app:secret@127.0.0.1:5432/app?sslmode=disable,tenant=t_1; \
             name=billing,url=postgres://127.0.0.1/billing,schema=bus_outbox,types=invoice.*|user.>,keep=2d",
        )
        .unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].name, "situs");
        assert_eq!(sources[0].schema, "eventbus");
        assert_eq!(sources[0].tenant.as_deref(), Some("t_1"));
        assert!(
            !sources[0].display_url.contains("secret"),
            "{}",
            sources[0].display_url
        );
        assert_eq!(sources[1].schema, "bus_outbox");
        assert_eq!(sources[1].types.len(), 2);
        assert_eq!(sources[0].keep, None);
        assert_eq!(
            sources[1].keep,
            Some(std::time::Duration::from_secs(2 * 86_400))
        );
        assert!(parse_sources("").unwrap().is_empty());
        assert_eq!(
            hide_password("postgres://app:s3cr@t@db:5432/app?sslmode=require"),
            "postgres://app:***@db:5432/app?sslmode=require"
        );
        assert_eq!(hide_password("postgres://db/app"), "postgres://db/app");
    }

    #[test]
    fn splits_fields_only_before_a_key() {
        assert_eq!(
            split_fields("name=a,url=postgres://h1,h2/db?x=1,2,tenant=t"),
            ["name=a", "url=postgres://h1,h2/db?x=1,2", "tenant=t"]
        );
    }

    #[test]
    fn says_what_is_wrong() {
        for (value, says) in [
            ("url=postgres://x/y", "no name="),
            ("name=a", "no url="),
            ("name=A,url=postgres://x/y", "lowercase"),
            ("name=a,url=mysql://x/y", "postgres://"),
            ("name=a,url=postgres://x/y,schema=Bad", "schema"),
            (
                "name=a,url=postgres://x/y,colour=red",
                "unknown key `colour`",
            ),
            (
                "name=a,url=postgres://x/y;name=a,url=postgres://x/z",
                "used twice",
            ),
            ("name=a,url=postgres://x/y,types=Project", "types"),
            ("name=a,url=postgres://x/y,keep=soon", "keep"),
        ] {
            let e = parse_sources(value).expect_err(value);
            assert!(e.to_string().contains(says), "{value}: {e}");
        }
    }
}
