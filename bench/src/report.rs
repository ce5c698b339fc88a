//! One benchmark run's figures as a section of a Markdown file (BENCHMARKS.md), between an HTML
//! comment `begin` and `end` pair: a run with the same options replaces its section in place,
//! another run's section is appended.

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `section` (which starts with `begin` and ends with `end`, each on its own line) into
/// `path`: in place of the text from `begin` to `end` when the file has both, else appended (a
/// new file gets a `# Benchmarks` title first).
pub fn write_section(path: &Path, begin: &str, end: &str, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = replace_section(&old, begin, end, section);
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

fn replace_section(old: &str, begin: &str, end: &str, section: &str) -> String {
    match (old.find(begin), old.find(end)) {
        (Some(b), Some(e)) if e > b => format!(
            "{}{}{}",
            &old[..b],
            section,
            old[e + end.len()..].trim_start_matches('\n')
        ),
        _ if old.is_empty() => format!("# Benchmarks\n\n{section}"),
        _ => format!("{}\n\n{section}", old.trim_end_matches('\n')),
    }
}

#[cfg(test)]
mod tests {
    use super::replace_section;

    const B: &str = "<!-- x:begin -->";
    const E: &str = "<!-- x:end -->";

    #[test]
    fn a_section_is_replaced_in_place_or_appended() {
        let sec = format!("{B}\nnew\n{E}\n");
        assert_eq!(
            replace_section("", B, E, &sec),
            format!("# Benchmarks\n\n{sec}")
        );
        let old = format!("# Benchmarks\n\n{B}\nold\n{E}\n\nafter\n");
        assert_eq!(
            replace_section(&old, B, E, &sec),
            format!("# Benchmarks\n\n{sec}after\n")
        );
        assert_eq!(
            replace_section("# Benchmarks\n\nother\n", B, E, &sec),
            format!("# Benchmarks\n\nother\n\n{sec}")
        );
    }
}
