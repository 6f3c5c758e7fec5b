//! Log tails with their ANSI colours, as HTML: each line a `<span class="line">`, SGR
//! colours and bold as classes, every other escape sequence dropped, all text escaped.
//!
//! A stage's output is untrusted: nothing in it reaches the page unescaped, and an
//! unterminated or unknown escape sequence is dropped, never shown raw or interpreted.

use std::fmt::Write as _;

/// The SGR state of the text being written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Style {
    /// Foreground colour class index: 0-7 normal, 8-15 bright.
    fg: Option<u8>,
    /// Background colour, the same way.
    bg: Option<u8>,
    bold: bool,
}

impl Style {
    fn classes(self) -> String {
        let mut classes = Vec::new();
        if let Some(fg) = self.fg {
            classes.push(format!("fg{fg}"));
        }
        if let Some(bg) = self.bg {
            classes.push(format!("bg{bg}"));
        }
        if self.bold {
            classes.push("b".to_owned());
        }
        classes.join(" ")
    }

    /// Applies one SGR sequence's parameters (`1;31` …).
    fn apply(&mut self, params: &str) {
        let mut codes = params.split(';').map(|p| {
            if p.is_empty() {
                Some(0)
            } else {
                p.parse::<u16>().ok()
            }
        });
        while let Some(code) = codes.next() {
            match code {
                Some(0) | None => *self = Self::default(),
                Some(1) => self.bold = true,
                Some(22) => self.bold = false,
                Some(c @ 30..=37) => self.fg = Some(narrow(c - 30)),
                Some(39) => self.fg = None,
                Some(c @ 40..=47) => self.bg = Some(narrow(c - 40)),
                Some(49) => self.bg = None,
                Some(c @ 90..=97) => self.fg = Some(narrow(c - 90 + 8)),
                Some(c @ 100..=107) => self.bg = Some(narrow(c - 100 + 8)),
                // 256-colour and true-colour forms: skip their arguments.
                Some(38 | 48) => match codes.next() {
                    Some(Some(5)) => {
                        codes.next();
                    }
                    Some(Some(2)) => {
                        codes.next();
                        codes.next();
                        codes.next();
                    }
                    _ => {}
                },
                Some(_) => {}
            }
        }
    }
}

fn narrow(code: u16) -> u8 {
    u8::try_from(code).unwrap_or(0)
}

/// Writes `text` HTML-escaped.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Other control characters (a bell, a backspace) are not shown.
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
}

/// `text` with every escape sequence and control character removed (for one-line
/// summaries, which are escaped where they are shown).
#[must_use]
pub fn plain(text: &str) -> String {
    let html = to_html(text);
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim_end_matches('\n')
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The log as HTML lines (see the module docs); a carriage return keeps only what
/// followed it on that line, as a terminal shows a progress bar's last state.
#[must_use]
pub fn to_html(log: &str) -> String {
    let mut out = String::with_capacity(log.len() + log.len() / 4);
    let mut style = Style::default();
    for line in log.split('\n') {
        let line = line
            .rsplit('\r')
            .find(|part| !part.is_empty())
            .unwrap_or("");
        out.push_str("<span class=\"line\">");
        let mut open = false;
        let mut rest = line;
        let start_span = |out: &mut String, style: Style, open: &mut bool| {
            if *open {
                out.push_str("</span>");
                *open = false;
            }
            let classes = style.classes();
            if !classes.is_empty() {
                let _ = write!(out, "<span class=\"{classes}\">");
                *open = true;
            }
        };
        start_span(&mut out, style, &mut open);
        while let Some(at) = rest.find('\u{1b}') {
            escape_into(&mut out, &rest[..at]);
            let after = &rest[at + 1..];
            if let Some(csi) = after.strip_prefix('[') {
                // CSI: parameter bytes, then one final byte in 0x40..=0x7e.
                match csi.find(|c: char| ('\u{40}'..='\u{7e}').contains(&c)) {
                    Some(end) => {
                        if csi[end..].starts_with('m') {
                            style.apply(&csi[..end]);
                            start_span(&mut out, style, &mut open);
                        }
                        rest = &csi[end + 1..];
                    }
                    None => rest = "",
                }
            } else if let Some(osc) = after.strip_prefix(']') {
                // OSC (e.g. a hyperlink): up to BEL or ST.
                rest = match (osc.find('\u{7}'), osc.find("\u{1b}\\")) {
                    (Some(bel), Some(st)) if st < bel => &osc[st + 2..],
                    (Some(bel), _) => &osc[bel + 1..],
                    (None, Some(st)) => &osc[st + 2..],
                    (None, None) => "",
                };
            } else {
                // Any other two-byte escape.
                let mut chars = after.chars();
                chars.next();
                rest = chars.as_str();
            }
        }
        escape_into(&mut out, rest);
        if open {
            out.push_str("</span>");
        }
        out.push_str("</span>\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{plain, to_html};

    #[test]
    fn colours_become_classes_and_text_is_escaped() {
        let html = to_html("\u{1b}[1;31mFAILED\u{1b}[0m test_a <b>&");
        assert_eq!(
            html,
            "<span class=\"line\"><span class=\"fg1 b\">FAILED</span> test_a &lt;b&gt;&amp;</span>\n"
        );
    }

    #[test]
    fn a_style_carries_over_lines_until_reset() {
        let html = to_html("\u{1b}[32mok\nstill green\u{1b}[39m plain");
        assert!(html.contains("<span class=\"line\"><span class=\"fg2\">ok</span></span>"));
        assert!(
            html.contains(
                "<span class=\"line\"><span class=\"fg2\">still green</span> plain</span>"
            )
        );
    }

    #[test]
    fn unknown_unterminated_and_osc_sequences_are_dropped() {
        assert_eq!(
            to_html("a\u{1b}[2Kb\u{1b}]8;;http://x\u{7}link\u{1b}]8;;\u{7}c\u{1b}["),
            "<span class=\"line\">ablinkc</span>\n"
        );
        assert_eq!(
            to_html("x\u{1b}[38;5;196my\u{1b}[38;2;1;2;3mz\u{7}"),
            "<span class=\"line\">xyz</span>\n"
        );
    }

    #[test]
    fn plain_text_keeps_only_the_characters() {
        assert_eq!(plain("\u{1b}[31mE501\u{1b}[0m a <b> & c"), "E501 a <b> & c");
    }

    #[test]
    fn a_carriage_return_keeps_the_last_state_of_the_line() {
        assert_eq!(
            to_html("10%\r50%\r100%\r\n"),
            "<span class=\"line\">100%</span>\n<span class=\"line\"></span>\n"
        );
    }

    #[test]
    fn hostile_input_never_panics_and_never_leaks_markup() {
        for input in [
            "\u{1b}",
            "\u{1b}[",
            "\u{1b}[999999999999999m<script>",
            "\u{1b}]",
            "\u{1b}]\u{1b}",
            "é\u{1b}é",
            "\u{1b}[;;;m'\"",
        ] {
            let html = to_html(input);
            assert!(!html.contains("<script"), "{html}");
            assert!(!html.contains('\u{1b}'), "{html}");
        }
    }
}
