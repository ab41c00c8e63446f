//! SVG rendering with inferno: title, count name and palette follow the kind of stacks.

use std::io::{self, Write};
use std::str::FromStr;

use inferno::flamegraph::{self, color::Palette, Direction};

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
        Some("offcpu") => "µs",
        _ => "samples",
    }
}

fn default_title(kind: Option<&str>, diff: bool) -> String {
    let what = match kind {
        Some("oncpu") => "On-CPU ",
        Some("offcpu") => "Off-CPU ",
        _ => "",
    };
    if diff {
        format!("Differential {what}Flame Graph")
    } else {
        format!("{what}Flame Graph")
    }
}

/// Writes the SVG of folded `lines` (`stack count`, or `stack base new` for a
/// differential graph). `group` names the process or container of a `--per` graph.
pub fn svg(
    lines: &str,
    kind: Option<&str>,
    group: Option<&str>,
    diff: bool,
    style: &Style,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut opt = flamegraph::Options::default();
    opt.title = style
        .title
        .clone()
        .unwrap_or_else(|| default_title(kind, diff));
    opt.subtitle = group.map(str::to_string);
    opt.count_name = count_name(kind).to_string();
    opt.colors = match style.colors.as_deref() {
        // The CLI only lets inferno's own names through.
        Some(name) => Palette::from_str(name).unwrap_or_default(),
        None if kind == Some("offcpu") => Palette::from_str("io").unwrap_or_default(),
        None => Palette::default(),
    };
    // Colours from the function name: the same function looks the same in every graph,
    // which is what makes per-process graphs comparable side by side.
    opt.hash = true;
    opt.image_width = Some(style.width);
    if style.inverted {
        opt.direction = Direction::Inverted;
    }
    flamegraph::from_lines(&mut opt, lines.lines(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_and_units_follow_the_kind() {
        assert_eq!(count_name(Some("offcpu")), "µs");
        assert_eq!(count_name(Some("oncpu")), "samples");
        assert_eq!(default_title(Some("offcpu"), false), "Off-CPU Flame Graph");
        assert_eq!(default_title(None, true), "Differential Flame Graph");
    }

    #[test]
    fn every_palette_name_parses() {
        for name in Palette::VARIANTS {
            assert!(Palette::from_str(name).is_ok(), "{name}");
        }
    }
}
