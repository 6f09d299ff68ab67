//! What the operating system says about loadgen and the broker: CPU time (getrusage and
//! `/proc/PID/stat`), resident memory (`/proc/PID/status`), open files and the fd limit,
//! and the machine's memory (`/proc/meminfo`, `/proc/net/sockstat`). Read-only, except
//! for raising loadgen's own `RLIMIT_NOFILE` at start.

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

/// Machine-wide memory figures, in bytes, read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MachineMemory {
    /// `MemTotal` of `/proc/meminfo`.
    pub total: u64,
    /// `MemAvailable`: what could be given to new work without swapping.
    pub available: u64,
    /// `Slab`: the kernel's object caches (sockets, dentries, ...), all of them.
    pub slab: u64,
    /// TCP sockets in use (`inuse` of the `TCP:` line of `/proc/net/sockstat`).
    pub tcp_inuse: u64,
    /// Pages of TCP buffer memory (`mem` of the same line).
    pub tcp_mem_pages: u64,
}

impl MachineMemory {
    /// Memory in use by everything: `MemTotal - MemAvailable`.
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }
}

/// Reads `/proc/meminfo` and `/proc/net/sockstat`; `None` if either is unreadable.
pub fn machine_memory() -> Option<MachineMemory> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    let sockstat = fs::read_to_string("/proc/net/sockstat").ok()?;
    parse_machine_memory(&meminfo, &sockstat)
}

/// The figures of [`machine_memory`] from the two files' text.
pub fn parse_machine_memory(meminfo: &str, sockstat: &str) -> Option<MachineMemory> {
    let kib = |key: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.split(':').next() == Some(key))?;
        let value: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(value * 1024)
    };
    let tcp = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let words: Vec<&str> = tcp.split_whitespace().collect();
    let field = |name: &str| -> Option<u64> {
        let at = words.iter().position(|w| *w == name)?;
        words.get(at + 1)?.parse().ok()
    };
    Some(MachineMemory {
        total: kib("MemTotal")?,
        available: kib("MemAvailable")?,
        slab: kib("Slab")?,
        tcp_inuse: field("inuse")?,
        tcp_mem_pages: field("mem")?,
    })
}

/// The size of a memory page in bytes (4096 when unknown).
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
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
    fn machine_memory_from_text() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:  1 kB\nMemAvailable:   20000000 kB\nSlab:  512000 kB\nSReclaimable: 1 kB\n";
        let sockstat =
            "sockets: used 300\nTCP: inuse 27 orphan 0 tw 3 alloc 30 mem 12\nUDP: inuse 1 mem 0\n";
        let m = parse_machine_memory(meminfo, sockstat).unwrap();
        assert_eq!(m.total, 24_576_000 * 1024);
        assert_eq!(m.available, 20_000_000 * 1024);
        assert_eq!(m.slab, 512_000 * 1024);
        assert_eq!((m.tcp_inuse, m.tcp_mem_pages), (27, 12));
        assert_eq!(m.used(), 4_576_000 * 1024);
        assert!(parse_machine_memory("MemTotal: 1 kB\n", sockstat).is_none());
        assert!(machine_memory().is_some());
    }

    #[test]
    fn reads_itself() {
        let pid = std::process::id();
        assert!(pid_alive(pid));
        assert!(pid_rss_bytes(pid).unwrap_or(0) > 0);
        assert!(pid_cpu_secs(pid).is_some());
        assert!(pid_fd_limit(pid).unwrap_or(0) > 0);
    }
}
