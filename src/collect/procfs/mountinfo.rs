//! /proc/self/mountinfo: which file systems are mounted where.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub major: u32,
    pub minor: u32,
    /// Root of the mount inside its file system (`/` unless a bind mount of a subtree).
    pub root: String,
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
    /// Per-superblock options (for cgroup v1: the controllers of the hierarchy).
    pub super_opts: String,
}

/// One mount per line; the optional fields end at ` - `.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 2 {
            continue;
        }
        let Some((major, minor)) = l[2].split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        out.push(Mount {
            major,
            minor,
            root: unescape(l[3]),
            mount_point: unescape(l[4]),
            fstype: r[0].to_string(),
            source: unescape(r[1]),
            super_opts: r.get(2).unwrap_or(&"").to_string(),
        });
    }
    out
}

/// The kernel writes space, tab, newline and backslash in paths as `\ooo` octal.
pub fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v.min(255) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
