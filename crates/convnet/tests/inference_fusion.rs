//! Inference fuses Conv → BatchNormalization → activation chains into one output pass
//! (model/fusion.rs). Each model here is run both ways: `apply` (fused) and
//! `layer_outputs` (every layer on its own, the unfused reference), with
//! BatchNormalization statistics drawn away from their initial 0 and 1 so the folded
//! scale and shift are not the identity.

use convnet::layers::*;
use convnet::model::{Call, Input, Model};
use convnet::{ActivationFn, Padding};

mod common;
use common::{max_relative, random};

/// Kernels drawn from [−0.3, 0.3), small enough that no activation saturates (which
/// would hide a wrong shift); per-channel weights (biases, BatchNormalization's four)
/// from [0.5, 1.5), positive as a moving variance must be.
fn draw_weights(model: &mut Model, seed: u64) {
    let weights = model
        .get_weights()
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let mut t = random(w.shape(), seed + i as u64);
            if w.shape().len() == 1 {
                t.map_inplace(|v| 1.0 + 0.5 * v);
            } else {
                t.map_inplace(|v| 0.3 * v);
            }
            t
        })
        .collect();
    model.set_weights(weights).unwrap();
}

/// `apply`'s outputs against the outputs of the layers named `outputs`, run one by one.
fn fused_matches_unfused(mut model: Model, input: &[usize], outputs: &[&str]) {
    draw_weights(&mut model, 11);
    let x = random(input, 3);
    let fused = model.apply(&[&x]).unwrap();
    let each = model.layer_outputs(&[&x]).unwrap();
    assert_eq!(fused.len(), outputs.len());
    for (k, name) in outputs.iter().enumerate() {
        let (_, reference) = each.iter().find(|(n, _)| n == name).unwrap();
        let err = max_relative(&fused[k], reference);
        assert!(
            err < 1e-5,
            "{}: output {name} differs by {err}",
            model.name()
        );
    }
}

fn conv_bn(x: &convnet::model::SymbolicTensor, filters: usize) -> convnet::model::SymbolicTensor {
    let y = Conv2D::new(filters, (3, 3))
        .padding(Padding::Same)
        .use_bias(true)
        .call(x);
    BatchNormalization::new().call(&y)
}

#[test]
fn conv_batch_norm_and_activation_chains_give_the_unfused_numbers() {
    // Conv → BN → ReLU, Conv → BN (then an Add, which is not fused), depthwise → BN →
    // ReLU(6), separable → BN → swish, Dense → BN → Activation; each chain's end is an
    // output, so a wrong chain shows.
    let x0 = Input::new([9, 9, 5]);
    let a = ReLU::new().named("a").call(conv_bn(&x0, 8));
    let b = conv_bn(&a, 8);
    let sum = Add::new().call(&[a.clone(), b]);
    let d = DepthwiseConv2D::new((3, 3))
        .padding(Padding::Same)
        .call(&sum);
    let d = ReLU::new()
        .max_value(6.0)
        .named("d")
        .call(BatchNormalization::new().call(&d));
    let s = SeparableConv2D::new(6, (3, 3)).call(&d);
    let s = Activation::new(ActivationFn::Silu)
        .named("s")
        .call(BatchNormalization::new().call(&s));
    let f = Flatten::new().call(&s);
    let dense = Dense::new(7).call(&f);
    let y = Activation::new(ActivationFn::Tanh)
        .named("out")
        .call(BatchNormalization::new().call(&dense));
    let outputs = [a, d, s, y];
    let model = Model::new(&x0, &outputs[..]).unwrap().named("chains");
    fused_matches_unfused(model, &[2, 9, 9, 5], &["a", "d", "s", "out"]);
}

