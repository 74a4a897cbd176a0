//! CPU time by process across the machine between two readings (Linux `/proc`): what tubesum and
//! the databases and brokers beside it spend during a benchmark, so a run says where the box's
//! cores went, not only how fast it was.

use std::collections::HashMap;
use std::time::Duration;

/// Each live process's name and CPU time (user + system, all threads) at one moment.
pub struct Reading {
    processes: HashMap<i32, (String, u64)>,
    ticks_per_second: u64,
}

impl Reading {
    /// Now; `None` where `/proc` cannot be read (not Linux).
    pub fn now() -> Option<Reading> {
        read()
    }

    /// CPU time spent since this reading, by process name (every `postgres` backend together),
    /// most first; processes that started meanwhile count from zero.
    pub fn spent_since(&self) -> Vec<(String, Duration)> {
        let Some(now) = read() else { return Vec::new() };
        let mut by_name: HashMap<String, u64> = HashMap::new();
        for (pid, (name, ticks)) in now.processes {
            let before = self.processes.get(&pid).filter(|(was, _)| *was == name).map_or(0, |(_, t)| *t);
            *by_name.entry(name).or_default() += ticks.saturating_sub(before);
        }
        let mut spent: Vec<(String, Duration)> = by_name
            .into_iter()
            .filter(|(_, ticks)| *ticks > 0)
            .map(|(name, ticks)| (name, Duration::from_secs_f64(ticks as f64 / self.ticks_per_second as f64)))
            .collect();
        spent.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        spent
    }
}

#[cfg(target_os = "linux")]
fn read() -> Option<Reading> {
    let processes = procfs::process::all_processes()
        .ok()?
        .filter_map(|process| process.ok()?.stat().ok())
        .map(|stat| (stat.pid, (family(&stat.comm).to_owned(), stat.utime + stat.stime)))
        .collect();
    Some(Reading { processes, ticks_per_second: procfs::ticks_per_second().max(1) })
}

/// A name as counted: the kernel's per-CPU threads (`kworker/u8:2-writeback`) as one.
#[cfg(target_os = "linux")]
fn family(comm: &str) -> &str {
    comm.split('/').next().unwrap_or(comm)
}

#[cfg(not(target_os = "linux"))]
fn read() -> Option<Reading> {
    None
}

/// The `n` biggest spenders as report lines, with each one's share of what the machine's cores
/// could have done over `wall`.
pub fn lines(spent: &[(String, Duration)], wall: Duration, n: usize) -> String {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let capacity = wall.as_secs_f64() * cores as f64;
    let total: f64 = spent.iter().map(|(_, d)| d.as_secs_f64()).sum();
    let mut out = format!("  CPU by process ({total:.1} s of {capacity:.1} s that {cores} cores had over the run):\n");
    for (name, time) in spent.iter().take(n) {
        let secs = time.as_secs_f64();
        out += &format!("    {name:<16} {secs:>8.2} s   {:>5.1} %\n", 100.0 * secs / capacity.max(f64::EPSILON));
    }
    out
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn kernel_threads_count_as_one() {
        assert_eq!(family("kworker/u8:2-writeback"), "kworker");
        assert_eq!(family("postgres"), "postgres");
    }

    #[test]
    fn this_process_spending_cpu_is_seen() {
        let myself = || procfs::process::Process::myself().unwrap().stat().unwrap();
        let before = Reading::now().expect("/proc is readable");
        let (me, start) = (myself().comm, myself().utime + myself().stime);
        let per_second = procfs::ticks_per_second();
        // Spin until this process has spent a fifth of a second more (by its own count).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut x = 0u64;
        while myself().utime + myself().stime < start + per_second / 5 {
            assert!(std::time::Instant::now() < deadline, "no CPU time in 60 s");
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let spent = before.spent_since();
        let mine = spent.iter().find(|(name, _)| *name == me).map(|(_, d)| *d).unwrap_or_default();
        assert!(mine >= Duration::from_millis(200), "{spent:?}");
        let text = lines(&spent, Duration::from_secs(1), 3);
        assert!(text.contains(&me), "{text}");
    }
}
