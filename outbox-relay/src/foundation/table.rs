//! Text tables for a terminal. Every table the command line prints goes through [`Table`]:
//! each column is as wide as its widest value up to a limit of its own, and a longer value
//! is cut with an ellipsis ([`truncate`]), so a long key or error message cannot push the
//! other columns out of line. Widths count characters, and a value is never cut inside one
//! (keys and messages may be any Unicode text).

use std::borrow::Cow;
use std::fmt::Write as _;

/// What ends a value that was cut.
pub const ELLIPSIS: char = '…';

/// Between two columns.
const GAP: &str = "  ";

/// `text` with what would rewrite or reorder a terminal shown escaped instead: control
/// characters (a newline in an error message, an escape sequence) as `\n`, `\u{1b}`, and
/// the invisible format characters that reorder or hide text (bidirectional overrides such
/// as U+202E, zero-width spaces, the byte-order mark, soft hyphens; not the joiners that
/// emoji and scripts need) as
/// `\u{202e}`. For every value from the database that the command line prints.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if needs_escape(c) {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Control characters and the invisible format characters (Unicode category Cf) a terminal
/// would act on rather than show.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// `text` in at most `width` characters, on one line: a longer text keeps its first
/// `width - 1` characters and ends with [`ELLIPSIS`]; what [`printable`] escapes is escaped
/// before the text is measured.
pub fn truncate(text: &str, width: usize) -> Cow<'_, str> {
    let text = printable(text);
    if text.chars().count() <= width {
        return text;
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        cut.push(ELLIPSIS);
    }
    Cow::Owned(cut)
}

/// Which side of its column a value keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// One column: its header, the most characters a value shows, and its alignment.
#[derive(Debug, Clone)]
pub struct Column {
    header: &'static str,
    max: usize,
    align: Align,
}

impl Column {
    /// A left-aligned column (text) showing at most `max` characters of a value.
    pub fn left(header: &'static str, max: usize) -> Self {
        Self {
            header,
            max,
            align: Align::Left,
        }
    }

    /// A right-aligned column (numbers) showing at most `max` characters of a value.
    pub fn right(header: &'static str, max: usize) -> Self {
        Self {
            header,
            max,
            align: Align::Right,
        }
    }
}

/// A table: a header line, then one line per row.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table of these columns, without rows yet.
    pub fn new(columns: impl IntoIterator<Item = Column>) -> Self {
        Self {
            columns: columns.into_iter().collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row: one value per column, in order (missing values are empty, extra ones
    /// ignored).
    pub fn row<S: Into<String>>(&mut self, values: impl IntoIterator<Item = S>) {
        let mut row: Vec<String> = values
            .into_iter()
            .take(self.columns.len())
            .map(Into::into)
            .collect();
        row.resize(self.columns.len(), String::new());
        self.rows.push(row);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header line and the rows, each line ending with a newline and no trailing
    /// spaces.
    pub fn render(&self) -> String {
        let cells: Vec<Vec<Cow<'_, str>>> = std::iter::once(
            self.columns
                .iter()
                .map(|column| truncate(column.header, column.max))
                .collect(),
        )
        .chain(self.rows.iter().map(|row| {
            row.iter()
                .zip(&self.columns)
                .map(|(value, column)| truncate(value, column.max))
                .collect()
        }))
        .collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|at| {
                cells
                    .iter()
                    .filter_map(|line| line.get(at))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for line in &cells {
            let mut text = String::new();
            for ((cell, column), width) in line.iter().zip(&self.columns).zip(&widths) {
                if !text.is_empty() {
                    text.push_str(GAP);
                }
                let _ = match column.align {
                    Align::Left => write!(text, "{cell:<width$}"),
                    Align::Right => write!(text, "{cell:>width$}"),
                };
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_what_would_rewrite_or_reorder_a_terminal() {
        assert_eq!(printable("order:1"), "order:1");
        assert_eq!(printable("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(printable("x\u{202e}y\u{200b}z"), "x\\u{202e}y\\u{200b}z");
        assert_eq!(printable("ключ 注文 🎟"), "ключ 注文 🎟");
    }

    #[test]
    fn short_values_are_kept_and_long_ones_end_with_an_ellipsis() {
        assert_eq!(truncate("ticket:1", 10), "ticket:1");
        assert_eq!(truncate("0123456789", 10), "0123456789");
        assert_eq!(truncate("0123456789a", 10), "012345678…");
        assert_eq!(truncate("abc", 1), "…");
        assert_eq!(truncate("abc", 0), "");
        assert!(matches!(truncate("kept as it is", 20), Cow::Borrowed(_)));
    }

    #[test]
    fn non_ascii_text_is_cut_between_characters() {
        // Multi-byte characters: a byte-based cut would panic or split one.
        assert_eq!(truncate("ключ-заказа-42", 6), "ключ-…");
        assert_eq!(truncate("注文番号キー", 4), "注文番…");
        assert_eq!(truncate("👩‍💻👩‍💻👩‍💻", 3), "👩\u{200d}…");
        for width in 0..20 {
            let cut = truncate("é€𝄞aé€𝄞bé€𝄞c", width);
            assert!(cut.chars().count() <= width, "{width}: {cut}");
        }
    }

    #[test]
    fn control_characters_are_escaped_so_a_value_stays_on_one_line() {
        assert_eq!(truncate("line 1\nline 2", 40), "line 1\\nline 2");
        assert_eq!(truncate("\u{1b}[2Jwiped", 40), "\\u{1b}[2Jwiped");
        assert_eq!(truncate("a\tb\nc", 4), "a\\t…");
    }

    #[test]
    fn columns_stay_aligned_whatever_the_values() {
        let mut table = Table::new([
            Column::left("KEY", 12),
            Column::right("WAITING", 8),
            Column::left("LAST ERROR", 20),
        ]);
        table.row(["ticket:1", "3", "unroutable"]);
        table.row([
            "tenant-with-a-very-long-ordering-key",
            "12345",
            "no queue bound\nfor tickets.ticket_created",
        ]);
        table.row(["заказ:ключ", "0", ""]);
        let text = table.render();
        assert_eq!(
            text,
            "KEY           WAITING  LAST ERROR\n\
             ticket:1            3  unroutable\n\
             tenant-with…    12345  no queue bound\\nfor…\n\
             заказ:ключ          0\n"
        );
        assert!(!table.is_empty());
    }

    #[test]
    fn a_column_is_as_wide_as_its_widest_value_and_rows_are_padded() {
        let mut table = Table::new([Column::left("A", 10), Column::left("B", 10)]);
        table.row(["x"]);
        table.row(["x", "y", "ignored"]);
        assert_eq!(table.render(), "A  B\nx\nx  y\n");
        assert!(Table::new([Column::left("A", 3)]).is_empty());
    }
}
