//! ImageNet's 1,000 classes and Keras's `decode_predictions`. The class names are the
//! ones torchvision ships with its weight metadata (`_IMAGENET_CATEGORIES`), one per line
//! in class-index order, so no download is needed; Keras's own list (downloaded on first
//! use) has the same classes in the same order, with its words joined by underscores.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::sync::OnceLock;

const CLASS_NAMES: &str = include_str!("imagenet_classes.txt");

/// The number of ImageNet classes the applications' heads predict.
pub const IMAGENET_CLASSES: usize = 1000;

/// ImageNet's class names, by class index.
pub fn imagenet_class_names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| CLASS_NAMES.lines().collect())
}

/// One class of a prediction: its index, its name and its score.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The class index.
    pub class: usize,
    /// Its name (empty when no names were given).
    pub name: String,
    /// Its score in the prediction.
    pub score: f32,
}

/// The `top` highest-scoring classes of each row of `scores` (samples × classes), best
/// first, named by `names` (one per class).
pub fn top_classes(scores: &Tensor, top: usize, names: &[String]) -> Result<Vec<Vec<Decoded>>> {
    let &[_, classes] = scores.shape() else {
        return Err(Error::invalid(
            "predictions",
            format!(
                "expected a batch of scores (samples, classes), got shape {:?}",
                scores.shape()
            ),
        ));
    };
    Ok(scores
        .data()
        .chunks(classes.max(1))
        .map(|row| {
            let mut order: Vec<usize> = (0..classes).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            order
                .into_iter()
                .take(top)
                .map(|class| Decoded {
                    class,
                    name: names.get(class).cloned().unwrap_or_default(),
                    score: row[class],
                })
                .collect()
        })
        .collect())
}

/// Keras's `decode_predictions(preds, top=5)`: the `top` ImageNet classes of each row of
/// an application's (samples, 1000) predictions, best first.
pub fn decode_predictions(preds: &Tensor, top: usize) -> Result<Vec<Vec<Decoded>>> {
    if preds.rank() != 2 || preds.shape()[1] != IMAGENET_CLASSES {
        return Err(Error::invalid(
            "preds",
            format!(
                "decode_predictions expects a batch of predictions (a 2-D array of shape (samples, 1000)), received an array of shape {:?}",
                preds.shape()
            ),
        ));
    }
    let names: Vec<String> = imagenet_class_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    top_classes(preds, top, &names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_list_has_every_imagenet_class_once() {
        let names = imagenet_class_names();
        assert_eq!(names.len(), IMAGENET_CLASSES);
        assert_eq!(
            (names[0], names[281], names[999]),
            ("tench", "tabby", "toilet tissue")
        );
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), IMAGENET_CLASSES);
    }

    #[test]
    fn decoding_sorts_scores_and_refuses_other_shapes() {
        let mut scores = vec![0.0f32; 2 * IMAGENET_CLASSES];
        scores[7] = 0.5;
        scores[3] = 0.25;
        scores[IMAGENET_CLASSES + 999] = 0.9;
        let decoded = decode_predictions(&Tensor::new([2, 1000], scores).unwrap(), 2).unwrap();
        assert_eq!((decoded[0][0].class, decoded[0][1].class), (7, 3));
        assert_eq!(decoded[1][0].name, "toilet tissue");
        let error = decode_predictions(&Tensor::zeros([1, 10]), 5).unwrap_err();
        assert!(error.to_string().contains("(samples, 1000)"), "{error}");
    }
}
