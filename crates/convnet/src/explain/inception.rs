//! The design notes' Inception block, counted: parallel KxK Conv2D branches with 'same'
//! padding concatenated on depth. The block is built as a model, so the shapes are
//! shape inference's, the parameters `count_params()` and the cost the engine's count.

use crate::activations::ActivationFn;
use crate::error::{Error, Result};
use crate::kernels::conv::output_length;
use crate::kernels::Padding;
use crate::layers::{format_shape, Concatenate, Conv2D};
use crate::model::{thousands, Call, Input, Model};
#[cfg(feature = "plots")]
use crate::train::plot::draw_picture;
#[cfg(feature = "plots")]
use plotters::prelude::*;
use std::fmt::Write;
#[cfg(feature = "plots")]
use std::path::Path;

/// Branches of `filters[i]` filters of `kernels[i]`x`kernels[i]` on an H,W,C input.
#[derive(Clone, Debug, PartialEq)]
pub struct InceptionBlock {
    /// The input's (height, width, channels), without the batch axis.
    pub input: [usize; 3],
    /// Each branch's number of filters (Keras's Conv2D `filters`), one per branch.
    pub filters: Vec<usize>,
    /// Each branch's square kernel side (Keras's Conv2D `kernel_size`), one per branch.
    pub kernels: Vec<usize>,
}

impl InceptionBlock {
    /// The notes' example: 1x1, 3x3 and 5x5 branches of 64 filters on 224x224x3.
    pub fn design_notes() -> Self {
        InceptionBlock {
            input: [224, 224, 3],
            filters: vec![64, 64, 64],
            kernels: vec![1, 3, 5],
        }
    }

    fn check(&self) -> Result<()> {
        if self.filters.len() != self.kernels.len() || self.filters.is_empty() {
            return Err(Error::invalid(
                "--filters",
                format!(
                    "--filters has {} values and --kernels {}: give one of each per branch",
                    self.filters.len(),
                    self.kernels.len()
                ),
            ));
        }
        if self.input.contains(&0) || self.filters.contains(&0) || self.kernels.contains(&0) {
            return Err(Error::invalid(
                "sizes",
                "sizes, filters and kernels must be at least 1",
            ));
        }
        Ok(())
    }

    /// The block as a model: the branches' Conv2D (ReLU, 'same') then Concatenate, as
    /// the built-in `seed-inception` builds it.
    pub fn model(&self) -> Result<Model> {
        self.check()?;
        let x = Input::new(self.input);
        let branches: Vec<_> = self
            .filters
            .iter()
            .zip(&self.kernels)
            .map(|(&f, &k)| {
                Conv2D::new(f, (k, k))
                    .padding(Padding::Same)
                    .activation(ActivationFn::Relu)
                    .call(&x)
            })
            .collect();
        let y = if branches.len() == 1 {
            branches[0].clone()
        } else {
            Concatenate::new().call(&branches)
        };
        Model::new(&x, y)
    }

    /// Each branch's parameters and multiply-adds per image, by formula.
    pub fn branch_counts(&self) -> Vec<(usize, usize)> {
        let [h, w, c] = self.input;
        self.filters
            .iter()
            .zip(&self.kernels)
            .map(|(&f, &k)| (k * k * c * f + f, h * w * k * k * c * f))
            .collect()
    }

