//! Aligned plain-text tables for the human output of `keys list` and `audit query`. Every cell is escaped
//! ([`untrusted::escape`]): cells hold text that came from the wire, and one row must stay one line.

use std::io::{self, Write};

use crate::untrusted;

/// Writes `header` and `rows` as left-aligned columns separated by two spaces; the last column is not padded.
pub fn write_table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    write_aligned(out, header, rows, true)
}

/// Like [`write_table`] without printing the header (more rows under a table already shown).
pub fn write_table_rows(
    out: &mut dyn Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> io::Result<()> {
    write_aligned(out, header, rows, false)
}

fn write_aligned(
    out: &mut dyn Write,
    header: &[&str],
    rows: &[Vec<String>],
    with_header: bool,
) -> io::Result<()> {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| untrusted::escape(cell).into_owned())
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let header = with_header.then_some(&header);
    for row in header.into_iter().chain(&rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                writeln!(out, "{cell}")?;
            } else {
                write!(out, "{cell:width$}  ")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut out = Vec::new();
        let rows = vec![vec!["1".into(), "long value".into(), "x".into()]];
        write_table(&mut out, &["ID", "V", "LAST"], &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID  V           LAST\n1   long value  x\n"
        );
    }

    #[test]
    fn a_cell_with_a_newline_or_an_escape_sequence_stays_on_its_row() {
        let mut out = Vec::new();
        let rows = vec![vec!["a\nb".into(), "\u{1b}[31mred".into()]];
        write_table(&mut out, &["A", "B"], &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A        B\na\\u{a}b  \\u{1b}[31mred\n"
        );
    }
}
