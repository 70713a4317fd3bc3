//! Whole models: gradients through branches, fan-out, shared layers and several outputs
//! checked by finite differences; every graph error path; inference from several
//! threads at once.

use convnet::layers::*;
use convnet::model::{Call, Input, Model};
use convnet::ActivationFn;
use convnet::{sequential, Padding, Tensor};

mod common;
use common::random;

/// L = Σ over outputs of Σ y·r, in f64.
fn loss(model: &mut Model, inputs: &[Tensor], rs: &[Tensor], training: bool) -> f64 {
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let ys = model.forward(&refs, training).unwrap();
    ys.iter()
        .zip(rs)
        .map(|(y, r)| {
            y.data()
                .iter()
                .zip(r.data())
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
        })
        .sum()
}

fn close(what: &str, numeric: f64, analytic: f32) {
    let tolerance = 5e-3 + 1e-2 * (analytic as f64).abs();
    assert!(
        (numeric - analytic as f64).abs() <= tolerance,
        "{what}: backward {analytic} vs finite difference {numeric}"
    );
}

/// Checks every input and weight gradient of `model` by central differences.
fn check_model(mut model: Model, inputs: Vec<Tensor>, training: bool) {
    let step = 1e-2f32;
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let ys = model.forward(&refs, training).unwrap();
    let rs: Vec<Tensor> = ys
        .iter()
        .enumerate()
        .map(|(i, y)| random(y.shape(), 100 + i as u64))
        .collect();
    let dx = model.backward(&rs).unwrap();
    let weight_grads: Vec<Tensor> = model.gradients().iter().flatten().cloned().collect();
    let trainable: Vec<bool> = model.weights().map(|w| w.trainable).collect();
    let weights = model.get_weights();

    for (k, grad) in dx.iter().enumerate() {
        assert_eq!(grad.shape(), inputs[k].shape());
        for i in 0..grad.len() {
            let mut plus = inputs.clone();
            plus[k].data_mut()[i] += step;
            let mut minus = inputs.clone();
            minus[k].data_mut()[i] -= step;
            let numeric = (loss(&mut model.clone(), &plus, &rs, training)
                - loss(&mut model.clone(), &minus, &rs, training))
                / (2.0 * step as f64);
            close(
                &format!("{}: input {k}[{i}]", model.name()),
                numeric,
                grad.data()[i],
            );
        }
    }
    for (w, grad) in weight_grads
        .iter()
        .enumerate()
        .filter(|(w, _)| trainable[*w])
    {
        for i in 0..grad.len() {
            let eval = |delta: f32| {
                let mut changed = weights.clone();
                changed[w].data_mut()[i] += delta;
                let mut copy = model.clone();
                copy.set_weights(changed).unwrap();
                loss(&mut copy, &inputs, &rs, training)
            };
            let numeric = (eval(step) - eval(-step)) / (2.0 * step as f64);
            close(
                &format!("{}: weight {w}[{i}]", model.name()),
                numeric,
                grad.data()[i],
            );
        }
    }
}

#[test]
fn gradients_through_branches_and_fan_out() {
    // The Inception shape: one input feeding three branches, concatenated.
    let x = Input::new([5, 5, 2]);
    let a = Conv2D::new(2, (1, 1))
        .padding(Padding::Same)
        .activation(ActivationFn::Tanh)
        .call(&x);
    let b = Conv2D::new(2, (3, 3))
        .padding(Padding::Same)
        .activation(ActivationFn::Tanh)
        .call(&x);
    let c = Conv2D::new(2, (5, 5))
        .padding(Padding::Same)
        .activation(ActivationFn::Tanh)
        .call(&x);
    let y = Concatenate::new().call(&[a, b, c]);
    let y = GlobalAveragePooling2D::new().call(&y);
    let model = Model::new(&x, &y).unwrap();
    check_model(model, vec![random(&[2, 5, 5, 2], 1)], false);
}

#[test]
fn gradients_through_a_residual_block_in_training_mode() {
    let x = Input::new([4, 4, 3]);
    let a = Conv2D::new(3, (3, 3)).padding(Padding::Same).call(&x);
    let a = BatchNormalization::new().call(&a);
    let a = Activation::new(ActivationFn::Tanh).call(&a);
    let y = Add::new().call(&[a, x.clone()]);
    let y = Flatten::new().call(&y);
    let y = Dense::new(2).call(&y);
    let model = Model::new(&x, &y).unwrap();
    check_model(model, vec![random(&[3, 4, 4, 3], 2)], true);
}

