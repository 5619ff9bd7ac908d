//! Reading events on PostgreSQL: the row mapping, and the SQL of filtered reads and counts (type
//! patterns as an index range on their literal prefix plus a regular expression, scopes, time
//! bounds), with its arguments bound in order.

use super::*;

/// Reads the event in the columns `offset..offset + 9` (in [`COLUMNS`] order).
pub(super) fn row_to_event(row: &PgRow, offset: usize) -> Result<Event, sqlx::Error> {
    let decode = |i: usize, e: serde_json::Error| sqlx::Error::ColumnDecode {
        index: (offset + i).to_string(),
        source: Box::new(e),
    };
    let payload: String = row.try_get(offset + 7)?;
    let metadata: Option<String> = row.try_get(offset + 8)?;
    Ok(Event {
        seq: row.try_get::<i64, _>(offset)? as u64,
        id: row.try_get(offset + 1)?,
        event_type: row.try_get(offset + 2)?,
        timestamp: Timestamp::from_micros(row.try_get(offset + 3)?),
        project_id: row.try_get(offset + 4)?,
        tenant_id: row.try_get(offset + 5)?,
        user_id: row.try_get(offset + 6)?,
        payload: RawValue::from_string(payload).map_err(|e| decode(7, e))?,
        metadata: match metadata {
            Some(m) => serde_json::from_str(&m).map_err(|e| decode(8, e))?,
            None => Default::default(),
        },
    })
}

/// A bind argument of a built query.
pub(super) enum Arg {
    Int(i64),
    Text(String),
    TextArray(Vec<String>),
}

pub(super) fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::TextArray(v) => query.bind(v),
        };
    }
    query
}

/// The regular expression of a pattern, for the types an index range cannot select exactly.
pub(super) fn pattern_regex(pattern: &Pattern) -> String {
    let parts: Vec<&str> = pattern
        .segments()
        .iter()
        .map(|s| match s {
            Segment::Literal(l) => l.as_str(),
            Segment::Any => "[^.]+",
            Segment::Tail => ".+",
        })
        .collect();
    format!("^{}$", parts.join("\\."))
}

/// `SELECT … WHERE seq > after AND <filter> ORDER BY seq LIMIT limit`, with its arguments.
pub(super) fn select_after_sql(
    filter: &EventFilter,
    after: u64,
    limit: usize,
) -> (String, Vec<Arg>) {
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE seq > $1");
    let mut args = vec![Arg::Int(after as i64)];
    push_filter(filter, &mut sql, &mut args);
    args.push(Arg::Int(limit as i64));
    sql.push_str(&format!(" ORDER BY seq LIMIT ${}", args.len()));
    (sql, args)
}

/// `SELECT type, count(*) … WHERE <filter> GROUP BY type ORDER BY type`, with its arguments.
pub(super) fn count_by_type_sql(filter: &EventFilter) -> (String, Vec<Arg>) {
    let mut sql = "SELECT type, count(*) FROM events WHERE true".to_owned();
    let mut args = Vec::new();
    push_filter(filter, &mut sql, &mut args);
    sql.push_str(" GROUP BY type ORDER BY type");
    (sql, args)
}

/// Appends ` AND <condition>` for each condition of `filter` to `sql`, and their arguments to
/// `args` (numbered after those already there): type patterns as an index range on their
/// literal prefix plus a regular expression, then scopes and time bounds.
fn push_filter(filter: &EventFilter, sql: &mut String, args: &mut Vec<Arg>) {
    let param = |args: &mut Vec<Arg>, arg: Arg| {
        args.push(arg);
        format!("${}", args.len())
    };
    if !filter.all_types() {
        sql.push_str(" AND (");
        for (i, pattern) in filter.types.iter().enumerate() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            if pattern.is_exact() {
                let p = param(args, Arg::Text(pattern.as_str().to_owned()));
                sql.push_str(&format!("type = {p}"));
                continue;
            }
            let prefix = pattern.literal_prefix();
            let mut terms = Vec::new();
            if !prefix.is_empty() {
                let lo = param(args, Arg::Text(prefix.clone()));
                let hi = param(args, Arg::Text(prefix_upper_bound(&prefix)));
                terms.push(format!("type > {lo} AND type < {hi}"));
            }
            // `a.b.>` is exactly the prefix range; anything else also needs the grammar.
            let tail_only = matches!(pattern.segments().last(), Some(Segment::Tail))
                && pattern
                    .segments()
                    .iter()
                    .rev()
                    .skip(1)
                    .all(|s| matches!(s, Segment::Literal(_)));
            if prefix.is_empty() || !tail_only {
                let re = param(args, Arg::Text(pattern_regex(pattern)));
                terms.push(format!("type ~ {re}"));
            }
            sql.push_str(&format!("({})", terms.join(" AND ")));
        }
        sql.push(')');
    }
    for (column, value) in [
        ("project_id", &filter.project_id),
        ("tenant_id", &filter.tenant_id),
        ("user_id", &filter.user_id),
    ] {
        if let Some(v) = value {
            let p = param(args, Arg::Text(v.clone()));
            sql.push_str(&format!(" AND {column} = {p}"));
        }
    }
    if !filter.project_ids.is_empty() {
        let p = param(args, Arg::TextArray(filter.project_ids.clone()));
        sql.push_str(&format!(" AND project_id = ANY({p})"));
    }
    if let Some(from) = filter.from {
        let p = param(args, Arg::Int(from.as_micros()));
        sql.push_str(&format!(" AND ts >= {p}"));
    }
    if let Some(to) = filter.to {
        let p = param(args, Arg::Int(to.as_micros()));
        sql.push_str(&format!(" AND ts < {p}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn regexes_follow_the_grammar() {
        assert_eq!(pattern_regex(&p("project.*")), "^project\\.[^.]+$");
        assert_eq!(pattern_regex(&p("a.*.c")), "^a\\.[^.]+\\.c$");
        assert_eq!(pattern_regex(&p("a.>")), "^a\\..+$");
    }

    #[test]
    fn tail_patterns_use_the_range_alone() {
        let (sql, _) = select_after_sql(&EventFilter::types(vec![p("project.>")]), 0, 10);
        assert!(
            sql.contains("type > $2 AND type < $3") && !sql.contains('~'),
            "{sql}"
        );
        let (sql, _) = select_after_sql(&EventFilter::types(vec![p("project.*")]), 0, 10);
        assert!(sql.contains("type ~ $4"), "{sql}");
        let (sql, _) = select_after_sql(&EventFilter::types(vec![p("*.created")]), 0, 10);
        assert!(sql.contains("(type ~ $2)"), "{sql}");
    }
}
