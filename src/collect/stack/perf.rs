//! The software cpu-clock perf event, one per online CPU, that the oncpu program runs on.
//! This kind of machine has no hardware PMU; cpu-clock is a timer and works everywhere.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use perf_event_open_sys::bindings::{
    perf_event_attr, PERF_COUNT_SW_CPU_CLOCK, PERF_FLAG_FD_CLOEXEC, PERF_TYPE_SOFTWARE,
};

/// Opens a cpu-clock event sampling every task on `cpu` at `hz` samples per second.
pub fn open_cpu_clock(cpu: u32, hz: u64) -> io::Result<OwnedFd> {
    let mut attr = perf_event_attr {
        type_: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<perf_event_attr>() as u32,
        config: PERF_COUNT_SW_CPU_CLOCK as u64,
        ..Default::default()
    };
    attr.__bindgen_anon_1.sample_freq = hz;
    attr.set_freq(1);
    // SAFETY: attr is a valid, fully initialised perf_event_attr whose size field says so;
    // pid -1 with a cpu means every task on that CPU.
    let fd = unsafe {
        perf_event_open_sys::perf_event_open(
            &mut attr,
            -1,
            cpu as i32,
            -1,
            PERF_FLAG_FD_CLOEXEC as _,
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("perf_event_open(cpu-clock, cpu {cpu}): {err}"),
        ));
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The online CPUs, from /sys/devices/system/cpu/online (`0-3,6,8-9`).
pub fn online_cpus() -> io::Result<Vec<u32>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    parse_cpu_list(text.trim()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse CPU list {text:?}"),
        )
    })
}

fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<u32>().ok()?..=b.parse::<u32>().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists() {
        assert_eq!(
            super::parse_cpu_list("0-3,6,8-9"),
            Some(vec![0, 1, 2, 3, 6, 8, 9])
        );
        assert_eq!(super::parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(super::parse_cpu_list("x"), None);
    }
}
