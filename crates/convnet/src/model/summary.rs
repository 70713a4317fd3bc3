//! `model.summary()`, byte for byte as Keras 3 prints it. Keras renders the table with
//! `rich`; this file reproduces the parts of rich that the summary uses: the column
//! widths (Keras's positions, then rich's padding and proportional shrinking), word
//! wrapping with `…` for words longer than a cell, and the heavy-headed box.

use super::graph::Model;
use crate::layers::format_shape;
use std::collections::BTreeMap;

#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

impl Model {
    /// Prints the summary to standard output.
    pub fn summary(&self) {
        print!("{}", self.summary_string());
    }

    /// The summary, for the width standard output has now: the terminal's, or 80
    /// columns when it is not a terminal (`COLUMNS` overrides both, as in Python).
    pub fn summary_string(&self) -> String {
        self.summary_for_columns(terminal_columns())
    }

    /// The summary as Keras prints it on a terminal `columns` wide.
    pub fn summary_for_columns(&self, columns: usize) -> String {
        self.summary_with_optimizer(columns, None)
    }

    /// The summary, with the `Optimizer params` line Keras adds for a compiled model
    /// whose optimizer has variables: their count and bytes, also counted in the total.
    pub(crate) fn summary_with_optimizer(
        &self,
        columns: usize,
        optimizer: Option<(usize, usize)>,
    ) -> String {
        let sequential_like = self.is_sequential_like();
        let default_length = if sequential_like { 88 } else { 108 };
        let line_length = default_length.min(columns.saturating_sub(4)).max(20);
        let (headers, positions, align): (Vec<&str>, Vec<f64>, Vec<Align>) = if sequential_like {
            (
                vec!["Layer (type)", "Output Shape", "Param #"],
                vec![0.45, 0.80, 1.0],
                vec![Align::Left, Align::Left, Align::Right],
            )
        } else {
            (
                vec!["Layer (type)", "Output Shape", "Param #", "Connected to"],
                vec![0.3, 0.56, 0.74, 1.0],
                vec![Align::Left, Align::Left, Align::Right, Align::Left],
            )
        };
        let rows: Vec<Vec<String>> = self
            .layers()
            .map(|layer| self.summary_row(layer, sequential_like))
            .collect();
        let widths = column_widths(line_length, &positions);

        let mut out = format!("Model: \"{}\"\n", self.name);
        out += &render_table(&headers, &rows, &widths, &align);
        // Keras's byte counts: 4 per float32 value, 8 per int64 (Normalization's count).
        let bytes = |w: &crate::layers::Weight| w.value.len() * if w.integer { 8 } else { 4 };
        let count = |ws: Vec<&crate::layers::Weight>| -> (usize, usize) {
            (
                ws.iter().map(|w| w.value.len()).sum(),
                ws.iter().map(|w| bytes(w)).sum(),
            )
        };
        let trainable = count(self.trainable_weights().collect());
        let non_trainable = count(self.non_trainable_weights().collect());
        let (extra, extra_bytes) = optimizer.unwrap_or((0, 0));
        let total = (
            trainable.0 + non_trainable.0 + extra,
            trainable.1 + non_trainable.1 + extra_bytes,
        );
        let mut lines = vec![
            ("Total", total),
            ("Trainable", trainable),
            ("Non-trainable", non_trainable),
        ];
        if let Some(counts) = optimizer {
            lines.push(("Optimizer", counts));
        }
        for (label, (count, size)) in lines {
            out += &format!(
                " {label} params: {} ({})\n",
                thousands(count),
                readable_size(size)
            );
        }
        out
    }

