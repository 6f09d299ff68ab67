//! What the operating system says about loadgen and the broker: CPU time (getrusage and
//! `/proc/PID/stat`), resident memory (`/proc/PID/status`), open files and the fd limit.
//! Read-only, except for raising loadgen's own `RLIMIT_NOFILE` at start.

use std::fs;

/// CPU seconds (user + system) this process has used so far.
pub fn self_cpu_secs() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU seconds (user + system) process `pid` has used, from `/proc/PID/stat`.
pub fn pid_cpu_secs(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 of stat(5) is fields[0]; utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) / ticks)
}

/// Resident set size of `pid` in bytes (`VmRSS`).
pub fn pid_rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// True while `pid` exists.
pub fn pid_alive(pid: u32) -> bool {
    fs::metadata(format!("/proc/{pid}")).is_ok()
}

/// Number of open file descriptors of `pid` (needs permission to list `/proc/PID/fd`).
pub fn pid_open_fds(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Soft fd limit of `pid`, from `/proc/PID/limits`.
pub fn pid_fd_limit(pid: u32) -> Option<u64> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Raises this process's soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: get/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                return wanted.rlim_cur;
            }
        }
        lim.rlim_cur
    }
}

/// Asks for a 1 ns timer slack on the calling thread, so a paced publisher's sleeps end on
/// time (the default slack is 50 us, which would show up as latency).
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// A CPU-time reading of loadgen and (when known) the broker.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    /// loadgen's CPU seconds.
    pub loadgen: f64,
    /// The broker's CPU seconds, when `--broker-pid` is given and readable.
    pub broker: Option<f64>,
}

impl CpuSample {
    /// Reads both now.
    pub fn now(broker_pid: Option<u32>) -> Self {
        CpuSample {
            loadgen: self_cpu_secs(),
            broker: broker_pid.and_then(pid_cpu_secs),
        }
    }

    /// CPU used between `earlier` and `self`: (loadgen, broker).
    pub fn since(&self, earlier: &CpuSample) -> (f64, Option<f64>) {
        let broker = match (self.broker, earlier.broker) {
            (Some(now), Some(then)) => Some(now - then),
            _ => None,
        };
        (self.loadgen - earlier.loadgen, broker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_itself() {
        let pid = std::process::id();
        assert!(pid_alive(pid));
        assert!(pid_rss_bytes(pid).unwrap_or(0) > 0);
        assert!(pid_cpu_secs(pid).is_some());
        assert!(pid_fd_limit(pid).unwrap_or(0) > 0);
    }
}
