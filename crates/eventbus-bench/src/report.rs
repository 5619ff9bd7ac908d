//! The table every run prints: the figure through the bus, the raw-store figures beside it, and
//! the ratio "through the bus / this row" on each raw row, followed by the targets.
//! `others` is the CPU (in cores) that processes other than the bench and its server used during
//! the row's run: a figure taken beside a busy neighbour is not comparable.

use std::time::Duration;

use crate::stats::Measurement;

/// Prints the table; `http` (when present) is the row the ratios are taken against.
pub fn print_table(http: Option<&Measurement>, raw: &[Measurement]) {
    println!(
        "{:<22} {:>8} {:>7} {:>9} {:>7} {:>7} {:>7} {:>6} {:>7} {:>9}",
        "run",
        "events",
        "seconds",
        "events/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "others",
        "http/this"
    );
    for (m, is_http) in http
        .iter()
        .map(|m| (*m, true))
        .chain(raw.iter().map(|m| (m, false)))
    {
        let ratio = match (http, is_http) {
            (Some(h), false) => format!("{:.2}x", h.rate() / m.rate().max(1e-9)),
            _ => "-".to_owned(),
        };
        println!(
            "{:<22} {:>8} {:>7.2} {:>9.0} {:>7} {:>7} {:>7} {:>6} {:>7} {:>9}",
            m.label,
            m.events,
            m.elapsed.as_secs_f64(),
            m.rate(),
            ms(m.latency.p50),
            ms(m.latency.p99),
            ms(m.latency.max),
            m.errors,
            m.others.map_or("n/a".to_owned(), |c| format!("{c:.2}")),
            ratio
        );
    }
}

/// The targets for this run's shape, with the verdicts; nothing for shapes that have none
/// (single events at concurrency 1).
pub fn print_targets(
    http: &Measurement,
    batch: usize,
    concurrency: usize,
    raw: &[Measurement],
    raw_batches: &[usize],
) {
    let raw_at = |b: usize| {
        raw_batches
            .iter()
            .position(|&x| x == b)
            .map(|i| raw[i].rate())
    };
    let check = |what: &str, ratio: f64, goal: f64| {
        let verdict = if ratio >= goal { "met" } else { "MISSED" };
        println!("target: {what}: {:.2} (goal >= {goal:.2}) {verdict}", ratio);
    };
    if batch > 1 {
        if let Some(r) = raw_at(batch) {
            check(
                &format!("batched http / raw {batch} rows/txn"),
                http.rate() / r,
                0.80,
            );
        }
    } else if concurrency > 1 {
        if let Some(r) = raw_at(100) {
            check(
                "single-event http / raw 100 rows/txn",
                http.rate() / r,
                0.50,
            );
        }
        if let Some(r) = raw_at(1) {
            check("single-event http / raw 1 row/txn", http.rate() / r, 3.0);
        }
        let goal = 20_000.0;
        let verdict = if http.rate() >= goal { "met" } else { "MISSED" };
        println!(
            "target: single-event publishes/s: {:.0} (aim >= {goal:.0}) {verdict}",
            http.rate()
        );
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}