    fn summary_row(&self, layer: &dyn crate::layers::Layer, sequential_like: bool) -> Vec<String> {
        let nodes: Vec<_> = self
            .nodes
            .iter()
            .filter(|n| self.layers[n.layer].name() == layer.name())
            .collect();
        let built = !nodes.is_empty();
        let shape = self
            .last_node_of(layer.name())
            .map_or("?".to_string(), |n| format_shape(&n.shape));
        let params: usize = layer.weights().iter().map(|w| w.value.len()).sum();
        let params = if built {
            thousands(params)
        } else {
            "0 (unbuilt)".to_string()
        };
        let mut row = vec![
            format!("{} ({})", layer.name(), layer.class_name()),
            shape,
            params,
        ];
        if !sequential_like {
            let mut by_call: Vec<_> = nodes.clone();
            by_call.sort_by_key(|n| n.call_index);
            let connections: Vec<String> = by_call
                .iter()
                .flat_map(|n| n.inputs.iter())
                .map(|&i| {
                    let producer = &self.nodes[i];
                    format!(
                        "{}[{}][0]",
                        self.layers[producer.layer].name(),
                        producer.call_index
                    )
                })
                .collect();
            row.push(if connections.is_empty() {
                "-".to_string()
            } else {
                connections.join(", ")
            });
        }
        row
    }

    /// Keras prints three columns for a chain of single-input layers each called once,
    /// and adds "Connected to" for anything else.
    fn is_sequential_like(&self) -> bool {
        if self.sequential {
            return true;
        }
        let mut per_depth: BTreeMap<usize, usize> = BTreeMap::new();
        let mut per_layer: BTreeMap<usize, usize> = BTreeMap::new();
        for n in &self.nodes {
            *per_depth.entry(n.depth).or_default() += 1;
            *per_layer.entry(n.layer).or_default() += 1;
            if n.inputs.len() > 1 {
                return false;
            }
        }
        per_depth.values().all(|&c| c == 1) && per_layer.values().all(|&c| c == 1)
    }
}

/// Columns of the terminal standard output goes to; 80 when it is not a terminal.
pub(crate) fn terminal_columns() -> usize {
    if let Some(c) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|&c| c > 0)
    {
        return c;
    }
    #[cfg(feature = "progress")]
    {
        use std::io::IsTerminal;
        let stdout = std::io::stdout();
        if stdout.is_terminal() {
            if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size_of(&stdout) {
                return w as usize;
            }
        }
    }
    80
}

/// Content widths of the columns: Keras splits `line_length` at `positions`; rich adds
/// one space of padding on each side, then shrinks the columns evenly (rounding half to
/// even, as Python does) until the table with its borders fits in `line_length`.
fn column_widths(line_length: usize, positions: &[f64]) -> Vec<usize> {
    let mut requested = Vec::new();
    let mut current = 0;
    for p in positions {
        let w = (p * line_length as f64) as usize - current;
        requested.push(w);
        current += w;
    }
    let available = line_length - (positions.len() + 1);
    let mut widths: Vec<usize> = requested.iter().map(|w| (w + 2).min(available)).collect();
    let total: usize = widths.iter().sum();
    if total > available {
        let mut excess = (total - available) as f64;
        let mut ratio = widths.len() as f64;
        for w in widths.iter_mut() {
            let cut = ((excess / ratio).round_ties_even() as usize).min(*w);
            *w -= cut;
            excess -= cut as f64;
            ratio -= 1.0;
        }
    }
    widths.iter().map(|w| w.saturating_sub(2)).collect()
}

/// Breaks `text` into lines of at most `width` characters the way rich does: at spaces,
/// a word longer than a line on a line of its own, cut to `width − 1` characters and `…`.
fn wrap(text: &str, width: usize) -> Vec<String> {
    // Words with their trailing spaces, as rich's `\s*\S+\s*`.
    let mut words: Vec<(usize, &str)> = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let begin = i;
        while i < chars.len() && chars[i].1.is_whitespace() {
            i += 1;
        }
        while i < chars.len() && !chars[i].1.is_whitespace() {
            i += 1;
        }
        while i < chars.len() && chars[i].1.is_whitespace() {
            i += 1;
        }
        let end = chars.get(i).map_or(text.len(), |c| c.0);
        words.push((chars[begin].0, &text[chars[begin].0..end]));
    }
    let mut breaks = Vec::new();
    let mut offset = 0;
    for &(at, word) in &words {
        let length = word.trim_end().chars().count();
        if width.saturating_sub(offset) >= length && offset <= width {
            offset += word.chars().count();
        } else {
            if at > 0 {
                breaks.push(at);
            }
            offset = word.chars().count();
        }
    }
    let mut lines = Vec::new();
    let mut from = 0;
    for &b in breaks.iter().chain(std::iter::once(&text.len())) {
        let mut line = text[from..b].to_string();
        from = b;
        // rich drops trailing spaces that overflow the cell, then cuts with an ellipsis.
        let excess = line.chars().count().saturating_sub(width);
        let trailing = line.chars().count() - line.trim_end().chars().count();
        for _ in 0..excess.min(trailing) {
            line.pop();
        }
        if line.chars().count() > width {
            line = line
                .chars()
                .take(width.saturating_sub(1))
                .collect::<String>()
                + "…";
        }
        lines.push(line);
    }
    lines
}

