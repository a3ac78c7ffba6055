//! The operator process's own metrics, read from `/proc/self` at each scrape (Linux; elsewhere, or
//! when `/proc` cannot be read, the families are left out of the page rather than made up).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat`: Linux reports them in `USER_HZ`,
/// which is 100 on every architecture Kubernetes nodes run (whatever the kernel's own `HZ`).
const USER_HZ: f64 = 100.0;

/// What `/proc/self` says of the process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Sample {
    /// Resident set size, bytes.
    pub resident_bytes: Option<u64>,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit of open file descriptors.
    pub max_fds: Option<u64>,
}

impl Sample {
    /// Reads `/proc/self` now.
    fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let limits = std::fs::read_to_string("/proc/self/limits").ok();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            // The directory handle being read is one of the entries: not counted.
            .map(|d| {
                u64::try_from(d.count())
                    .unwrap_or(u64::MAX)
                    .saturating_sub(1)
            });
        Self {
            resident_bytes: status.as_deref().and_then(resident_bytes),
            cpu_seconds: stat.as_deref().and_then(cpu_seconds),
            open_fds,
            max_fds: limits.as_deref().and_then(max_fds),
        }
    }
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes.
pub(super) fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then(|| value.saturating_mul(1024))
}

/// `utime + stime` of `/proc/<pid>/stat`, in seconds. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its last `)`.
pub(super) fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, utime field 14, stime field 15.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)] // clock ticks stay far below 2^52
    Some((utime.saturating_add(stime)) as f64 / USER_HZ)
}

/// The soft `Max open files` limit of `/proc/<pid>/limits` (`None` when unlimited).
pub(super) fn max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The collector registered in the metrics registry (under its prefix).
#[derive(Debug, Default)]
pub(super) struct ProcessCollector;

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: Option<u64>,
) -> Result<(), std::fmt::Error> {
    let Some(value) = value else { return Ok(()) };
    let value = i64::try_from(value).unwrap_or(i64::MAX);
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sample = Sample::read();
        gauge(
            &mut encoder,
            "process_resident_memory",
            "Resident memory of the operator process",
            Some(&Unit::Bytes),
            sample.resident_bytes,
        )?;
        if let Some(cpu) = sample.cpu_seconds {
            let metric = ConstCounter::new(cpu);
            metric.encode(encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time of the operator process",
                Some(&Unit::Seconds),
                metric.metric_type(),
            )?)?;
        }
        gauge(
            &mut encoder,
            "process_open_fds",
            "Open file descriptors of the operator process",
            None,
            sample.open_fds,
        )?;
        gauge(
            &mut encoder,
            "process_max_fds",
            "Soft limit of open file descriptors of the operator process",
            None,
            sample.max_fds,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_vmrss_in_kilobytes() {
        let status =
            "Name:\tncp-pca-issuer\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t4\n";
        assert_eq!(resident_bytes(status), Some(2048 * 1024));
        assert_eq!(resident_bytes("Name:\tx\n"), None);
        assert_eq!(resident_bytes("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn cpu_time_is_utime_plus_stime_even_with_a_parenthesised_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime …
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 123 0 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn the_fd_limit_is_the_soft_max_open_files() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1048576              1048576              files\n";
        assert_eq!(max_fds(limits), Some(1_048_576));
        assert_eq!(
            max_fds("Max open files            unlimited            unlimited            files\n"),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_sampled_on_linux() {
        let s = Sample::read();
        assert!(s.resident_bytes.is_some_and(|b| b > 0), "{s:?}");
        assert!(s.cpu_seconds.is_some(), "{s:?}");
        assert!(s.open_fds.is_some_and(|n| n >= 3), "{s:?}");
    }
}
