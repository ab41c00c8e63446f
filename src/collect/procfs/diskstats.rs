//! /proc/diskstats and the iostat arithmetic gala-gopher's disk metrics use.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCounters {
    pub reads: u64,
    pub read_sectors: u64,
    /// ms spent on reads (summed over requests).
    pub read_ms: u64,
    pub writes: u64,
    pub write_sectors: u64,
    pub write_ms: u64,
    /// ms during which the device had I/O in flight.
    pub io_ms: u64,
    /// Weighted ms: in-flight requests × time (for the average queue size).
    pub weighted_ms: u64,
}

impl DiskCounters {
    pub fn as_array(&self) -> [u64; 8] {
        [
            self.reads,
            self.read_sectors,
            self.read_ms,
            self.writes,
            self.write_sectors,
            self.write_ms,
            self.io_ms,
            self.weighted_ms,
        ]
    }

    pub fn from_array(a: [u64; 8]) -> DiskCounters {
        DiskCounters {
            reads: a[0],
            read_sectors: a[1],
            read_ms: a[2],
            writes: a[3],
            write_sectors: a[4],
            write_ms: a[5],
            io_ms: a[6],
            weighted_ms: a[7],
        }
    }
}

/// (major, minor, name, counters) per line.
pub fn parse_diskstats(text: &str) -> Vec<(u32, u32, String, DiskCounters)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 14 {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        let (Ok(major), Ok(minor)) = (f[0].parse(), f[1].parse()) else {
            continue;
        };
        out.push((
            major,
            minor,
            f[2].to_string(),
            DiskCounters {
                reads: n(3),
                read_sectors: n(5),
                read_ms: n(6),
                writes: n(7),
                write_sectors: n(9),
                write_ms: n(10),
                io_ms: n(12),
                weighted_ms: n(13),
            },
        ));
    }
    out
}

/// gala-gopher's disk metrics over one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiskRates {
    /// Read and write requests completed per second.
    pub rspeed: f64,
    pub wspeed: f64,
    /// KiB read and written per second.
    pub rspeed_kb: f64,
    pub wspeed_kb: f64,
    /// Mean time a read / write request took, queueing included (ms).
    pub r_await: f64,
    pub w_await: f64,
    /// Mean request size (KiB).
    pub rareq_kb: f64,
    pub wareq_kb: f64,
    /// Mean number of requests in flight.
    pub aqu: f64,
    /// Share of the interval the device was busy (%).
    pub util: f64,
}

/// How much each counter grew from `prev` to `cur` (0 for one that went backwards).
pub fn delta(prev: &DiskCounters, cur: &DiskCounters) -> DiskCounters {
    let mut d = [0u64; 8];
    for ((o, a), b) in d.iter_mut().zip(prev.as_array()).zip(cur.as_array()) {
        *o = b.saturating_sub(a);
    }
    DiskCounters::from_array(d)
}

/// iostat's arithmetic over the counters' growth `d` during `secs`. A device with no I/O
/// gets zeros, never NaN.
pub fn rates(d: &DiskCounters, secs: f64) -> DiskRates {
    let per_req = |total: u64, n: u64| if n == 0 { 0.0 } else { total as f64 / n as f64 };
    let per_sec = |v: f64| if secs > 0.0 { v / secs } else { 0.0 };
    let ms = secs * 1000.0;
    DiskRates {
        rspeed: per_sec(d.reads as f64),
        wspeed: per_sec(d.writes as f64),
        rspeed_kb: per_sec(d.read_sectors as f64 / 2.0),
        wspeed_kb: per_sec(d.write_sectors as f64 / 2.0),
        r_await: per_req(d.read_ms, d.reads),
        w_await: per_req(d.write_ms, d.writes),
        rareq_kb: per_req(d.read_sectors, d.reads) / 2.0,
        wareq_kb: per_req(d.write_sectors, d.writes) / 2.0,
        aqu: if ms > 0.0 {
            d.weighted_ms as f64 / ms
        } else {
            0.0
        },
        util: if ms > 0.0 {
            (100.0 * d.io_ms as f64 / ms).min(100.0)
        } else {
            0.0
        },
    }
}
