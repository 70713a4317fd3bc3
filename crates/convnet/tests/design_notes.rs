//! The design notes' own examples, computed by convnet.

use convnet::layers::{Concatenate, Conv2D, Layer};
use convnet::ActivationFn;
use convnet::{Padding, Shape, Tensor};

/// The notes' 4x4 input with the edge-detection kernel [[-1,0,1],[-1,0,1],[-1,0,1]],
/// stride 1, no padding. The notes print S(0,0) = 7; the sum of products is
/// −1+0+3 −5+0+7 −9+0+11 = 6, and every position gives 6 (each row rises by 2 across
/// three columns).
#[test]
fn worked_example_gives_six_everywhere() {
    let input = Tensor::new([1, 4, 4, 1], (1..=16).map(|v| v as f32).collect()).unwrap();
    let kernel = Tensor::new(
        [3, 3, 1, 1],
        vec![-1.0, 0.0, 1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 1.0],
    )
    .unwrap();
    let mut conv = Conv2D::new(1, (3, 3)).use_bias(false);
    conv.build(
        &[vec![None, Some(4), Some(4), Some(1)]],
        &mut convnet::initializers::rng_from_seed(0),
    )
    .unwrap();
    conv.set_weights(vec![kernel]).unwrap();
    let output = conv.apply(&[&input]).unwrap();
    assert_eq!(output.shape(), &[1, 2, 2, 1]);
    assert_eq!(output.data(), &[6.0, 6.0, 6.0, 6.0]);
}

/// Output size = (input − kernel + 2·padding) / stride + 1: with 'same' padding the 1x1,
/// 3x3 and 5x5 branches of the Inception block all keep 224x224, and concatenating
/// their 64 channels each gives 224x224x192.
#[test]
fn inception_branches_keep_the_size_and_concatenate_to_192() {
    let input: Shape = vec![None, Some(224), Some(224), Some(3)];
    let branches: Vec<Shape> = [1, 3, 5]
        .iter()
        .map(|&k| {
            Conv2D::new(64, (k, k))
                .padding(Padding::Same)
                .activation(ActivationFn::Relu)
                .output_shape(std::slice::from_ref(&input))
                .unwrap()
        })
        .collect();
    for b in &branches {
        assert_eq!(b, &vec![None, Some(224), Some(224), Some(64)]);
    }
    let merged = Concatenate::new().output_shape(&branches).unwrap();
    assert_eq!(merged, vec![None, Some(224), Some(224), Some(192)]);
    // Without padding the 5x5 branch shrinks by kernel − 1 = 4.
    let valid = Conv2D::new(64, (5, 5)).output_shape(&[input]).unwrap();
    assert_eq!(valid, vec![None, Some(220), Some(220), Some(64)]);
}

/// The explanation's sums are the engine's convolution: random matrices, every stride,
/// padding and dilation, against Conv2D.
#[test]
fn explained_sums_equal_the_conv2d_layer() {
    use convnet::explain::{explain_conv, ExplainPadding};
    use rand::RngExt;
    let mut rng = convnet::initializers::rng_from_seed(4);
    for (stride, padding, dilation) in [
        (1, Padding::Valid, 1),
        (2, Padding::Same, 1),
        (1, Padding::Same, 2),
        (3, Padding::Valid, 1),
    ] {
        let (h, w, kh, kw) = (7, 6, 3, 2);
        let input: Vec<Vec<f64>> = (0..h)
            .map(|_| (0..w).map(|_| rng.random_range(-5..5) as f64).collect())
            .collect();
        let kernel: Vec<Vec<f64>> = (0..kh)
            .map(|_| (0..kw).map(|_| rng.random_range(-3..3) as f64).collect())
            .collect();
        let how = if padding == Padding::Same {
            ExplainPadding::Same
        } else {
            ExplainPadding::Valid
        };
        let (_, explained) = explain_conv(&input, &kernel, stride, how, dilation, false).unwrap();
        let mut conv = Conv2D::new(1, (kh, kw))
            .strides((stride, stride))
            .padding(padding)
            .dilation_rate((dilation, dilation))
            .use_bias(false);
        conv.build(
            &[vec![None, Some(h), Some(w), Some(1)]],
            &mut convnet::initializers::rng_from_seed(0),
        )
        .unwrap();
        conv.set_weights(vec![Tensor::new(
            [kh, kw, 1, 1],
            kernel.iter().flatten().map(|&v| v as f32).collect(),
        )
        .unwrap()])
            .unwrap();
        let x = Tensor::new(
            [1, h, w, 1],
            input.iter().flatten().map(|&v| v as f32).collect(),
        )
        .unwrap();
        let y = conv.apply(&[&x]).unwrap();
        let flat: Vec<f32> = explained.iter().flatten().map(|&v| v as f32).collect();
        assert_eq!(
            y.data(),
            flat.as_slice(),
            "stride {stride}, {padding:?}, dilation {dilation}"
        );
    }
}

