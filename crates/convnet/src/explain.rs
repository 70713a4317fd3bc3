//! Convolution explained with the user's own numbers, as the design notes explain it:
//! the output-size formula with the numbers put in, the padded input, every output
//! element written out as its sum of products, and the output matrix.
//!
//! The sums are computed here term by term (the text is the computation); a test checks
//! them against the engine's Conv2D.

use crate::error::{Error, Result};
use crate::kernels::conv::{output_length, Padding};
use std::fmt::Write;

/// How the input is padded: Keras's `valid` and `same`, or `n` zeros on every side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExplainPadding {
    Valid,
    Same,
    Zeros(usize),
}

impl std::str::FromStr for ExplainPadding {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "valid" => Ok(ExplainPadding::Valid),
            "same" => Ok(ExplainPadding::Same),
            n => n.parse().map(ExplainPadding::Zeros).map_err(|_| {
                format!("padding must be valid, same or a number of zeros, not '{n}'")
            }),
        }
    }
}

/// A matrix written as rows separated by `;` and values by spaces or commas:
/// `"1 2 3; 4 5 6"`.
pub fn parse_matrix(text: &str, what: &str) -> Result<Vec<Vec<f64>>> {
    let rows: Vec<Vec<f64>> = text
        .split(';')
        .map(|row| {
            row.split(|c: char| c.is_whitespace() || c == ',')
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse::<f64>()
                        .map_err(|_| Error::Tensor(format!("{what}: '{v}' is not a number")))
                })
                .collect::<Result<Vec<f64>>>()
        })
        .collect::<Result<_>>()?;
    let rows: Vec<Vec<f64>> = rows.into_iter().filter(|r| !r.is_empty()).collect();
    let width = rows.first().map_or(0, Vec::len);
    if rows.is_empty() || width == 0 {
        return Err(Error::Tensor(format!(
            "{what} is empty: write rows separated by ';', e.g. \"1 2; 3 4\""
        )));
    }
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != width) {
        return Err(Error::Tensor(format!(
            "{what}: row {} has {} values but row 1 has {width}",
            i + 1,
            r.len()
        )));
    }
    Ok(rows)
}