#[test]
fn merges_take_the_activation_after_them() {
    // A residual Add → ReLU, a Subtract → swish (order matters), and an Add → BN → ReLU,
    // which the merge cannot take (it falls back to running each layer). The inputs are
    // big enough (2·24·24·128 values) to be combined in parallel chunks.
    let x0 = Input::new([24, 24, 128]);
    let c = Conv2D::new(128, (1, 1)).call(&x0);
    let r = ReLU::new()
        .named("add_relu")
        .call(Add::new().call(&[x0.clone(), c.clone()]));
    let s = Activation::new(ActivationFn::Silu)
        .named("sub_swish")
        .call(Subtract::new().call(&[c.clone(), r.clone()]));
    let n = ReLU::new()
        .named("add_bn_relu")
        .call(BatchNormalization::new().call(Add::new().call(&[c, s.clone()])));
    let model = Model::new(&x0, &[r, s, n]).unwrap().named("merges");
    fused_matches_unfused(
        model,
        &[2, 24, 24, 128],
        &["add_relu", "sub_swish", "add_bn_relu"],
    );
}

#[test]
fn adds_write_over_an_input_only_they_read() {
    // A residual Add → ReLU whose inputs only it still reads is written over one of
    // them; a plain Add likewise; an Add of the model's input and a tensor that is also
    // a model output overwrites neither (both are checked against the unfused run, and
    // the model output "kept" must keep its own values).
    let x0 = Input::new([24, 24, 128]);
    let a = Conv2D::new(128, (1, 1)).call(&x0);
    let b = Conv2D::new(128, (3, 3)).padding(Padding::Same).call(&a);
    let r = ReLU::new()
        .named("residual_relu")
        .call(Add::new().call(&[a, b]));
    let c = Conv2D::new(128, (1, 1)).call(&r);
    let plain = Add::new().named("plain_add").call(&[r, c]);
    let kept = Conv2D::new(128, (1, 1)).named("kept").call(&x0);
    let outer = Add::new()
        .named("outer_add")
        .call(&[x0.clone(), kept.clone()]);
    let model = Model::new(&x0, &[plain, kept, outer][..])
        .unwrap()
        .named("in_place");
    fused_matches_unfused(
        model,
        &[2, 24, 24, 128],
        &["plain_add", "kept", "outer_add"],
    );
}

#[test]
fn squeeze_and_excitation_scales_in_place() {
    // A squeeze-and-excitation's Multiply of a per-sample scale (batch, 1, 1, C) and the
    // map it scales, which only the Multiply still reads: written over the map, with
    // the scale first or second among the inputs, as a Multiply layer and as the
    // operation `x * s` (which the ONNX import writes for EfficientNet's).
    let x0 = Input::new([12, 12, 96]);
    let x = Conv2D::new(96, (1, 1)).call(&x0);
    let squeeze = |x: &convnet::model::SymbolicTensor| {
        let s = GlobalAveragePooling2D::new().keepdims(true).call(x);
        Conv2D::new(96, (1, 1))
            .activation(ActivationFn::Sigmoid)
            .call(&s)
    };
    let first = Multiply::new()
        .named("scale_first")
        .call(&[squeeze(&x), x.clone()]);
    let y = Conv2D::new(96, (1, 1)).call(&first);
    let second = NumpyOp::new(OpKind::Multiply)
        .named("scale_second")
        .call(&[y.clone(), squeeze(&y)]);
    let model = Model::new(&x0, &second).unwrap().named("excitation");
    fused_matches_unfused(model, &[2, 12, 12, 96], &["scale_second"]);
}

#[test]
fn outputs_read_elsewhere_and_nonlinear_layers_are_not_fused_away() {
    let x0 = Input::new([6, 6, 3]);
    // The convolution's output is a model output and also feeds the BatchNormalization.
    let c = Conv2D::new(4, (3, 3)).named("conv").call(&x0);
    let n = ReLU::new().call(BatchNormalization::new().call(&c));
    // A ReLU convolution before a BatchNormalization: BN cannot fold into it.
    let r = Conv2D::new(4, (1, 1))
        .activation(ActivationFn::Relu)
        .call(&n);
    let r = BatchNormalization::new().call(&r);
    // A BatchNormalization over the height axis is not a per-channel map.
    let h = Conv2D::new(4, (1, 1)).call(&r);
    let h = BatchNormalization::new().axis(1).call(&h);
    // A leaky ReLU layer is not one of the fused activations; the BN before it still is.
    let l = Conv2D::new(4, (1, 1)).call(&h);
    let l = ReLU::new()
        .negative_slope(0.1)
        .named("leaky")
        .call(BatchNormalization::new().call(&l));
    let model = Model::new(&x0, &[c, l]).unwrap().named("unfusable");
    fused_matches_unfused(model, &[3, 6, 6, 3], &["conv", "leaky"]);
}