#[test]
fn gradients_of_a_shared_layer_sum_over_its_calls() {
    let left = Input::new([3]);
    let right = Input::new([3]);
    let shared = Dense::new(2).activation(ActivationFn::Tanh).shared();
    let a = shared.call(&left);
    let b = shared.call(&right);
    let y = Multiply::new().call(&[a.clone(), b]);
    let model = Model::new(&[left, right], &[y, a]).unwrap();
    assert_eq!(
        model.count_params(),
        8,
        "one Dense(2) on 3 features, shared"
    );
    assert_eq!(model.output_shapes().len(), 2);
    check_model(model, vec![random(&[4, 3], 3), random(&[4, 3], 4)], false);
}

#[test]
fn gradients_through_a_sequential_model() {
    let model = sequential![
        Input::new([6, 6, 1]),
        Conv2D::new(2, (3, 3)).activation(ActivationFn::Sigmoid),
        AveragePooling2D::new((2, 2)),
        Flatten::new(),
        Dense::new(3).activation(ActivationFn::Softmax),
    ]
    .unwrap();
    check_model(model, vec![random(&[2, 6, 6, 1], 5)], false);
}

#[test]
fn summary_columns_for_shared_layers_name_each_call() {
    let left = Input::new([3]);
    let right = Input::new([3]);
    let shared = Dense::new(2).shared();
    let y = Add::new().call(&[shared.call(&left), shared.call(&right)]);
    let model = Model::new(&[left, right], &y).unwrap();
    let text = model.summary_for_columns(200);
    assert!(
        text.contains("│ input_layer[0][0],         │\n")
            && text.contains("│ input_layer_1[0][0]        │\n"),
        "{text}"
    );
    assert!(text.contains("dense[0][0], dense[1][0]"), "{text}");
    assert_eq!(model.get_layer("dense").unwrap().weights().len(), 2);
}

#[test]
fn names_are_numbered_per_class_and_user_names_kept() {
    let x = Input::new([4]);
    let a = Dense::new(3).call(&x);
    let b = Dense::new(3).named("dense_1").call(&a);
    let c = Dense::new(3).call(&b);
    let d = ReLU::new().call(&c);
    let model = Model::new(&x, &d).unwrap();
    let names: Vec<&str> = model.layers().map(|l| l.name()).collect();
    assert_eq!(
        names,
        ["input_layer", "dense", "dense_1", "dense_2", "re_lu"]
    );
    let model = Model::new(&x, &d).unwrap().named("mine");
    assert_eq!(model.name(), "mine");
}

#[test]
fn weights_can_be_read_written_and_looked_up() {
    let mut model = sequential![Input::new([4]), Dense::new(3), BatchNormalization::new()].unwrap();
    assert_eq!(model.count_params(), 15 + 12);
    assert_eq!(model.trainable_weights().count(), 4);
    assert_eq!(model.non_trainable_weights().count(), 2);
    let mut weights = model.get_weights();
    weights[0] = Tensor::full([4, 3], 0.5);
    model.set_weights(weights).unwrap();
    assert_eq!(
        model.get_layer("dense").unwrap().weights()[0].value.data(),
        &[0.5; 12]
    );
    model
        .get_layer_mut("batch_normalization")
        .unwrap()
        .base_mut()
        .trainable = false;
    assert_eq!(model.trainable_weights().count(), 2);
    let e = model.get_layer("conv2d").unwrap_err().to_string();
    assert!(
        e.contains("no layer named 'conv2d'") && e.contains("dense"),
        "{e}"
    );
    let e = model
        .set_weights(vec![Tensor::zeros([1])])
        .unwrap_err()
        .to_string();
    assert!(e.contains("has 6 weights but 1 were given"), "{e}");
    assert_eq!(
        model.layer_output_shapes(),
        vec![
            ("dense".to_string(), vec![None, Some(3)]),
            ("batch_normalization".to_string(), vec![None, Some(3)])
        ]
    );
}

#[test]
fn an_unbuilt_sequential_is_built_by_its_input_shape() {
    let mut model = sequential![Conv2D::new(4, (3, 3)), Flatten::new()].unwrap();
    let text = model.summary_for_columns(80);
    assert!(
        text.contains("0 (unbuilt)") && text.contains("│ ?"),
        "{text}"
    );
    assert!(model
        .apply(&[&Tensor::zeros([1, 5, 5, 1])])
        .unwrap_err()
        .to_string()
        .contains("not built"));
    model.build(&[5, 5, 1]).unwrap();
    model.add(Dense::new(2)).unwrap();
    assert_eq!(model.output_shapes(), vec![vec![None, Some(2)]]);
    assert_eq!(
        model.apply(&[&Tensor::zeros([1, 5, 5, 1])]).unwrap()[0].shape(),
        &[1, 2]
    );
    let e = model.add(Conv2D::new(1, (3, 3))).unwrap_err().to_string();
    assert!(e.contains("conv2d_1") && e.contains("4-D"), "{e}");
}

