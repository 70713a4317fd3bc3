//! One model shared by many threads: `Model::apply` takes `&self` and keeps nothing, so
//! eight threads calling it at once on different inputs must each get, bit for bit, what
//! one thread alone gets for the same input.

use convnet::layers::*;
use convnet::model::{Call, Input, Model};
use convnet::{sequential, ActivationFn, Padding, Tensor};
use std::sync::Barrier;
use std::time::{Duration, Instant};

mod common;
use common::random;

/// A compile-time check: a model can be shared between threads (`&Model` is `Send`).
const _: () = {
    const fn shared_between_threads<T: Sync + Send>() {}
    shared_between_threads::<Model>();
};

const THREADS: usize = 8;
const INPUTS: usize = 12;
/// How long the threads run together, and how many calls each makes at most.
const DURATION: Duration = Duration::from_secs(3);
const MAX_CALLS: usize = 4000;

/// A small CNN with a branch: Conv2D → BatchNormalization → (MaxPooling2D |
/// a nested Sequential of Conv2D, BatchNormalization and AveragePooling2D) →
/// Concatenate → DepthwiseConv2D → GlobalAveragePooling2D → Dense (softmax). Every
/// weight is random, BatchNormalization's moving statistics included, so no layer is
/// the identity.
fn model() -> Model {
    let x = Input::new([16, 16, 3]);
    let stem = Conv2D::new(8, (3, 3))
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .call(&x);
    let stem = BatchNormalization::new().call(&stem);
    let pooled = MaxPooling2D::new((2, 2)).call(&stem);
    let inner = sequential![
        Input::new([16, 16, 8]),
        Conv2D::new(6, (1, 1)).activation(ActivationFn::Tanh),
        BatchNormalization::new(),
        AveragePooling2D::new((2, 2))
    ]
    .unwrap();
    let branch = inner.as_layer().call(&stem);
    let merged = Concatenate::new().call([pooled, branch]);
    let merged = DepthwiseConv2D::new((3, 3))
        .padding(Padding::Same)
        .call(&merged);
    let features = GlobalAveragePooling2D::new().call(&merged);
    let y = Dense::new(10)
        .activation(ActivationFn::Softmax)
        .call(&features);
    let mut model = Model::new(&x, &y).unwrap();
    let weights: Vec<Tensor> = model
        .weights()
        .enumerate()
        .map(|(k, w)| {
            let mut value = random(w.value.shape(), 100 + k as u64);
            if w.name.contains("variance") {
                // A variance is positive.
                value.data_mut().iter_mut().for_each(|v| *v = v.abs() + 0.5);
            }
            value
        })
        .collect();
    model.set_weights(weights).unwrap();
    model
}

#[test]
fn eight_threads_share_one_model_and_get_one_threads_results() {
    let model = model();
    assert!(
        model
            .layers()
            .any(|l| convnet::model::nested_model(l).is_some()),
        "the model should have a nested branch"
    );
    let inputs: Vec<Tensor> = (0..INPUTS)
        .map(|k| random(&[1 + k % 3, 16, 16, 3], k as u64))
        .collect();
    // One thread, one call at a time: the reference.
    let alone: Vec<Tensor> = inputs
        .iter()
        .map(|x| model.apply(&[x]).unwrap().remove(0))
        .collect();
    // The inputs give different outputs, so a result handed to the wrong caller shows.
    for (k, y) in alone.iter().enumerate() {
        assert_eq!(y.shape(), [1 + k % 3, 10]);
        for other in &alone[..k] {
            assert_ne!(y, other, "inputs {k} and another give the same output");
        }
    }

    let start = Barrier::new(THREADS);
    let model = &model;
    let calls: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (inputs, alone, start) = (&inputs, &alone, &start);
                s.spawn(move || {
                    start.wait();
                    let began = Instant::now();
                    let mut calls = 0;
                    while calls < MAX_CALLS && (calls < 3 || began.elapsed() < DURATION) {
                        // Each thread walks the inputs in its own order.
                        let k = (t * 5 + calls * (t + 1)) % INPUTS;
                        let y = model.apply(&[&inputs[k]]).unwrap().remove(0);
                        assert_eq!(y.shape(), alone[k].shape());
                        let same = y
                            .data()
                            .iter()
                            .zip(alone[k].data())
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "thread {t}, call {calls}: input {k} gave {:?}, one thread alone {:?}",
                            y.data(),
                            alone[k].data()
                        );
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(calls.iter().all(|&n| n >= 3), "calls per thread: {calls:?}");
    eprintln!("calls per thread: {calls:?}");
}