/// `explain_model`'s arithmetic agrees with the models themselves (which agree with
/// Keras's summaries): every "params … = N" line is the layer's parameter count and
/// every output-size line ends in the layer's output size.
#[test]
fn explained_model_arithmetic_matches_the_models() {
    use convnet::explain::explain_model;
    use convnet::model::thousands;
    let inception = explain_model(&convnet::zoo::seed_inception(224).unwrap());
    assert!(
        inception.contains("(224 − 5 + 2·2) / 1 + 1 = 224"),
        "{inception}"
    );
    assert!(
        inception.contains("params   5·5·3·64 + 64 = 4,864"),
        "{inception}"
    );
    assert!(inception.contains("Total: 6,912 parameters"), "{inception}");
    for model in [
        convnet::zoo::fmnist_cnn(),
        convnet::zoo::inception_v1_module(),
        convnet::zoo::mobilenet_block(),
        convnet::zoo::resnet_block(),
        convnet::zoo::seed_sequential(),
    ] {
        let model = model.unwrap();
        let text = explain_model(&model);
        let shapes: std::collections::HashMap<String, Shape> =
            model.layer_output_shapes().into_iter().collect();
        let mut current = String::new();
        for line in text.lines() {
            if !line.starts_with(' ') && line.contains(" (") {
                current = line.split(' ').next().unwrap().to_string();
            } else if let Some(rest) = line.trim().strip_prefix("params") {
                let count: usize = model
                    .get_layer(&current)
                    .unwrap()
                    .weights()
                    .iter()
                    .map(|w| w.value.len())
                    .sum();
                assert!(
                    rest.contains(&thousands(count))
                        && (!rest.contains('=')
                            || rest.trim_end().ends_with(&thousands(count))
                            || rest.contains("(γ")),
                    "{current}: {line}"
                );
            } else if let Some(rest) = line.trim().strip_prefix("rows") {
                let want = shapes[&current][1].unwrap();
                assert!(rest.ends_with(&format!("= {want}")), "{current}: {line}");
            }
        }
        let total: usize = model.count_params();
        assert!(
            text.contains(&format!("Total: {} parameters", thousands(total))),
            "{text}"
        );
    }
}

/// `explain separable`: the parameter and multiply-add arithmetic it prints equals the
/// models' `count_params()` and the engine's multiply-add count, and the three output
/// shapes agree, for several shapes, strides and paddings.
#[test]
fn separable_comparison_numbers_are_the_models() {
    use convnet::explain::{explain_separable, separable_counts, separable_models};
    use convnet::model::thousands;
    for (input, filters, kernel, stride, padding) in [
        ([112, 112, 32], 64, 3, 1, Padding::Same),
        ([28, 28, 16], 24, 5, 2, Padding::Same),
        ([17, 13, 3], 8, 3, 1, Padding::Valid),
        ([9, 9, 7], 5, 1, 3, Padding::Valid),
    ] {
        let models = separable_models(input, filters, kernel, stride, padding).unwrap();
        let counts = separable_counts(&models, input[2], kernel).unwrap();
        let shape = models.standard.output_shapes()[0].clone();
        assert_eq!(models.two_step.output_shapes()[0], shape);
        assert_eq!(models.separable.output_shapes()[0], shape);
        assert_eq!(
            shape[1..],
            [
                Some(counts.output[0]),
                Some(counts.output[1]),
                Some(filters)
            ]
        );
        assert_eq!(counts.standard_params, models.standard.count_params());
        assert_eq!(
            counts.depthwise_params + counts.pointwise_params,
            models.two_step.count_params()
        );
        assert_eq!(counts.separable_params, models.separable.count_params());
        assert_eq!(counts.standard_macs, models.standard.forward_macs(1));
        let two = counts.depthwise_macs + counts.pointwise_macs;
        assert_eq!(two, models.two_step.forward_macs(1));
        assert_eq!(two, models.separable.forward_macs(1));
        assert_eq!(3 * two, models.separable.forward_macs(3), "per image");
        let text = explain_separable(input, filters, kernel, stride, padding, None).unwrap();
        for n in [
            counts.standard_params,
            counts.separable_params,
            counts.standard_macs,
            two,
        ] {
            assert!(text.contains(&format!("= {}", thousands(n))), "{n}: {text}");
        }
        let usual = 1.0 / filters as f64 + 1.0 / (kernel * kernel) as f64;
        assert!(text.contains(&format!("= {usual:.4}")), "{text}");
        // Without biases, the multiply-add ratio is exactly 1/N + 1/K².
        assert!((two as f64 / counts.standard_macs as f64 - usual).abs() < 1e-12);
    }
    let timed = explain_separable(
        [16, 16, 8],
        16,
        3,
        1,
        Padding::Same,
        Some(std::time::Duration::from_millis(20)),
    )
    .unwrap();
    assert!(timed.contains("x the Conv2D's time"), "{timed}");
}