fn model_error(result: convnet::Result<Model>) -> String {
    result
        .map(|m| format!("accepted {m:?}"))
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn an_input_of_the_wrong_shape() {
    let x = Input::new([8, 8, 3]);
    let model = Model::new(&x, Conv2D::new(2, (3, 3)).call(&x)).unwrap();
    let e = model
        .apply(&[&Tensor::zeros([2, 8, 8, 4])])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("input_layer") && e.contains("(None, 8, 8, 3)") && e.contains("(2, 8, 8, 4)"),
        "{e}"
    );
    let e = model.apply(&[]).unwrap_err().to_string();
    assert!(e.contains("expects 1 inputs but was given 0"), "{e}");
}

#[test]
fn an_output_not_reachable_from_the_inputs() {
    let a = Input::new([4]);
    let b = Input::named([4], "other");
    let y = Dense::new(2).call(&b);
    let e = model_error(Model::new(
        &a,
        Add::new().call(&[Dense::new(2).call(&a), y]),
    ));
    assert!(
        e.contains("depends on input 'other'") && e.contains("not one of the model's inputs"),
        "{e}"
    );
}

#[test]
fn an_input_that_is_never_used() {
    let a = Input::new([4]);
    let unused = Input::named([4], "spare");
    let e = model_error(Model::new(&[a.clone(), unused], Dense::new(2).call(&a)));
    assert!(e.contains("input 'spare' is not used"), "{e}");
}

#[test]
fn a_merge_of_incompatible_shapes() {
    let x = Input::new([8, 8, 3]);
    let a = Conv2D::new(4, (3, 3)).padding(Padding::Same).call(&x);
    let b = Conv2D::new(5, (3, 3)).padding(Padding::Same).call(&x);
    let e = model_error(Model::new(&x, Add::new().named("join").call(&[a, b])));
    assert!(
        e.contains("'join'") && e.contains("(None, 8, 8, 4)") && e.contains("(None, 8, 8, 5)"),
        "{e}"
    );
}

#[test]
fn a_shared_layer_applied_to_an_incompatible_shape() {
    let a = Input::new([3]);
    let b = Input::new([5]);
    let shared = Dense::new(2).named("shared").shared();
    let ya = shared.call(&a);
    let yb = shared.call(&b);
    let e = model_error(Model::new(&[a, b], &[ya, yb]));
    assert!(
        e.contains("'shared'") && e.contains("built for 3") && e.contains("has 5"),
        "{e}"
    );
}

#[test]
fn two_layers_with_one_name() {
    let x = Input::new([3]);
    let y = Dense::new(2)
        .named("head")
        .call(Dense::new(2).named("head").call(&x));
    let e = model_error(Model::new(&x, &y));
    assert!(e.contains("two layers are named 'head'"), "{e}");
}

#[test]
fn a_layer_that_cannot_take_its_input() {
    let x = Input::new([3, 3, 1]);
    let e = model_error(Model::new(&x, Conv2D::new(2, (5, 5)).call(&x)));
    assert!(e.contains("conv2d") && e.contains("larger than"), "{e}");
    let e = Conv2D::new(2, (5, 5))
        .call(&x)
        .shape()
        .unwrap_err()
        .to_string();
    assert!(e.contains("larger than"), "{e}");
}

#[test]
fn inference_from_several_threads_matches_one_thread() {
    let x = Input::new([16, 16, 3]);
    let a = Conv2D::new(8, (3, 3))
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .call(&x);
    let b = DepthwiseConv2D::new((3, 3)).padding(Padding::Same).call(&x);
    let y = Concatenate::new().call(&[a, b]);
    let y = MaxPooling2D::new((2, 2)).call(&y);
    let y = Dense::new(4)
        .activation(ActivationFn::Softmax)
        .call(Flatten::new().call(&y));
    let model = Model::new(&x, &y).unwrap();
    let inputs: Vec<Tensor> = (0..8).map(|i| random(&[3, 16, 16, 3], 10 + i)).collect();
    let alone: Vec<Tensor> = inputs
        .iter()
        .map(|t| model.apply(&[t]).unwrap().remove(0))
        .collect();
    let together: Vec<Tensor> = std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|t| s.spawn(|| model.apply(&[t]).unwrap().remove(0)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(alone, together);
}

#[test]
fn gradients_through_a_model_nested_as_a_layer() {
    let inner = sequential![
        Input::new([4, 4, 2]),
        Conv2D::new(3, (3, 3))
            .padding(Padding::Same)
            .activation(ActivationFn::Tanh),
        BatchNormalization::new()
    ]
    .unwrap();
    let x = Input::new([4, 4, 2]);
    let y = inner.as_layer().call(&x);
    let y = Dense::new(2).call(Flatten::new().call(&y));
    let model = Model::new(&x, &y).unwrap();
    assert_eq!(
        model.count_params(),
        (3 * 3 * 2 * 3 + 3) + 4 * 3 + (48 * 2 + 2)
    );
    check_model(model, vec![random(&[2, 4, 4, 2], 12)], true);
}
