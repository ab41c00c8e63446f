//! SVG rendering with inferno: title, count name and palette follow the kind of stacks.

use std::io::{self, Write};
use std::str::FromStr;

use inferno::flamegraph::color::{Color, Palette, PaletteMap};
use inferno::flamegraph::{self, Direction};

/// How the graphs look, apart from what the kind decides.
#[derive(Debug, Clone)]
pub struct Style {
    /// Default: from the kind (On-CPU, Off-CPU…).
    pub title: Option<String>,
    /// Default 1200 pixels.
    pub width: usize,
    /// One of inferno's palette names. Default: hot on-CPU, io off-CPU.
    pub colors: Option<String>,
    /// Icicle graph. Default off.
    pub inverted: bool,
}

impl Default for Style {
    fn default() -> Style {
        Style {
            title: None,
            width: 1200,
            colors: None,
            inverted: false,
        }
    }
}

/// What the counts of a kind are.
pub fn count_name(kind: Option<&str>) -> &'static str {
    match kind {
        Some("offcpu" | "io_wait") => "µs",
        Some("io_bytes") => "bytes",
        Some("page_faults") => "faults",
        _ => "samples",
    }
}

fn default_title(kind: Option<&str>, diff: bool) -> String {
    let what = match kind {
        Some("oncpu") => "On-CPU ",
        Some("offcpu") => "Off-CPU ",
        Some("io_bytes") => "I/O Bytes ",
        Some("io_wait") => "I/O Wait ",
        Some("page_faults") => "Page Fault ",
        _ => "",
    };
    if diff {
        format!("Differential {what}Flame Graph")
    } else {
        format!("{what}Flame Graph")
    }
}

/// Writes the SVG of folded `lines` (`stack count`, or `stack base new` for a
/// differential graph). `subtitle` names the process or container of a `--per` graph and
/// the windows of a graph split at an onset.
pub fn svg(
    lines: &str,
    kind: Option<&str>,
    subtitle: Option<&str>,
    diff: bool,
    style: &Style,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut opt = flamegraph::Options::default();
    opt.title = style
        .title
        .clone()
        .unwrap_or_else(|| default_title(kind, diff));
    opt.subtitle = subtitle.map(str::to_string);
    opt.count_name = count_name(kind).to_string();
    // Time blocked and file I/O take flamegraph.pl's blue io palette.
    let offcpu = matches!(kind, Some("offcpu" | "io_bytes" | "io_wait"));
    opt.colors = match style.colors.as_deref() {
        // The CLI only lets inferno's own names through.
        Some(name) => Palette::from_str(name).unwrap_or_default(),
        None if offcpu => Palette::from_str("io").unwrap_or_default(),
        None if kind == Some("page_faults") => Palette::from_str("mem").unwrap_or_default(),
        None => Palette::default(),
    };
    let mut kernel = (style.colors.is_none() && !diff).then(|| kernel_colors(lines, offcpu));
    opt.palette_map = kernel.as_mut();
    // Colours from the function name: the same function looks the same in every graph,
    // which is what makes per-process graphs comparable side by side.
    opt.hash = true;
    opt.image_width = Some(style.width);
    if style.inverted {
        opt.direction = Direction::Inverted;
    }
    flamegraph::from_lines(&mut opt, lines.lines(), out)
}

/// inferno's basic palettes colour `_[k]` frames like any other and its titles drop the
/// suffix, so the border between user and kernel code would not show. Kernel frames get a
/// hue of their own: sand beside the hot palette's reds and yellows (whose blue stays under
/// 56), aqua beside the io palette's blues (whose green stays under 141).
fn kernel_colors(lines: &str, offcpu: bool) -> PaletteMap {
    let mut map = PaletteMap::default();
    for line in lines.lines() {
        let stack = line.rsplit_once(' ').map_or(line, |(s, _)| s);
        for frame in stack.split(';').filter(|f| f.ends_with("_[k]")) {
            if map.get(frame).is_none() {
                map.insert(frame, kernel_color(frame, offcpu));
            }
        }
    }
    map
}

fn kernel_color(name: &str, offcpu: bool) -> Color {
    // FNV-1a: stable across runs and machines, so a function keeps its colour.
    let hash = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    let v = (hash % 1024) as f32 / 1023.0;
    let t = |base: u8, span: f32| base + (span * v) as u8;
    if offcpu {
        Color {
            r: t(50, 60.0),
            g: t(170, 50.0),
            b: t(170, 50.0),
        }
    } else {
        Color {
            r: t(215, 35.0),
            g: t(150, 40.0),
            b: t(90, 35.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_and_units_follow_the_kind() {
        assert_eq!(count_name(Some("offcpu")), "µs");
        assert_eq!(count_name(Some("oncpu")), "samples");
        assert_eq!(default_title(Some("offcpu"), false), "Off-CPU Flame Graph");
        assert_eq!(count_name(Some("io_bytes")), "bytes");
        assert_eq!(count_name(Some("io_wait")), "µs");
        assert_eq!(count_name(Some("page_faults")), "faults");
        assert_eq!(
            default_title(Some("io_bytes"), false),
            "I/O Bytes Flame Graph"
        );
        assert_eq!(
            default_title(Some("io_wait"), false),
            "I/O Wait Flame Graph"
        );
        assert_eq!(default_title(None, true), "Differential Flame Graph");
    }

    #[test]
    fn kernel_frames_get_their_own_colour() {
        let map = kernel_colors("app;main;read;ksys_read_[k];vfs_read_[k] 3\n", false);
        assert_eq!(map.iter().count(), 2);
        let c = map.get("vfs_read_[k]").unwrap();
        assert!(c.b >= 90, "{c:?}");
        let c = kernel_color("vfs_read_[k]", true);
        assert!(c.g >= 170, "{c:?}");
    }

    #[test]
    fn every_palette_name_parses() {
        for name in Palette::VARIANTS {
            assert!(Palette::from_str(name).is_ok(), "{name}");
        }
    }
}