/// A number as a person writes it: `6`, `-1`, `0.5`, `0.3333`.
fn number(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A factor in a product: negative numbers in parentheses, `2·(-1)`.
fn factor(v: f64) -> String {
    if v < 0.0 {
        format!("({})", number(v))
    } else {
        number(v)
    }
}

fn write_matrix(out: &mut String, title: &str, m: &[Vec<f64>]) {
    let cells: Vec<Vec<String>> = m
        .iter()
        .map(|r| r.iter().map(|&v| number(v)).collect())
        .collect();
    let width = cells.iter().flatten().map(String::len).max().unwrap_or(1);
    let _ = writeln!(
        out,
        "{title} ({}x{}):",
        m.len(),
        m.first().map_or(0, Vec::len)
    );
    for row in cells {
        let _ = writeln!(
            out,
            "  {}",
            row.iter()
                .map(|c| format!("{c:>width$}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

/// The whole explanation, and the output matrix.
pub fn explain_conv(
    input: &[Vec<f64>],
    kernel: &[Vec<f64>],
    stride: usize,
    padding: ExplainPadding,
    dilation: usize,
    flip: bool,
) -> Result<(String, Vec<Vec<f64>>)> {
    if stride == 0 || dilation == 0 {
        return Err(Error::Tensor(
            "stride and dilation must be at least 1".into(),
        ));
    }
    let (h, w) = (input.len(), input[0].len());
    let (kh, kw) = (kernel.len(), kernel[0].len());
    let kernel: Vec<Vec<f64>> = if flip {
        kernel
            .iter()
            .rev()
            .map(|r| r.iter().rev().copied().collect())
            .collect()
    } else {
        kernel.to_vec()
    };
    let (eh, ew) = ((kh - 1) * dilation + 1, (kw - 1) * dilation + 1);
    // (output, padding before, padding after) along each axis.
    let axis = |n: usize, k: usize, e: usize| -> Result<(usize, usize, usize)> {
        match padding {
            ExplainPadding::Valid => output_length(n, k, stride, dilation, Padding::Valid),
            ExplainPadding::Same => output_length(n, k, stride, dilation, Padding::Same),
            ExplainPadding::Zeros(p) => {
                (n + 2 * p >= e).then(|| ((n + 2 * p - e) / stride + 1, p, p))
            }
        }
        .ok_or_else(|| {
            Error::Tensor(format!(
                "the kernel (extent {e}) is larger than the padded input ({n} + padding)"
            ))
        })
    };
    let (oh, top, bottom) = axis(h, kh, eh)?;
    let (ow, left, right) = axis(w, kw, ew)?;

    let mut out = String::new();
    let pad_name = match padding {
        ExplainPadding::Valid => "valid (no padding)".to_string(),
        ExplainPadding::Same => "same".to_string(),
        ExplainPadding::Zeros(p) => {
            format!("{p} zero{} on each side", if p == 1 { "" } else { "s" })
        }
    };
    let _ = writeln!(out, "Convolution of a {h}x{w} input with a {kh}x{kw} kernel: stride {stride}, padding {pad_name}, dilation {dilation}\n");
    let _ = writeln!(
        out,
        "Output size = (input − kernel + 2·padding) / stride + 1  (rounded down)"
    );
    if dilation > 1 {
        let _ = writeln!(out, "  with dilation {dilation} the kernel spans (k − 1)·{dilation} + 1: {eh} rows, {ew} columns");
    }
    for (name, n, e, before, after, o) in [
        ("rows", h, eh, top, bottom, oh),
        ("columns", w, ew, left, right, ow),
    ] {
        let pad = if before == after {
            format!("2·{before}")
        } else {
            format!("{before} + {after}")
        };
        let _ = writeln!(out, "  {name:<8} ({n} − {e} + {pad}) / {stride} + 1 = {o}");
    }
    if padding == ExplainPadding::Same && (top != bottom || left != right) {
        let _ = writeln!(out, "  'same' pads {top} above, {bottom} below, {left} left, {right} right: the odd row or column goes at the bottom or right, as in TensorFlow");
    }
    let _ = writeln!(out);

    let padded: Vec<Vec<f64>> = (0..h + top + bottom)
        .map(|r| {
            (0..w + left + right)
                .map(|c| {
                    if r >= top && r < top + h && c >= left && c < left + w {
                        input[r - top][c - left]
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    write_matrix(&mut out, "Input", input);
    if top + bottom + left + right > 0 {
        write_matrix(&mut out, "Padded input", &padded);
    }
    write_matrix(
        &mut out,
        if flip {
            "Kernel, rotated 180°"
        } else {
            "Kernel"
        },
        &kernel,
    );
    let _ = writeln!(out);
    if flip {
        let _ = writeln!(out, "True convolution: the kernel is rotated 180° and then slid over the input,\nS(i,j) = Σm Σn I(m,n)·K(i−m, j−n).\n");
    } else {
        let _ = writeln!(out, "Deep-learning layers (Keras's Conv2D) compute cross-correlation: the kernel slides\nover the input as it is, S(i,j) = Σm Σn I(i·s+m, j·s+n)·K(m,n). (--flip shows true\nconvolution, which rotates the kernel 180° first.)\n");
    }

    let mut output = vec![vec![0.0; ow]; oh];
    for (i, row) in output.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            let mut terms = Vec::new();
            let mut sum = 0.0;
            for (m, krow) in kernel.iter().enumerate() {
                for (n, &k) in krow.iter().enumerate() {
                    let v = padded[i * stride + m * dilation][j * stride + n * dilation];
                    terms.push(format!("{}·{}", factor(v), factor(k)));
                    sum += v * k;
                }
            }
            *cell = sum;
            let _ = writeln!(out, "S({i},{j}) = {} = {}", terms.join(" + "), number(sum));
        }
    }
    let _ = writeln!(out);
    write_matrix(&mut out, "Output", &output);
    Ok((out, output))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worked_example_gives_six_everywhere() {
        let input = parse_matrix("1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16", "input").unwrap();
        let kernel = parse_matrix("-1 0 1; -1 0 1; -1 0 1", "kernel").unwrap();
        let (text, output) =
            explain_conv(&input, &kernel, 1, ExplainPadding::Valid, 1, false).unwrap();
        assert_eq!(output, vec![vec![6.0, 6.0], vec![6.0, 6.0]]);
        assert!(
            text.contains(
                "S(0,0) = 1·(-1) + 2·0 + 3·1 + 5·(-1) + 6·0 + 7·1 + 9·(-1) + 10·0 + 11·1 = 6"
            ),
            "{text}"
        );
        assert!(
            text.contains("rows     (4 − 3 + 2·0) / 1 + 1 = 2"),
            "{text}"
        );
        // True convolution flips the kernel: the edge detector then gives −6.
        let (_, flipped) =
            explain_conv(&input, &kernel, 1, ExplainPadding::Valid, 1, true).unwrap();
        assert_eq!(flipped, vec![vec![-6.0, -6.0], vec![-6.0, -6.0]]);
    }

    #[test]
    fn same_padding_is_shown_side_by_side() {
        let input = parse_matrix("1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16", "input").unwrap();
        let kernel = parse_matrix("1 1; 1 1", "kernel").unwrap();
        let (text, output) =
            explain_conv(&input, &kernel, 1, ExplainPadding::Same, 1, false).unwrap();
        assert_eq!(output.len(), 4);
        assert!(
            text.contains("(4 − 2 + 0 + 1) / 1 + 1 = 4")
                && text.contains("goes at the bottom or right"),
            "{text}"
        );
        assert_eq!(
            output[3][3], 16.0,
            "the bottom-right window holds 16 and three zeros"
        );
    }

    #[test]
    fn bad_matrices_name_the_problem() {
        assert!(parse_matrix("1 2; 3", "input")
            .unwrap_err()
            .to_string()
            .contains("row 2 has 1 values"));
        assert!(parse_matrix("1 x", "kernel")
            .unwrap_err()
            .to_string()
            .contains("'x' is not a number"));
        let big = parse_matrix("1 2 3; 4 5 6; 7 8 9", "kernel").unwrap();
        let small = parse_matrix("1 2; 3 4", "input").unwrap();
        assert!(
            explain_conv(&small, &big, 1, ExplainPadding::Valid, 1, false)
                .unwrap_err()
                .to_string()
                .contains("larger than")
        );
    }
}
