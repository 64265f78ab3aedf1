//! CPU time used by this process, PostgreSQL and nats-server, read from `/proc`: on a 2-core
//! machine the three share the cores, so a ratio is only explained beside where the time went.

use std::collections::HashMap;
use std::fmt;

/// Seconds of CPU (user + system) consumed so far, or over a span (see [`CpuTimes::since`]).
#[derive(Debug, Clone, Default)]
pub struct CpuTimes {
    pub client: f64,
    pub postgres: f64,
    pub nats: f64,
    /// Each PostgreSQL and nats-server process's time, for spans: a process that exits
    /// (a backend whose connection closed) would otherwise take its whole time out of the sum.
    processes: HashMap<u32, (Kind, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Nats,
}

/// Linux reports process times in USER_HZ, which is 100 on every architecture it supports.
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuTimes {
    /// A reading now. Processes that cannot be read (exited meanwhile) are skipped.
    pub fn now() -> Self {
        let mut times = CpuTimes {
            client: ticks("/proc/self/stat").map_or(0.0, |(_, t)| t),
            ..Default::default()
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return times;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let path = entry.path().join("stat");
            match ticks(&path.to_string_lossy()) {
                Some((comm, t)) if comm == "postgres" => {
                    times.postgres += t;
                    times.processes.insert(pid, (Kind::Postgres, t));
                }
                Some((comm, t)) if comm == "nats-server" => {
                    times.nats += t;
                    times.processes.insert(pid, (Kind::Nats, t));
                }
                _ => {}
            }
        }
        times
    }

    /// The time used since `earlier`, by the processes running now (one that started since
    /// counts from zero; one that exited since is not counted).
    pub fn since(earlier: CpuTimes) -> Self {
        let now = CpuTimes::now();
        let mut span = CpuTimes {
            client: now.client - earlier.client,
            ..Default::default()
        };
        for (pid, (kind, t)) in &now.processes {
            let before = earlier
                .processes
                .get(pid)
                .filter(|(k, _)| k == kind)
                .map_or(0.0, |(_, t)| *t);
            match kind {
                Kind::Postgres => span.postgres += t - before,
                Kind::Nats => span.nats += t - before,
            }
        }
        span
    }
}

impl std::ops::AddAssign for CpuTimes {
    fn add_assign(&mut self, other: CpuTimes) {
        self.client += other.client;
        self.postgres += other.postgres;
        self.nats += other.nats;
    }
}

impl fmt::Display for CpuTimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu s: client {:.2}, postgres {:.2}, nats {:.2}",
            self.client, self.postgres, self.nats
        )
    }
}

/// The command name and utime + stime (in seconds) of one `/proc/<pid>/stat`.
fn ticks(path: &str) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    // After the command: state is field 0, utime field 11, stime field 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / TICKS_PER_SECOND))
}

/// The CPU seconds (user + system) process `pid` has used so far.
pub fn process_seconds(pid: u32) -> Option<f64> {
    ticks(&format!("/proc/{pid}/stat")).map(|(_, seconds)| seconds)
}