/// `explain inception` is the notes' example exactly: 224x224x3 → 224x224x192 and
/// 6,912 parameters, the built-in seed-inception model's numbers.
#[test]
fn inception_explanation_is_the_notes_example() {
    use convnet::explain::InceptionBlock;
    use convnet::model::thousands;
    let block = InceptionBlock::design_notes();
    let model = block.model().unwrap();
    let seed = convnet::zoo::seed_inception(224).unwrap();
    assert_eq!(
        model.output_shapes()[0],
        vec![None, Some(224), Some(224), Some(192)]
    );
    assert_eq!(model.count_params(), 6912);
    assert_eq!(model.count_params(), seed.count_params());
    assert_eq!(model.forward_macs(1), seed.forward_macs(1));
    let counts = block.branch_counts();
    assert_eq!(
        counts.iter().map(|c| c.0).sum::<usize>(),
        seed.count_params()
    );
    assert_eq!(
        counts.iter().map(|c| c.1).sum::<usize>(),
        seed.forward_macs(1)
    );
    let text = block.explain().unwrap();
    for line in [
        "padding (ceil(224 / 1) − 1)·1 + 5 − 224 = 4 → (224 − 5 + 2·2) / 1 + 1 = 224",
        "params   5·5·3·64 + 64 = 4,864",
        "64 + 64 + 64 = 192 channels → (None, 224, 224, 192)",
        "256 + 1,792 + 4,864 = 6,912",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert!(text.contains(&thousands(seed.forward_macs(1))), "{text}");
    let path = std::env::temp_dir().join(format!("convnet-inception-{}.png", std::process::id()));
    block.plot(&path).unwrap();
    let picture = image::open(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert!(picture.width() >= 520 && picture.height() == 400);
    // An even kernel pads one more after than before, and mismatched lists are refused.
    let even = InceptionBlock {
        input: [10, 10, 1],
        filters: vec![2],
        kernels: vec![2],
    };
    assert!(even
        .explain()
        .unwrap()
        .contains("(10 − 2 + 0 + 1) / 1 + 1 = 10"));
    let bad = InceptionBlock {
        input: [10, 10, 1],
        filters: vec![2, 3],
        kernels: vec![2],
    };
    assert!(bad
        .explain()
        .unwrap_err()
        .to_string()
        .contains("one of each per branch"));
}

/// `explain MODEL` notes the saving of every depthwise and separable layer against the
/// Conv2D it replaces.
#[test]
fn explained_model_notes_separable_savings() {
    let model = convnet::zoo::mobilenet_block().unwrap();
    let text = convnet::explain::explain_model(&model);
    let noted = text.matches("  saving   a Conv2D").count();
    let layers = model
        .layers()
        .filter(|l| matches!(l.class_name(), "SeparableConv2D" | "DepthwiseConv2D"))
        .count();
    assert_eq!((noted, layers), (2, 2), "{text}");
    assert!(text.contains("3·3·24·32 + 32 = 6,944 params"), "{text}");
}