/// One cell line padded to `width`, aligned as its column.
fn pad(line: &str, width: usize, align: Align) -> String {
    let line = if align == Align::Right {
        line.trim_end()
    } else {
        line
    };
    let fill = " ".repeat(width.saturating_sub(line.chars().count()));
    match align {
        Align::Left => format!("{line}{fill}"),
        Align::Right => format!("{fill}{line}"),
    }
}

/// rich's HEAVY_HEAD box with a line between rows.
fn render_table(
    headers: &[&str],
    rows: &[Vec<String>],
    widths: &[usize],
    align: &[Align],
) -> String {
    let rule = |left: &str, fill: &str, mid: &str, right: &str| {
        let parts: Vec<String> = widths.iter().map(|w| fill.repeat(w + 2)).collect();
        format!("{left}{}{right}\n", parts.join(mid))
    };
    let row_lines = |cells: &[String], edge: &str| {
        let wrapped: Vec<Vec<String>> =
            cells.iter().zip(widths).map(|(c, &w)| wrap(c, w)).collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        let mut out = String::new();
        for line in 0..height {
            let parts: Vec<String> = wrapped
                .iter()
                .zip(widths)
                .zip(align)
                .map(|((cell, &w), &a)| {
                    format!(" {} ", pad(cell.get(line).map_or("", String::as_str), w, a))
                })
                .collect();
            out += &format!("{edge}{}{edge}\n", parts.join(edge));
        }
        out
    };
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = rule("┏", "━", "┳", "┓");
    out += &row_lines(&headers, "┃");
    out += &rule("┡", "━", "╇", "┩");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out += &rule("├", "─", "┼", "┤");
        }
        out += &row_lines(row, "│");
    }
    out += &rule("└", "─", "┴", "┘");
    out
}

/// 1234567 → "1,234,567".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Keras's `readable_memory_size`: bytes in B, KB, MB, … (powers of 1024), two decimals.
pub fn readable_size(bytes: usize) -> String {
    let mut size = bytes as f64;
    for unit in ["B", "KB", "MB", "GB", "TB"] {
        if size / 1024.0 < 1.0 {
            return format!("{size:.2} {unit}");
        }
        size /= 1024.0;
    }
    format!("{size:.2} PB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_keras_and_rich() {
        assert_eq!(column_widths(76, &[0.45, 0.80, 1.0]), vec![31, 22, 13]);
        assert_eq!(
            column_widths(76, &[0.3, 0.56, 0.74, 1.0]),
            vec![19, 17, 10, 17]
        );
    }

    #[test]
    fn wrapping_matches_rich() {
        assert_eq!(
            wrap("(None, 224, 224, 3)", 17),
            vec!["(None, 224, 224, ", "3)"]
        );
        assert_eq!(wrap("max_pooling2d[0][0]", 17), vec!["max_pooling2d[0]…"]);
        assert_eq!(
            wrap("batch_normalization_1[0][0], conv2d_2[0][0]", 17),
            vec!["batch_normalizat…", "conv2d_2[0][0]"]
        );
        assert_eq!(
            wrap("batch_normalization_1 (BatchNormalization)", 19),
            vec!["batch_normalizatio…", "(BatchNormalizatio…"]
        );
        assert_eq!(wrap("-", 17), vec!["-"]);
    }

    #[test]
    fn numbers_read_as_in_keras() {
        assert_eq!(thousands(6912), "6,912");
        assert_eq!(thousands(34826), "34,826");
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(readable_size(34826 * 4), "136.04 KB");
        assert_eq!(readable_size(0), "0.00 B");
        assert_eq!(readable_size(448), "448.00 B");
    }
}
