//! SVG badges in the shields.io flat style: a grey label, a coloured message.
//!
//! Widths come from a per-character estimate of Verdana 11px (what shields.io draws
//! with), so no font is needed on the server; the text is XML-escaped.

use std::fmt::Write as _;

/// What a badge's message says about the verdict, and so its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Every stage passed.
    Pass,
    /// A stage failed or could not run.
    Fail,
    /// Building, or stages still missing.
    Pending,
    /// Nothing to say (no release, unknown stage).
    Unknown,
}

impl Tone {
    fn colour(self) -> &'static str {
        match self {
            Self::Pass => "#2e7d32",
            Self::Fail => "#c62828",
            Self::Pending => "#a15c00",
            Self::Unknown => "#616161",
        }
    }
}

/// Approximate advance of `c` in Verdana 11px, in tenths of a pixel.
fn advance(c: char) -> u32 {
    match c {
        'i' | 'l' | 'j' | '.' | ',' | ':' | ';' | '\'' | '!' | '|' => 34,
        'f' | 't' | 'r' | 'I' | ' ' | '(' | ')' | '[' | ']' | '-' => 45,
        'm' | 'w' | 'M' | 'W' => 100,
        'A'..='Z' | '%' | '#' | '@' | '&' => 78,
        _ => 68,
    }
}

fn text_width(text: &str) -> u32 {
    text.chars().map(advance).sum::<u32>().div_ceil(10)
}

/// `text` escaped for XML, without control characters (which XML 1.0 does not allow).
fn escape(text: &str) -> String {
    let printable: String = text.chars().filter(|c| !c.is_control()).collect();
    super::escape_html(&printable)
}

/// The badge's SVG document.
#[must_use]
pub fn render(label: &str, message: &str, tone: Tone) -> String {
    let label_w = text_width(label) + 10;
    let message_w = text_width(message) + 10;
    let width = label_w + message_w;
    let (label, message) = (escape(label), escape(message));
    let colour = tone.colour();
    let mut svg = String::with_capacity(900);
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"20\" role=\"img\" aria-label=\"{label}: {message}\">\
<title>{label}: {message}</title>\
<linearGradient id=\"s\" x2=\"0\" y2=\"100%\"><stop offset=\"0\" stop-color=\"#bbb\" stop-opacity=\".1\"/><stop offset=\"1\" stop-opacity=\".1\"/></linearGradient>\
<clipPath id=\"r\"><rect width=\"{width}\" height=\"20\" rx=\"3\" fill=\"#fff\"/></clipPath>\
<g clip-path=\"url(#r)\"><rect width=\"{label_w}\" height=\"20\" fill=\"#555\"/><rect x=\"{label_w}\" width=\"{message_w}\" height=\"20\" fill=\"{colour}\"/><rect width=\"{width}\" height=\"20\" fill=\"url(#s)\"/></g>\
<g fill=\"#fff\" text-anchor=\"middle\" font-family=\"Verdana,Geneva,DejaVu Sans,sans-serif\" font-size=\"11\">\
<text x=\"{lx}\" y=\"14\">{label}</text><text x=\"{mx}\" y=\"14\">{message}</text></g></svg>",
        lx = label_w / 2,
        mx = label_w + message_w / 2,
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_badge_is_well_formed_xml_with_its_text_escaped() {
        let svg = render("acme <util>", "1.0 & \"pass\"", Tone::Pass);
        let mut reader = quick_xml::Reader::from_str(&svg);
        let mut texts = Vec::new();
        loop {
            match reader.read_event().expect("well-formed SVG") {
                quick_xml::events::Event::Text(t) => {
                    texts.push(t.decode().expect("text").into_owned());
                }
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        assert!(texts.iter().any(|t| t.contains("acme")), "{texts:?}");
        assert!(svg.contains("acme &lt;util&gt;"), "{svg}");
        assert!(svg.contains("#2e7d32"));
    }

    #[test]
    fn wider_text_makes_a_wider_badge() {
        let short = render("a", "pass", Tone::Pass);
        let long = render("a-much-longer-project-name", "pass", Tone::Pass);
        let width = |svg: &str| -> u32 {
            let at = svg.find("width=\"").expect("a width") + 7;
            svg[at..].split('"').next().unwrap().parse().unwrap()
        };
        assert!(width(&long) > width(&short) + 100);
    }
}