#[test]
fn zero_padding_joins_the_pooling_after_it() {
    // A `valid` pooling takes a ZeroPadding2D before it into its windows, the padded
    // zeros taking part: on values of both signs a max pooling's windows over the
    // padding give 0 where their own cells are all negative, and an average pooling
    // divides by the whole window (ResNet50's stem pads before its 3x3 stride-2 max
    // pooling). A 'same' pooling after a padding keeps the padding a layer of its own.
    let x0 = Input::new([9, 8, 5]);
    let p = ZeroPadding2D::new([[1, 1], [1, 1]]).call(&x0);
    let m = MaxPooling2D::new((3, 3))
        .strides((2, 2))
        .named("max_padded")
        .call(&p);
    let p = ZeroPadding2D::new([[2, 0], [1, 3]]).call(&x0);
    let a = AveragePooling2D::new((3, 3))
        .strides((2, 1))
        .named("average_padded")
        .call(&p);
    let p = ZeroPadding2D::new([[1, 1], [1, 1]]).call(&x0);
    let s = MaxPooling2D::new((2, 2))
        .padding(Padding::Same)
        .named("same_max")
        .call(&p);
    let model = Model::new(&x0, &[m, a, s][..])
        .unwrap()
        .named("pooled_paddings");
    fused_matches_unfused(
        model,
        &[2, 9, 8, 5],
        &["max_padded", "average_padded", "same_max"],
    );
}

#[test]
fn zero_padding_joins_the_convolution_after_it() {
    // A ZeroPadding2D before a convolution is taken into the convolution's window
    // (unit tests in model/fusion.rs check which ones are): uneven padding before a
    // strided valid Conv → BN → ReLU chain; before a depthwise layer with its own ReLU6;
    // before a 'same' convolution with a ReLU, whose BatchNormalization then cannot
    // fold in (the padding alone is taken); a padding before a pooling layer; and
    // paddings that stay layers of their own, read twice.
    let x0 = Input::new([11, 10, 16]);
    let p = ZeroPadding2D::new([[1, 2], [3, 0]]).call(&x0);
    let c = Conv2D::new(8, (3, 3)).strides((2, 2)).call(&p);
    let c = ReLU::new()
        .named("conv_chain")
        .call(BatchNormalization::new().call(&c));
    let p = ZeroPadding2D::new([[0, 1], [0, 1]]).call(&c);
    let d = DepthwiseConv2D::new((3, 3))
        .strides((2, 2))
        .activation(ActivationFn::Relu6)
        .named("depthwise_own")
        .call(&p);
    let p = ZeroPadding2D::new([[2, 2], [2, 2]]).call(&c);
    let s = Conv2D::new(4, (3, 3))
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .call(&p);
    let s = BatchNormalization::new().named("same_then_bn").call(&s);
    let shared = ZeroPadding2D::new([[1, 1], [1, 1]]).call(&c);
    let t = Conv2D::new(4, (1, 1)).named("shared_1x1").call(&shared);
    let u = Conv2D::new(4, (3, 3)).named("shared_3x3").call(&shared);
    let m = MaxPooling2D::new((2, 2))
        .named("pooled")
        .call(ZeroPadding2D::new([[1, 0], [1, 0]]).call(&c));
    let outputs = [c, d, s, t, u, m];
    let model = Model::new(&x0, &outputs[..]).unwrap().named("paddings");
    fused_matches_unfused(
        model,
        &[2, 11, 10, 16],
        &[
            "conv_chain",
            "depthwise_own",
            "same_then_bn",
            "shared_1x1",
            "shared_3x3",
            "pooled",
        ],
    );
}

