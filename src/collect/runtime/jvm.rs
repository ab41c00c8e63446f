//! HotSpot's perf-data file (`/tmp/hsperfdata_<user>/<pid>`), the counters `jstat` and
//! `jcmd PerfCounter.print` read, parsed without attaching anything to the JVM.
//!
//! Format facts relied on (HotSpot `perfMemory.hpp`/`perfData.hpp`, checked against JDK 17
//! and the fixture tests/data/runtime/hsperfdata-g1-jdk17):
//! - a 32-byte prologue: magic `CA FE C0 C0` (always in this byte order), `byte_order`
//!   (0 big-, 1 little-endian: every later integer is in it), major and minor version
//!   (2.0 since JDK 6), `accessible` (1 once the JVM finished setting the file up),
//!   `used` (bytes in use), `overflow`, `mod_time_stamp`, `entry_offset`, `num_entries`;
//! - then `num_entries` entries, each: `entry_length`, `name_offset`, `vector_length`
//!   (i32s; vector_length 0 = a scalar), `data_type` (a JNI type char: `J` = i64, `B` =
//!   byte vector holding a NUL-terminated string), `flags`, `data_units` (1 none, 2 bytes,
//!   3 ticks, 4 events, 5 string, 6 hertz), `data_variability` (1 constant, 2 monotonic,
//!   3 variable) and `data_offset` (i32), offsets relative to the entry's start;
//! - times are in ticks of `sun.os.hrt.frequency` per second.
//!
//! The JVM updates the counters in place in a shared mapping; reading the file gives the
//! page cache's current view, so a read may straddle an update of one counter. Each
//! counter is an aligned 8-byte value, so a torn read is not possible on x86-64/arm64.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Errors the parser tells apart: a file still being set up is normal at JVM start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PerfDataError {
    #[error("not a HotSpot perf-data file (bad magic)")]
    BadMagic,
    #[error("perf-data version {0}.{1} is not supported (2.x is)")]
    Version(u8, u8),
    #[error("the JVM has not finished setting up its perf-data file")]
    NotAccessible,
    #[error("perf-data file truncated at byte {0}")]
    Truncated(usize),
}

/// One counter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Long(i64),
    Text(String),
}

/// The counters of one reading, by name.
#[derive(Debug, Clone, Default)]
pub struct PerfData {
    pub counters: HashMap<String, Value>,
}

impl PerfData {
    pub fn long(&self, name: &str) -> Option<i64> {
        match self.counters.get(name)? {
            Value::Long(v) => Some(*v),
            Value::Text(_) => None,
        }
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        match self.counters.get(name)? {
            Value::Text(s) => Some(s),
            Value::Long(_) => None,
        }
    }

    /// Ticks of `name` in milliseconds.
    pub fn ms(&self, name: &str) -> Option<f64> {
        let hz = self.long("sun.os.hrt.frequency").filter(|&f| f > 0)?;
        Some(self.long(name)? as f64 * 1000.0 / hz as f64)
    }

    /// Sum of the counters named `prefix.N.suffix` over N = 0, 1, … (until one is missing).
    pub fn sum_indexed(&self, prefix: &str, suffix: &str) -> Option<i64> {
        let mut total = None;
        for i in 0.. {
            let Some(v) = self.long(&format!("{prefix}.{i}.{suffix}")) else {
                break;
            };
            *total.get_or_insert(0) += v;
        }
        total
    }
}

/// A reading with every number at zero: the baseline of a JVM that started within the
/// interval, so its first deltas count everything it did.
pub fn zeroed(d: &PerfData) -> PerfData {
    let counters = d
        .counters
        .iter()
        .map(|(k, v)| match v {
            Value::Long(_) if k != "sun.os.hrt.frequency" => (k.clone(), Value::Long(0)),
            t => (k.clone(), t.clone()),
        })
        .collect();
    PerfData { counters }
}