    /// The whole explanation as text.
    pub fn explain(&self) -> Result<String> {
        let model = self.model()?;
        let [h, w, c] = self.input;
        let counts = self.branch_counts();
        let total_macs: usize = counts.iter().map(|c| c.1).sum();
        let shapes: std::collections::HashMap<String, crate::layers::Shape> =
            model.layer_output_shapes().into_iter().collect();
        let convs: Vec<String> = model
            .layers()
            .filter(|l| l.class_name() == "Conv2D")
            .map(|l| l.name().to_string())
            .collect();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Inception block on {h}x{w}x{c}: {} parallel branches with padding 'same', concatenated on depth\n",
            self.kernels.len()
        );
        let _ = writeln!(
            out,
            "'same' pads (ceil(n / stride) − 1)·stride + k − n zeros in all, half before and the odd one after,\nso output = (n − k + padding) / stride + 1 = n at stride 1.\n"
        );
        for (b, ((&f, &k), &(params, macs))) in self
            .filters
            .iter()
            .zip(&self.kernels)
            .zip(&counts)
            .enumerate()
        {
            let _ = writeln!(out, "Branch {}: Conv2D, {f} filters of {k}x{k}", b + 1);
            for (name, n) in [("rows", h), ("columns", w)] {
                let (o, before, after) =
                    output_length(n, k, 1, 1, Padding::Same).expect("'same' always fits");
                let total = before + after;
                let pad = if before == after {
                    format!("2·{before}")
                } else {
                    format!("{before} + {after}")
                };
                let _ = writeln!(
                    out,
                    "  {name:<8} padding (ceil({n} / 1) − 1)·1 + {k} − {n} = {total} → ({n} − {k} + {pad}) / 1 + 1 = {o}"
                );
            }
            let shape = convs
                .get(b)
                .and_then(|name| shapes.get(name))
                .map(format_shape)
                .unwrap_or_default();
            let _ = writeln!(out, "  output   {shape}");
            let _ = writeln!(
                out,
                "  params   {k}·{k}·{c}·{f} + {f} = {}",
                thousands(params)
            );
            let _ = writeln!(
                out,
                "  cost     {h}·{w}·{k}·{k}·{c}·{f} = {} multiply-adds ({} FLOPs), {:.1}% of the block\n",
                thousands(macs),
                thousands(2 * macs),
                100.0 * macs as f64 / total_macs.max(1) as f64
            );
        }
        let depth: Vec<String> = self.filters.iter().map(|f| f.to_string()).collect();
        let _ = writeln!(
            out,
            "Concatenate on depth: {} = {} channels → {}",
            depth.join(" + "),
            self.filters.iter().sum::<usize>(),
            format_shape(&model.output_shapes()[0])
        );
        let param_terms: Vec<String> = counts.iter().map(|c| thousands(c.0)).collect();
        let _ = writeln!(
            out,
            "Parameters: {} = {}\nCost: {} multiply-adds ({} FLOPs) per image",
            param_terms.join(" + "),
            thousands(model.count_params()),
            thousands(model.forward_macs(1)),
            thousands(2 * model.forward_macs(1))
        );
        Ok(out)
    }

    /// The block's branches with their shapes and parameters as a PNG, drawn on the
    /// training curves' canvas.
    #[cfg(feature = "plots")]
    pub fn plot(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let model = self.model()?;
        let [h, w, c] = self.input;
        let counts = self.branch_counts();
        let branches = self.kernels.len() as i32;
        let box_w = 200i32;
        let gap = 24i32;
        let width = (branches * box_w + (branches + 1) * gap).max(520) as u32;
        let height = 400u32;
        let out_shape = format_shape(&model.output_shapes()[0]);
        let image = draw_picture(width, height, |root| {
            let font = ("sans-serif", 15).into_font().color(&BLACK);
            let draw_box = |x: i32, y: i32, bw: i32, lines: &[String], fill: RGBColor| {
                root.draw(&Rectangle::new([(x, y), (x + bw, y + 70)], fill.filled()))
                    .and_then(|_| root.draw(&Rectangle::new([(x, y), (x + bw, y + 70)], BLACK)))
                    .map_err(|e| e.to_string())?;
                for (k, line) in lines.iter().enumerate() {
                    root.draw_text(line, &font, (x + 10, y + 8 + 20 * k as i32))
                        .map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            };
            let center = width as i32 / 2;
            let line = |a: (i32, i32), b: (i32, i32)| {
                root.draw(&PathElement::new(vec![a, b], BLACK.stroke_width(2)))
                    .map_err(|e| e.to_string())
            };
            draw_box(
                center - 120,
                20,
                240,
                &[format!("Input {h}x{w}x{c}"), String::new()],
                RGBColor(225, 235, 250),
            )?;
            let total_w = branches * box_w + (branches - 1) * gap;
            for (b, ((&f, &k), &(params, _))) in self
                .filters
                .iter()
                .zip(&self.kernels)
                .zip(&counts)
                .enumerate()
            {
                let x = center - total_w / 2 + b as i32 * (box_w + gap);
                line((center, 90), (x + box_w / 2, 160))?;
                line((x + box_w / 2, 230), (center, 300))?;
                draw_box(
                    x,
                    160,
                    box_w,
                    &[
                        format!("Conv2D {k}x{k}, {f}, same"),
                        format!("→ {h}x{w}x{f}"),
                        format!("{} params", thousands(params)),
                    ],
                    RGBColor(255, 236, 200),
                )?;
            }
            draw_box(
                center - 150,
                300,
                300,
                &[
                    "Concatenate (depth)".to_string(),
                    format!("→ {out_shape}"),
                    format!("{} params in all", thousands(model.count_params())),
                ],
                RGBColor(220, 245, 220),
            )?;
            Ok(())
        })
        .map_err(|e| Error::file(path, format!("drawing the block: {e}")))?;
        image
            .save(path)
            .map_err(|e| Error::file(path, format!("cannot write: {e}")))
    }
}