#[test]
fn concatenated_outputs_written_in_place_give_the_unfused_numbers() {
    // The inputs of a channel Concatenate that only it reads are written straight into
    // its output (model/placement.rs): a 1x1 convolution (the packed product), a
    // padding → conv → BN → ReLU chain five channels wide (a masked last vector), a
    // Winograd 3x3 (its rows copied into place), a grouped convolution with a sigmoid
    // (the unpacked products and an activation after them, row by row); the other
    // inputs are copied in: a pooling layer, the model's input and a convolution read
    // twice. A Concatenate of rows is never written in place.
    let x0 = Input::new([10, 9, 16]);
    let a = Conv2D::new(8, (1, 1))
        .activation(ActivationFn::Relu)
        .call(&x0);
    let b = Conv2D::new(5, (3, 3)).call(ZeroPadding2D::new([[1, 1], [1, 1]]).call(&x0));
    let b = ReLU::new().call(BatchNormalization::new().call(&b));
    let c = Conv2D::new(16, (3, 3)).padding(Padding::Same).call(&x0);
    let d = Conv2D::new(6, (3, 3))
        .padding(Padding::Same)
        .groups(2)
        .activation(ActivationFn::Sigmoid)
        .call(&x0);
    let e = MaxPooling2D::new((3, 3))
        .strides((1, 1))
        .padding(Padding::Same)
        .call(&x0);
    let shared = Conv2D::new(4, (1, 1)).named("shared").call(&x0);
    let joined =
        Concatenate::new()
            .named("joined")
            .call(&[a, b, c, d, e, x0.clone(), shared.clone()]);
    let rows = Concatenate::new().axis(1).named("rows").call(&[
        Conv2D::new(3, (1, 1)).call(&x0),
        Conv2D::new(3, (2, 1)).call(&x0),
    ]);
    let outputs = [joined, shared, rows];
    let model = Model::new(&x0, &outputs[..]).unwrap().named("inception");
    fused_matches_unfused(model, &[2, 10, 9, 16], &["joined", "shared", "rows"]);
}

#[test]
fn expansions_run_with_the_depthwise_layer_after_them() {
    // A depthwise layer runs with the 1x1 convolutions next to it that only it reads, or
    // that read only it (MobileNet's and EfficientNet's expansion and projection), as
    // one pass, the tensors between them made a few rows at a time
    // (kernels/depthwise/with_pointwise.rs); the tensors here are over the 1 MiB above
    // which that route is taken. MobileNetV2's stride-1 block, projection and residual
    // Add included, its stride-2 block through a ZeroPadding2D, EfficientNet's 5x5 block
    // with swish and its own activation on the 1x1 layer, and an expansion that is also
    // a model output, whose depthwise layer then runs on its own.
    let bn_relu6 = |x: &convnet::model::SymbolicTensor| {
        ReLU::new()
            .max_value(6.0)
            .call(BatchNormalization::new().call(x))
    };
    let x0 = Input::new([56, 56, 24]);
    let e = bn_relu6(&Conv2D::new(144, (1, 1)).use_bias(false).call(&x0));
    let d = DepthwiseConv2D::new((3, 3))
        .padding(Padding::Same)
        .use_bias(false)
        .call(&e);
    let p = Conv2D::new(24, (1, 1)).call(bn_relu6(&d));
    let residual = Add::new().named("residual").call(&[x0.clone(), p]);
    let e = bn_relu6(&Conv2D::new(96, (1, 1)).use_bias(false).call(&residual));
    let padded = ZeroPadding2D::new([[0, 1], [0, 1]]).call(&e);
    let strided = DepthwiseConv2D::new((3, 3)).strides((2, 2)).call(&padded);
    let strided = bn_relu6(&strided);
    let strided = Activation::new(ActivationFn::Linear)
        .named("strided")
        .call(&strided);
    let e = Conv2D::new(192, (1, 1))
        .activation(ActivationFn::Silu)
        .call(&residual);
    let five = DepthwiseConv2D::new((5, 5))
        .strides((2, 2))
        .padding(Padding::Same)
        .call(&e);
    let five = Activation::new(ActivationFn::Silu)
        .named("five")
        .call(BatchNormalization::new().call(&five));
    let shared = Conv2D::new(96, (1, 1)).named("shared").call(&residual);
    let after_shared = DepthwiseConv2D::new((3, 3))
        .named("after_shared")
        .call(&shared);
    let outputs = [strided, five, shared, after_shared];
    let model = Model::new(&x0, &outputs[..]).unwrap().named("expansions");
    fused_matches_unfused(
        model,
        &[1, 56, 56, 24],
        &["strided", "five", "shared", "after_shared"],
    );
}