/// Parses a perf-data file's bytes. Unknown data types are skipped; entries that point
/// outside the data end the parse with what was read so far only when the prologue is
/// itself sound.
pub fn parse(d: &[u8]) -> Result<PerfData, PerfDataError> {
    if d.len() < 32 {
        return Err(PerfDataError::Truncated(d.len()));
    }
    if d[..4] != [0xca, 0xfe, 0xc0, 0xc0] {
        return Err(PerfDataError::BadMagic);
    }
    let big = d[4] == 0;
    let (major, minor) = (d[5], d[6]);
    if major != 2 {
        return Err(PerfDataError::Version(major, minor));
    }
    if d[7] == 0 {
        return Err(PerfDataError::NotAccessible);
    }
    let i32_at = |o: usize| -> Option<i32> {
        let b: [u8; 4] = d.get(o..o.checked_add(4)?)?.try_into().ok()?;
        Some(if big {
            i32::from_be_bytes(b)
        } else {
            i32::from_le_bytes(b)
        })
    };
    let i64_at = |o: usize| -> Option<i64> {
        let b: [u8; 8] = d.get(o..o.checked_add(8)?)?.try_into().ok()?;
        Some(if big {
            i64::from_be_bytes(b)
        } else {
            i64::from_le_bytes(b)
        })
    };
    let entry_offset = i32_at(24).unwrap_or(0).max(0) as usize;
    let num_entries = i32_at(28).unwrap_or(0).max(0) as usize;
    let mut out = PerfData::default();
    let mut at = entry_offset;
    for _ in 0..num_entries {
        let len = i32_at(at).ok_or(PerfDataError::Truncated(at))?;
        let name_off = i32_at(at + 4).ok_or(PerfDataError::Truncated(at))?;
        let vec_len = i32_at(at + 8).ok_or(PerfDataError::Truncated(at))?;
        let dtype = *d.get(at + 12).ok_or(PerfDataError::Truncated(at))?;
        let data_off = i32_at(at + 16).ok_or(PerfDataError::Truncated(at))?;
        if len <= 0 || name_off < 0 || data_off < 0 || vec_len < 0 {
            return Err(PerfDataError::Truncated(at));
        }
        let name_start = at + name_off as usize;
        let name_bytes = d.get(name_start..).ok_or(PerfDataError::Truncated(at))?;
        let name_end = name_bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or(PerfDataError::Truncated(at))?;
        let name = String::from_utf8_lossy(&name_bytes[..name_end]).into_owned();
        let data = at + data_off as usize;
        let value = match (dtype, vec_len) {
            (b'J', 0) => i64_at(data).map(Value::Long),
            (b'B', n) if n > 0 => d.get(data..data + n as usize).map(|b| {
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                Value::Text(String::from_utf8_lossy(&b[..end]).into_owned())
            }),
            _ => None,
        };
        if let Some(v) = value {
            out.counters.insert(name, v);
        }
        at += len as usize;
    }
    Ok(out)
}

/// Reads and parses a perf-data file. The file is a shared mapping the JVM keeps at its
/// full size (32 KiB by default); only `used` bytes carry entries.
pub fn read(path: &Path, buf: &mut Vec<u8>) -> anyhow::Result<PerfData> {
    buf.clear();
    std::fs::File::open(path)?.read_to_end(buf)?;
    Ok(parse(buf)?)
}

