//! CPU accounting from `/proc` (Linux), so every run says how the two processes shared the
//! machine: client and server run on the same cores.
//!
//! Process times come from `/proc/<pid>/stat` (`utime + stime`, summed over all threads) in clock
//! ticks of 1/100 s, the value of `CLK_TCK` on every mainstream Linux build; whole-machine
//! busy time from the first line of `/proc/stat`. Off Linux every figure is `None`.

use std::time::Duration;

/// Ticks per second of `/proc` times (`getconf CLK_TCK`).
const TICKS_PER_SECOND: u64 = 100;

/// CPU time a process has used so far; `pid` `None` is this process.
pub fn process_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: state is
    // field 3, so utime (14) and stime (15) are the 12th and 13th after the `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ticks(utime + stime))
}

/// Busy and total CPU time of the whole machine so far (all cores).
pub fn machine_time() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest times are already in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4)?;
    Some((ticks(total - idle), ticks(total)))
}

fn ticks(n: u64) -> Duration {
    Duration::from_millis(n * 1000 / TICKS_PER_SECOND)
}

/// A snapshot to measure an interval from.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    client: Option<Duration>,
    server: Option<Duration>,
    machine: Option<(Duration, Duration)>,
}

impl Snapshot {
    /// Takes a snapshot of this process, the server (when its pid is known) and the machine.
    pub fn take(server: Option<u32>) -> Self {
        Snapshot {
            client: process_time(None),
            server: server.and_then(|pid| process_time(Some(pid))),
            machine: machine_time(),
        }
    }

    /// CPU shares over `wall` since `self`, in cores (1.0 = one core busy all the time).
    pub fn since(&self, now: &Snapshot, wall: Duration) -> Usage {
        let cores = |a: Option<Duration>, b: Option<Duration>| {
            Some(b?.saturating_sub(a?).as_secs_f64() / wall.as_secs_f64().max(1e-9))
        };
        let machine = match (self.machine, now.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                Some((b1 - b0).as_secs_f64() / (t1 - t0).as_secs_f64())
            }
            _ => None,
        };
        Usage {
            client: cores(self.client, now.client),
            server: cores(self.server, now.server),
            machine,
        }
    }
}

impl Usage {
    /// Cores used by everything but the bench and its server (`None` when unknown).
    pub fn others(&self) -> Option<f64> {
        let cores = std::thread::available_parallelism().ok()?.get() as f64;
        Some(
            (self.machine? * cores - self.client.unwrap_or(0.0) - self.server.unwrap_or(0.0))
                .max(0.0),
        )
    }
}

/// CPU use over a run.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// The bench process, in cores.
    pub client: Option<f64>,
    /// The server process, in cores.
    pub server: Option<f64>,
    /// The whole machine, as a fraction of all its cores.
    pub machine: Option<f64>,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{:.0} %", v * 100.0));
        write!(
            f,
            "cpu (100 % = one core): client {}, server {}; machine busy {} of {} cores",
            pct(self.client),
            pct(self.server),
            pct(self.machine),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_times_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(process_time(None).is_some());
            let (busy, total) = machine_time().unwrap();
            assert!(busy <= total);
        }
    }
}
