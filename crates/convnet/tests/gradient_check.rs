//! Finite-difference checks of every layer's backward pass, on random shapes and
//! settings (proptest). For L = Σ y·r with a random r, every element of every input and
//! every trainable weight is nudged by ±h and (L(+h) − L(−h)) / 2h is compared with the
//! gradient backward computed.
//!
//! convnet computes in f32, so the layer runs in f32 while L, the differences and the
//! comparison are accumulated in f64; the step h and the tolerance are sized for f32
//! rounding. Layers with kinks (ReLU, max pooling, …) get inputs on a grid whose points
//! sit well away from every kink, so that ±h never crosses one.

use convnet::initializers::rng_from_seed;
use convnet::layers::*;
use convnet::ActivationFn;
use convnet::{Layer, Padding, Rng, Tensor};
use proptest::prelude::*;
use rand::RngExt;

/// A layer under test: how to make it, its inputs and the mode of the call.
struct Case {
    make: Box<dyn Fn() -> Box<dyn Layer>>,
    inputs: Vec<Tensor>,
    training: bool,
}

fn random_tensor(shape: &[usize], rng: &mut Rng, lo: f32, hi: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::new(
        shape.to_vec(),
        (0..n)
            .map(|_| lo + (hi - lo) * rng.random::<f32>())
            .collect(),
    )
    .unwrap()
}

/// Distinct values (k + 0.5)·0.1: at least 0.05 from every multiple of 0.1, where all the
/// kinks of the tested layers lie, and from each other (so max pooling has one winner).
fn grid_tensor(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let mut ks: Vec<i64> = (0..n as i64).map(|k| k - n as i64 / 2).collect();
    for i in (1..n).rev() {
        ks.swap(i, rng.random_range(0..=i));
    }
    Tensor::new(
        shape.to_vec(),
        ks.iter().map(|&k| (k as f32 + 0.5) * 0.1).collect(),
    )
    .unwrap()
}

/// Builds a fresh layer and gives it `weights`.
fn instance(case: &Case, weights: &[Tensor]) -> Box<dyn Layer> {
    let mut layer = (case.make)();
    let shapes: Vec<Shape> = case.inputs.iter().map(shape_of).collect();
    layer.build(&shapes, &mut rng_from_seed(1)).expect("build");
    layer.set_weights(weights.to_vec()).expect("weights");
    layer
}

fn loss(case: &Case, weights: &[Tensor], inputs: &[Tensor], r: &Tensor) -> f64 {
    let mut layer = instance(case, weights);
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let (y, _) = layer.forward(&refs, case.training).expect("forward");
    y.data()
        .iter()
        .zip(r.data())
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

/// Compares backward's gradients with central differences, element by element.
fn check(case: Case, seed: u64, step: f32) -> Result<(), TestCaseError> {
    let mut rng = rng_from_seed(seed);
    let mut layer = (case.make)();
    let shapes: Vec<Shape> = case.inputs.iter().map(shape_of).collect();
    layer
        .build(&shapes, &mut rng)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let weights: Vec<Tensor> = layer
        .weights()
        .iter()
        .map(|w| match w.name.as_str() {
            "moving_variance" => random_tensor(w.value.shape(), &mut rng, 0.5, 1.5),
            _ => random_tensor(w.value.shape(), &mut rng, -1.0, 1.0),
        })
        .collect();
    let trainable: Vec<bool> = layer.weights().iter().map(|w| w.trainable).collect();
    let mut layer = instance(&case, &weights);
    let refs: Vec<&Tensor> = case.inputs.iter().collect();
    let (y, saved) = layer
        .forward(&refs, case.training)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let r = random_tensor(y.shape(), &mut rng, -1.0, 1.0);
    let mut dweights = zero_grads(layer.as_ref());
    let dx = layer
        .backward(&refs, &y, &saved, &r, &mut dweights)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(dx.len(), case.inputs.len());

    let name = format!("{} {}", layer.class_name(), layer.config());
    let h = step as f64;
    let compare =
        |what: &str, i: usize, numeric: f64, analytic: f32| -> Result<(), TestCaseError> {
            let analytic = analytic as f64;
            let tolerance = 5e-3 + 1e-2 * analytic.abs();
            prop_assert!(
                (numeric - analytic).abs() <= tolerance,
                "{name}: d{what}[{i}] backward {analytic:.6} vs finite difference {numeric:.6}"
            );
            Ok(())
        };
    for (k, grad) in dx.iter().enumerate() {
        prop_assert_eq!(grad.shape(), case.inputs[k].shape());
        for i in 0..grad.len() {
            let mut plus = case.inputs.clone();
            plus[k].data_mut()[i] += step;
            let mut minus = case.inputs.clone();
            minus[k].data_mut()[i] -= step;
            let numeric =
                (loss(&case, &weights, &plus, &r) - loss(&case, &weights, &minus, &r)) / (2.0 * h);
            compare(&format!("x{k}"), i, numeric, grad.data()[i])?;
        }
    }
    for (k, grad) in dweights.iter().enumerate().filter(|(k, _)| trainable[*k]) {
        for i in 0..grad.len() {
            let mut plus = weights.clone();
            plus[k].data_mut()[i] += step;
            let mut minus = weights.clone();
            minus[k].data_mut()[i] -= step;
            let numeric = (loss(&case, &plus, &case.inputs, &r)
                - loss(&case, &minus, &case.inputs, &r))
                / (2.0 * h);
            compare(&format!("w{k}"), i, numeric, grad.data()[i])?;
        }
    }
    Ok(())
}

/// Smooth inputs in [-1, 1] for smooth layers.
fn smooth(shape: &[usize], seed: u64) -> Tensor {
    random_tensor(shape, &mut rng_from_seed(seed ^ 0x5eed), -1.0, 1.0)
}

fn grid(shape: &[usize], seed: u64) -> Tensor {
    grid_tensor(shape, &mut rng_from_seed(seed ^ 0x9e1d))
}

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![Just(Padding::Valid), Just(Padding::Same)]
}

