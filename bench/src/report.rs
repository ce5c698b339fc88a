//! One benchmark run's figures as a section of a Markdown file (BENCHMARKS.md), between an HTML
//! comment `begin` and `end` pair: a run with the same options replaces its section in place,
//! another run's section is appended.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

/// A `webhooks-bench` section being written: its markers carry `key` (the options that make a run
/// comparable), and it opens with the title, the command line and the date. Write the figures
/// into [`text`](Self::text), then [`write_to`](Self::write_to) the file.
#[derive(Debug)]
pub struct Section {
    begin: String,
    end: String,
    /// The section's body so far (markers excluded).
    pub text: String,
}

impl Section {
    pub fn new(key: &str, command: &str) -> Self {
        let mut text = String::new();
        let _ = writeln!(text, "### `{key}`\n");
        let _ = writeln!(text, "- command: `{command}`");
        let _ = writeln!(
            text,
            "- date: {}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        Self {
            begin: format!("<!-- webhooks-bench:begin {key} -->"),
            end: format!("<!-- webhooks-bench:end {key} -->"),
            text,
        }
    }

    /// Writes the section into `path` (see [`write_section`]).
    pub fn write_to(self, path: &Path) -> Result<()> {
        let text = self.text.trim_end_matches('\n');
        let section = format!("{}\n{text}\n{}\n", self.begin, self.end);
        write_section(path, &self.begin, &self.end, &section)
    }
}

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
    use super::{Section, replace_section};

    #[test]
    fn a_section_opens_with_its_key_command_and_date_and_a_rerun_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("BENCHMARKS.md");
        std::fs::write(&path, "# Benchmarks\n\nintro\n").unwrap();
        for figure in ["first", "second"] {
            let mut s = Section::new("--scenario one", "cargo run -- --scenario one");
            s.text.push_str(&format!("\n| {figure} |\n"));
            s.write_to(&path).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Benchmarks\n\nintro\n\n<!-- webhooks-bench:begin --scenario one -->\n### `--scenario one`\n\n- command: `cargo run -- --scenario one`\n- date: "), "{text}");
        assert!(
            text.ends_with("\n| second |\n<!-- webhooks-bench:end --scenario one -->\n"),
            "{text}"
        );
        assert!(!text.contains("first"), "{text}");
    }

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
