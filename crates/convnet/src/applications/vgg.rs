//! keras.applications' VGG16 and VGG19 (keras/src/applications/vgg16.py and vgg19.py):
//! five blocks of 3x3 ReLU convolutions, each closed by a 2x2 max pooling, and a
//! classifier of two 4096-unit ReLU Dense layers on the flattened map.

use super::{check_classes, input, obtain_input_shape, pooling, Options};
use crate::activations::ActivationFn;
use crate::error::Result;
use crate::kernels::Padding;
use crate::layers::{Conv2D, Dense, Flatten, Layer, MaxPooling2D};
use crate::model::{Call, Model};

/// Keras's VGG with `convs[b]` convolutions in block b + 1.
fn vgg(options: &Options, name: &str, convs: [usize; 5]) -> Result<Model> {
    check_classes(options)?;
    let shape = obtain_input_shape(options, 224, 32)?;
    let img_input = input(&shape);
    let mut x = img_input.clone();
    for (block, (&count, filters)) in convs.iter().zip([64, 128, 256, 512, 512]).enumerate() {
        let block = block + 1;
        for conv in 1..=count {
            x = Conv2D::new(filters, (3, 3))
                .activation(ActivationFn::Relu)
                .padding(Padding::Same)
                .named(&format!("block{block}_conv{conv}"))
                .call(&x);
        }
        x = MaxPooling2D::new((2, 2))
            .strides((2, 2))
            .named(&format!("block{block}_pool"))
            .call(&x);
    }
    let y = if options.include_top {
        let x = Flatten::new().named("flatten").call(&x);
        let x = Dense::new(4096)
            .activation(ActivationFn::Relu)
            .named("fc1")
            .call(&x);
        let x = Dense::new(4096)
            .activation(ActivationFn::Relu)
            .named("fc2")
            .call(&x);
        Dense::new(options.classes)
            .activation(options.classifier_activation)
            .named("predictions")
            .call(&x)
    } else {
        // Keras leaves VGG's poolings auto-named.
        pooling(&x, options, None, None)
    };
    Ok(Model::new(&img_input, &y)?.named(name))
}

/// `keras.applications.VGG16(weights=None, …)`: model `vgg16`, 138,357,544 parameters
/// with the default top at 224x224x3 (the top flattens the map, so its size fixes the
/// parameters); expects [`super::PreprocessMode::Caffe`] input.
pub fn vgg16(options: &Options) -> Result<Model> {
    vgg(options, "vgg16", [2, 2, 3, 3, 3])
}

/// `keras.applications.VGG19(weights=None, …)`: model `vgg19`, 143,667,240 parameters
/// with the default top at 224x224x3; expects [`super::PreprocessMode::Caffe`] input.
pub fn vgg19(options: &Options) -> Result<Model> {
    vgg(options, "vgg19", [2, 2, 4, 4, 4])
}