/// Activations whose derivative is continuous, so finite differences converge (selu
/// jumps at 0; it is checked with the kinked ones, on grid inputs).
fn smooth_activation() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "linear", "tanh", "sigmoid", "gelu", "silu", "softplus", "elu",
    ])
}

/// A spatial size that fits `kernel` dilated by `dilation` even with `valid` padding.
fn fitting(kernel: usize, dilation: usize, extra: usize) -> usize {
    (kernel - 1) * dilation + 1 + extra
}

const SMOOTH_STEP: f32 = 1e-2;
const KINKED_STEP: f32 = 1e-3;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn conv2d(batch in 1usize..3, kh in 1usize..4, kw in 1usize..4, extra_h in 0usize..4, extra_w in 0usize..4,
              groups in 1usize..3, cin_per in 1usize..3, fout_per in 1usize..3, stride in 1usize..3,
              dilated in any::<bool>(), pad in padding(), act in smooth_activation(), use_bias in any::<bool>(), seed in any::<u64>()) {
        let dilation = if dilated && stride == 1 { 2 } else { 1 };
        let (h, w) = (fitting(kh, dilation, extra_h), fitting(kw, dilation, extra_w));
        let filters = groups * fout_per;
        let inputs = vec![smooth(&[batch, h, w, groups * cin_per], seed)];
        let make = move || -> Box<dyn Layer> {
            Box::new(Conv2D::new(filters, (kh, kw)).strides((stride, stride)).padding(pad)
                .dilation_rate((dilation, dilation)).groups(groups).activation(act.parse().unwrap()).use_bias(use_bias))
        };
        check(Case { make: Box::new(make), inputs, training: false }, seed, SMOOTH_STEP)?;
    }

    #[test]
    fn one_d_layers(kernel in 1usize..4, extra in 0usize..3, channels in 1usize..4, filters in 1usize..4, stride in 1usize..3,
                    dilated in any::<bool>(), class in prop::sample::select(vec!["Conv1D", "SeparableConv1D", "DepthwiseConv1D", "Conv1DTranspose"]),
                    padding in prop::sample::select(vec!["valid", "same", "causal"]), seed in any::<u64>()) {
        // Causal padding is Conv1D's; a transposed convolution's dilation needs stride 1.
        let padding = if padding == "causal" && class != "Conv1D" { "same" } else { padding };
        let dilation = if dilated && stride == 1 { 2 } else { 1 };
        let inputs = vec![smooth(&[2, fitting(kernel, dilation, extra + 1), channels], seed)];
        let config = serde_json::json!({"filters": filters, "kernel_size": kernel, "strides": stride,
            "padding": padding, "dilation_rate": dilation, "activation": "tanh"});
        let mut config = config.as_object().unwrap().clone();
        if class == "DepthwiseConv1D" {
            config.remove("filters");
            config.insert("depth_multiplier".into(), 2.into());
        }
        let make = move || -> Box<dyn Layer> {
            Box::new(convnet::layers::OneD::new(class, config.clone().into()).unwrap())
        };
        check(Case { make: Box::new(make), inputs, training: false }, seed, SMOOTH_STEP)?;
    }

    #[test]
    fn depthwise_conv2d(kh in 1usize..4, kw in 1usize..4, extra in 0usize..3, channels in 1usize..4, dm in 1usize..3,
                        stride in 1usize..3, dilated in any::<bool>(), pad in padding(), seed in any::<u64>()) {
        let dilation = if dilated && stride == 1 { 2 } else { 1 };
        let inputs = vec![smooth(&[2, fitting(kh, dilation, extra), fitting(kw, dilation, extra + 1), channels], seed)];
        let make = move || -> Box<dyn Layer> {
            Box::new(DepthwiseConv2D::new((kh, kw)).depth_multiplier(dm).strides((stride, stride))
                .padding(pad).dilation_rate((dilation, dilation)).activation(ActivationFn::Tanh))
        };
        check(Case { make: Box::new(make), inputs, training: false }, seed, SMOOTH_STEP)?;
    }

    #[test]
    fn separable_conv2d(k in 1usize..4, extra in 0usize..3, channels in 1usize..4, dm in 1usize..3, filters in 1usize..4,
                        stride in 1usize..3, pad in padding(), seed in any::<u64>()) {
        let inputs = vec![smooth(&[2, fitting(k, 1, extra), fitting(k, 1, extra + 1), channels], seed)];
        let make = move || -> Box<dyn Layer> {
            Box::new(SeparableConv2D::new(filters, (k, k)).depth_multiplier(dm).strides((stride, stride)).padding(pad).activation(ActivationFn::Sigmoid))
        };
        check(Case { make: Box::new(make), inputs, training: false }, seed, SMOOTH_STEP)?;
    }

    #[test]
    fn conv2d_transpose(kh in 1usize..4, kw in 1usize..4, h in 1usize..4, w in 1usize..4, channels in 1usize..3,
                        filters in 1usize..4, stride in 1usize..3, pad in padding(), output_padding in any::<bool>(), seed in any::<u64>()) {
        let inputs = vec![smooth(&[2, h, w, channels], seed)];
        // output_padding must be below the stride, and with 'same' it must leave a size
        // whose forward convolution gives back the input.
        let use_output_padding = output_padding && stride > 1 && pad == Padding::Valid;
        let make = move || -> Box<dyn Layer> {
            let layer = Conv2DTranspose::new(filters, (kh, kw)).strides((stride, stride)).padding(pad);
            Box::new(if use_output_padding { layer.output_padding((1, 1)) } else { layer })
        };
        check(Case { make: Box::new(make), inputs, training: false }, seed, SMOOTH_STEP)?;
    }

    #[test]
    fn dense(rank in 2usize..5, features in 1usize..6, units in 1usize..5, act in smooth_activation(), use_bias in any::<bool>(), seed in any::<u64>()) {
        let mut shape = vec![2usize, 3, 2, 2][..rank - 1].to_vec();
        shape.push(features);
        let make = move || -> Box<dyn Layer> { Box::new(Dense::new(units).activation(act.parse().unwrap()).use_bias(use_bias)) };
        check(Case { make: Box::new(make), inputs: vec![smooth(&shape, seed)], training: false }, seed, SMOOTH_STEP)?;
    }

    #[test]
    fn pooling(max in any::<bool>(), ph in 1usize..4, pw in 1usize..4, sh in 1usize..3, sw in 1usize..3, extra in 0usize..4,
               pad in padding(), channels in 1usize..3, seed in any::<u64>()) {
        let inputs = vec![grid(&[2, ph + extra, pw + extra + 1, channels], seed)];
        let make = move || -> Box<dyn Layer> {
            let layer = if max { MaxPooling2D::new((ph, pw)) } else { AveragePooling2D::new((ph, pw)) };
            Box::new(layer.strides((sh, sw)).padding(pad))
        };
        check(Case { make: Box::new(make), inputs, training: false }, seed, KINKED_STEP)?;
    }

    #[test]
    fn global_pooling(max in any::<bool>(), keepdims in any::<bool>(), h in 1usize..4, w in 1usize..4, seed in any::<u64>()) {
        let make = move || -> Box<dyn Layer> {
            let layer = if max { GlobalMaxPooling2D::new() } else { GlobalAveragePooling2D::new() };
            Box::new(layer.keepdims(keepdims))
        };
        check(Case { make: Box::new(make), inputs: vec![grid(&[2, h, w, 3], seed)], training: false }, seed, KINKED_STEP)?;
    }

    #[test]
    fn batch_normalization(training in any::<bool>(), axis in prop::sample::select(vec![-1i64, 1, 2]), center in any::<bool>(),
                           scale in any::<bool>(), seed in any::<u64>()) {
        let make = move || -> Box<dyn Layer> {
            Box::new(BatchNormalization::new().axis(axis).center(center).scale(scale).momentum(0.9))
        };
        check(Case { make: Box::new(make), inputs: vec![smooth(&[3, 2, 3, 2], seed)], training }, seed, SMOOTH_STEP)?;
    }

    #[test]
    fn dropout(rate in 0.0f64..0.9, training in any::<bool>(), broadcast in any::<bool>(), seed in any::<u64>()) {
        let make = move || -> Box<dyn Layer> {
            let mut layer = Dropout::new(rate).seed(seed);
            if broadcast {
                layer.noise_shape = Some(vec![None, Some(1), Some(1), None]);
            }
            Box::new(layer)
        };
        check(Case { make: Box::new(make), inputs: vec![smooth(&[2, 3, 2, 3], seed)], training }, seed, SMOOTH_STEP)?;
    }

    #[test]
    fn reshaping(which in 0usize..5, t in 0usize..3, b in 0usize..3, l in 0usize..3, r in 0usize..3, seed in any::<u64>()) {
        let make = move || -> Box<dyn Layer> {
            match which {
                0 => Box::new(Flatten::new()),
                1 => Box::new(Reshape::new(&[-1, 6])),
                2 => Box::new(ZeroPadding2D::new([[t, b], [l, r]])),
                3 => Box::new(Cropping2D::new([[t.min(1), b.min(1)], [l.min(1), r.min(2)]])),
                _ => Box::new(UpSampling2D::new((t + 1, b + 1))),
            }
        };
        check(Case { make: Box::new(make), inputs: vec![smooth(&[2, 3, 4, 3], seed)], training: false }, seed, SMOOTH_STEP)?;
    }

    #[test]
    fn merging(which in 0usize..4, count in 2usize..4, axis in prop::sample::select(vec![-1i64, 1, 2, 3]), seed in any::<u64>()) {
        let inputs: Vec<Tensor> = (0..count)
            .map(|i| {
                let mut shape = vec![2usize, 2, 3, 2];
                if which == 0 {
                    let a = if axis < 0 { 3 } else { axis as usize };
                    shape[a] = i + 1;
                }
                smooth(&shape, seed.wrapping_add(i as u64))
            })
            .collect();
        let make = move || -> Box<dyn Layer> {
            match which {
                0 => Box::new(Concatenate::new().axis(axis)),
                1 => Box::new(Add::new()),
                2 => Box::new(Multiply::new()),
                _ => Box::new(Average::new()),
            }
        };
        check(Case { make: Box::new(make), inputs, training: false }, seed, SMOOTH_STEP)?;
    }

    #[test]
    fn activation_layers(name in prop::sample::select(convnet::activations::activation_names().collect::<Vec<_>>()), seed in any::<u64>()) {
        let make = move || -> Box<dyn Layer> { Box::new(Activation::new(name.parse().unwrap())) };
        check(Case { make: Box::new(make), inputs: vec![grid(&[2, 3, 4], seed)], training: false }, seed, KINKED_STEP)?;
    }

    #[test]
    fn relu_family(which in 0usize..5, seed in any::<u64>()) {
        let make = move || -> Box<dyn Layer> {
            match which {
                0 => Box::new(ReLU::new().max_value(0.5).negative_slope(0.1).threshold(0.2)),
                1 => Box::new(ReLU::new().max_value(6.0)),
                2 => Box::new(LeakyReLU::new().negative_slope(0.2)),
                3 => Box::new(PReLU::new().shared_axes(&[1, 2])),
                _ => Box::new(PReLU::new()),
            }
        };
        check(Case { make: Box::new(make), inputs: vec![grid(&[2, 3, 2, 2], seed)], training: false }, seed, KINKED_STEP)?;
    }

    #[test]
    fn softmax_and_rescaling(axis in prop::sample::select(vec![-1i64, 1, 2]), softmax in any::<bool>(), seed in any::<u64>()) {
        let make = move || -> Box<dyn Layer> {
            if softmax { Box::new(Softmax::new().axis(axis)) } else { Box::new(Rescaling::new(0.5, -1.0)) }
        };
        check(Case { make: Box::new(make), inputs: vec![smooth(&[2, 3, 4], seed)], training: false }, seed, SMOOTH_STEP)?;
    }
}