/// Where a JVM's perf-data file is: `/tmp/hsperfdata_<user>/<pid as the JVM sees it>`,
/// looked up through the process's own root so that containerised JVMs (own /tmp, own
/// pid namespace) are found too. HotSpot always uses /tmp (not java.io.tmpdir) on Linux.
pub fn find_file(pid: u32, nspid: u32) -> Option<PathBuf> {
    let tmp = PathBuf::from(format!("/proc/{pid}/root/tmp"));
    for e in std::fs::read_dir(&tmp).ok()?.flatten() {
        let name = e.file_name();
        if name.to_str().is_some_and(|n| n.starts_with("hsperfdata_")) {
            let p = e.path().join(nspid.to_string());
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The JVM metrics of one interval, from this reading and the previous one (counters
/// become deltas; the first reading gives gauges only).
pub fn metrics(
    cur: &PerfData,
    prev: Option<&PerfData>,
    interval_ms: f64,
) -> crate::record::Metrics {
    let mut m = crate::record::Metrics::new();
    let mut put = |k: &str, v: Option<f64>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    let gen_sum = |d: &PerfData, what: &str| -> Option<i64> {
        Some(
            d.long(&format!("sun.gc.generation.0.{what}"))?
                + d.long(&format!("sun.gc.generation.1.{what}"))?,
        )
    };
    let heap_used = |d: &PerfData| -> Option<i64> {
        Some(
            d.sum_indexed("sun.gc.generation.0.space", "used")?
                + d.sum_indexed("sun.gc.generation.1.space", "used")?,
        )
    };
    let used = heap_used(cur);
    put("heap_used_bytes", used.map(|v| v as f64));
    put(
        "heap_committed_bytes",
        gen_sum(cur, "capacity").map(|v| v as f64),
    );
    // G1 ("GarbageFirst") gives each generation the whole heap as its maximum, since
    // its regions move between them: the heap's maximum is one of them, not the sum
    // (they differ by a few bytes of HotSpot's rounding; the smaller is kept).
    let g1 = cur
        .text("sun.gc.policy.name")
        .is_some_and(|p| p.contains("GarbageFirst") || p.contains("G1"));
    let max = match (
        cur.long("sun.gc.generation.0.maxCapacity"),
        cur.long("sun.gc.generation.1.maxCapacity"),
    ) {
        (Some(y), Some(o)) if g1 => Some(y.min(o)),
        (Some(y), Some(o)) => Some(y + o),
        _ => None,
    };
    put("heap_max_bytes", max.map(|v| v as f64));
    let old_used = cur.sum_indexed("sun.gc.generation.1.space", "used");
    let old_max = cur.long("sun.gc.generation.1.maxCapacity");
    put("old_used_bytes", old_used.map(|v| v as f64));
    put("old_max_bytes", old_max.map(|v| v as f64));
    if let (Some(u), Some(x)) = (old_used, old_max.filter(|&x| x > 0)) {
        put("old_used_ratio", Some(u as f64 / x as f64));
    }
    put(
        "metaspace_used_bytes",
        cur.long("sun.gc.metaspace.used").map(|v| v as f64),
    );
    put("threads", cur.long("java.threads.live").map(|v| v as f64));
    put(
        "threads_daemon",
        cur.long("java.threads.daemon").map(|v| v as f64),
    );
    put(
        "threads_peak",
        cur.long("java.threads.livePeak").map(|v| v as f64),
    );
    put(
        "classes_loaded",
        cur.long("java.cls.loadedClasses").map(|v| v as f64),
    );

    let Some(prev) = prev else { return m };
    let delta =
        |name: &str| -> Option<f64> { Some((cur.long(name)? - prev.long(name)?).max(0) as f64) };
    let delta_ms = |name: &str| -> Option<f64> { Some((cur.ms(name)? - prev.ms(name)?).max(0.0)) };
    // Collector 0 is the young (or only) collector, 1 the full/old one; G1 adds a 2 for
    // the remark and cleanup pauses of its concurrent cycle. All are pauses.
    put("gc_young_count", delta("sun.gc.collector.0.invocations"));
    put("gc_young_time_ms", delta_ms("sun.gc.collector.0.time"));
    put("gc_full_count", delta("sun.gc.collector.1.invocations"));
    put("gc_full_time_ms", delta_ms("sun.gc.collector.1.time"));
    let sum_delta = |suffix: &str, ms: bool| -> Option<f64> {
        let mut total = None;
        for i in 0.. {
            let name = format!("sun.gc.collector.{i}.{suffix}");
            if cur.long(&name).is_none() {
                break;
            }
            let v = if ms { delta_ms(&name) } else { delta(&name) };
            *total.get_or_insert(0.0) += v.unwrap_or(0.0);
        }
        total
    };
    put("gc_count", sum_delta("invocations", false));
    let gc_ms = sum_delta("time", true);
    put("gc_time_ms", gc_ms);
    if interval_ms > 0.0 {
        put("gc_time_ratio", gc_ms.map(|t| (t / interval_ms).min(1.0)));
    }
    put("safepoints", delta("sun.rt.safepoints"));
    put("safepoint_time_ms", delta_ms("sun.rt.safepointTime"));
    put("threads_started", delta("java.threads.started"));
    put("classes_unloaded", delta("java.cls.unloadedClasses"));
    put("jit_time_ms", delta_ms("java.ci.totalTime"));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/runtime/hsperfdata-g1-jdk17"
        ))
        .unwrap()
    }

    #[test]
    fn parses_the_captured_jdk17_file() {
        let d = parse(&fixture()).unwrap();
        assert_eq!(d.counters.len(), 187, "num_entries of the prologue");
        assert_eq!(d.text("java.property.java.version"), Some("17.0.15"));
        assert_eq!(
            d.text("sun.gc.collector.1.name"),
            Some("G1 full collection pauses")
        );
        assert_eq!(d.long("sun.os.hrt.frequency"), Some(1_000_000_000));
        // The program called System.gc() five times; G1 runs each as a full collection.
        assert_eq!(d.long("sun.gc.collector.1.invocations"), Some(5));
        assert!(d.long("java.threads.live").unwrap() >= 1);
        let m = metrics(&d, None, 1000.0);
        let used = m["heap_used_bytes"];
        assert!(used > 0.0 && used <= m["heap_committed_bytes"], "{m:?}");
        assert!(m["heap_committed_bytes"] <= m["heap_max_bytes"]);
        // G1: the heap's maximum, not twice it (HotSpot's two figures differ by bytes).
        assert!(
            (m["heap_max_bytes"] / m["old_max_bytes"] - 1.0).abs() < 1e-3,
            "{m:?}"
        );
        assert!(m["old_used_ratio"] > 0.0 && m["old_used_ratio"] < 1.0);
        assert!(
            !m.contains_key("gc_count"),
            "no delta without a previous reading"
        );
    }

    #[test]
    fn counters_become_deltas_between_readings() {
        let d = parse(&fixture()).unwrap();
        let mut later = d.clone();
        later.counters.insert(
            "sun.gc.collector.0.invocations".into(),
            Value::Long(d.long("sun.gc.collector.0.invocations").unwrap() + 3),
        );
        let t = d.long("sun.gc.collector.0.time").unwrap();
        later.counters.insert(
            "sun.gc.collector.0.time".into(),
            Value::Long(t + 250_000_000),
        );
        let m = metrics(&later, Some(&d), 1000.0);
        assert_eq!(m["gc_young_count"], 3.0);
        assert_eq!(m["gc_count"], 3.0);
        assert!((m["gc_time_ms"] - 250.0).abs() < 1e-9);
        assert!((m["gc_time_ratio"] - 0.25).abs() < 1e-9);
        assert_eq!(m["gc_full_count"], 0.0);
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        let f = fixture();
        assert_eq!(parse(&f[..10]).unwrap_err(), PerfDataError::Truncated(10));
        let mut bad = f.clone();
        bad[0] = 0;
        assert_eq!(parse(&bad).unwrap_err(), PerfDataError::BadMagic);
        let mut setup = f.clone();
        setup[7] = 0;
        assert_eq!(parse(&setup).unwrap_err(), PerfDataError::NotAccessible);
        // Cut anywhere: an error or a partial parse, never a panic.
        for cut in (0..f.len()).step_by(97) {
            let _ = parse(&f[..cut]);
        }
        let mut garbage = f.clone();
        for (i, b) in garbage.iter_mut().enumerate().skip(32) {
            *b = (i * 31 % 251) as u8;
        }
        let _ = parse(&garbage);
    }
}
